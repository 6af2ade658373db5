#!/usr/bin/env python3
"""Decode mouth-ROI features with a trained dual-decoder VSR model: character N-best + pinyin 1-best (stages 5, 6).

The search (ESPnet's joint CTC/attention beam search on both branches, ``--pinyin_rescore_weight``,
``--pinyin_search_weight``, a character LM with ``--lm_weight``) is
:mod:`vallr_pin.decoding.search`; the job outputs, ``.done`` markers, merging and decode lists are
:mod:`vallr_pin.decoding.jobs`. One job decodes the utterances of ``--key_file`` (a split of the set's
feats.scp) into ``--output_dir`` (ESPnet's ``{k}best_recog/{text,score,token}``, ``text``, ``pinyin``,
``nbest.jsonl``); ``--merge JOB_DIR ...`` joins the jobs into the set's decode directory::

    python -m vallr_pin.bin.vsr_inference --config conf/decode_vsr.yaml \\
        --train_config exp/vsr_dual/config.yaml --model_file exp/vsr_dual/valid.acc_char.ave.pth \\
        --data_path_and_name_and_type dump/roi/test/feats.scp,video,kaldi_ark \\
        --key_file exp/vsr_dual/decode/test/logdir/keys.3.scp --ref_text data/test/text \\
        --output_dir exp/vsr_dual/decode/test/logdir/output.3
    python -m vallr_pin.bin.vsr_inference --output_dir exp/vsr_dual/decode/test \\
        --merge exp/vsr_dual/decode/test/logdir/output.*

``--decode_list FILE`` runs several such jobs in one process: each line of FILE holds the options of one job
(``--model_file ... --data_path_and_name_and_type ... --key_file ... --output_dir ...``, shell-quoted), the
command line's options are their defaults, and a line's options win. Stages 5 and 6 of vsr.sh give each of
their nj processes one list covering every (checkpoint, set) they decode.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from vallr_pin.cli import LOG_LEVELS, load_yaml, user_errors
from vallr_pin.decoding.jobs import check_job_args, decode_job, merge_jobs, read_decode_list, without_option


def get_parser() -> argparse.ArgumentParser:
    from espnet2.utils import config_argparse
    from espnet2.utils.types import str2triple_str

    parser = config_argparse.ArgumentParser(
        description="Character N-best + pinyin decoding of the dual-decoder VSR model (one job), or --merge.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", "--log-level", default="INFO", choices=LOG_LEVELS,
                        help="Python logging level; DEBUG also prints the traceback of an error")
    parser.add_argument("--output_dir", default=None,
                        help="Job output directory, or the set's decode directory with --merge")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JOB_DIR",
                        help="Merge these finished job directories into --output_dir and exit")
    parser.add_argument("--decode_list", default=None, metavar="FILE",
                        help="Run one job per line of FILE in this process (each line: this script's options for "
                             "one job, e.g. --model_file M --data_path_and_name_and_type D --key_file K "
                             "--output_dir O; the command line's options are the defaults)")
    g = parser.add_argument_group("Model and data")
    g.add_argument("--train_config", help="Training config.yaml of the model")
    g.add_argument("--model_file", help="Checkpoint: {N}epoch.pth, ckpt_keep/{N}epoch.pth or an averaged model")
    g.add_argument("--data_path_and_name_and_type", type=str2triple_str, action="append", default=[],
                   help="Input as ESPnet triple, e.g. dump/roi/test/feats.scp,video,kaldi_ark")
    g.add_argument("--key_file", default=None, help="Utterances of this job (a split of feats.scp)")
    g.add_argument("--ref_text", default=None, help="Kaldi text with references, copied to nbest.jsonl 'ref'")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--num_threads", type=int, default=1, help="torch CPU threads of this job")
    g.add_argument("--batch_size", type=int, default=1,
                   help="Utterances encoded together (padded frames are masked); the beam search then runs "
                        "per utterance")
    g = parser.add_argument_group("Character beam search")
    g.add_argument("--beam_size", type=int, default=10, help="Beam width")
    g.add_argument("--ctc_weight", type=float, default=0.3, help="CTC prefix score weight (decoder: 1 - it)")
    g.add_argument("--penalty", type=float, default=0.0, help="Length bonus per token")
    g.add_argument("--maxlenratio", type=float, default=0.0,
                   help="Max output length = ratio * frames; 0 = encoder length with end detection")
    g.add_argument("--minlenratio", type=float, default=0.0, help="Min output length = ratio * frames")
    g.add_argument("--nbest", type=int, default=10, help="Hypotheses kept per utterance (K)")
    g.add_argument("--normalize_length", type=lambda x: x.lower() in ("true", "1", "yes"), default=False,
                   help="Rank final hypotheses by score per token")
    g.add_argument("--pre_beam_ratio", type=float, default=1.5,
                   help="The CTC scorers (character, and pinyin with --pinyin_search_weight) score this times "
                        "beam_size candidates per step, those the decoder, LM and length bonus rank highest "
                        "(ESPnet's pre-beam; 1.5 is its default)")
    g.add_argument("--beam_search_impl", choices=["batch", "plain"], default="batch",
                   help="batch: ESPnet BatchBeamSearch (hypotheses vectorised); plain: ESPnet BeamSearch")
    g = parser.add_argument_group("Pinyin branch")
    g.add_argument("--pinyin_decode_mode", choices=["attention", "ctc"], default="attention",
                   help="attention: beam search on the pinyin decoder + CTC; ctc: greedy pinyin CTC")
    g.add_argument("--pinyin_beam_size", type=int, default=5, help="Beam width of the pinyin beam search")
    g.add_argument("--pinyin_ctc_weight", type=float, default=0.3,
                   help="CTC weight of the pinyin beam search and of --pinyin_rescore_weight's score")
    g.add_argument("--pinyin_rescore_weight", type=float, default=0.0,
                   help="Add this times the pinyin branch's log-likelihood of each character hypothesis's "
                        "reading to its score and re-rank the beam (dual model only; 0: off, the paper's Stage I)")
    g.add_argument("--pinyin_search_weight", type=float, default=0.0,
                   help="Weight of the pinyin branch's CTC, read through the characters, as one more CTC prefix "
                        "scorer inside the character beam search: among the candidates the decoder and the LM "
                        "propose at each step, those whose syllable the lips did not draw pay for it (dual model "
                        "only; 0: off)")
    g = parser.add_argument_group("Character language model (shallow fusion, as ESPnet's asr_inference)")
    g.add_argument("--lm_train_config", default=None, help="config.yaml of an ESPnet character LM (vsr.sh stage 4)")
    g.add_argument("--lm_file", default=None, help="its checkpoint")
    g.add_argument("--lm_weight", type=float, default=0.0, help="its weight in the character beam search (0: no LM)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # The log level and --config first, by themselves: ESPnet's parser reads --config with a traceback for a
    # file that is not YAML and a usage screen for a missing one.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--log_level", "--log-level", default="INFO", choices=LOG_LEVELS)
    pre.add_argument("--config", default=None)
    early = pre.parse_known_args(argv)[0]
    with user_errors(early.log_level):
        if early.config:
            load_yaml(early.config, "decoding config", hint="give vsr_inference options as in conf/decode_vsr.yaml")
        args = parser.parse_args(argv)
        if args.merge:
            if args.output_dir is None:
                parser.error("--merge needs --output_dir (the set's decode directory)")
            merge_jobs(args.merge, args.output_dir)
            return
        if args.decode_list:
            jobs = read_decode_list(args.decode_list, parser, without_option(argv, "--decode_list"))
        else:
            check_job_args(args)
            jobs = [args]
        for i, job in enumerate(jobs, 1):
            if args.decode_list:
                logging.info(f"decode list {args.decode_list}: job {i}/{len(jobs)} -> {job.output_dir}")
            decode_job(job)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Decode mouth-ROI videos with a trained dual-decoder VSR model: character N-best + pinyin 1-best.

Character branch: joint CTC/attention beam search with ESPnet's ``BatchBeamSearch`` (vectorised over the
hypotheses of one utterance; ``--beam_search_impl plain`` uses ESPnet's one-hypothesis-at-a-time ``BeamSearch``,
same results, kept for comparison and benchmarking), scorers ``decoder`` (SAN-M), ``ctc`` (``CTCPrefixScorer``)
and ``length_bonus`` (``LengthBonus``). Pinyin branch: ``--pinyin_decode_mode attention`` runs the same beam search
on the pinyin decoder + pinyin CTC and keeps the best; ``ctc`` takes the greedy CTC path (fast).

``--pinyin_rescore_weight w`` (dual model only) lets the pinyin branch vote on the characters too: each character
hypothesis of the beam is read as toneless pinyin (stage 2's ``hanzi_to_pinyin``) and gets ``w`` times the pinyin
branch's joint CTC/attention log-likelihood of that reading (CTC share ``--pinyin_ctc_weight``) added to its
score; the N-best is re-ranked by the sum. The pinyin branch predicts 400-odd syllables, each seen far more often
in training than any one character, so on unseen speakers and sentences it often knows the lip shapes better than
the character branch does; homophones tie under it and stay ranked by the character branch. 0 = the paper's
Stage I (the character branch alone decides).

One job decodes the utterances of ``--key_file`` (a split of the set's feats.scp) and writes, into
``--output_dir``, ESPnet's layout ``{k}best_recog/{text,score,token}`` (k = 1..nbest), ``text`` (= 1best),
``pinyin`` and ``nbest.jsonl`` (SPEC.md), each file atomically, then a ``.done`` marker describing what was
decoded. Re-running a job whose marker matches the request does nothing, so after a crash or a killed job only the
unfinished jobs run again. ``--merge JOB_DIR ...`` then joins the jobs into the set's decode directory::

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
their nj processes one list covering every (checkpoint, set) they decode: on a CPU, importing ESPnet + FunASR
costs 15-20 s per process, more than decoding a mini set takes, and stage 6 used to start 12 processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from vallr_pin.datadir import atomic_open, read_kv, write_kv

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
DONE = ".done"


@dataclass
class Recognition:
    """Decoding result of one utterance: ``nbest`` = [(text, tokens, score)], best first; ``pinyin`` syllables."""

    nbest: List[Tuple[str, List[str], float]] = field(default_factory=list)
    pinyin: str = ""


def build_beam_search(decoder, ctc, token_list: List[str], beam_size: int, ctc_weight: float, penalty: float,
                      impl: str, normalize_length: bool = False):
    """ESPnet joint CTC/attention beam search over ``token_list`` (``<sos/eos>`` = last token)."""
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.beam_search import BeamSearch
    from espnet.nets.scorer_interface import BatchScorerInterface
    from espnet.nets.scorers.ctc import CTCPrefixScorer
    from espnet.nets.scorers.length_bonus import LengthBonus

    eos = len(token_list) - 1
    scorers = dict(decoder=decoder, ctc=CTCPrefixScorer(ctc=ctc, eos=eos), length_bonus=LengthBonus(len(token_list)))
    weights = dict(decoder=1.0 - ctc_weight, ctc=ctc_weight, length_bonus=penalty)
    beam_search = BeamSearch(
        beam_size=beam_size, weights=weights, scorers=scorers, sos=eos, eos=eos, vocab_size=len(token_list),
        token_list=token_list, pre_beam_score_key=None if ctc_weight == 1.0 else "full",
        normalize_length=normalize_length,
    )
    if impl == "batch":
        non_batch = [k for k, v in beam_search.full_scorers.items() if not isinstance(v, BatchScorerInterface)]
        if non_batch:
            raise RuntimeError(f"scorers {non_batch} are not ESPnet batch scorers; use --beam_search_impl plain")
        beam_search.__class__ = BatchBeamSearch
    elif impl != "plain":
        raise ValueError(f"--beam_search_impl must be batch or plain, got {impl}")
    return beam_search.eval()


class VideoToText:
    """A trained model + its beam searches. ``__call__`` takes normalised video and returns recognitions.

    Args:
        train_config: the training ``config.yaml`` (holds both token lists).
        model_file: any checkpoint of that run: ``{N}epoch.pth``, ``ckpt_keep/{N}epoch.pth``, ``*.ave.pth``.
        beam_size, ctc_weight, penalty, maxlenratio, minlenratio, nbest: character beam search (ESPnet meaning).
        beam_search_impl: ``batch`` (BatchBeamSearch) or ``plain`` (BeamSearch).
        pinyin_decode_mode: ``attention`` or ``ctc``; pinyin_beam_size / pinyin_ctc_weight for ``attention``.
        pinyin_rescore_weight: weight of the pinyin branch's score of each character hypothesis's reading
            (module docstring); needs a dual model when > 0.
    """

    def __init__(self, train_config: str, model_file: str, device: str = "cpu", beam_size: int = 10,
                 ctc_weight: float = 0.3, penalty: float = 0.0, maxlenratio: float = 0.0,
                 minlenratio: float = 0.0, nbest: int = 10, beam_search_impl: str = "batch",
                 pinyin_decode_mode: str = "attention", pinyin_beam_size: int = 5, pinyin_ctc_weight: float = 0.3,
                 normalize_length: bool = False, pinyin_rescore_weight: float = 0.0):
        from vallr_pin.tasks.vsr import VSRTask

        model, train_args = VSRTask.build_model_from_file(train_config, None, device)
        if pinyin_rescore_weight and not model.has_pinyin_branch:
            raise ValueError(f"--pinyin_rescore_weight {pinyin_rescore_weight} needs a dual model; {train_config} "
                             "has no pinyin branch (use 0 for a char-only model)")
        states = torch.load(model_file, map_location=device, weights_only=False)
        try:
            # ESPnet's loader is strict=False: a dual config on a char-only checkpoint would silently decode with
            # a random pinyin decoder. Be strict.
            model.load_state_dict(states, strict=True)
        except RuntimeError as e:
            raise RuntimeError(f"{model_file} does not match {train_config}: {e}") from None
        model.eval()
        self.model = model
        self.train_args = train_args
        self.device = device
        self.token_list = list(model.token_list)
        self.pinyin_token_list = list(model.pinyin_token_list) if model.has_pinyin_branch else None
        self._pinyin_index = {t: i for i, t in enumerate(self.pinyin_token_list or [])}
        self.maxlenratio, self.minlenratio, self.nbest = maxlenratio, minlenratio, nbest
        if pinyin_decode_mode not in ("attention", "ctc"):
            raise ValueError(f"--pinyin_decode_mode must be attention or ctc, got {pinyin_decode_mode}")
        self.pinyin_decode_mode = pinyin_decode_mode
        self.pinyin_rescore_weight = pinyin_rescore_weight
        self.pinyin_ctc_weight = pinyin_ctc_weight
        self.beam_search = build_beam_search(model.decoder, model.ctc, self.token_list, beam_size, ctc_weight,
                                             penalty, beam_search_impl, normalize_length).to(device)
        self.pinyin_beam_search = None
        if model.has_pinyin_branch and pinyin_decode_mode == "attention":
            self.pinyin_beam_search = build_beam_search(
                model.pinyin_decoder, model.pinyin_ctc, self.pinyin_token_list, pinyin_beam_size,
                pinyin_ctc_weight, 0.0, beam_search_impl, normalize_length,
            ).to(device)

    def _ids_to_tokens(self, ids: Sequence[int], token_list: List[str]) -> List[str]:
        eos = len(token_list) - 1
        return [token_list[i] for i in ids if i != 0 and i != eos]  # drop <blank> and <sos/eos>

    def _pinyin(self, enc: torch.Tensor) -> str:
        """enc: (T, D) encoder output of one utterance -> best pinyin syllables, space separated."""
        if self.pinyin_token_list is None:
            return ""
        if self.pinyin_decode_mode == "ctc":
            ids = self.model.pinyin_ctc.argmax(enc.unsqueeze(0))[0]
            ids = torch.unique_consecutive(ids).tolist()
        else:
            hyps = self.pinyin_beam_search(x=enc, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
            ids = hyps[0].yseq[1:-1].tolist() if hyps else []
        return " ".join(self._ids_to_tokens(ids, self.pinyin_token_list))

    @staticmethod
    def reading(tokens: Sequence[str]) -> List[str]:
        """Toneless pinyin of character tokens, one syllable each (``pinyin_per_char``: polyphones resolved in
        context); a token that is not one Hanzi (``<unk>``), or a Hanzi without a reading, reads ``<unk>``."""
        from vallr_pin.text.normalize import is_hanzi
        from vallr_pin.text.pinyin import UNK, pinyin_per_char

        text = "".join(t if len(t) == 1 and is_hanzi(t) else "?" for t in tokens)  # one character per token
        return [p or UNK for p in pinyin_per_char(text)]

    def pinyin_scores(self, enc: torch.Tensor, hyps: Sequence[Sequence[str]]) -> List[float]:
        """log P(reading of each hypothesis | H) under the pinyin branch: ``pinyin_ctc_weight`` * CTC + the rest
        * attention decoder (teacher-forced, ending with <sos/eos>), as the pinyin beam search weighs them.

        enc: (T, D) encoder output of one utterance; hyps: character token lists (may be empty), or strings
        of Hanzi (one token per character)."""
        from espnet.nets.pytorch_backend.nets_utils import pad_list

        index = self._pinyin_index
        unk, eos = index.get("<unk>", 1), len(self.pinyin_token_list) - 1
        ys = [torch.tensor([index.get(s, unk) for s in self.reading(list(h))], dtype=torch.long) for h in hyps]
        n = len(ys)
        ylens = torch.tensor([len(y) for y in ys])
        hs = enc.unsqueeze(0).expand(n, -1, -1)
        hlens = torch.full((n,), enc.size(0), dtype=torch.long)
        # CTC: -loss is log P(y | H) summed over alignments; inf (a reading longer than the video) -> -inf
        # the frame posteriors are the same for every hypothesis: compute them once, not n times
        logp = self.model.pinyin_ctc.log_softmax(enc.unsqueeze(0)).transpose(0, 1).expand(-1, n, -1)  # (T, n, V)
        targets = torch.cat(ys) if int(ylens.sum()) else torch.zeros(0, dtype=torch.long)
        ctc = -torch.nn.functional.ctc_loss(logp, targets, hlens, ylens, blank=0, reduction="none")
        # attention: sum of log P(y_i | y_<i, H) over the reading and <sos/eos>
        ys_in = pad_list([torch.cat([torch.tensor([eos]), y]) for y in ys], eos)
        ys_out = pad_list([torch.cat([y, torch.tensor([eos])]) for y in ys], -1)
        dec_out, _ = self.model.pinyin_decoder(hs, hlens, ys_in, ylens + 1)
        lp = torch.log_softmax(dec_out, dim=-1)
        att = (lp.gather(-1, ys_out.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (ys_out != -1)).sum(-1)
        w = self.pinyin_ctc_weight
        return (w * ctc + (1.0 - w) * att).tolist()

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, video_lengths: torch.Tensor) -> List[Recognition]:
        """video: (B, T, h*w) float, normalised as in training (VSRPreprocessor, train=False); (B,) frames."""
        enc, enc_lens = self.model.encode(video.to(self.device), video_lengths.to(self.device))
        results = []
        for b in range(enc.size(0)):
            x = enc[b, : int(enc_lens[b])]
            hyps = self.beam_search(x=x, maxlenratio=self.maxlenratio, minlenratio=self.minlenratio)
            nbest, seen = [], set()
            for hyp in hyps:
                tokens = self._ids_to_tokens(hyp.yseq[1:-1].tolist(), self.token_list)
                text = "".join(tokens)
                if text in seen:  # two hypotheses that differ only by a <blank> token read the same
                    continue
                seen.add(text)
                nbest.append((text, tokens, float(hyp.score)))
            if self.pinyin_rescore_weight and nbest:
                # re-rank the whole beam, then cut to K: the pinyin vote may lift a hypothesis from below K
                py = self.pinyin_scores(x, [toks for _, toks, _ in nbest])
                nbest = [(t, toks, s + self.pinyin_rescore_weight * p) for (t, toks, s), p in zip(nbest, py)]
                nbest.sort(key=lambda h: h[2], reverse=True)
            results.append(Recognition(nbest=nbest[: self.nbest], pinyin=self._pinyin(x)))
        return results


def _signature(args: argparse.Namespace) -> Dict:
    """What a finished job decoded; a re-run is skipped only when this is unchanged."""
    def file_id(path: Optional[str]):
        # By content, not mtime: re-running stage 4 re-writes the same averaged model, and that must not
        # make stages 5/6 decode everything again.
        if path is None:
            return None
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return [str(path), os.stat(path).st_size, h.hexdigest()]

    keys_digest = None
    if args.key_file:
        keys_digest = hashlib.sha1(Path(args.key_file).read_bytes()).hexdigest()
    opts = {k: getattr(args, k) for k in (
        "beam_size", "ctc_weight", "penalty", "maxlenratio", "minlenratio", "nbest", "beam_search_impl",
        "pinyin_decode_mode", "pinyin_beam_size", "pinyin_ctc_weight", "normalize_length",
        "pinyin_rescore_weight")}
    return dict(model_file=file_id(args.model_file), train_config=file_id(args.train_config),
                data=[list(x) for x in args.data_path_and_name_and_type], keys=keys_digest,
                ref_text=args.ref_text, options=opts)


def write_outputs(output_dir: Path, results: Dict[str, Recognition], refs: Dict[str, str], nbest: int) -> None:
    """Write the ESPnet-layout N-best files, ``text``, ``pinyin`` and ``nbest.jsonl``, each atomically."""
    for k in range(1, nbest + 1):
        have = {u: r.nbest[k - 1] for u, r in results.items() if len(r.nbest) >= k}
        if k == 1:  # every utterance gets a 1best line, empty when the search found nothing
            have = {u: (r.nbest[0] if r.nbest else ("", [], float("-inf"))) for u, r in results.items()}
        d = output_dir / f"{k}best_recog"
        write_kv(d / "text", {u: h[0] for u, h in have.items()})
        write_kv(d / "token", {u: " ".join(h[1]) for u, h in have.items()})
        write_kv(d / "score", {u: f"{h[2]:.4f}" for u, h in have.items()})
    write_kv(output_dir / "text", {u: (r.nbest[0][0] if r.nbest else "") for u, r in results.items()})
    write_kv(output_dir / "pinyin", {u: r.pinyin for u, r in results.items()})
    with atomic_open(output_dir / "nbest.jsonl") as f:
        for utt in sorted(results):
            r = results[utt]
            row = {"utt": utt, "nbest": [{"text": t, "score": round(s, 4)} for t, _, s in r.nbest],
                   "pinyin": r.pinyin, "ref": refs.get(utt)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def merge_jobs(job_dirs: Sequence[str], output_dir: str) -> None:
    """Concatenate finished jobs' outputs into ``output_dir`` (sorted, atomic); refuse unfinished jobs."""
    output_dir = Path(output_dir)
    unfinished = [d for d in job_dirs if not (Path(d) / DONE).exists()]
    if unfinished:
        raise RuntimeError(f"jobs not finished (no {DONE}): {unfinished}; re-run the decoding stage first")
    kv_files = sorted({str(p.relative_to(d)) for d in map(Path, job_dirs) for p in d.rglob("*")
                       if p.is_file() and p.name in ("text", "token", "score", "pinyin")})
    for rel in kv_files:
        merged: Dict[str, str] = {}
        for d in job_dirs:
            path = Path(d) / rel
            if not path.exists():
                continue
            for utt, value in read_kv(path).items():
                if utt in merged:
                    raise RuntimeError(f"{path}: utterance {utt} was decoded by two jobs; check the key splits")
                merged[utt] = value
        write_kv(output_dir / rel, merged)
    rows = {}
    for d in job_dirs:
        with open(Path(d) / "nbest.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                rows[row["utt"]] = line if line.endswith("\n") else line + "\n"
    with atomic_open(output_dir / "nbest.jsonl") as f:
        for utt in sorted(rows):
            f.write(rows[utt])
    logging.info(f"Merged {len(job_dirs)} jobs, {len(rows)} utterances into {output_dir}")


def decode_job(args: argparse.Namespace) -> None:
    from vallr_pin.tasks.vsr import VSRTask

    output_dir = Path(args.output_dir)
    signature = _signature(args)
    done = output_dir / DONE
    if done.exists():
        if json.loads(done.read_text(encoding="utf-8")) == signature:
            logging.info(f"{output_dir}: already decoded with the same model and options, skipping")
            return
        logging.warning(f"{output_dir}: {DONE} is for another model/options; decoding again")
        done.unlink()

    torch.set_num_threads(args.num_threads)
    speech2text = VideoToText(
        train_config=args.train_config, model_file=args.model_file, device=args.device,
        beam_size=args.beam_size, ctc_weight=args.ctc_weight, penalty=args.penalty,
        maxlenratio=args.maxlenratio, minlenratio=args.minlenratio, nbest=args.nbest,
        beam_search_impl=args.beam_search_impl, pinyin_decode_mode=args.pinyin_decode_mode,
        pinyin_beam_size=args.pinyin_beam_size, pinyin_ctc_weight=args.pinyin_ctc_weight,
        normalize_length=args.normalize_length, pinyin_rescore_weight=args.pinyin_rescore_weight,
    )
    loader = VSRTask.build_streaming_iterator(
        data_path_and_name_and_type=args.data_path_and_name_and_type,
        dtype="float32", batch_size=args.batch_size, key_file=args.key_file, num_workers=0,
        preprocess_fn=VSRTask.build_preprocess_fn(speech2text.train_args, train=False),
        collate_fn=VSRTask.build_collate_fn(speech2text.train_args, train=False),
        allow_variable_data_keys=False, inference=True,
    )
    refs = read_kv(args.ref_text) if args.ref_text else {}
    results: Dict[str, Recognition] = {}
    n_total = sum(1 for _ in open(args.key_file or args.data_path_and_name_and_type[0][0], encoding="utf-8"))
    with tqdm(total=n_total, desc=f"decode {output_dir.name}", unit="utt", disable=None) as bar:
        for keys, batch in loader:
            recs = speech2text(batch["video"], batch["video_lengths"])
            for key, rec in zip(keys, recs):
                results[key] = rec
                if rec.nbest:
                    logging.info(f"{key}: {rec.nbest[0][0]} | {rec.pinyin}")
            bar.update(len(keys))
    write_outputs(output_dir, results, refs, args.nbest)
    with atomic_open(done) as f:
        f.write(json.dumps(signature, ensure_ascii=False))
    logging.info(f"Decoded {len(results)} utterances into {output_dir}")


def get_parser() -> argparse.ArgumentParser:
    from espnet2.utils import config_argparse
    from espnet2.utils.types import str2triple_str

    parser = config_argparse.ArgumentParser(
        description="Character N-best + pinyin decoding of the dual-decoder VSR model (one job), or --merge.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--log_level", default="INFO", help="Python logging level")
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
    return parser


def _check_job_args(args: argparse.Namespace, where: str = "") -> None:
    missing = [f"--{k}" for k in ("train_config", "model_file", "output_dir") if getattr(args, k) is None]
    if not args.data_path_and_name_and_type:
        missing.append("--data_path_and_name_and_type")
    if missing:
        sys.exit(f"vsr_inference: {where}{' '.join(missing)} required")


def read_decode_list(path: str, parser: argparse.ArgumentParser, base_argv: Sequence[str]):
    """The jobs of ``--decode_list``: one Namespace per non-empty, non-comment line, parsed from ``base_argv`` (the
    command line without ``--decode_list``) followed by the line's words, so a line's options win. Every line is
    parsed and checked before any decoding starts: a typo on the last line does not surface after an hour."""
    base_has_data = any(w.split("=")[0] == "--data_path_and_name_and_type" for w in base_argv)
    jobs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            words = shlex.split(line)
            opts = {w.split("=")[0] for w in words if w.startswith("--")}
            for bad in ("--merge", "--decode_list", "--config"):
                if bad in opts:
                    sys.exit(f"vsr_inference: {path}:{lineno}: {bad} is not allowed in a decode list line")
            if base_has_data and "--data_path_and_name_and_type" in opts:
                sys.exit(f"vsr_inference: {path}:{lineno}: --data_path_and_name_and_type is on the command line "
                         "and on the line; give it in one place")
            try:
                ns = parser.parse_args([*base_argv, *words])
            except SystemExit:
                sys.exit(f"vsr_inference: {path}:{lineno}: bad options (argparse's message above)")
            _check_job_args(ns, f"{path}:{lineno}: ")
            jobs.append(ns)
    if not jobs:
        sys.exit(f"vsr_inference: {path}: no jobs (empty decode list)")
    outs = [str(j.output_dir) for j in jobs]
    dup = sorted({o for o in outs if outs.count(o) > 1})
    if dup:
        sys.exit(f"vsr_inference: {path}: two lines write the same --output_dir {dup[0]}")
    return jobs


def _without_option(argv: Sequence[str], name: str) -> List[str]:
    """argv without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for w in argv:
        if skip:
            skip = False
        elif w == name:
            skip = True
        elif not w.startswith(name + "="):
            out.append(w)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = get_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    if args.merge:
        if args.output_dir is None:
            sys.exit("vsr_inference: --merge needs --output_dir (the set's decode directory)")
        merge_jobs(args.merge, args.output_dir)
        return
    if args.decode_list:
        jobs = read_decode_list(args.decode_list, parser, _without_option(argv, "--decode_list"))
        for i, job in enumerate(jobs, 1):
            logging.info(f"decode list {args.decode_list}: job {i}/{len(jobs)} -> {job.output_dir}")
            decode_job(job)
        return
    _check_job_args(args)
    decode_job(args)


if __name__ == "__main__":
    main()

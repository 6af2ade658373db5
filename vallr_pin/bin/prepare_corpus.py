"""Stage 0: a released corpus -> Kaldi data dirs ``<data-dir>/{train,dev,test}``.

Each dir gets video.scp (absolute .mp4 paths), text (raw transcripts), utt2spk and spk2utt, UTF-8 and sorted
in C order; utterance ids are ``<spk>-<original id>``. Layouts read are documented (confirmed vs assumed) in
``vallr_pin/corpora/cnvsrc.py`` and ``vallr_pin/corpora/cmlr.py``.

Examples::

    python -m vallr_pin.bin.prepare_corpus --corpus cmlr --cmlr-root /data/CMLR --data-dir data
    python -m vallr_pin.bin.prepare_corpus --corpus cnvsrc --train-set-composition S3 \\
        --cncvs-root /data/CNVSRC/cncvs --cncvs2-p1-root /data/CNVSRC/cncvs2_p1 --cncvs3-root /data/CNVSRC/cncvs3 \\
        --cnvsrc-root /data/CNVSRC --dev-list valid.csv --data-dir data
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from vallr_pin.cli import USER_ERRORS, add_log_level, user_errors
from vallr_pin.corpora import CorpusError, write_utterances
from vallr_pin.corpora import cmlr as cmlr_mod
from vallr_pin.corpora import cnvsrc as cnvsrc_mod
from vallr_pin.corpora import mini_cnvsrc as mini_mod

def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Writes <data-dir>/train, <data-dir>/dev and <data-dir>/test.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--corpus", required=True, choices=["cnvsrc", "cmlr", "mini_cnvsrc"], help="which corpus layout to read")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="output root; sets go to <data-dir>/<set>")
    p.add_argument("--allow-missing", action="store_true",
                   help="skip training/dev utterances whose video or transcript file is missing (with a warning "
                        "naming them) instead of stopping with an error; never test utterances (scored in full)")
    add_log_level(p)

    g = p.add_argument_group("cnvsrc (CNVSRC fixed track: CN-CVS, CN-CVS2-P1, CN-CVS3, CNVSRC.Dev/Eval)")
    g.add_argument("--train-set-composition", default="S3", choices=sorted(cnvsrc_mod.COMPOSITIONS),
                   help="S1 = CN-CVS + CNVSRC.Dev (single+multi); S2 = S1 + CN-CVS2-P1; S3 = S2 + CN-CVS3")
    g.add_argument("--cncvs-root", type=Path, help="CN-CVS folder holding news/ and speech/")
    g.add_argument("--cncvs2-p1-root", type=Path, help="CN-CVS2-P1 folder (per-speaker <spk>/video/ layout)")
    g.add_argument("--cncvs3-root", type=Path, help="CN-CVS3 folder (per-speaker <spk>/video/ layout)")
    g.add_argument("--cnvsrc-root", type=Path,
                   help="folder holding cnvsrc-multi/ and cnvsrc-single/ (2023: multi-speaker/, single-speaker/) "
                        "with their dev/ and eval/ sets")
    parts = ["none"] + list(cnvsrc_mod.PARTS)
    g.add_argument("--dev-set", default="multi_dev", choices=parts, help="part used for data/dev")
    g.add_argument("--test-set", default="multi_eval", choices=parts, help="part used for data/test")
    g.add_argument("--dev-list", type=Path,
                   help="utterances of --dev-set held out as the dev set and removed from training (baseline "
                        "csv such as data/cnvsrc-multi/valid.csv, or one id/path per line); required when the "
                        "dev part is also training data")
    g.add_argument("--test-list", type=Path,
                   help="utterances of --test-set to write to data/test (baseline csv or one id/path per line; "
                        "default: every video of the part); one it names without a video is an error naming it, "
                        "even with --allow-missing (the test set is scored in full)")
    g.add_argument("--label-csv", action="append", default=[], metavar="PART=FILE",
                   help="take PART's utterances (and transcripts) from a baseline list file "
                        "'<dataset>,<relpath>,<frames>,<labels>' instead of scanning folders; repeatable, files "
                        f"of one part are concatenated; parts: {', '.join(cnvsrc_mod.PARTS)}")
    g.add_argument("--char-units", type=Path,
                   help="the baseline's datamodule/char_units.txt, to decode token-id labels in --label-csv files")
    g.add_argument("--multi-speaker-regex", default=cnvsrc_mod.DEFAULT_MULTI_SPEAKER_REGEX,
                   help="regex on a CNVSRC-Multi video id whose first group is its speaker/session id")

    g = p.add_argument_group("cmlr (Chinese Mandarin Lip Reading)")
    g.add_argument("--cmlr-root", type=Path, help="CMLR folder holding video/ and text/")
    g.add_argument("--cmlr-lists-dir", type=Path,
                   help="folder with the official train.csv/val.csv/test.csv (default: --cmlr-root)")

    g = p.add_argument_group("mini_cnvsrc (the synthetic corpus rendered by vallr_pin.bin.render_corpus)")
    g.add_argument("--mini-root", type=Path, help="render_corpus --out folder holding train.csv/dev.csv/test.csv")
    g.add_argument("--no-landmarks", action="store_true",
                   help="do not write landmarks.scp from the renderer's landmarks (stage 1 then runs mediapipe)")
    return p


def _parse_label_csvs(items: List[str]) -> Dict[str, List[Path]]:
    out: Dict[str, List[Path]] = defaultdict(list)
    for item in items:
        part, sep, fname = item.partition("=")
        if not sep or not fname:
            raise CorpusError(f"--label-csv '{item}': expected PART=FILE")
        out[part].append(Path(fname))
    return dict(out)


def run(args: argparse.Namespace) -> Dict[str, int]:
    """Prepare the sets; returns ``{set: number of utterances}``."""
    if args.corpus == "cmlr":
        if args.cmlr_root is None:
            raise CorpusError("--cmlr-root is required for --corpus cmlr (db.sh: CMLR)")
        sets = cmlr_mod.prepare_cmlr(args.cmlr_root, args.cmlr_lists_dir, args.allow_missing)
    elif args.corpus == "mini_cnvsrc":
        if args.mini_root is None:
            raise CorpusError("--mini-root is required for --corpus mini_cnvsrc (db.sh: MINI_CNVSRC)")
        sets = mini_mod.prepare_mini_cnvsrc(args.mini_root, not args.no_landmarks, args.allow_missing)
    else:
        roots = {
            "cncvs": args.cncvs_root,
            "cncvs2_p1": args.cncvs2_p1_root,
            "cncvs3": args.cncvs3_root,
            **{part: args.cnvsrc_root for part in cnvsrc_mod.CNVSRC_SET_PARTS},
        }
        roots = {k: v for k, v in roots.items() if v is not None}
        none = lambda x: None if x == "none" else x  # noqa: E731
        res = cnvsrc_mod.prepare_cnvsrc(
            roots,
            composition=args.train_set_composition,
            dev_part=none(args.dev_set),
            test_part=none(args.test_set),
            dev_list=args.dev_list,
            test_list=args.test_list,
            label_csvs=_parse_label_csvs(args.label_csv),
            char_units=args.char_units,
            multi_speaker_regex=args.multi_speaker_regex,
            allow_missing=args.allow_missing,
        )
        sets = {"train": res.train}
        if args.dev_set != "none":
            sets["dev"] = res.dev
        if args.test_set != "none":
            sets["test"] = res.test
    counts: Dict[str, int] = {}
    for name, utts in sets.items():
        counts[name] = write_utterances(args.data_dir / name, utts)
    return counts


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level, catch=USER_ERRORS + (CorpusError,)):
        run(args)


if __name__ == "__main__":
    main()

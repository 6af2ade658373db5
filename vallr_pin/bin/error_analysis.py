"""Character-error breakdown of one decode: most frequent confusions and homophone / same-viseme / other
substitutions, and a heatmap of which initial viseme class the hypothesis has for each reference class. Writes
``<out-dir>/error_analysis.{txt,json}`` and ``<out-dir>/viseme_confusion.png`` atomically.

Example:
  python -m vallr_pin.bin.error_analysis --ref data/test/text --hyp exp/vsr_dual/decode_x/test/text \\
      --out-dir exp/vsr_dual/decode_x/test/score_cer
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv
from vallr_pin.scoring.cer import normalize_transcripts, score_corpus
from vallr_pin.scoring.error_analysis import VisemeConfusion, analyse, format_report, plot_viseme_confusion

def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Most frequent character confusions of a decode and how many substitutions are "
        "homophones (same toneless pinyin), same-viseme (same lip shape) or other.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ref", required=True, help="Reference Kaldi text file (<utt> <hanzi>), e.g. data/test/text.")
    parser.add_argument(
        "--hyp", required=True,
        help="Hypothesis Kaldi text file (a decode dir's text); a missing utterance counts as an empty hypothesis.",
    )
    parser.add_argument(
        "--out-dir", default=None,
        help="Where error_analysis.{txt,json} and viseme_confusion.png go. Default: <dir of --hyp>/score_cer.",
    )
    parser.add_argument("--top-k", type=int, default=20, help="How many confusions / deletions / insertions to list.")
    parser.add_argument(
        "--allow-empty-ref", action="store_true",
        help="Score utterances with an empty reference (their characters count as insertions) instead of failing.",
    )
    parser.add_argument(
        "--no-plot", action="store_true",
        help="Do not draw viseme_confusion.png (row-normalised reference x hypothesis initial viseme class, "
        "with counts); the matrix is in error_analysis.json either way.",
    )
    add_log_level(parser)
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        run(args)


def run(args: argparse.Namespace) -> None:
    out_dir = Path(args.out_dir) if args.out_dir else Path(args.hyp).parent / "score_cer"
    # normalised like bin/score.py does (which warns about an unnormalised reference), so the counts agree
    refs, hyps, _ = normalize_transcripts(read_kv(args.ref), read_kv(args.hyp))
    score = score_corpus(refs, hyps, args.allow_empty_ref, ref_name=args.ref, hyp_name=args.hyp)
    if score.missing_hyp:
        logging.warning("%s: %d reference utterance(s) without hypothesis, scored as all deletions",
                        args.hyp, len(score.missing_hyp))
    analysis = analyse(score, top_k=args.top_k)
    analysis["ref"], analysis["hyp"] = args.ref, args.hyp
    with atomic_open(out_dir / "error_analysis.json") as f:
        json.dump(analysis, f, ensure_ascii=False, indent=2)
        f.write("\n")
    report = format_report(analysis, title=f"{args.hyp} vs {args.ref}")
    with atomic_open(out_dir / "error_analysis.txt") as f:
        f.write(report)
    if not args.no_plot:
        hyp_dir = Path(args.hyp).parent
        plot_viseme_confusion(
            VisemeConfusion.from_json(analysis["viseme_confusion"]),
            out_dir / "viseme_confusion.png",
            title=f"set {hyp_dir.name} ({hyp_dir.parent}): VER {analysis['viseme_error_rate']:.2f}%, "
            f"CER {analysis['cer']:.2f}%\ninitial viseme class, reference (rows) vs hypothesis",
        )
    cats = analysis["substitution_categories"]
    logging.info("S=%d: homophone %d, same viseme %d, other %d; wrote %s/error_analysis.{txt,json}%s",
                 analysis["sub"], cats["homophone"], cats["same_viseme"], cats["other"], out_dir,
                 "" if args.no_plot else " and viseme_confusion.png")


if __name__ == "__main__":
    main()

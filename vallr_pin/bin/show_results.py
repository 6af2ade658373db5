"""Write the results section of a recipe's RESULTS.md from score_cer/summary.json files (like ESPnet's
show_asr_result.sh): per test set a markdown table, one row per system, columns CER, its 95% bootstrap interval
(over utterances, from score_cer/utt_errors.txt), S D I N SER; systems not run yet show "n/a (not run)". With
--ordering, a table of the claimed orderings of the systems' CERs, each judged by a paired bootstrap. Only the
marked section is replaced; the rest of RESULTS.md is kept.

Examples:
  python -m vallr_pin.bin.show_results --out RESULTS.md --sets dev test \\
      --system "char-only (stage I)=exp/vsr_char/decode_beam10_valid.acc.ave/{set}/score_cer" \\
      --system "dual decoder (stage I)=exp/vsr_dual/decode_beam10_valid.acc.ave/{set}/score_cer" \\
      --system "dual + zero-shot LLM=exp/llm_zeroshot/refine_{set}/score_cer" \\
      --system "dual + fine-tuned LLM=exp/llm_lora/refine_{set}/score_cer" \\
      --meta "model: conf/train_dual.yaml" --paper-ref conf/paper_results.yaml \\
      --ordering "char-only (stage I) > dual decoder (stage I)" \\
      --ordering "dual + zero-shot LLM >= dual + fine-tuned LLM"
  python -m vallr_pin.bin.show_results --out RESULTS.md --config exp/results.yaml
"""

from __future__ import annotations

import argparse
import logging

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.scoring.bootstrap import DEFAULT_RESAMPLES
from vallr_pin.scoring.results_table import Ordering, System, load_mapping, render_section, write_results


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Collect score_cer/summary.json of several systems into a RESULTS.md section.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="RESULTS.md", help="RESULTS.md to write (created if absent).")
    parser.add_argument(
        "--config", default=None,
        help="YAML/JSON file with any of: title (str), sets (list), systems (list of {label, path}), meta (list "
        "of str), paper_ref (path or inline mapping), orderings (list of str), resamples (int), failed (str), "
        "set_notes ({set: note}). Command-line flags are added after it (--system/--ordering after its "
        "systems/orderings, --set-note over its set_notes; --title/--sets/--paper-ref/--resamples/--failed replace "
        "its values).",
    )
    parser.add_argument(
        "--system", action="append", default=[], metavar="LABEL=PATH",
        help="A table row: label, '=', and a score_cer dir or summary.json. '{set}' in PATH is replaced by each "
        "test set; without it the set is the directory above score_cer. Repeat for each system, in row order.",
    )
    parser.add_argument(
        "--sets", nargs="+", default=None,
        help="Test sets, one table each, in this order. Default: the sets named by the --system paths.",
    )
    parser.add_argument(
        "--failed", default=None, metavar="PATH",
        help="Stage 1's list of utterances it could not turn into features, '{set}' for the test set (e.g. "
        "dump/roi/{set}/failed): each set's table is headed 'N utterances scored, K failed in stage 1 (reasons)'.",
    )
    parser.add_argument(
        "--set-note", action="append", default=[], metavar="SET=NOTE",
        help="A note shown in bold above that set's table, e.g. 'dev=validation set: model selection, LLM "
        "validation and fusion tuning use it, so its CERs are not held-out figures'. Repeatable.",
    )
    parser.add_argument("--title", default=None, help="Section heading (default: 'Results').")
    parser.add_argument("--meta", action="append", default=[], help="A free-form line shown above the tables, "
                        "e.g. 'model: conf/train_dual.yaml'; repeatable.")
    parser.add_argument(
        "--paper-ref", default=None,
        help="YAML/JSON of published numbers to show below the tables: {source, unit, tables: {name: "
        "{system: value}}}.",
    )
    parser.add_argument(
        "--ordering", action="append", default=[], metavar="'LABEL_A > LABEL_B'",
        help="A claim to check on each set: 'A > B' (CER of A above B's: B is better) or 'A >= B' (B is no worse), "
        "A and B being --system labels. Shown in an orderings table: both CERs, the share of paired bootstrap "
        "resamples in which B is better and no worse, and 'holds (p>=0.95)', 'not significant' or 'reversed'. "
        "Needs utt_errors.txt beside each summary.json. Repeatable.",
    )
    parser.add_argument(
        "--resamples", type=int, default=None,
        help=f"Bootstrap resamples of the utterances for the 95%% intervals and the orderings (seed 0). Default: "
        f"the config file's 'resamples', else {DEFAULT_RESAMPLES}.",
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="Write RESULTS.md afresh instead of replacing only the generated section.")
    add_log_level(parser)
    return parser


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        cfg = load_mapping(args.config) if args.config else {}
        systems = []
        for entry in cfg.get("systems", []):
            if not isinstance(entry, dict) or "label" not in entry or "path" not in entry:
                raise ValueError(f"{args.config}: every entry of 'systems' needs 'label' and 'path', got {entry!r}")
            systems.append(System(str(entry["label"]), str(entry["path"])))
        systems += [System.parse(s) for s in args.system]
        paper_ref = args.paper_ref if args.paper_ref is not None else cfg.get("paper_ref")
        if isinstance(paper_ref, str):
            paper_ref = load_mapping(paper_ref)
        orderings = [Ordering.parse(str(o)) for o in cfg.get("orderings", [])]
        orderings += [Ordering.parse(o) for o in args.ordering]
        set_notes = {str(k): str(v) for k, v in (cfg.get("set_notes") or {}).items()}
        for spec in args.set_note:
            name, sep, note = spec.partition("=")
            if not sep or not name.strip() or not note.strip():
                raise ValueError(f"--set-note '{spec}': expected 'SET=NOTE'")
            set_notes[name.strip()] = note.strip()
        resamples = args.resamples if args.resamples is not None else int(cfg.get("resamples", DEFAULT_RESAMPLES))
        section = render_section(
            systems,
            sets=args.sets if args.sets is not None else cfg.get("sets"),
            title=args.title or cfg.get("title") or "Results",
            meta=list(cfg.get("meta", [])) + args.meta,
            paper_ref=paper_ref,
            orderings=orderings,
            resamples=resamples,
            failed=args.failed if args.failed is not None else cfg.get("failed"),
            set_notes=set_notes,
        )
        write_results(args.out, section, overwrite=args.overwrite)
    logging.info("wrote the results section of %s (%d systems)", args.out, len(systems))
    print(section, end="")


if __name__ == "__main__":
    main()

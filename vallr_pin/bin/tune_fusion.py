#!/usr/bin/env python3
"""Stage 9 (rescore mode): tune the LLM/VSR fusion weights on a development set, apply them to every set.

``llm_refine --mode rescore`` keeps, per utterance, every candidate with its LLM and VSR scores in
``raw.jsonl``. This grid-searches ``llm_weight`` x ``length_bonus`` (the VSR weight fixed at ``--vsr-weight``)
for the lowest CER on ``--tune-dir`` against ``--ref``, as Kaldi's ``score.sh`` sweeps its LM weight and
insertion penalty, then re-picks the candidates of every ``--apply-dir`` with the chosen weights (no LLM
forward pass: the stored scores are enough). The test sets never influence the choice.

Writes, atomically:
  <tune-dir>/fusion_grid.json   the whole grid (llm_weight, length_bonus, CER) and the chosen weights
  <apply-dir>/raw.jsonl         raw/text/reason re-picked with the chosen weights and llm_refine's output guard
                                (scores unchanged)
  <apply-dir>/fusion.json       the weights used and where they were tuned
  <apply-dir>/guard_stats.json  fallback counts and n_changed_from_1best of the re-picked text, the weights
  <apply-dir>/text              the re-picked transcripts (written last)

Example:
  python -m vallr_pin.bin.tune_fusion --tune-dir exp/llm/refine_finetuned/dev --ref dump/roi/dev/text \\
      --apply-dir exp/llm/refine_finetuned/dev exp/llm/refine_finetuned/test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.llm.fusion import DEFAULT_LENGTH_BONUSES, DEFAULT_LLM_WEIGHTS, ScoredNbest, read_records, tune
from vallr_pin.llm.guard import OutputGuard



def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tune-dir", required=True, help="llm_refine --mode rescore output of the development set")
    p.add_argument("--ref", required=True, help="reference text of the development set (Kaldi text)")
    p.add_argument("--apply-dir", nargs="+", required=True,
                   help="llm_refine --mode rescore outputs to re-pick with the tuned weights (may include --tune-dir)")
    p.add_argument("--llm-weights", type=float, nargs="+", default=list(DEFAULT_LLM_WEIGHTS),
                   help="grid of LLM log-probability weights")
    p.add_argument("--length-bonuses", type=float, nargs="+", default=list(DEFAULT_LENGTH_BONUSES),
                   help="grid of per-character length bonuses")
    p.add_argument("--vsr-weight", type=float, default=1.0, help="weight of the VSR beam score (fixed: the scale)")
    add_log_level(p)
    return p


def load_guard(d: Path) -> OutputGuard:
    """The output guard with the settings llm_refine used for ``d`` (its guard_stats.json), default ones else."""
    stats_path = d / "guard_stats.json"
    settings = json.loads(stats_path.read_text(encoding="utf-8")).get("guard", {}) if stats_path.is_file() else {}
    return OutputGuard(**settings)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        return run(args)


def run(args: argparse.Namespace) -> dict:
    tune_dir = Path(args.tune_dir)
    refs = read_kv(args.ref)
    nbests = [ScoredNbest.from_record(r) for r in read_records(tune_dir)]
    weights, grid = tune(nbests, refs, args.llm_weights, args.length_bonuses, args.vsr_weight,
                         guard=load_guard(tune_dir))
    chosen = dataclasses.asdict(weights)
    best_cer = min(g["cer"] for g in grid)
    logging.info("fusion weights tuned on %s: %s (CER %.2f; grid %d points)", tune_dir, chosen, best_cer, len(grid))
    with atomic_open(tune_dir / "fusion_grid.json") as f:
        json.dump({"chosen": chosen, "cer": best_cer, "grid": grid}, f, indent=2)
    for d in map(Path, args.apply_dir):
        records = read_records(d)
        guard = load_guard(d)  # the same guard as llm_refine, so the re-picked text is what it would have written
        for rec in records:
            raw, text, reason = ScoredNbest.from_record(rec).pick(weights, guard)
            rec.update(raw=raw, text=text, reason=reason)
        with atomic_open(d / "raw.jsonl") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        with atomic_open(d / "fusion.json") as f:
            json.dump({"weights": chosen, "tuned_on": str(tune_dir), "tuned_cer": best_cer}, f, indent=2)
        n_changed = sum(r["text"] != r["onebest"] for r in records)
        stats_path = d / "guard_stats.json"  # keep llm_refine's summary true for the re-picked text
        if stats_path.is_file():
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
            stats.update(guard.stats(), n_changed_from_1best=n_changed, fusion=chosen)
            with atomic_open(stats_path) as f:
                json.dump(stats, f, ensure_ascii=False, indent=2)
        write_kv(d / "text", {r["utt"]: r["text"] for r in records})
        logging.info("%s: %d utterances re-picked, %d differ from the VSR 1-best", d, len(records), n_changed)
    return {"weights": chosen, "cer": best_cer, "grid": grid}


if __name__ == "__main__":
    main()

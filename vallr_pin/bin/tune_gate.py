#!/usr/bin/env python3
"""Stage 9 (``llm_gate``): choose the confidence gate on a development set, draw its CER-vs-LLM-calls curve, and
apply it to every set.

``llm_refine`` writes each utterance's Stage I confidences (``vallr_pin.llm.gating``: N-best score margin,
pinyin-branch agreement) into ``raw.jsonl``. From an ungated refinement of ``--tune-dir`` (every utterance sent
to the LLM) this computes, for each feature and every threshold, the CER when utterances at or above the
threshold keep their 1-best and the share of utterances still sent to the LLM; it picks the feature and threshold
with the lowest CER (the fewest calls among equals), unless ``--feature`` fixes the feature. The test sets never
influence the choice. Each ``--apply-dir`` then keeps its 1-best wherever the gate says so, exactly what
``llm_refine --gate-feature F --gate-threshold T`` writes while skipping those calls.

Writes, atomically:
  <tune-dir>/gate_curve.png    CER (%) against utterances sent to the LLM (%), one line per feature, chosen points
  <tune-dir>/gate_grid.json    every curve and the choice
  <apply-dir>/gate.json        the gate used, LLM calls kept and skipped
  <apply-dir>/raw.jsonl        ``text`` gated (the LLM's answer kept as ``llm_text``), ``gated`` per utterance
  <apply-dir>/text             the gated transcripts (written last)

Example:
  python -m vallr_pin.bin.tune_gate --tune-dir exp/llm_lora/refine_finetuned/dev --ref dump/roi/dev/text \\
      --apply-dir exp/llm_lora/refine_finetuned/dev exp/llm_lora/refine_finetuned/test
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.llm.fusion import read_records
from vallr_pin.llm.gating import FEATURES, choose_threshold, gate_curve, gated, plot_curves


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tune-dir", required=True, help="ungated llm_refine output of the development set")
    p.add_argument("--ref", required=True, help="reference text of the development set (Kaldi text)")
    p.add_argument("--apply-dir", nargs="*", default=[],
                   help="llm_refine outputs to gate with the chosen threshold (may include --tune-dir)")
    p.add_argument("--feature", default=None, choices=list(FEATURES),
                   help="gate on this confidence only (default: the feature with the lower dev CER)")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        return run(args)


def _llm_text(rec: dict) -> str:
    return rec.get("llm_text", rec["text"])  # the ungated answer, also after an earlier tune_gate


def run(args: argparse.Namespace) -> dict:
    tune_dir = Path(args.tune_dir)
    refs = read_kv(args.ref)
    records = read_records(tune_dir, "")
    missing = [r["utt"] for r in records if "confidence" not in r]
    if missing:
        raise ValueError(f"{tune_dir}/raw.jsonl: utterance '{missing[0]}' has no 'confidence'; re-run "
                         "vallr_pin.bin.llm_refine (this version writes it)")
    if any(r.get("reason") == "gated" for r in records):
        raise ValueError(f"{tune_dir}: was refined with a gate already; tune on an ungated llm_refine run")
    not_ref = [r["utt"] for r in records if r["utt"] not in refs]
    if not_ref:
        raise ValueError(f"{args.ref}: no reference for utterance '{not_ref[0]}' of {tune_dir}/raw.jsonl")
    ungated = [dict(r, text=_llm_text(r)) for r in records]
    features = [args.feature] if args.feature else list(FEATURES)
    curves = {f: gate_curve(ungated, refs, f) for f in features}
    chosen = {f: choose_threshold(c) for f, c in curves.items()}
    feature = min(features, key=lambda f: (chosen[f]["cer"], chosen[f]["llm_calls"]))
    best = dict(chosen[feature], feature=feature)
    plot_curves(curves, chosen, tune_dir / "gate_curve.png",
                f"{tune_dir.name}: {feature} >= {best['threshold']:g} keeps the 1-best\n"
                f"{100 * best['call_fraction']:.0f}% of utterances to the LLM, CER {best['cer']:.2f}%")
    with atomic_open(tune_dir / "gate_grid.json") as f:
        json.dump({"chosen": best, "curves": curves}, f, indent=2)
    logging.info("gate tuned on %s: %s >= %g keeps the 1-best; CER %.2f with %d/%d LLM calls (%.2f ungated); "
                 "llm_refine --gate-feature %s --gate-threshold %g", tune_dir, feature, best["threshold"],
                 best["cer"], best["llm_calls"], len(records), curves[feature][0]["cer"], feature,
                 best["threshold"])
    for d in map(Path, args.apply_dir):
        recs = read_records(d, "")
        n_gated = 0
        for rec in recs:
            rec["llm_text"] = _llm_text(rec)
            rec["gated"] = gated(rec["confidence"], feature, best["threshold"])
            rec["text"] = rec["onebest"] if rec["gated"] else rec["llm_text"]
            n_gated += rec["gated"]
        with atomic_open(d / "raw.jsonl") as f:
            for rec in recs:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        with atomic_open(d / "gate.json") as f:
            json.dump({"feature": feature, "threshold": best["threshold"], "tuned_on": str(tune_dir),
                       "n": len(recs), "n_gated": n_gated, "llm_calls": len(recs) - n_gated}, f, indent=2)
        write_kv(d / "text", {r["utt"]: r["text"] for r in recs})
        logging.info("%s: %d of %d utterances keep their 1-best (no LLM call)", d, n_gated, len(recs))
    return best


if __name__ == "__main__":
    main()

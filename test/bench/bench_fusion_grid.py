#!/usr/bin/env python3
"""What does the LLM add in stage 9's rescore mode, beyond a length bonus, and is it more than noise?

Stage 9 (``llm_tune_fusion=true``) picks each N-best candidate by ``w * LLM + VSR + b * length`` with (w, b)
tuned on dev (``vallr_pin.bin.tune_fusion``). A length bonus alone also moves CER (it trades deletions for
insertions), so this prints, per LLM (fine-tuned, zero-shot):

- the dev/test CER of every (w, b) cell, w = 0 being the control without any LLM;
- the dev-tuned choice with the LLM (the default grid of tune_fusion) and without it (w = 0, same b grid),
  each applied to test;
- a paired bootstrap over test utterances (1,000 resamples): how often the dev-tuned LLM fusion is better than
  the VSR 1-best and than the length-only control. Below ~95% the difference is within sampling noise.

It reads the scores stage 9 stored in ``exp/llm_lora/refine_<mode>/<set>/raw.jsonl``, so it costs no LLM pass
(seconds). Without options it checks egs/mini_cnvsrc/vsr1 (``make bench``; skips when stage 9 has not run)::

    tools/venv/bin/python test/bench/bench_fusion_grid.py [--exp egs/mini_cnvsrc/vsr1/exp/llm_lora]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def main(argv=None):
    from vallr_pin.llm.fusion import DEFAULT_LENGTH_BONUSES, DEFAULT_LLM_WEIGHTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", default=str(REPO / "egs" / "mini_cnvsrc" / "vsr1" / "exp" / "llm_lora"),
                   help="stage 9's LLM experiment directory (holds refine_<mode>/<set>/raw.jsonl)")
    p.add_argument("--dev", default="dev", help="set the weights are tuned on")
    p.add_argument("--test", default="test", help="set they are applied to")
    p.add_argument("--llm-weights", type=float, nargs="+", default=[0.0, 0.05, *DEFAULT_LLM_WEIGHTS])
    p.add_argument("--length-bonuses", type=float, nargs="+", default=[*DEFAULT_LENGTH_BONUSES, 4.0, 6.0])
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args(argv)
    for mode in ("finetuned", "zeroshot"):
        d = Path(args.exp) / f"refine_{mode}"
        paths = [d / args.dev / "raw.jsonl", d / args.test / "raw.jsonl"]
        missing = [x for x in paths if not x.is_file()]
        if missing:
            print(f"skipped: {missing[0]} is missing (run egs/mini_cnvsrc/vsr1 through stage 9 with rescore mode)")
            return
        report(mode, *paths, args)


def _load(path: Path):
    """(N-best with scores, {utt: reference}) of a rescored raw.jsonl."""
    from vallr_pin.bin.tune_fusion import read_records
    from vallr_pin.llm.fusion import ScoredNbest

    recs = read_records(path.parent)
    return [ScoredNbest.from_record(r) for r in recs], {r["utt"]: r["ref"] for r in recs if r.get("ref")}


def _errors(data, weights):
    """Per utterance (errors, N) of the pick under ``weights``; None: the VSR 1-best (the VSR score alone
    ranks the candidates, and they are stored best first)."""
    from vallr_pin.llm.fusion import FusionWeights, utterance_errors

    return utterance_errors(*data, FusionWeights(0.0, 1.0, 0.0) if weights is None else weights)


def _cer(per_utt):
    return 100.0 * sum(e for e, _ in per_utt) / max(1, sum(n for _, n in per_utt))


def report(mode: str, dev_path: Path, test_path: Path, args) -> None:
    from vallr_pin.llm.fusion import DEFAULT_LENGTH_BONUSES, DEFAULT_LLM_WEIGHTS, FusionWeights, tune
    from vallr_pin.scoring.bootstrap import paired_win_rate

    dev, test = _load(dev_path), _load(test_path)
    print(f"== {mode}: CER dev/test of w * LLM + VSR + b * length (rows w, columns b; w = 0: no LLM)")
    print(f"{'w':>5} " + " ".join(f"{'b=' + str(b):>12}" for b in args.length_bonuses))
    for w in args.llm_weights:
        cells = []
        for b in args.length_bonuses:
            weights = FusionWeights(w, 1.0, b)
            cells.append(f"{_cer(_errors(dev, weights)):5.2f}/{_cer(_errors(test, weights)):5.2f}")
        print(f"{w:>5} " + " ".join(f"{c:>12}" for c in cells))
    fused, _ = tune(*dev, DEFAULT_LLM_WEIGHTS, DEFAULT_LENGTH_BONUSES)
    control, _ = tune(*dev, (0.0,), DEFAULT_LENGTH_BONUSES)
    base_t, fused_t, control_t = _errors(test, None), _errors(test, fused), _errors(test, control)
    print(f"VSR 1-best:                        dev {_cer(_errors(dev, None)):.2f}  test {_cer(base_t):.2f}")
    print(f"dev-tuned LLM fusion {fused}: dev {_cer(_errors(dev, fused)):.2f}  test {_cer(fused_t):.2f}")
    print(f"dev-tuned length only {control}: dev {_cer(_errors(dev, control)):.2f}  test {_cer(control_t):.2f}")
    lens = [n for _, n in base_t]  # the same utterances and references for all three
    base_e, fused_e, control_e = ([e for e, _ in x] for x in (base_t, fused_t, control_t))
    better_base = paired_win_rate(base_e, fused_e, lens, resamples=args.resamples)
    better_control = paired_win_rate(control_e, fused_e, lens, resamples=args.resamples)
    n = len(lens)
    print(f"paired bootstrap on {args.test} ({n} utterances, {args.resamples} resamples): LLM fusion better than "
          f"the 1-best in {100 * better_base:.1f}%, than length only in {100 * better_control:.1f}%")


if __name__ == "__main__":
    main()

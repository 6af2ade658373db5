#!/usr/bin/env python3
"""Issue 19's "beyond the paper" table: every Stage II option of stage 9 on a finished recipe, chosen on dev,
applied unchanged to test.

Run it after ``run.sh`` reached stage 9 (the fine-tuned adapter, stage 5's N-best of dev and test, and stage 9's
own rescoring are read from the recipe; nothing there is changed). Every refinement is a separate
``python -m vallr_pin.bin.llm_refine`` process under ``--work`` (default ``exp/llm_lora/beyond``), ``--nj`` at a
time, one thread each; a finished one (its ``text`` exists) is not run again. Rows:

- Stage I: the dual model's 1-best (stage 5);
- the paper's method: the fine-tuned LLM writes the sentence freely (``--mode generate``), and zero-shot;
- stage 9 as run: rescoring of the N-best with dev-tuned fusion weights (the mini recipe's default);
- pinyin-constrained generation at each relaxation level (``--mode constrained --constrain-level L``);
  the level is chosen on dev;
- the chosen level with iterative polishing (``--polish-rounds K``): the row is round K, and the CER after
  every round is printed beneath the table (the round to stop at is read off dev);
- the chosen level with context-aware prompts (the same speaker's preceding sentence, ``make_context``);
- confidence gating (``tune_gate``, chosen on dev) on top of the stage-9 rescoring and of the chosen
  constrained level; the CER-vs-LLM-calls curves are copied to ``figures/gate_curve_beyond_*.png``.

For each: dev and test CER with S/D/I, LLM calls (utterance-rounds the LLM saw) and wall seconds of the
refinement (quote them with the calibration printed first), and the paired bootstrap share of test resamples in
which the row beats the paper's method. The best row on dev is named, with its test figures. Writes
``<work>/beyond.md`` (the table, for RESULTS.md) and ``<work>/beyond.json``.

Example (from the repository root, after ``make demo``):
    tools/venv/bin/python test/bench/bench_stage2_beyond.py --recipe egs/mini_cnvsrc/vsr1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recognize import calibration  # noqa: E402

from vallr_pin.datadir import read_kv  # noqa: E402
from vallr_pin.scoring.bootstrap import paired_win_rate  # noqa: E402
from vallr_pin.scoring.cer import score_corpus  # noqa: E402

PY = [sys.executable]


def recipe_var(recipe: Path, name: str) -> str:
    """A variable of the recipe's db.sh (e.g. TINY_LLM), as run.sh sees it."""
    out = subprocess.run(["bash", "-c", f". ./db.sh >/dev/null; echo \"${{{name}}}\""], cwd=recipe,
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def decode_dir(recipe: Path, exp: str, name: str, dset: str) -> Path:
    found = recipe / "exp" / exp / name / dset
    if not (found / "nbest.jsonl").exists():
        raise SystemExit(f"bench_stage2_beyond: {found / 'nbest.jsonl'} missing; run stage 5 first (or pass "
                         "--decode-name: the decode directory stage 9 refines)")
    return found


class Runs:
    """llm_refine processes, nj at a time; each output dir is done when its ``text`` exists."""

    def __init__(self, recipe: Path, work: Path, model: str, adapter: Path, nbest: dict, nj: int):
        self.recipe, self.work, self.model, self.adapter, self.nbest = recipe, work, model, adapter, nbest
        self.pool = ThreadPoolExecutor(max_workers=nj)
        self.jobs = []

    def submit(self, name: str, dset: str, opts: list, finetuned: bool = True) -> Path:
        out = self.work / name / dset
        if not (out / "text").exists():
            cmd = PY + ["-m", "vallr_pin.bin.llm_refine", "--model", self.model, "--backend", "transformers",
                        "--threads", "1", "--nbest", str(self.nbest[dset]), "--out-dir", str(out), *opts]
            if finetuned:
                cmd += ["--adapter", str(self.adapter)]
            self.jobs.append(self.pool.submit(self._run, cmd, out))
        return out

    @staticmethod
    def _run(cmd: list, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        with open(out / "refine.log", "w") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")).returncode
        if rc != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({rc}); see {out / 'refine.log'}")
        (out / "wall_s").write_text(f"{time.time() - t0:.1f}\n")

    def wait(self) -> None:
        for j in self.jobs:
            j.result()
        self.jobs = []


def figures(out: Path, refs: dict) -> dict:
    """CER, S/D/I, LLM calls and wall time of one refinement output directory."""
    sc = score_corpus(refs, read_kv(out / "text"))
    stats = json.loads((out / "guard_stats.json").read_text()) if (out / "guard_stats.json").exists() else {}
    calls = stats.get("llm_calls", stats.get("n"))
    gate = out / "gate.json"
    if gate.exists():  # gated after the fact by tune_gate: the calls it kept
        calls = json.loads(gate.read_text()).get("llm_calls", calls)
    wall = float((out / "wall_s").read_text()) if (out / "wall_s").exists() else None
    if wall is None and (out / "refine.log").exists():  # stage 9's own job: run.pl's accounting line
        m = re.search(r"elapsed time (\d+) seconds", (out / "refine.log").read_text(errors="replace"))
        wall = float(m.group(1)) if m else None
    return {"cer": sc.cer, "sub": sc.sub, "del": sc.dele, "ins": sc.ins, "n_ref": sc.n_ref, "calls": calls,
            "wall_s": wall, "errs": [u.sub + u.dele + u.ins for u in sc.utts],
            "lens": [len(u.ref) for u in sc.utts], "polish": stats.get("polish")}


def gate_copy(src: Path, dst: Path, valid: str, sets: list, ref: dict, fig: Path) -> Path:
    """tune_gate on a copy of ``src`` (an ungated refinement of every set), chosen on ``valid``."""
    for dset in sets:
        if not (dst / dset / "text").exists():
            shutil.rmtree(dst / dset, ignore_errors=True)
            shutil.copytree(src / dset, dst / dset)
            if (dst / dset / "gate.json").exists():
                (dst / dset / "gate.json").unlink()
    subprocess.run(PY + ["-m", "vallr_pin.bin.tune_gate", "--tune-dir", str(dst / valid), "--ref", ref[valid],
                         "--apply-dir", *[str(dst / d) for d in sets]], check=True, capture_output=True, text=True)
    if (dst / valid / "gate_curve.png").exists():
        fig.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dst / valid / "gate_curve.png", fig)
    return dst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=REPO / "egs" / "mini_cnvsrc" / "vsr1")
    p.add_argument("--work", type=Path, default=None, help="output directory (default <recipe>/exp/llm_lora/beyond)")
    p.add_argument("--valid", default="dev", help="the set every choice is made on")
    p.add_argument("--test", default="test", help="the held-out set the choices are applied to")
    p.add_argument("--levels", nargs="+", default=["pinyin", "nbest", "viseme"], help="constrained relaxation levels")
    p.add_argument("--polish-rounds", type=int, default=3, help="most polishing rounds tried")
    p.add_argument("--nj", type=int, default=int(os.popen("env -u OMP_NUM_THREADS nproc").read() or 2))
    p.add_argument("--llm-model", default=None, help="base LLM (default: the recipe's TINY_LLM of db.sh)")
    p.add_argument("--llm-exp", default="exp/llm_lora", help="stage 8/9 directory of the recipe")
    p.add_argument("--vsr-exp", default="vsr_dual", help="the Stage I model whose N-best is refined")
    p.add_argument("--decode-name", default="decode_vsr_valid.acc_char.ave",
                   help="its stage-5 decode directory (vsr.sh decode_<decode_tag>_<inference_model>)")
    args = p.parse_args(argv)

    recipe = args.recipe.resolve()
    llm_exp = recipe / args.llm_exp
    work = (args.work or llm_exp / "beyond").resolve()
    sets = [args.valid, args.test]
    model = args.llm_model or recipe_var(recipe, "TINY_LLM")
    if not Path(model).is_absolute():
        model = str((recipe / model).resolve())
    print(f"calibration: {calibration()} GFLOPS (1 thread, 1024x1024 fp32 matmul); nj {args.nj}")
    ddirs = {d: decode_dir(recipe, args.vsr_exp, args.decode_name, d) for d in sets}
    nbest = {d: ddirs[d] / "nbest.jsonl" for d in sets}
    ref = {d: str(recipe / "data" / d / "text") for d in sets}
    refs = {d: read_kv(ref[d]) for d in sets}
    runs = Runs(recipe, work, model, (llm_exp / "adapter").resolve(), nbest, args.nj)

    # 1. independent refinements of both sets
    for dset in sets:
        runs.submit("paper_finetuned_generate", dset, ["--mode", "generate"])
        runs.submit("paper_zeroshot_generate", dset, ["--mode", "generate"], finetuned=False)
        for level in args.levels:
            runs.submit(f"constrained_{level}", dset, ["--mode", "constrained", "--constrain-level", level])
    runs.wait()
    rows = {}
    rows["Stage I: dual 1-best (stage 5)"] = {d: figures(ddirs[d], refs[d]) for d in sets}
    for d in sets:
        rows["Stage I: dual 1-best (stage 5)"][d]["calls"] = 0
    rows["paper: fine-tuned LLM, free generation"] = {d: figures(work / "paper_finetuned_generate" / d, refs[d])
                                                      for d in sets}
    rows["paper: zero-shot LLM, free generation"] = {d: figures(work / "paper_zeroshot_generate" / d, refs[d])
                                                     for d in sets}
    rows["stage 9: fine-tuned LLM rescoring, dev-tuned fusion"] = {
        d: figures(llm_exp / "refine_finetuned" / d, refs[d]) for d in sets}
    level_cer = {}
    for level in args.levels:
        rows[f"constrained ({level})"] = {d: figures(work / f"constrained_{level}" / d, refs[d]) for d in sets}
        level_cer[level] = rows[f"constrained ({level})"][args.valid]["cer"]
    best_level = min(level_cer, key=level_cer.get)

    # 2. on the level chosen on dev: polishing, context
    ctx_dir = work / "context_data"
    for dset in sets:
        (ctx_dir / dset).mkdir(parents=True, exist_ok=True)
        for f in ("text", "utt2spk"):
            shutil.copy(recipe / "data" / dset / f, ctx_dir / dset / f)
    subprocess.run(PY + ["-m", "vallr_pin.bin.make_context", "--data-dir", *[str(ctx_dir / d) for d in sets]],
                   check=True, capture_output=True)
    base = ["--mode", "constrained", "--constrain-level", best_level]
    for dset in sets:
        runs.submit(f"constrained_{best_level}_polish{args.polish_rounds}", dset,
                    base + ["--polish-rounds", str(args.polish_rounds)])
        runs.submit(f"constrained_{best_level}_context", dset, base + ["--context", str(ctx_dir / dset / "context")])
    runs.wait()
    pol = {d: figures(work / f"constrained_{best_level}_polish{args.polish_rounds}" / d, refs[d]) for d in sets}
    per_round = {d: (pol[d]["polish"] or {}).get("cer_per_round") for d in sets}
    rows[f"constrained ({best_level}) + polishing, {args.polish_rounds} rounds"] = pol
    rows[f"constrained ({best_level}) + context"] = {
        d: figures(work / f"constrained_{best_level}_context" / d, refs[d]) for d in sets}

    # 3. gates, chosen on dev, on the stage-9 rescoring and on the chosen constrained level
    figs = recipe / "figures"
    g1 = gate_copy(llm_exp / "refine_finetuned", work / "rescore_gated", args.valid, sets, ref,
                   figs / "gate_curve_beyond_rescore.png")
    rows["stage 9 rescoring + confidence gate"] = {d: figures(g1 / d, refs[d]) for d in sets}
    g2 = gate_copy(work / f"constrained_{best_level}", work / f"constrained_{best_level}_gated", args.valid, sets,
                   ref, figs / "gate_curve_beyond_constrained.png")
    rows[f"constrained ({best_level}) + confidence gate"] = {d: figures(g2 / d, refs[d]) for d in sets}

    paper = rows["paper: fine-tuned LLM, free generation"][args.test]
    stage9 = rows["stage 9: fine-tuned LLM rescoring, dev-tuned fusion"][args.test]
    stage2_rows = [k for k in rows if not k.startswith("Stage I")]
    best = min(stage2_rows, key=lambda k: rows[k][args.valid]["cer"])
    lines = [f"| system | {args.valid} CER | {args.test} CER [S/D/I] | LLM calls ({args.valid}/{args.test}) | "
             f"refine s ({args.valid}/{args.test}) | beats paper on {args.test} | beats stage 9 on {args.test} |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        v, t = r[args.valid], r[args.test]
        win_p = paired_win_rate(paper["errs"], t["errs"], t["lens"]) if r is not rows[
            "paper: fine-tuned LLM, free generation"] else None
        win_s = paired_win_rate(stage9["errs"], t["errs"], t["lens"]) if name != \
            "stage 9: fine-tuned LLM rescoring, dev-tuned fusion" else None
        wall = "/".join("-" if x["wall_s"] is None else f"{x['wall_s']:.0f}" for x in (v, t))
        lines.append(f"| {name}{' **(best on dev)**' if name == best else ''} | {v['cer']:.2f} | {t['cer']:.2f} "
                     f"[{t['sub']}/{t['del']}/{t['ins']}] | {v['calls']}/{t['calls']} | {wall} | "
                     f"{'-' if win_p is None else f'{win_p:.3f}'} | {'-' if win_s is None else f'{win_s:.3f}'} |")
    lines.append("")
    lines.append(f"Constrained level chosen on {args.valid}: {best_level} ({', '.join(f'{k} {v:.2f}' for k, v in level_cer.items())}). "
                 f"CER after each polishing round (0 = Stage I): {args.valid} {per_round[args.valid]}, "
                 f"{args.test} {per_round[args.test]}. 'beats X': share of 1,000 paired bootstrap resamples of the "
                 f"{args.test} utterances in which the row has fewer errors than X.")
    table = "\n".join(lines)
    print(table)
    (work / "beyond.md").write_text(table + "\n")
    (work / "beyond.json").write_text(json.dumps(
        {"best_on_dev": best, "best_level": best_level, "polish_cer_per_round": per_round,
         "rows": {k: {d: {x: y for x, y in r[d].items() if x not in ("errs", "lens")} for d in sets}
                  for k, r in rows.items()}}, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

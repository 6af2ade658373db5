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
  constrained level; the CER-vs-LLM-calls curves are copied to ``figures/gate_curve_beyond_*.png``;
- error-noise augmentation (issue 19 item 5), one row per ``--noise-ratios`` R: stage 7 again with
  ``--noise-text`` (the recipe's ``${MINI_CNVSRC}/lm_text.txt``) at ratio R, stage 8's LoRA SFT with the
  recipe's ``conf/llm_sft.yaml`` on that data, then stage 9's rescoring of dev and test with it
  (``--refine-opts``, fusion weights tuned on dev by ``tune_fusion`` and applied to test); the ratio is chosen
  on dev;
- GRPO (issue 19 item 6): stage 8's SFT adapter continued with ``swift rlhf --rlhf_type grpo``
  (``--grpo-config``, the recipe's ``conf/llm_grpo.yaml``) on stage 7's data, then the same rescoring.

These are the commands vsr.sh's stages 7-9 run with ``--llm_noise_text``/``--llm_noise_ratio`` and
``--llm_grpo true``, written under ``--work`` (``noise_r<R>/``, ``grpo/``): the recipe's own ``exp/llm_data``
and ``exp/llm_lora/adapter`` are read, never written. A finished piece (``llm_data/train.jsonl``, ``adapter``,
a refinement's ``text``, ``fusion.json``) is not made again; the seconds each stage-7/8 step took are kept
beside it (``*_wall_s``, and the CPU seconds ``*_cpu_s``: on a shared host wall time measures the other load)
and printed under the table.

For each: dev and test CER with S/D/I, LLM calls (utterance-rounds the LLM saw) and wall seconds of the
refinement (quote them with the calibration printed first), and the paired bootstrap share of test resamples in
which the row beats the paper's method. The best row on dev is named, with its test figures. Writes
``<work>/beyond.md`` (the table, for RESULTS.md) and ``<work>/beyond.json``.

Example (from the repository root, after ``make demo``):
    tools/venv/bin/python test/bench/bench_stage2_beyond.py --recipe egs/mini_cnvsrc/vsr1
    (``--noise-ratios`` with no value and ``--grpo-config ''`` leave out the rows that train adapters)
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
from typing import Optional

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


def job_env() -> dict:
    """The environment path.sh gives every job: one thread, offline Hugging Face, UTF-8."""
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                HF_DATASETS_OFFLINE="1", LC_ALL="C.UTF-8", PYTHONIOENCODING="UTF-8", PYTHONUNBUFFERED="1")


def run_logged(cmd: list, log_path: Path, cwd: Path, wall_path: Path) -> None:
    """Run ``cmd`` with its output in ``log_path``; on success write its wall seconds to ``wall_path`` and the
    CPU seconds of it and its descendants (user + system, ``wait4``) beside it (``*cpu_s``): on a shared host
    the wall time says more about the other load than about the job."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log_path, "w") as log:
        log.write("# " + " ".join(map(str, cmd)) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=job_env())
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({rc}); see {log_path}")
    wall_path.write_text(f"{time.time() - t0:.1f}\n")
    cpu_path(wall_path).write_text(f"{usage.ru_utime + usage.ru_stime:.1f}\n")


def cpu_path(wall_path: Path) -> Path:
    return wall_path.with_name(wall_path.name.replace("wall_s", "cpu_s"))


def on_dev(cer: dict):
    """The option (key of ``cer``: option -> dev CER) with the lowest dev CER; on a tie the first listed."""
    if not cer:
        raise ValueError("on_dev: no option to choose from")
    return min(cer, key=cer.get)  # min keeps the first of equal values


def kept_ckpts(vsr_dir: Path) -> list:
    """The checkpoints stage 6 decoded for stage 7 (vsr.sh kept_ckpts: ``ckpt_keep/*epoch.pth``, epoch order)."""
    names = [p.name[:-len(".pth")] for p in (vsr_dir / "ckpt_keep").glob("*epoch.pth")]
    if not names:
        raise SystemExit(f"bench_stage2_beyond: no checkpoints in {vsr_dir / 'ckpt_keep'}; run stage 4 first")
    return sorted(names, key=lambda n: int(re.match(r"\d*", n).group() or 0))


def stage7_inputs(vsr_dir: Path, decode_tag: str, valid: str, train: Optional[str] = None) -> tuple:
    """Stage 7's ``--train`` and ``--dev`` arguments (``<ckpt>=<stage-6 nbest.jsonl>`` each), as vsr.sh builds
    them. ``train`` is the training set stage 6 decoded (vsr.sh's nbest_train, e.g. ``train_sub1200``); None:
    the one set besides ``valid`` that every kept checkpoint's decode directory holds."""
    ckpts = kept_ckpts(vsr_dir)
    dirs = [vsr_dir / f"decode_{decode_tag}_{c}" for c in ckpts]
    if train is None:
        found = [set(p.parent.name for p in d.glob("*/nbest.jsonl")) - {valid} for d in dirs]
        common = set.intersection(*found)
        if len(common) != 1:
            raise SystemExit(f"bench_stage2_beyond: cannot tell stage 6's training set in {dirs[0]} "
                             f"(found {sorted(common) or 'none'}); pass --nbest-train")
        train = common.pop()
    specs = {}
    for split, dset in (("train", train), ("dev", valid)):
        specs[split] = []
        for c, d in zip(ckpts, dirs):
            if not (d / dset / "nbest.jsonl").exists():
                raise SystemExit(f"bench_stage2_beyond: {d / dset / 'nbest.jsonl'} missing; run stage 6 first")
            specs[split].append(f"{c}={d / dset / 'nbest.jsonl'}")
    return specs["train"], specs["dev"]


class Runs:
    """llm_refine processes, nj at a time; each output dir is done when its ``text`` exists."""

    def __init__(self, recipe: Path, work: Path, model: str, adapter: Path, nbest: dict, nj: int):
        self.recipe, self.work, self.model, self.adapter, self.nbest = recipe, work, model, adapter, nbest
        self.pool = ThreadPoolExecutor(max_workers=nj)
        self.jobs = []

    def submit(self, name: str, dset: str, opts: list, finetuned: bool = True, adapter: Optional[Path] = None
               ) -> Path:
        """Refine ``dset`` into ``<work>/<name>/<dset>`` with stage 8's adapter (``adapter``: another one;
        ``finetuned`` False: none, zero-shot)."""
        out = self.work / name / dset
        if not (out / "text").exists():
            cmd = PY + ["-m", "vallr_pin.bin.llm_refine", "--model", self.model, "--backend", "transformers",
                        "--threads", "1", "--nbest", str(self.nbest[dset]), "--out-dir", str(out), *opts]
            if finetuned:
                cmd += ["--adapter", str(adapter or self.adapter)]
            self.jobs.append(self.pool.submit(self._run, cmd, out))
        return out

    def _run(self, cmd: list, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        run_logged(cmd, out / "refine.log", self.recipe, out / "wall_s")

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
    cpu = float((out / "cpu_s").read_text()) if (out / "cpu_s").exists() else None
    if wall is None and (out / "refine.log").exists():  # stage 9's own job: run.pl's accounting line
        m = re.search(r"elapsed time (\d+) seconds", (out / "refine.log").read_text(errors="replace"))
        wall = float(m.group(1)) if m else None
    return {"cer": sc.cer, "sub": sc.sub, "del": sc.dele, "ins": sc.ins, "n_ref": sc.n_ref, "calls": calls,
            "wall_s": wall, "cpu_s": cpu, "errs": [u.sub + u.dele + u.ins for u in sc.utts],
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


def noise_name(ratio: float) -> str:
    return f"noise_r{ratio:g}"


def noise_text_of(args, recipe: Path) -> list:
    """--noise-text, or the recipe's own extra text (db.sh's ${MINI_CNVSRC}/lm_text.txt), absolute."""
    paths = args.noise_text or [os.path.join(recipe_var(recipe, "MINI_CNVSRC"), "lm_text.txt")]
    return [os.path.normpath(recipe / x) for x in paths]


def wall_secs(d: Path) -> dict:
    """The wall and CPU seconds of stages 7 / 8 recorded in ``d`` (``build_*_s``, ``sft_*_s``), those that
    exist."""
    out = {}
    for key in ("build_wall", "build_cpu", "sft_wall", "sft_cpu"):
        f = d / f"{key}_s"
        if f.exists():
            out[key] = float(f.read_text())
    return out


def work_secs(d: Path) -> str:
    """``stage 7 wall (CPU) / stage 8 wall (CPU)`` seconds of an adapter directory."""
    w = wall_secs(d)
    return " / ".join(f"{w[k + '_wall']:.0f} ({w[k + '_cpu']:.0f} CPU) s" if k + "_wall" in w and k + "_cpu" in w
                      else "-" for k in ("build", "sft"))


def train_adapters(args, recipe: Path, work: Path, model: str, ref: dict, sets: list) -> dict:
    """The adapters of the noise ratios and of GRPO (name -> adapter path), made as vsr.sh stages 7-8 make
    them, under ``work``; the ones already there are kept. Stage 7 runs ``--nj`` at a time, then stage 8."""
    vsr_dir = recipe / "exp" / args.vsr_exp
    llm_data = recipe / "exp" / "llm_data"
    jobs = {}  # name -> (stage-7 command or None, stage-8 command)
    if args.noise_ratios:
        train, dev = stage7_inputs(vsr_dir, args.decode_tag, args.valid, args.nbest_train)
        noise_text = noise_text_of(args, recipe)
        for f in noise_text:
            if not Path(f).is_file():
                raise SystemExit(f"bench_stage2_beyond: {f} (--noise-text) not found")
        # as vsr.sh stage 7: no sentence of an evaluation set becomes a synthetic sample
        exclude = [ref[d] for d in dict.fromkeys(sets) if Path(ref[d]).is_file()]
        for r in args.noise_ratios:
            d = work / noise_name(r)
            build = PY + ["-m", "vallr_pin.bin.build_llm_data", "--train", *train, "--dev", *dev,
                          "--out-dir", str(d / "llm_data"), "--noise-text", *noise_text, "--noise-ratio", f"{r:g}",
                          "--noise-exclude", *exclude]
            sft = PY + ["-m", "vallr_pin.bin.llm_sft", "--config", str(recipe / args.sft_config), "--model", model,
                        "--train", str(d / "llm_data" / "train.jsonl"), "--val", str(d / "llm_data" / "dev.jsonl"),
                        "--output-dir", str(d)]
            jobs[noise_name(r)] = (build, sft)
    if args.grpo_config:
        grpo_conf, sft_adapter = recipe / args.grpo_config, recipe / args.llm_exp / "adapter"
        for f, what in ((grpo_conf, "--grpo-config"), (llm_data / "train.jsonl", "stage 7"), (sft_adapter, "stage 8")):
            if not f.exists():
                raise SystemExit(f"bench_stage2_beyond: {f} missing ({what}); run stages 7-8 first, or pass "
                                 "--grpo-config, or --grpo-config '' for no GRPO row")
        d = work / "grpo"
        build = None
        if not has_onebest(llm_data / "train.jsonl"):
            # stage 7 of an older version (no 'onebest', which the GRPO reward needs): stage 7 again, same inputs
            llm_data = d / "llm_data"
            train, dev = stage7_inputs(vsr_dir, args.decode_tag, args.valid, args.nbest_train)
            build = PY + ["-m", "vallr_pin.bin.build_llm_data", "--train", *train, "--dev", *dev,
                          "--out-dir", str(llm_data)]
        grpo = PY + ["-m", "vallr_pin.bin.llm_sft", "--rlhf", "grpo", "--config", str(grpo_conf),
                     "--model", model, "--init-adapter", str(sft_adapter.resolve()),
                     "--train", str(llm_data / "train.jsonl"), "--val", str(llm_data / "dev.jsonl"),
                     "--output-dir", str(d)]
        jobs["grpo"] = (build, grpo)
    with ThreadPoolExecutor(max_workers=args.nj) as pool:
        futs = [pool.submit(run_logged, build, work / n / "build.log", recipe, work / n / "build_wall_s")
                for n, (build, _) in jobs.items()
                if build is not None and not (work / n / "llm_data" / "train.jsonl").exists()]
        for f in futs:
            f.result()
        futs = [pool.submit(run_logged, sft, work / n / "sft.log", recipe, work / n / "sft_wall_s")
                for n, (_, sft) in jobs.items() if not (work / n / "adapter").exists()]
        for f in futs:
            f.result()
    return {n: work / n / "adapter" for n in jobs}


def has_onebest(train_jsonl: Path) -> bool:
    """Whether stage 7's rows carry ``onebest`` (the GRPO reward's CER(1-best); stage 7 writes it since issue 19)."""
    with open(train_jsonl, encoding="utf-8") as f:
        return "onebest" in json.loads(f.readline() or "{}")


def tune_fusion(d: Path, valid: str, sets: list, ref: dict) -> None:
    """Stage 9's fusion tuning (llm_tune_fusion): weights chosen on ``valid``, applied to every set; skipped
    when every set's fusion.json is newer than its raw.jsonl."""
    if all((d / s / "fusion.json").exists()
           and (d / s / "fusion.json").stat().st_mtime >= (d / s / "raw.jsonl").stat().st_mtime for s in sets):
        return
    run_logged(PY + ["-m", "vallr_pin.bin.tune_fusion", "--tune-dir", str(d / valid), "--ref", ref[valid],
                     "--apply-dir", *[str(d / s) for s in dict.fromkeys(sets)]],
               d / "tune_fusion.log", d, d / "tune_fusion_wall_s")


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
    p.add_argument("--decode-tag", default="vsr", help="stage 6's decode directories: decode_<tag>_<ckpt>")
    p.add_argument("--nbest-train", default=None,
                   help="the training set stage 6 decoded and stage 7 read (default: found beside --valid)")
    p.add_argument("--noise-ratios", type=float, nargs="*", default=[0.5, 1.0, 2.0],
                   help="error-noise mixing ratios tried (synthetic samples per real one), chosen on --valid; "
                        "none: no noise rows")
    p.add_argument("--noise-text", nargs="+", default=None,
                   help="text for the synthetic N-best lists (default: ${MINI_CNVSRC}/lm_text.txt of db.sh)")
    p.add_argument("--sft-config", default="conf/llm_sft.yaml", help="stage 8's config (recipe-relative)")
    p.add_argument("--grpo-config", default="conf/llm_grpo.yaml",
                   help="GRPO config after stage 8's SFT (recipe-relative); empty: no GRPO row")
    p.add_argument("--refine-opts", default="--mode rescore --rescore-vsr-weight 1",
                   help="stage 9's llm_refine options for the noise and GRPO adapters (run.sh's llm_refine_opts)")
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
    best_level = on_dev(level_cer)

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

    # 4. new adapters (stages 7-8 options), each then refined as stage 9 does: error-noise ratios, GRPO
    adapters = train_adapters(args, recipe, work, model, ref, sets)
    refine_opts = args.refine_opts.split()
    for name, adapter in adapters.items():
        for dset in sets:
            runs.submit(f"{name}/refine", dset, refine_opts, adapter=adapter)
    runs.wait()
    for name in adapters:
        if "--mode rescore" in " ".join(refine_opts):
            tune_fusion(work / name / "refine", args.valid, sets, ref)
    noise_cer, noise_rows = {}, {}
    for r in args.noise_ratios:
        name = noise_name(r)
        noise_rows[r] = f"SFT on real + error-noise lists, ratio {r:g}, rescoring, dev-tuned fusion"
        rows[noise_rows[r]] = {d: figures(work / name / "refine" / d, refs[d]) for d in sets}
        noise_cer[r] = rows[noise_rows[r]][args.valid]["cer"]
    best_ratio = on_dev(noise_cer) if noise_cer else None
    if best_ratio is not None:  # mark the ratio chosen on dev in its row's name
        rows = {(k + " **(ratio chosen on dev)**" if k == noise_rows[best_ratio] else k): v for k, v in rows.items()}
    if "grpo" in adapters:
        rows["SFT + GRPO, rescoring, dev-tuned fusion"] = {
            d: figures(work / "grpo" / "refine" / d, refs[d]) for d in sets}

    paper = rows["paper: fine-tuned LLM, free generation"][args.test]
    stage9 = rows["stage 9: fine-tuned LLM rescoring, dev-tuned fusion"][args.test]
    stage2_rows = [k for k in rows if not k.startswith("Stage I")]
    best = on_dev({k: rows[k][args.valid]["cer"] for k in stage2_rows})
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
        if v["cpu_s"] is not None and t["cpu_s"] is not None:  # run by this version of the bench: CPU seconds too
            wall += f" ({v['cpu_s']:.0f}/{t['cpu_s']:.0f} CPU)"
        lines.append(f"| {name}{' **(best on dev)**' if name == best else ''} | {v['cer']:.2f} | {t['cer']:.2f} "
                     f"[{t['sub']}/{t['del']}/{t['ins']}] | {v['calls']}/{t['calls']} | {wall} | "
                     f"{'-' if win_p is None else f'{win_p:.3f}'} | {'-' if win_s is None else f'{win_s:.3f}'} |")
    lines.append("")
    lines.append(f"Constrained level chosen on {args.valid}: {best_level} ({', '.join(f'{k} {v:.2f}' for k, v in level_cer.items())}). "
                 f"CER after each polishing round (0 = Stage I): {args.valid} {per_round[args.valid]}, "
                 f"{args.test} {per_round[args.test]}. 'beats X': share of 1,000 paired bootstrap resamples of the "
                 f"{args.test} utterances in which the row has fewer errors than X.")
    if noise_cer:
        lines.append("")
        lines.append(f"Error-noise ratio chosen on {args.valid}: {best_ratio:g} "
                     f"({', '.join(f'{k:g} {v:.2f}' for k, v in noise_cer.items())}); synthetic lists from "
                     f"{', '.join(os.path.relpath(f, recipe) for f in noise_text_of(args, recipe))}.")
    if adapters:
        lines.append("Seconds to make each adapter, stage 7 (build_llm_data) / stage 8 (llm_sft), wall (CPU), at "
                     "the calibration above: " + "; ".join(f"{n} {work_secs(work / n)}" for n in adapters) + ".")
    table = "\n".join(lines)
    print(table)
    (work / "beyond.md").write_text(table + "\n")
    (work / "beyond.json").write_text(json.dumps(
        {"best_on_dev": best, "best_level": best_level, "polish_cer_per_round": per_round,
         "best_noise_ratio": best_ratio, "noise_dev_cer": {f"{k:g}": v for k, v in noise_cer.items()},
         "train_wall_s": {n: wall_secs(work / n) for n in adapters},
         "rows": {k: {d: {x: y for x, y in r[d].items() if x not in ("errs", "lens")} for d in sets}
                  for k, r in rows.items()}}, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

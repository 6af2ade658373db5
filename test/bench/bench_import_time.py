#!/usr/bin/env python3
"""Start-up time of every entry point, this tree vs a base revision, measured in one run (issue 22).

For each ``vallr_pin.bin`` entry point: wall time of ``python -m vallr_pin.bin.<x> --help`` (interpreter, imports,
parser). The ESPnet-task entry points also get a "run imports" figure: the modules a real run loads before its
first batch (``vsr_inference --help`` does not import the model code; a decoding job does). Each figure is the
median of ``--repeats`` runs, base and this tree alternating so that both see the same load. The base revision
is exported with ``git archive`` (the work tree and .git stay untouched) and put first on PYTHONPATH. The "run
imports" figures are taken under ``-X importtime`` (both trees alike); their top cumulative modules are printed
last. A calibration line (FACTS.md: torch fp32 1024x1024 matmul, 1 thread) and the load average go beside the
timings: hosts differ ~3x, and a shared host's load moves every figure.

    tools/venv/bin/python test/bench/bench_import_time.py                  # base = 5d9abc9 (before issue 22)
    tools/venv/bin/python test/bench/bench_import_time.py --base-rev none  # this tree only
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_REV = "5d9abc9"  # the last revision before issue 22's start-up changes
CALIBRATION = ("import torch,time;torch.set_num_threads(1);a=torch.randn(1024,1024);[a@a for _ in range(3)];"
               "t=time.perf_counter();[a@a for _ in range(20)];"
               "print(round(2*1024**3*20/(time.perf_counter()-t)/1e9,1),'GFLOPS')")
# What a real run of each ESPnet-task entry point imports before it reads data.
RUN_IMPORTS = {
    "vsr_train": "import vallr_pin.bin.vsr_train",
    "vsr_inference": "import vallr_pin.bin.vsr_inference, vallr_pin.tasks.vsr, espnet.nets.batch_beam_search, "
                     "espnet.nets.scorers.ctc",
}


def entry_points() -> list:
    return sorted(p.stem for p in (REPO / "vallr_pin" / "bin").glob("*.py") if p.stem != "__init__")


def timed(cmd: list, tree: Path, importtime: bool = False) -> tuple:
    """(wall seconds, stderr) of ``cmd`` run with ``tree`` first on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    args = [sys.executable, *(["-X", "importtime"] if importtime else []), *cmd]
    t = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (PYTHONPATH={tree}) failed:\n{proc.stderr[-2000:]}")
    return wall, proc.stderr


def top_imports(stderr: str, k: int) -> list:
    """The ``k`` modules with the largest cumulative import time: [(seconds, indented name)]."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            rows.append((int(cumulative) / 1e6, name.rstrip()))
    return sorted(rows, reverse=True)[:k]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-rev", default=BASE_REV, help="git revision to compare with ('none': this tree only)")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--modules", nargs="*", default=None, help="entry points to measure (default: all)")
    p.add_argument("--top", type=int, default=8, help="modules shown from -X importtime")
    a = p.parse_args()

    gflops = subprocess.run([sys.executable, "-c", CALIBRATION], capture_output=True, text=True).stdout.strip()
    print(f"calibration: torch fp32 1024x1024 matmul, 1 thread: {gflops} (FACTS.md: 39.7 GFLOPS on the slow "
          f"AVX2 host); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    trees = {"this": REPO}
    if a.base_rev != "none":
        base = Path(tempfile.mkdtemp(prefix="bench_import_base."))
        archive = subprocess.run(["git", "-C", str(REPO), "archive", a.base_rev], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        trees = {"base": base, "this": REPO}
        print(f"base: git {a.base_rev} (exported to a temporary directory)")

    cases = []
    for module in a.modules or entry_points():
        if module in RUN_IMPORTS:
            cases.append((module, "run imports", ["-c", RUN_IMPORTS[module]]))
        cases.append((module, "--help", ["-m", f"vallr_pin.bin.{module}", "--help"]))

    print(f"\nwall seconds, median of {a.repeats}" + (" (base and this alternating)" if len(trees) > 1 else ""))
    header = f"{'entry point':<16} {'what':<12}" + "".join(f" {name + ' s':>8}" for name in trees)
    print(header + ("    ratio" if len(trees) > 1 else ""))
    stderr_of = {}
    for module, what, cmd in cases:
        # an entry point newer than the base revision is timed in this tree only
        present = {name: tree for name, tree in trees.items() if (tree / f"vallr_pin/bin/{module}.py").exists()}
        walls = {name: [] for name in present}
        for _ in range(a.repeats):
            for name, tree in present.items():
                wall, err = timed(cmd, tree, importtime=what == "run imports")
                walls[name].append(wall)
                if what == "run imports":
                    stderr_of[name, module] = err
        med = {name: statistics.median(w) for name, w in walls.items()}
        line = f"{module:<16} {what:<12}" + "".join(f" {med[name]:8.2f}" if name in med else f" {'-':>8}"
                                                    for name in trees)
        if len(med) > 1:
            line += f" {med['base'] / med['this']:7.2f}x"
        print(line, flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    if "base" in trees:
        shutil.rmtree(trees["base"])

    for (tree, module), err in stderr_of.items():
        print(f"\n{module} run imports ({tree} tree), -X importtime of the last run, top cumulative seconds:")
        for seconds, name in top_imports(err, a.top):
            print(f"  {seconds:6.2f} {name}")


if __name__ == "__main__":
    main()

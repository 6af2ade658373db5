#!/usr/bin/env python
"""Learning curves of several Stage I trainings side by side: is the step count the lever?

Reads each experiment's ESPnet ``train.log`` ("Nepoch results: [train] ... time=S seconds ... [valid] ...")
and prints, per epoch, the chosen validation metrics of every experiment, each with the cumulative minutes of
training it took in brackets, so that schedules of different length (12, 18, 24 epochs with the same peak rate) compare per
epoch and per second of the same host. ``--plot`` draws them (x: cumulative training minutes).

    tools/venv/bin/python test/bench/bench_learning_curves.py \\
        --exp 12=egs/mini_cnvsrc/vsr1/exp/vsr_dual --exp 18=.../exp/vsr_dual_e18 \\
        [--metric valid.cer_ctc_pinyin --metric valid.acc_char] [--plot curves.png]

Seconds are the log's own per-epoch training times: compare them only between runs that shared one host the
same way (two trainings on two cores, say), and quote the host's calibration with them.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

_RESULTS = re.compile(r"(\d+)epoch results: \[train\] (.*?), \[valid\] (.*)$")
_FIELD = re.compile(r"([A-Za-z_0-9]+)=([-+0-9.eE]+)")
# ESPnet writes an epoch's time with humanfriendly: "58.11 seconds", "1 minute and 0.87 seconds", "1 hour, 2 minutes
# and 3 seconds"
_TIME = re.compile(r"\btime=((?:[0-9.]+ (?:hours?|minutes?|seconds?)(?:, | and )?)+)")
_UNIT = {"hour": 3600.0, "minute": 60.0, "second": 1.0}


def _seconds(span: str) -> float:
    return sum(float(n) * _UNIT[u] for n, u in re.findall(r"([0-9.]+) (hour|minute|second)", span))


def parse_train_log(path: Path) -> list[dict]:
    """One dict per epoch: {"epoch", "train_seconds", "train.<key>", "valid.<key>"}, in epoch order.

    A resumed training logs an epoch once per run that finished it; the last line of an epoch wins.
    """
    epochs: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _RESULTS.search(line)
        if not m:
            continue
        row = {"epoch": int(m.group(1))}
        for part, text in (("train", m.group(2)), ("valid", m.group(3))):
            for key, value in _FIELD.findall(text):
                row[f"{part}.{key}"] = float(value)
        # the train part's "time=...": the epoch's wall time
        row.pop("train.time", None)
        t = _TIME.search(m.group(2))
        row["train_seconds"] = _seconds(t.group(1)) if t else float("nan")
        epochs[row["epoch"]] = row
    return [epochs[e] for e in sorted(epochs)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--exp", action="append", metavar="LABEL=DIR",
                   help="an experiment directory holding train.log (stage 4's exp/vsr_<tag>); repeat "
                        "(default: the mini recipe's two models, dual=... and char=...)")
    p.add_argument("--metric", action="append", metavar="valid.KEY",
                   help="metrics to show (default: valid.cer_ctc_pinyin and valid.acc_char)")
    p.add_argument("--plot", help="write a PNG of the curves here")
    args = p.parse_args(argv)
    metrics = args.metric or ["valid.cer_ctc_pinyin", "valid.acc_char"]
    if not args.exp:  # `make bench` runs every bench without arguments: the demo's models, if it has run
        exp = Path(__file__).resolve().parents[2] / "egs" / "mini_cnvsrc" / "vsr1" / "exp"
        if not (exp / "vsr_dual" / "train.log").is_file():
            print(f"bench_learning_curves: skipped: {exp}/vsr_dual/train.log not found (run `make demo` through "
                  "stage 4, or pass --exp)")
            return 0
        args.exp = [f"dual={exp / 'vsr_dual'}"] + ([f"char={exp / 'vsr_char'}"]
                                                   if (exp / "vsr_char" / "train.log").is_file() else [])
        if not args.metric:
            metrics = ["valid.acc_char", "valid.cer_ctc_char"]  # what both models have

    runs = {}
    for spec in args.exp:
        label, sep, d = spec.partition("=")
        if not sep:
            label, d = Path(spec).name, spec
        log = Path(d) / "train.log"
        if not log.is_file():
            print(f"bench_learning_curves: {log} not found: --exp takes a stage-4 experiment directory", file=sys.stderr)
            return 2
        rows = parse_train_log(log)
        if not rows:
            print(f"bench_learning_curves: {log} has no 'Nepoch results' line yet", file=sys.stderr)
            return 2
        missing = sorted({m for m in metrics for r in rows if m not in r})
        if missing:
            print(f"bench_learning_curves: {log} has no {', '.join(missing)} in some epoch; it has "
                  f"{', '.join(k for k in rows[-1] if k.startswith('valid.'))}", file=sys.stderr)
            return 2
        total = 0.0
        for r in rows:  # the x of the table and the figure: cumulative training minutes
            total += r["train_seconds"]
            r["train_minutes_total"] = total / 60
        runs[label] = rows

    last = max(len(r) for r in runs.values())
    for metric in metrics:
        print(f"== {metric} per epoch (cumulative training minutes in brackets)")
        print(f"{'epoch':>5} " + " ".join(f"{label:>16}" for label in runs))
        for i in range(last):
            cells = []
            for rows in runs.values():
                if i < len(rows):
                    cells.append(f"{rows[i][metric]:>8.3f} ({rows[i]['train_minutes_total']:>5.1f})")
                else:
                    cells.append(" " * 16)
            print(f"{i + 1:>5} " + " ".join(cells))
    if args.plot:
        plot(runs, metrics, args.plot)
    return 0


def plot(runs: dict, metrics: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, rows in runs.items():
            ax.plot([r["train_minutes_total"] for r in rows], [r[metric] for r in rows], marker=".", label=label)
        ax.set_xlabel("training minutes (cumulative, this host)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

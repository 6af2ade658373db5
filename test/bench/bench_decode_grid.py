#!/usr/bin/env python3
"""Stage 5's decoding settings, chosen on dev and applied unchanged to test.

Decodes the recipe's valid set with every cell of a grid of the settings that ``conf/decode_vsr.yaml`` fixes
(CTC weight of the character search, the pinyin branch's vote on each character hypothesis, the length bonus,
the beam, the character LM's weight, the pinyin CTC's weight inside the character search, the pre-beam ratio of
its CTC scorers), with the recipe's
own model and decoder (``python -m vallr_pin.bin.vsr_inference --decode_list``, ``--nj`` processes of one
thread, each decoding its split of the set for every cell), and scores CER, reading error rate (toneless
pinyin) and viseme error rate. The cell with the lowest dev CER (a tie: the lower dev VER) is then decoded on
test, next to the recipe's own setting, with a paired bootstrap of the two over the test utterances. Nothing of
the recipe is changed; every decode goes under ``--work`` (default ``exp/decode_grid``) and a finished one (its
``text`` exists) is not run again. A knob given three or more values gets a figure of dev CER and VER against
it (``<work>/lm_weight.png``, ``<work>/pinyin_search_weight.png``).

Example (from the repository root, after ``make demo`` reached stage 5):
    tools/venv/bin/python test/bench/bench_decode_grid.py --recipe egs/mini_cnvsrc/vsr1
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recognize import calibration  # noqa: E402

from vallr_pin.datadir import read_kv  # noqa: E402
from vallr_pin.scoring.bootstrap import paired_win_rate  # noqa: E402
from vallr_pin.scoring.cer import score_corpus  # noqa: E402
from vallr_pin.scoring.error_analysis import analyse  # noqa: E402

PY = [sys.executable]
KNOBS = ("ctc_weight", "pinyin_rescore_weight", "penalty", "beam_size", "lm_weight", "pinyin_search_weight",
         "pre_beam_ratio")
NAMED_IF_NOT = {"pre_beam_ratio": 1.5}  # a knob added later is named only off its default: older cells keep their dirs


def cell_name(cell: dict) -> str:
    return "_".join(f"{k}{cell[k]:g}" for k in KNOBS if NAMED_IF_NOT.get(k) != cell[k])


def decode_all(recipe: Path, work: Path, model_exp: Path, ckpt: str, config: Path, cells: list, dset: str,
               nj: int, lm: tuple = ()) -> dict:
    """Decode ``dset`` with every cell not decoded yet; return {cell name: decode dir}."""
    data = recipe / "dump" / "roi" / dset
    keys = [ln.split(maxsplit=1)[0] for ln in (data / "feats.scp").read_text().splitlines() if ln.strip()]
    dirs = {cell_name(c): work / cell_name(c) / dset for c in cells}
    todo = [c for c in {cell_name(c): c for c in cells}.values()  # once each (the dev choice may be the recipe's)
            if not (dirs[cell_name(c)] / "text").exists()]
    if not todo:
        return dirs
    lists = []
    for n in range(1, nj + 1):
        lines = []
        for c in todo:
            d = dirs[cell_name(c)]
            (d / "logdir").mkdir(parents=True, exist_ok=True)
            (d / "logdir" / f"keys.{n}.scp").write_text("".join(f"{k}\n" for k in keys[n - 1::nj]))
            lines.append(
                f"--train_config {model_exp / 'config.yaml'} --model_file {model_exp / ckpt} "
                f"--data_path_and_name_and_type {data / 'feats.scp'},video,kaldi_ark --ref_text {data / 'text'} "
                f"--key_file {d / 'logdir' / f'keys.{n}.scp'} --output_dir {d / 'logdir' / f'output.{n}'} "
                + " ".join(f"--{k} {c[k]}" for k in KNOBS)
                + (f" --lm_train_config {lm[0]} --lm_file {lm[1]}" if c["lm_weight"] else ""))
        lst = work / f"decode_list.{dset}.{n}"
        lst.write_text("\n".join(lines) + "\n")
        lists.append(lst)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(PY + ["-m", "vallr_pin.bin.vsr_inference", "--config", str(config),
                                    "--decode_list", str(lst)],
                              stdout=open(lst.with_suffix(lst.suffix + ".log"), "w"), stderr=subprocess.STDOUT,
                              env=env, cwd=recipe) for lst in lists]
    for p, lst in zip(procs, lists):
        if p.wait() != 0:
            raise SystemExit(f"bench_decode_grid: decoding failed; see {lst}.log")
    for c in todo:
        d = dirs[cell_name(c)]
        subprocess.run(PY + ["-m", "vallr_pin.bin.vsr_inference", "--output_dir", str(d), "--merge",
                             *[str(d / "logdir" / f"output.{n}") for n in range(1, nj + 1)]],
                       check=True, env=env, cwd=recipe, stdout=subprocess.DEVNULL)
    return dirs


def figures(refs: dict, d: Path) -> dict:
    sc = score_corpus(refs, read_kv(d / "text"))
    a = analyse(sc)
    return {"cer": sc.cer, "sub": sc.sub, "del": sc.dele, "ins": sc.ins, "rer": a["reading_error_rate"],
            "ver": a["viseme_error_rate"], "errs": [u.sub + u.dele + u.ins for u in sc.utts],
            "lens": [len(u.ref) for u in sc.utts]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=REPO / "egs" / "mini_cnvsrc" / "vsr1")
    p.add_argument("--model-exp", default="exp/vsr_dual", help="model directory, relative to --recipe")
    p.add_argument("--checkpoint", default="valid.acc_char.ave.pth")
    p.add_argument("--decode-config", default="conf/decode_vsr.yaml", help="the recipe's stage-5 settings")
    p.add_argument("--dev", default="dev", help="set the grid is scored on")
    p.add_argument("--test", default="test", help="set the dev choice is applied to")
    p.add_argument("--ctc-weights", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    p.add_argument("--pinyin-weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    p.add_argument("--penalties", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--beam-sizes", type=int, nargs="+", default=[10])
    p.add_argument("--lm-weights", type=float, nargs="+", default=None,
                   help="weights of the character LM (default: the decode config's lm_weight, 0 without one)")
    p.add_argument("--pinyin-search-weights", type=float, nargs="+", default=None,
                   help="weights of the pinyin CTC inside the character search (default: the decode config's "
                        "pinyin_search_weight, 0 without one)")
    p.add_argument("--pre-beam-ratios", type=float, nargs="+", default=None,
                   help="pre-beam ratios of the character search (default: the decode config's pre_beam_ratio, "
                        "ESPnet's 1.5 without one)")
    p.add_argument("--lm-exp", default="exp/lm_char", help="the LM's directory (config.yaml), relative to --recipe")
    p.add_argument("--lm-file", default="valid.loss.best.pth", help="its checkpoint")
    p.add_argument("--nj", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--work", type=Path, default=None, help="default: <recipe>/exp/decode_grid")
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args(argv)
    recipe = args.recipe.resolve()
    work = (args.work or recipe / "exp" / "decode_grid").resolve()
    work.mkdir(parents=True, exist_ok=True)
    model_exp, config = recipe / args.model_exp, recipe / args.decode_config
    base_conf = yaml.safe_load(config.read_text(encoding="utf-8"))
    base = {k: type(v)(base_conf.get(k, v)) for k, v in
            dict(ctc_weight=0.3, pinyin_rescore_weight=0.0, penalty=0.0, beam_size=10, lm_weight=0.0,
                 pinyin_search_weight=0.0, pre_beam_ratio=1.5).items()}
    lm = (recipe / args.lm_exp / "config.yaml", recipe / args.lm_exp / args.lm_file)
    lm_weights = args.lm_weights if args.lm_weights is not None else [base["lm_weight"]]
    search_weights = (args.pinyin_search_weights if args.pinyin_search_weights is not None
                      else [base["pinyin_search_weight"]])
    pre_beams = args.pre_beam_ratios if args.pre_beam_ratios is not None else [base["pre_beam_ratio"]]
    cells = [dict(zip(KNOBS, v)) for v in itertools.product(args.ctc_weights, args.pinyin_weights,
                                                            args.penalties, args.beam_sizes, lm_weights,
                                                            search_weights, pre_beams)]
    if base not in cells:
        cells.append(base)
    print(f"calibration: {calibration()} GFLOPS (1-thread 1024x1024 fp32 matmul)", flush=True)
    t0 = time.time()
    dirs = decode_all(recipe, work, model_exp, args.checkpoint, config, cells, args.dev, args.nj, lm)
    t_dev = time.time() - t0
    refs_dev = read_kv(recipe / "data" / args.dev / "text")
    rows = {n: figures(refs_dev, d) for n, d in dirs.items()}
    # lowest dev CER; a tie goes to the lower dev VER (the lips read better), then to the recipe's own setting
    best = min(cells, key=lambda c: (round(rows[cell_name(c)]["cer"], 6), round(rows[cell_name(c)]["ver"], 6),
                                     c != base))
    print(f"\n{len(cells)} settings decoded on {args.dev} in {t_dev:.0f} s ({args.nj} jobs)\n")
    print("| " + " | ".join(KNOBS) + f" | {args.dev} CER | S/D/I | RER | VER |")
    print("|" + "---:|" * (len(KNOBS) + 4))
    for c in sorted(cells, key=lambda c: rows[cell_name(c)]["cer"]):
        r = rows[cell_name(c)]
        mark = (" **(dev choice)**" if c == best else "") + (" (recipe)" if c == base else "")
        print("| " + " | ".join(f"{c[k]:g}" for k in KNOBS)
              + f" | {r['cer']:.2f}{mark} | {r['sub']}/{r['del']}/{r['ins']} | {r['rer']:.2f} | {r['ver']:.2f} |")
    test_dirs = decode_all(recipe, work, model_exp, args.checkpoint, config, [base, best], args.test, args.nj, lm)
    refs_test = read_kv(recipe / "data" / args.test / "text")
    tb, tc = figures(refs_test, test_dirs[cell_name(base)]), figures(refs_test, test_dirs[cell_name(best)])
    win = paired_win_rate(tb["errs"], tc["errs"], tb["lens"], resamples=args.resamples)
    no_worse = paired_win_rate(tb["errs"], tc["errs"], tb["lens"], resamples=args.resamples, strict=False)
    print(f"\n{args.test}: recipe setting {cell_name(base)} CER {tb['cer']:.2f} (VER {tb['ver']:.2f}); "
          f"dev choice {cell_name(best)} CER {tc['cer']:.2f} (VER {tc['ver']:.2f}); the dev choice is better in "
          f"{win:.3f} (no worse in {no_worse:.3f}) of {args.resamples} paired resamples")
    summary = {"cells": [{**c, **{k: v for k, v in rows[cell_name(c)].items() if k not in ("errs", "lens")}}
                         for c in cells],
               "base": base, "best": best, "dev_seconds": t_dev,
               "test": {"base": {k: v for k, v in tb.items() if k not in ("errs", "lens")},
                        "best": {k: v for k, v in tc.items() if k not in ("errs", "lens")}, "best_better": win, "best_no_worse": no_worse}}
    (work / "grid.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {work / 'grid.json'}")
    for knob in PLOTS:
        if plot_against(summary["cells"], knob, work / f"{knob}.png", args.dev):
            print(f"wrote {work / f'{knob}.png'}")


# knob -> (x-axis label, title) of the figure drawn when the grid varies it
PLOTS = {
    "lm_weight": ("LM weight (shallow fusion)",
                  "The character LM: fewer wrong characters, more characters the lips did not show"),
    "pinyin_search_weight": ("weight of the pinyin CTC inside the character search",
                             "The pinyin CTC in the search: the LM's candidates pay for what the lips did not draw"),
    "pre_beam_ratio": ("pre-beam ratio (CTC-scored candidates per step / beam)",
                       "More candidates for the CTC scorers of the character search"),
}


def plot_against(cells: list, knob: str, path: Path, dset: str) -> bool:
    """Dev CER and VER against ``knob``, one line per setting of the other knobs with >= 3 values of it; False
    (and no figure) when no setting has that many."""
    others = [k for k in KNOBS if k != knob]
    groups = {}
    for c in cells:
        groups.setdefault(tuple(c[k] for k in others), []).append(c)
    groups = {key: cs for key, cs in groups.items() if len({c[knob] for c in cs}) >= 3}
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    short = dict(ctc_weight="ctc", pinyin_rescore_weight="pinyin vote", penalty="length bonus", beam_size="beam",
                 lm_weight="LM", pinyin_search_weight="pinyin CTC", pre_beam_ratio="pre-beam")
    for key, cs in sorted(groups.items()):
        cs.sort(key=lambda c: c[knob])
        label = ", ".join(f"{short[k]} {v:g}" for k, v in zip(others, key) if k != "beam_size")
        a.plot([c[knob] for c in cs], [c["cer"] for c in cs], "o-", label=label)
        b.plot([c[knob] for c in cs], [c["ver"] for c in cs], "o-", label=label)
    for ax, what in ((a, "CER"), (b, "VER (viseme error rate)")):
        ax.set_xlabel(PLOTS[knob][0])
        ax.set_ylabel(f"{dset} {what} (%)")
        ax.grid(alpha=0.3)
    a.legend(fontsize=7)
    fig.suptitle(PLOTS[knob][1])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Where the mini recipe's Stage I errors come from: unseen speakers, or unseen sentences?

Needs egs/mini_cnvsrc/vsr1 run through stage 5. It renders two extra sets with the corpus's own renderer, speakers and
seed, puts them through stage 1 (lip ROI from the known landmarks, the recipe's ROI options) and decodes them
with the trained model and decoding config of stage 5:

    seen speakers, unseen sentences   training speakers reading dev sentences
    unseen speakers, seen sentences   dev speakers reading training sentences

and prints, next to the recipe's own train (seen/seen, memorised) and dev (unseen/unseen) decodes, each set's
CER, reading error rate (toneless pinyin of the characters) and viseme error rate (initial class + final; see
vallr_pin/scoring/error_analysis.py), and the CER split by kind of error: substitutions the lips cannot tell
from the reference (homophone, same viseme), misreads (another viseme), deletions + insertions. A model that
reads lips has a VER that barely depends on the sentence; one that has memorised sentences does well only where
the sentence was seen.

    tools/venv/bin/python test/bench/bench_mini_generalisation.py [--recipe egs/mini_cnvsrc/vsr1] [--plot PNG]

(``make bench`` runs it too; it says so and skips when the recipe has not been run through stage 5.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _read_text(path: Path) -> dict:
    from vallr_pin.datadir import read_kv

    return read_kv(path)


def _score(nbest: Path) -> dict:
    from vallr_pin.scoring.cer import score_corpus
    from vallr_pin.scoring.error_analysis import analyse

    rows = [json.loads(line) for line in nbest.read_text(encoding="utf-8").splitlines() if line.strip()]
    refs = {r["utt"]: r["ref"] for r in rows}
    hyps = {r["utt"]: (r["nbest"][0]["text"] if r["nbest"] else "") for r in rows}
    a = analyse(score_corpus(refs, hyps))
    cats, n = a["substitution_categories"], a["n_ref"] or 1
    # CER points by kind: a homophone or same-viseme substitution draws the frames of the reference, so only
    # knowing the sentence avoids it; the rest is a misread (other viseme) or a lost/extra character
    return dict(n=len(rows), cer=a["cer"], rer=a["reading_error_rate"], ver=a["viseme_error_rate"],
                lips_alike=100.0 * (cats["homophone"] + cats["same_viseme"]) / n,
                misread=100.0 * cats["other"] / n, indel=100.0 * (a["del"] + a["ins"]) / n)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(REPO / "egs" / "mini_cnvsrc" / "vsr1"), help="the mini recipe directory")
    p.add_argument("--exp", default="exp/vsr_dual", help="trained model directory (stage 4), under --recipe")
    p.add_argument("--model", default="valid.acc_char.ave.pth", help="checkpoint under --exp")
    p.add_argument("--decode-config", default="conf/decode_vsr.yaml")
    p.add_argument("--lm-exp", default="exp/lm_char",
                   help="the character LM stage 5 fused (run.sh --use_lm true), under --recipe; absent: no LM")
    p.add_argument("--lm-model", default="valid.loss.best.pth", help="its checkpoint")
    p.add_argument("--utts", type=int, default=90, help="utterances per extra set")
    p.add_argument("--seed", type=int, default=2026, help="the corpus seed (local/data.sh --seed)")
    p.add_argument("--size", type=int, default=160, help="rendered frame side (local/data.sh --size)")
    p.add_argument("--roi-opts", default="--roi-size 32 --mouth-width-frac 0.7", help="run.sh's ROI options")
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--plot", help="also draw each set's CER split by kind of error (stacked bars) into this PNG")
    args = p.parse_args(argv)
    from vallr_pin.bin.render_corpus import Job, _init_worker, _paths, render_job

    os.chdir(args.recipe)
    if not Path(args.exp, args.model).is_file() or not Path("downloads/mini_cnvsrc/speakers.csv").is_file():
        print(f"skipped: no {args.recipe}/{args.exp}/{args.model}; run the mini recipe through stage 5 first")
        return

    spk_split = {}
    for line in Path("downloads/mini_cnvsrc/speakers.csv").read_text().splitlines()[1:]:
        spk, split = line.split(",")
        spk_split[spk] = split
    idx = {s: [int(k[3:]) for k, v in spk_split.items() if v == s] for s in ("train", "dev")}
    train_text = sorted(set(_read_text(Path("data/train/text")).values()))
    dev_text = list(_read_text(Path("data/dev/text")).values())
    rng = random.Random(0)
    conditions = {
        "seen speakers, unseen sentences": [(rng.choice(idx["train"]), s) for s in dev_text[: args.utts]],
        "unseen speakers, seen sentences": [(rng.choice(idx["dev"]), s) for s in rng.sample(train_text, args.utts)],
    }
    env = dict(os.environ, OMP_NUM_THREADS="1")
    py = sys.executable
    lm = Path(args.lm_exp)  # decoded as stage 5 decodes: with the LM when the recipe trained one
    lm_opts = (["--lm_train_config", str(lm / "config.yaml"), "--lm_file", str(lm / args.lm_model)]
               if (lm / args.lm_model).is_file() else ["--lm_weight", "0"])
    print(f"decoding with {args.decode_config} {' '.join(lm_opts)}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_gen_") as tmp:
        for c, (name, items) in enumerate(conditions.items()):
            d = Path(tmp) / f"set{c}"
            # render_corpus's own job renderer: the speaker index picks the corpus speaker, as in stage 0
            jobs = [Job("x", f"spk{i:03d}", i, f"x{c}spk{i:03d}_{k:04d}", t) for k, (i, t) in enumerate(items)]
            with Pool(args.nj, initializer=_init_worker, initargs=(str(d), args.seed, args.size)) as pool:
                pool.map(render_job, jobs)
            jobs.sort(key=lambda j: j.uttid)
            files = [(j, _paths(d, j)) for j in jobs]
            (d / "video.scp").write_text("".join(f"{j.uttid} {f['video']}\n" for j, f in files))
            (d / "landmarks.scp").write_text("".join(f"{j.uttid} {f['landmarks']}\n" for j, f in files))
            (d / "text").write_text("".join(f"{j.uttid} {j.text}\n" for j in jobs), encoding="utf-8")
            subprocess.run([py, "-m", "vallr_pin.bin.lip_roi", "--video-scp", str(d / "video.scp"), "--text",
                            str(d / "text"), "--landmarks-scp", str(d / "landmarks.scp"), "--out-dir",
                            str(d / "roi"), *args.roi_opts.split()], check=True, env=env, capture_output=True)
            subprocess.run([py, "-m", "vallr_pin.bin.vsr_inference", "--config", args.decode_config,
                            "--train_config", f"{args.exp}/config.yaml", "--model_file", f"{args.exp}/{args.model}",
                            "--data_path_and_name_and_type", f"{d}/roi/feats.scp,video,kaldi_ark",
                            "--ref_text", str(d / "text"), "--output_dir", str(d / "dec"), "--log_level", "WARNING",
                            *lm_opts],
                           check=True, env=env, capture_output=True)
            results[name] = _score(d / "dec" / "nbest.jsonl")
    # stage 6 decodes the training set, or its --nbest_train_subset (train_sub<N>)
    late = sorted(Path(args.exp).glob("decode_*_*epoch/train*/nbest.jsonl"),
                  key=lambda q: int(q.parts[-3].rsplit("_", 1)[1][: -len("epoch")]))
    if late:
        results[f"seen speakers, seen sentences ({late[-1].parts[-3]}, train set)"] = _score(late[-1])
    for dev in sorted(Path(args.exp).glob(f"decode_*_{Path(args.model).stem}/dev/nbest.jsonl")):
        results["unseen speakers, unseen sentences (dev)"] = _score(dev)
    print(f"{'set':<62} {'utts':>5} {'CER':>7} {'RER':>7} {'VER':>7} | CER points: {'alike':>6} {'misread':>7} "
          f"{'del+ins':>7}")
    for name, r in results.items():
        print(f"{name:<62} {r['n']:>5} {r['cer']:>7.2f} {r['rer']:>7.2f} {r['ver']:>7.2f} | {'':11} "
              f"{r['lips_alike']:>6.2f} {r['misread']:>7.2f} {r['indel']:>7.2f}")
    print("alike: substitutions by a homophone or a same-viseme character (the lips drew the reference's shape; "
          "only the sentence tells them apart); misread: by a character of another viseme; del+ins: characters "
          "lost or added")
    if args.plot:
        plot(results, args.plot)


def plot(results: dict, path: str) -> None:
    """Stacked bars: each set's CER as alike + misread + deletions/insertions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    labels = [n.split(" (")[0].replace(", ", ",\n") for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bottom = [0.0] * len(names)
    for key, label, colour in (("lips_alike", "alike (homophone, same viseme)", "tab:orange"),
                               ("misread", "misread (another viseme)", "tab:blue"),
                               ("indel", "deleted + inserted", "tab:gray")):
        vals = [results[n][key] for n in names]
        ax.bar(labels, vals, bottom=bottom, label=label, color=colour)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for x, total in enumerate(bottom):
        ax.text(x, total + 0.8, f"{total:.1f}", ha="center", fontsize=9)
    ax.set_ylabel("CER (%)")
    ax.set_title("Stage I (dual model) CER by kind of error: seen/unseen speakers x sentences", fontsize=10)
    ax.set_ylim(0, max(bottom) * 1.3)  # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

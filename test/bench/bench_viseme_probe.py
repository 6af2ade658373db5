#!/usr/bin/env python3
"""Oracle probe: how much of the lips can be read from the mini recipe's stage-1 ROIs at all?

The renderer knows, for every frame, which syllable is being spoken and the mouth pose it drew. This probe
re-derives those labels for the recipe's own utterances (same seed, speaker and utterance id, so the same
timing as the videos; nothing is re-rendered), takes the ROIs stage 1 wrote (``dump/roi/<set>/feats.scp``:
uint8 (T, H*W), 25 fps) and trains two small CNNs on the *training* speakers only:

    frame probe     one ROI frame -> its 7 pose fields (open, spread, round, ...): R^2 per field on dev
    syllable probe  the frames of one syllable (oracle segmentation, +-2 frames of context, resampled to
                    8 frames) -> its viseme key (initial viseme class + final, as VER counts it): accuracy
                    on dev, i.e. 100 - the VER a recogniser with a perfect segmentation could reach

and prints them beside the majority-class baseline. Dev speakers are unseen, as in the recipe. A syllable probe
far above the recipe's VER says the information is in the ROIs and is lost later (the sequence model, its
data or its training); a low one says the crop or the renderer hides it.

    tools/venv/bin/python test/bench/bench_viseme_probe.py [--recipe egs/mini_cnvsrc/vsr1] [--epochs 12]

Needs the recipe run through stage 1 (it says so and skips otherwise).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
FIELDS_SHOWN = ("open", "spread", "round", "protrude", "teeth", "tongue", "bite")


def frame_labels(uttid: str, text: str, seed: int):
    """(poses (T, P) float32, syllable span list [(start, end, viseme key)]) as the renderer drew them."""
    from vallr_pin.scoring.error_analysis import viseme_key
    from vallr_pin.synth.render import plan_utterance
    from vallr_pin.synth.speakers import sample_speaker
    from vallr_pin.synth.visemes import syllable_spans

    spk_name = uttid.split("_")[0]
    units, _, timing, poses, _ = plan_utterance(text, sample_speaker(seed, int(spk_name[3:]), spk_name), seed, uttid)
    return poses, [(s, e, viseme_key(u.pinyin)) for s, e, u in syllable_spans(units, timing)]


def load_set(recipe: Path, dset: str, seed: int, limit: int):
    import kaldiio

    from vallr_pin.datadir import read_kv

    texts = read_kv(recipe / "data" / dset / "text.orig") if (recipe / "data" / dset / "text.orig").is_file() \
        else read_kv(recipe / "data" / dset / "text")
    raw = {}
    root = recipe / "downloads" / "mini_cnvsrc" / dset
    for utt in texts:  # the renderer spoke the raw sentence (punctuation = pauses), not the normalised text
        p = root / utt.split("_")[0] / f"{utt}.txt"
        raw[utt] = p.read_text(encoding="utf-8").strip() if p.is_file() else texts[utt]
    feats = kaldiio.load_scp(str(recipe / "dump" / "roi" / dset / "feats.scp"))
    out = []
    for k, utt in enumerate(sorted(feats.keys())):
        if limit and k >= limit:
            break
        roi = np.asarray(feats[utt])
        poses, spans = frame_labels(utt, raw[utt], seed)
        T = min(len(roi), len(poses))
        out.append((utt, roi[:T], poses[:T], [s for s in spans if s[0] < T], len(roi) != len(poses)))
    return out


def syllable_segments(data, side: int, ctx: int = 2, n: int = 8):
    xs, ys = [], []
    for _, roi, _, spans, _ in data:
        T = len(roi)
        v = roi.reshape(T, side, side).astype(np.float32) / 255.0
        v = (v - v.mean()) / (v.std() + 1e-6)
        for s, e, key in spans:
            idx = np.clip(np.round(np.linspace(s - ctx, e - 1 + ctx, n)).astype(int), 0, T - 1)
            xs.append(v[idx])
            ys.append(key)
    return np.stack(xs), ys


def train_probe(net, x_tr, y_tr, x_ev, epochs: int, loss_fn, bs: int = 128, lr: float = 2e-3):
    import torch

    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(x_tr) + bs - 1) // bs))
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(x_tr), bs):
            b = perm[i:i + bs]
            opt.zero_grad()
            loss_fn(net(x_tr[b]), y_tr[b]).backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        return torch.cat([net(x_ev[i:i + 512]) for i in range(0, len(x_ev), 512)])


def cnn(in_ch: int, n_out: int):
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(in_ch, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(256, n_out))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=REPO / "egs" / "mini_cnvsrc" / "vsr1")
    p.add_argument("--seed", type=int, default=2026, help="the corpus seed (local/data.sh --seed)")
    p.add_argument("--train-set", default="train")
    p.add_argument("--eval-set", default="dev")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--limit", type=int, default=0, help="at most this many utterances per set (0: all)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if not (args.recipe / "dump" / "roi" / args.train_set / "feats.scp").is_file():
        print(f"skipped: no {args.recipe}/dump/roi/{args.train_set}/feats.scp; run the mini recipe through stage 1")
        return
    t0 = time.perf_counter()
    import os

    args.recipe = args.recipe.resolve()
    os.chdir(args.recipe)  # feats.scp paths are relative to the recipe directory
    tr = load_set(args.recipe, args.train_set, args.seed, args.limit)
    ev = load_set(args.recipe, args.eval_set, args.seed, args.limit)
    side = int(round(np.sqrt(tr[0][1].shape[1])))
    mism = sum(m for *_, m in tr + ev)  # stage 1 kept a different frame count than the renderer drew
    print(f"{len(tr)} {args.train_set} / {len(ev)} {args.eval_set} utterances, ROI {side}x{side}; "
          f"label/ROI length mismatches: {mism}")

    # frame probe: pose regression
    def frames(data):
        x = np.concatenate([r for _, r, _, _, _ in data]).reshape(-1, 1, side, side).astype(np.float32) / 255.0
        y = np.concatenate([po for _, _, po, _, _ in data]).astype(np.float32)
        return torch.from_numpy((x - 0.42) / 0.17), torch.from_numpy(y)

    xf_tr, yf_tr = frames(tr)
    xf_ev, yf_ev = frames(ev)
    pred = train_probe(cnn(1, yf_tr.shape[1]), xf_tr, yf_tr, xf_ev, max(3, args.epochs // 3),
                       torch.nn.functional.mse_loss)
    var = yf_ev.var(0)
    r2 = 1 - ((pred - yf_ev) ** 2).mean(0) / torch.clamp(var, min=1e-8)
    print("frame probe (one ROI frame -> pose), R^2 on unseen speakers: "
          + ", ".join(f"{n} {float(v):.2f}" for n, v in zip(FIELDS_SHOWN, r2)))

    # syllable probe: viseme key with oracle segmentation
    xs_tr, ys_tr = syllable_segments(tr, side)
    xs_ev, ys_ev = syllable_segments(ev, side)
    keys = sorted(set(ys_tr))
    kid = {k: i for i, k in enumerate(keys)}
    y_tr = torch.tensor([kid[k] for k in ys_tr])
    seen = [i for i, k in enumerate(ys_ev) if k in kid]
    y_ev = torch.tensor([kid[ys_ev[i]] for i in seen])
    logits = train_probe(cnn(xs_tr.shape[1], len(keys)), torch.from_numpy(xs_tr), y_tr,
                         torch.from_numpy(xs_ev[seen]), args.epochs, torch.nn.functional.cross_entropy)
    acc = float((logits.argmax(1) == y_ev).float().mean()) * 100
    maj = collections.Counter(ys_tr).most_common(1)[0]
    maj_acc = 100.0 * sum(1 for i in seen if ys_ev[i] == maj[0]) / max(1, len(seen))
    ini_acc = 100.0 * float(np.mean([keys[int(a)][0] == keys[int(b)][0] for a, b in zip(logits.argmax(1), y_ev)]))
    fin_acc = 100.0 * float(np.mean([keys[int(a)][1] == keys[int(b)][1] for a, b in zip(logits.argmax(1), y_ev)]))
    print(f"syllable probe (oracle segments -> viseme key, {len(keys)} keys, {len(xs_tr)} train / {len(seen)} "
          f"{args.eval_set} syllables; {len(ys_ev) - len(seen)} with a key unseen in training left out):")
    print(f"  accuracy {acc:.1f}% (initial class {ini_acc:.1f}%, final {fin_acc:.1f}%); majority class "
          f"{maj[0]} {maj_acc:.1f}%; oracle-segmentation VER ~ {100 - acc:.1f}%")
    print(f"probe time {time.perf_counter() - t0:.0f} s ({args.threads} threads)")


if __name__ == "__main__":
    main()

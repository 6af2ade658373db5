#!/usr/bin/env python3
"""Peak memory of one training step of a paper-scale config, per video frame, in fp32 and with bf16 autocast.

For each batch size (``--batch`` utterances of ``--utt_frames`` frames, 88x88 crops, ``utt_frames // 8``
characters each as in CNVSRC) a fresh process builds the model from ``--config`` with ``VSRTask.build_model``,
makes one small Adam step (so the optimizer state exists), then measures one forward + backward + step: the peak
resident memory during it minus the resident memory before it (glibc is told to mmap every allocation above
64 KiB, so freed tensors leave the resident set and the peak is that of live tensors). A straight line through
(frames, peak) gives the activation memory per frame (slope) and the per-step constant (gradients, workspace).
The activation memory a frame needs is a property of the model, not of the device, so the slope measured on a
CPU also sizes a GPU batch; CPU autocast keeps a few more ops in fp32 than CUDA autocast does, so the bf16 figure
is an upper bound for a GPU.

It then prints the largest ``batch_bins`` (ESPnet's length batches: padded video frames per GPU, the recipe's
shape file is the video's) that keeps weights + gradients + Adam moments + activations under
``(1 - headroom) x --gpu_gb``.

    python test/bench/bench_train_memory.py                                   # paper dual config, 40/80/120 frames
    python test/bench/bench_train_memory.py --config egs/cnvsrc/vsr1/conf/train_vsr_dual_resnet18.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(config: Path, batch: int, utt_frames: int, amp: bool, crop: int) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train_step import build

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = build(config, 4000, 400, crop, Path(tmp))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def make(b: int, t: int) -> dict:
        tokens = max(2, t // 8)
        return dict(video=torch.randn(b, t, crop * crop), video_lengths=torch.full((b,), t),
                    text=torch.randint(2, 4002, (b, tokens)), text_lengths=torch.full((b,), tokens),
                    text_pinyin=torch.randint(2, 402, (b, tokens)), text_pinyin_lengths=torch.full((b,), tokens))

    def step(data: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _, _ = model(**data)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(make(1, 16))  # Adam's moments now exist, as in every step of a real run
    opt.zero_grad()  # set_to_none: gradients are freed between steps, as ESPnet's trainer leaves them
    data = make(batch, utt_frames)
    before = rss_bytes()
    t0 = time.perf_counter()
    step(data)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"frames": batch * utt_frames, "amp": amp, "peak_step_bytes": peak - before, "seconds": seconds,
            "params": sum(p.numel() for p in model.parameters())}


def fit(points):
    """Least-squares line (intercept, slope) through (x, y) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - slope * mx, slope


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "egs/cnvsrc/vsr1/conf/train_vsr_dual.yaml")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 2, 3], help="utterances per measured batch")
    p.add_argument("--utt_frames", type=int, default=40, help="frames per utterance")
    p.add_argument("--crop", type=int, default=88, help="training crop side (preprocessor_conf.crop_size)")
    p.add_argument("--gpu_gb", type=float, default=80.0, help="GPU memory to size batch_bins for (GB, 1e9 bytes)")
    p.add_argument("--headroom", type=float, default=0.2, help="share of --gpu_gb left free")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        batch, amp = args.child.split(",")
        print(json.dumps(child(args.config, int(batch), args.utt_frames, amp == "1", args.crop)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    rows = []
    for amp in (False, True):
        for b in args.batch:
            out = subprocess.run([sys.executable, __file__, "--config", str(args.config), "--utt_frames",
                                  str(args.utt_frames), "--crop", str(args.crop), "--child", f"{b},{int(amp)}"],
                                 capture_output=True, text=True, env=env, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{'bf16 autocast' if amp else 'fp32         '} {r['frames']:4d} frames: step peak "
                  f"{r['peak_step_bytes'] / 2**20:8.1f} MiB, {r['seconds']:.1f} s", flush=True)
    params = rows[0]["params"]
    states = 12 * params  # fp32 weights + Adam's two moments (gradients are in the fitted constant)
    print(f"config {args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config}: "
          f"{params / 1e6:.1f}M parameters; weights + Adam moments {states / 2**30:.2f} GiB")
    budget = (1 - args.headroom) * args.gpu_gb * 1e9
    for amp in (False, True):
        const, per_frame = fit([(r["frames"], r["peak_step_bytes"]) for r in rows if r["amp"] == amp])
        bins = int((budget - states - max(const, 0)) / per_frame)
        print(f"{'bf16 autocast' if amp else 'fp32'}: {per_frame / 2**20:.2f} MiB per frame + {const / 2**30:.2f} "
              f"GiB per step; batch_bins <= {bins} frames for {args.gpu_gb:.0f} GB with {args.headroom:.0%} headroom")


if __name__ == "__main__":
    main()

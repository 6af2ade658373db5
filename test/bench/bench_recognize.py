#!/usr/bin/env python3
"""Real-time factor of a packed model on CPU, split into ROI (decode + landmarks + crop), VSR (beam searches,
pinyin rescoring) and LLM (batched refinement): seconds of computing per second of video, per part.

    PYTHONPATH=. tools/venv/bin/python test/bench/bench_recognize.py --model packed/vsr_dual \\
        --video-scp egs/mini_cnvsrc/vsr1/data/test/video.scp [--landmarks .../landmarks.scp] [--threads 1]

Model loading is excluded (one warm-up video first); the LLM's batch time is shared equally by its videos, as
recognize reports it. The CPU calibration of FACTS.md is printed first: quote it beside the figures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def calibration() -> float:
    import torch

    torch.set_num_threads(1)
    a = torch.randn(1024, 1024)
    [a @ a for _ in range(3)]
    t = time.perf_counter()
    [a @ a for _ in range(20)]
    return round(2 * 1024 ** 3 * 20 / (time.perf_counter() - t) / 1e9, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="packed model directory (vallr_pin.bin.pack_model)")
    p.add_argument("--video-scp", required=True, help="<utt> <video> list to recognise")
    p.add_argument("--landmarks", default=None, help="<utt> <landmarks .npy> list (skips the detector)")
    p.add_argument("--llm-model", default=None, help="base LLM directory (default: the packed path)")
    p.add_argument("--no-llm", action="store_true", help="VSR only")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(f"calibration: {calibration()} GFLOPS (1 thread, 1024x1024 fp32 matmul); {os.cpu_count()} cores visible")

    from vallr_pin import Recognizer
    from vallr_pin.datadir import read_kv
    from vallr_pin.recognizer import VideoInput

    lms = read_kv(args.landmarks) if args.landmarks else {}
    items = [VideoInput(v, u, lms.get(u)) for u, v in read_kv(args.video_scp).items()]
    rec = Recognizer.from_pretrained(args.model, llm_model=args.llm_model, use_llm=False if args.no_llm else None,
                                     threads=args.threads)
    t0 = time.perf_counter()
    rec.load()
    rec.recognize(items[:1])  # warm-up: first-call allocations, detector start
    print(f"model load + warm-up: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    results = rec.recognize(items)
    wall = time.perf_counter() - t0
    ok = [r for r in results if r.ok]
    video_s = sum(r.source_frames / r.source_fps for r in ok)
    parts = {k: sum(r.timings.get(k, 0.0) for r in ok) for k in ("roi", "vsr", "llm")}
    print(f"{len(ok)}/{len(results)} videos, {video_s:.1f} s of video, wall {wall:.1f} s"
          f" ({'with' if rec.llm_model else 'without'} LLM, {args.threads} torch thread(s))")
    print(f"{'part':6s} {'seconds':>8s} {'RTF':>7s}")
    for k, v in parts.items():
        print(f"{k:6s} {v:8.2f} {v / video_s:7.3f}")
    print(f"{'total':6s} {sum(parts.values()):8.2f} {sum(parts.values()) / video_s:7.3f}")


if __name__ == "__main__":
    main()

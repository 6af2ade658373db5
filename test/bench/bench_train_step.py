#!/usr/bin/env python3
"""Training-step time of the dual-decoder model vs the char-only model (a = 1) on the same batch.

Both models come from the task's real configs (``--dual_config`` / ``--char_config``), are built by
``VSRTask.build_model`` and trained with Adam on one fixed random batch; the figure is the median of
forward + backward + optimizer step over ``--steps`` steps after ``--warmup``. Prints the pinyin branch's extra
cost (target <= 15 %) and video frames per second.

    python test/bench/bench_train_step.py                                   # tiny configs, CPU
    python test/bench/bench_train_step.py --scale paper --device cuda --batch 8 --frames 75
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
CONF = REPO / "egs" / "TEMPLATE" / "vsr1" / "conf"


def build(config: Path, n_char: int, n_py: int, crop: int, workdir: Path):
    from vallr_pin.tasks.vsr import VSRTask

    (workdir / "c.txt").write_text("\n".join(["<blank>", "<unk>"] + [chr(0x4E00 + i) for i in range(n_char)]
                                             + ["<sos/eos>"]) + "\n", encoding="utf-8")
    (workdir / "p.txt").write_text("\n".join(["<blank>", "<unk>"] + [f"py{i}" for i in range(n_py)]
                                             + ["<sos/eos>"]) + "\n", encoding="utf-8")
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    cfg["preprocessor_conf"]["crop_size"] = crop
    path = workdir / config.name
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    args = VSRTask.get_parser().parse_args(["--config", str(path), "--token_list", str(workdir / "c.txt"),
                                            "--pinyin_token_list", str(workdir / "p.txt"),
                                            "--output_dir", str(workdir)])
    return VSRTask.build_model(args)


def time_steps(model, batch, steps: int, warmup: int, device: str) -> float:
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = {k: v.to(device) for k, v in batch.items()}
    times = []
    for i in range(warmup + steps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _, _ = model(**batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "paper"], default="tiny",
                        help="tiny: train_vsr_*_tiny.yaml; paper: train_vsr_{dual,char}.yaml")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=4, help="utterances per batch")
    parser.add_argument("--frames", type=int, default=50, help="frames per utterance (25 fps)")
    parser.add_argument("--crop", type=int, default=88, help="ROI side after cropping, pixels")
    parser.add_argument("--tokens", type=int, default=20, help="characters (= pinyin syllables) per utterance")
    parser.add_argument("--n_char", type=int, default=3000, help="character vocabulary size")
    parser.add_argument("--n_pinyin", type=int, default=400, help="pinyin vocabulary size (paper: 397)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    suffix = "_tiny" if args.scale == "tiny" else ""
    batch = dict(
        video=torch.randn(args.batch, args.frames, args.crop * args.crop),
        video_lengths=torch.full((args.batch,), args.frames),
        text=torch.randint(2, args.n_char + 2, (args.batch, args.tokens)),
        text_lengths=torch.full((args.batch,), args.tokens),
        text_pinyin=torch.randint(2, args.n_pinyin + 2, (args.batch, args.tokens)),
        text_pinyin_lengths=torch.full((args.batch,), args.tokens),
    )
    with tempfile.TemporaryDirectory() as tmp:
        dual = build(CONF / f"train_vsr_dual{suffix}.yaml", args.n_char, args.n_pinyin, args.crop, Path(tmp))
        char = build(CONF / f"train_vsr_char{suffix}.yaml", args.n_char, args.n_pinyin, args.crop, Path(tmp))
    t_char = time_steps(char, batch, args.steps, args.warmup, args.device)
    t_dual = time_steps(dual, batch, args.steps, args.warmup, args.device)
    frames = args.batch * args.frames
    n = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"scale={args.scale} device={args.device} batch={args.batch}x{args.frames} frames crop={args.crop} "
          f"threads={args.threads}")
    print(f"char-only: {n(char):.2f}M params, {t_char * 1000:.1f} ms/step, {frames / t_char:.0f} frames/s")
    print(f"dual     : {n(dual):.2f}M params, {t_dual * 1000:.1f} ms/step, {frames / t_dual:.0f} frames/s")
    print(f"pinyin branch extra time: {100 * (t_dual / t_char - 1):+.1f}% (target <= 15%)")


if __name__ == "__main__":
    main()

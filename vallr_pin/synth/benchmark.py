"""Benchmark of the viseme renderer: frames/s (draw only, and draw + mp4 encode) on one core, and the rate at
which mediapipe FaceMesh finds the rendered faces with the renderer's mouth corners vs FaceMesh's 61/291.

    python -m vallr_pin.synth.benchmark --size 160 --speakers 8
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from vallr_pin.synth.render import render_text, write_mp4
from vallr_pin.synth.speakers import sample_speaker

SENTENCES = ["今天天气很好我们去公园散步", "我喜欢学习中文", "你好很高兴认识你", "这本书是我朋友送给我的"]


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=160, help="frame side in pixels (default: 160)")
    p.add_argument("--speakers", type=int, default=8, help="speakers to render and detect (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--no-facemesh", action="store_true", help="skip the FaceMesh detection part")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    cv2.setNumThreads(1)
    rendered = []
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(args.speakers):
        spk = sample_speaker(args.seed, k + 1)
        rendered.append(render_text(SENTENCES[k % len(SENTENCES)], spk, seed=args.seed, key=f"bench{k}",
                                    size=args.size))
    t_draw, c_draw = time.perf_counter() - t0, time.process_time() - c0
    n = sum(len(r.frames) for r in rendered)
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        for k, r in enumerate(rendered):
            write_mp4(Path(d) / f"{k}.mp4", r.frames)
        t_enc, c_enc = time.perf_counter() - t0, time.process_time() - c0
    # CPU seconds as well as wall: on a shared machine wall time also counts other processes' turns
    print(f"render {args.size}x{args.size}: {n} frames, draw {n / t_draw:.0f} frames/s wall "
          f"({n / c_draw:.0f} per CPU-second), draw+mp4 {n / (t_draw + t_enc):.0f} frames/s wall "
          f"({n / (c_draw + c_enc):.0f} per CPU-second); one process, OpenCV threads=1")
    if args.no_facemesh:
        return
    import mediapipe as mp

    found, total, err, t_fm = 0, 0, [], 0.0
    per_spk = []
    for r in rendered:
        f0 = found
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as fm:
            t0 = time.perf_counter()
            for i, fr in enumerate(r.frames):
                res = fm.process(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
                total += 1
                if res.multi_face_landmarks:
                    found += 1
                    lm = res.multi_face_landmarks[0].landmark
                    for j, c in ((61, 3), (291, 4)):
                        err.append(np.hypot(lm[j].x * args.size - r.landmarks[i, c, 0],
                                            lm[j].y * args.size - r.landmarks[i, c, 1]))
            t_fm += time.perf_counter() - t0
        per_spk.append((found - f0) / len(r.frames))
    print(f"FaceMesh (static_image_mode): found {found}/{total} frames = {100 * found / total:.1f}% "
          f"(per speaker min {100 * min(per_spk):.0f}%), {total / t_fm:.0f} frames/s; mouth-corner distance "
          f"renderer vs FaceMesh 61/291: median {np.median(err):.2f} px, p90 {np.percentile(err, 90):.2f} px")


if __name__ == "__main__":
    main()

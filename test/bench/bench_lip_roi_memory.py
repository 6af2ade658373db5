#!/usr/bin/env python3
"""Benchmark stage 1's peak memory against clip length: peak RSS of one lip_roi job on one 640x480 clip.

For each duration (default 2, 20 and 60 s at 25 fps) it writes a clip of the moving real face (skimage's
astronaut photo, test/video_testdata.py), then runs ``python -m vallr_pin.bin.lip_roi`` on it in a fresh
process, as stage 1 does (FaceMesh on every 3rd frame, the recipe default), and prints that process's peak
resident memory (``ru_maxrss`` of the child) and its CPU time; then again with precomputed landmarks
(``--landmarks-scp``: the photo's 5 points moved by the clip's known warp), where no detector runs. Frames
stream through decoding, landmark detection and cropping in chunks (vallr_pin.video.pipeline), so stage 1's
own arrays do not grow with the duration beyond the spool's 64 MB of grey frames held in memory and the
output (9 KB a frame at 96x96); what mediapipe's FaceMesh graph holds is its own.

    PYTHONPATH=. tools/venv/bin/python test/bench/bench_lip_roi_memory.py [--seconds 2 20 60] [--code DIR]

``--code DIR`` runs the jobs with DIR first on PYTHONPATH (e.g. an older checkout's tree) to compare.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/video_testdata.py
import numpy as np  # noqa: E402
from video_testdata import apply_affine, write_astronaut_video  # noqa: E402

# 5 points of skimage's astronaut photo (512x512) as FaceMesh finds them, SPEC order
PHOTO_LANDMARKS = np.array([[203.5, 102.3], [246.6, 104.6], [222.7, 131.6], [200.4, 139.1], [246.0, 141.9]])

REPO = Path(__file__).resolve().parents[2]


def run_child(code, args):
    """(peak RSS MB, CPU s) of one lip_roi process."""
    script = ("import resource, sys; from vallr_pin.bin import lip_roi; lip_roi.main(sys.argv[1:]); "
              "u = resource.getrusage(resource.RUSAGE_SELF); "
              "print('RUSAGE', u.ru_maxrss / 1024, u.ru_utime + u.ru_stime, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", script, *args], env=dict(os.environ, PYTHONPATH=code),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"lip_roi {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    _, peak, cpu = [ln for ln in proc.stderr.splitlines() if ln.startswith("RUSAGE")][-1].split()
    return float(peak), float(cpu)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, nargs="+", default=[2, 20, 60], help="clip durations")
    p.add_argument("--size", type=int, default=480, help="frame height (width 4/3 of it)")
    p.add_argument("--code", default=str(REPO), help="tree whose vallr_pin runs the jobs")
    p.add_argument("--args", default="", help="more lip_roi options, e.g. '--chunk-size 16'")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_lip_roi_memory."))
    width = a.size * 4 // 3
    print(f"one lip_roi job per clip, {width}x{a.size} mp4v at 25 fps, --detect-every 3; code: {a.code}")
    print(f"{'seconds':>8s} {'frames':>7s} {'landmarks':>12s} {'peak RSS MB':>12s} {'CPU s':>7s}")
    for sec in sorted(a.seconds):
        n = int(round(sec * 25))
        video = tmp / f"clip{n}.mp4"
        warps = write_astronaut_video(video, num_frames=n, size=a.size, width=width, scale=1.6 * a.size / 320)
        np.save(tmp / f"lm{n}.npy", np.stack([apply_affine(m, PHOTO_LANDMARKS) for m in warps]).astype(np.float32))
        (tmp / "video.scp").write_text(f"spk-u{n} {video}\n")
        (tmp / "landmarks.scp").write_text(f"spk-u{n} {tmp / f'lm{n}.npy'}\n")
        for name, opts in (("FaceMesh", ["--detect-every", "3"]), ("precomputed", ["--landmarks-scp", str(tmp / "landmarks.scp")])):
            peak, cpu = run_child(a.code, ["--video-scp", str(tmp / "video.scp"), "--out-dir", str(tmp / f"out{n}{name}"),
                                           *opts, *a.args.split()])
            print(f"{sec:8.0f} {n:7d} {name:>12s} {peak:12.0f} {cpu:7.1f}", flush=True)
        video.unlink()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark stage 1's peak memory against clip length: peak RSS of one lip_roi job on one 640x480 clip.

For each duration (default 2, 20 and 60 s at 25 fps) it writes a clip of the moving real face (skimage's
astronaut photo, test/video_testdata.py), then runs ``python -m vallr_pin.bin.lip_roi`` on it in a fresh
process, as stage 1 does (FaceMesh on every 3rd frame, the recipe default), and records that process's peak
resident memory (``ru_maxrss`` of the child) and its CPU time; then with precomputed landmarks
(``--landmarks-scp``: the photo's 5 points moved by the clip's known warp, no detector runs), and with
``--decode-max-side 320`` (frames scaled while decoding, by decord). It prints one row per clip length and,
per setting, the ratio of the longest clip's peak to the shortest's: 1.0 is memory flat in the clip's length.

Frames are decoded only when asked for (vallr_pin.video.decode.VideoClip.iter_chunks), handed to the detector
in chunks and held in a spool (16 MB in memory, then a temporary file), so what grows with the duration is the
output (9 KB a frame at 96x96: 14 MB for 60 s) and the landmarks. Measured on a 2-core host (peak RSS MB),
``--code`` the tree before this change (decord decoding) and after (OpenCV decoding):

    seconds   FaceMesh         precomputed      FaceMesh, max-side 320
          2   263 -> 236       156 -> 142       208 -> 205
         20   491 -> 243       293 -> 145       280 -> 238
         60   785 -> 243       386 -> 155       422 -> 398
    60 / 2   2.99 -> 1.03     2.47 -> 1.09     2.03 -> 1.94

decord's read-ahead depends on thread timing, so the "before" figures vary from run to run (the issue measured
2.06 GB at 60 s, another run 941 MB); ``--decode-max-side`` still decodes through decord's scaler and still
grows with the clip.

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


def run_child(code, args, cwd):
    """(peak RSS MB, CPU s) of one lip_roi process (run in ``cwd``: ``python -c`` puts the current directory
    first on sys.path, which would shadow ``code`` when run from a checkout)."""
    script = ("import resource, sys; from vallr_pin.bin import lip_roi; lip_roi.main(sys.argv[1:]); "
              "u = resource.getrusage(resource.RUSAGE_SELF); "
              "print('RUSAGE', u.ru_maxrss / 1024, u.ru_utime + u.ru_stime, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", script, *args], env=dict(os.environ, PYTHONPATH=code),
                          cwd=cwd, capture_output=True, text=True)
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
    settings = {"FaceMesh": ["--detect-every", "3"],
                "precomputed": ["--landmarks-scp", str(tmp / "landmarks.scp")],
                "FaceMesh, max-side 320": ["--detect-every", "3", "--decode-max-side", "320"]}
    print(f"one lip_roi job per clip, {width}x{a.size} mp4v at 25 fps; peak RSS MB (CPU s); code: {a.code}")
    print(f"{'seconds':>8s} {'frames':>7s}" + "".join(f" {name:>24s}" for name in settings))
    peaks = {name: [] for name in settings}
    for sec in sorted(a.seconds):
        n = int(round(sec * 25))
        video = tmp / f"clip{n}.mp4"
        warps = write_astronaut_video(video, num_frames=n, size=a.size, width=width, scale=1.6 * a.size / 320)
        np.save(tmp / f"lm{n}.npy", np.stack([apply_affine(m, PHOTO_LANDMARKS) for m in warps]).astype(np.float32))
        (tmp / "video.scp").write_text(f"spk-u{n} {video}\n")
        (tmp / "landmarks.scp").write_text(f"spk-u{n} {tmp / f'lm{n}.npy'}\n")
        row = f"{sec:8.0f} {n:7d}"
        for k, (name, opts) in enumerate(settings.items()):
            peak, cpu = run_child(a.code, ["--video-scp", str(tmp / "video.scp"), "--out-dir", str(tmp / f"out{n}.{k}"),
                                           *opts, *a.args.split()], tmp)
            peaks[name].append(peak)
            row += f" {f'{peak:.0f} ({cpu:.1f})':>24s}"
        print(row, flush=True)
        video.unlink()
    print(f"{'longest/shortest':>16s}" + "".join(f" {v[-1] / v[0]:24.2f}" for v in peaks.values()))


if __name__ == "__main__":
    main()

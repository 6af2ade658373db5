#!/usr/bin/env python3
"""Benchmark stage 1 (video -> landmarks -> 96x96 mouth ROI -> ark): frames per second per CPU core.

Runs the production code path (``vallr_pin.video.roi_dump.run_job``) in this single process on a few copies of a
real-face clip (skimage's astronaut photo, moving), once per landmark configuration, and prints CPU time per
frame split into decode / landmarks / crop / write. Figures are frames per *CPU*-second of this process
(all its threads counted: mediapipe's TFLite runtime may use helper threads), i.e. per core; wall-clock
frames/s are printed too. cv2 and decord run with 1 thread, as in a launcher job.

Then, per landmark setting, how far the crop moves from the crop made with FaceMesh on every frame, and from
the true mouth position (the clip is a known warp of the photo): the mouth-corner midpoint's distance in pixels
of the 96x96 crop, mean and max over the frames.

    PYTHONPATH=. tools/venv/bin/python test/bench/bench_lip_roi.py [--size 480 --width 640] [--frames 100] [--utts 3]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/video_testdata.py
from video_testdata import apply_affine, astronaut_rgb, mouth_geometry, write_astronaut_video  # noqa: E402

from vallr_pin.bin import lip_roi  # noqa: E402
from vallr_pin.video.pipeline import RoiConfig  # noqa: E402
from vallr_pin.video.roi_dump import run_job  # noqa: E402
from vallr_pin.datadir import write_kv  # noqa: E402
from vallr_pin.video.decode import read_video, rgb_to_grey  # noqa: E402
from vallr_pin.video.landmarks import get_detector  # noqa: E402
from vallr_pin.video.lip_roi import crop_mouth_rois  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=480, help="video frame height in pixels")
    p.add_argument("--width", type=int, default=640, help="video frame width in pixels (640x480: VGA, as CNVSRC)")
    p.add_argument("--frames", type=int, default=100, help="frames per clip (25 fps)")
    p.add_argument("--utts", type=int, default=3, help="clips per configuration")
    p.add_argument("--roi-size", type=int, default=96)
    a = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_lip_roi."))
    video, lms, warps = {}, {}, {}
    for i in range(a.utts):
        path = tmp / f"u{i}.mp4"
        warps[f"spk-u{i}"] = write_astronaut_video(path, num_frames=a.frames, size=a.size, width=a.width,
                                                   scale=1.6 * a.size / 320, rot_deg=5 + i)
        video[f"spk-u{i}"] = str(path)
        lm = get_detector("mediapipe").detect(read_video(path))
        np.save(tmp / f"u{i}.npy", lm)
        lms[f"spk-u{i}"] = str(tmp / f"u{i}.npy")
    write_kv(tmp / "video.scp", video)
    write_kv(tmp / "landmarks.scp", lms)

    configs = [
        ("mediapipe, every frame", []),
        ("mediapipe, detect-max-side 256", ["--detect-max-side", "256"]),
        ("mediapipe, detect-every 2", ["--detect-every", "2"]),
        ("mediapipe, detect-every 3", ["--detect-every", "3"]),
        ("mediapipe, detect-every 4", ["--detect-every", "4"]),
        ("mediapipe, decode-max-side 480", ["--decode-max-side", "480"]),
        ("mediapipe, decode 480, detect-every 2", ["--decode-max-side", "480", "--detect-every", "2"]),
        ("mediapipe, decode 480, detect-every 3", ["--decode-max-side", "480", "--detect-every", "3"]),
        ("precomputed landmarks.scp", ["--landmarks-scp", str(tmp / "landmarks.scp")]),
        ("precomputed, decode-max-side 480", ["--landmarks-scp", str(tmp / "landmarks.scp"), "--decode-max-side", "480"]),
    ]
    print(f"clips: {a.utts} x {a.frames} frames, {a.width}x{a.size} mp4v, ROI {a.roi_size}x{a.roi_size}; "
          f"CPU: {os.cpu_count()} cores visible, figures per core (process CPU time)")
    header = f"{'configuration':34s} {'decode':>8s} {'landmk':>8s} {'crop':>8s} {'write':>8s} {'total':>8s} {'wall':>8s}"
    print("frames per CPU-second of each part (total = whole stage); wall = frames per wall-clock second")
    print(header)
    for name, extra in configs:
        args = lip_roi.get_parser().parse_args(
            ["--video-scp", str(tmp / "video.scp"), "--out-dir", str(tmp / "out"), "--roi-size", str(a.roi_size)] + extra
        )
        for f in (tmp / "out").glob("feats.done"):
            f.unlink()
        run_job(RoiConfig.from_namespace(args), args.video_scp, args.out_dir, args.job_id, args.landmarks_scp)  # warm-up: imports, model load, file cache
        (tmp / "out" / "feats.done").unlink()
        w0, c0 = time.perf_counter(), time.process_time()
        st = run_job(RoiConfig.from_namespace(args), args.video_scp, args.out_dir, args.job_id, args.landmarks_scp)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        n = st["frames"]
        assert n == a.utts * a.frames, st

        def fps(sec):
            return f"{n / sec:8.0f}" if sec > 0 else f"{'inf':>8s}"

        print(f"{name:34s} {fps(st['decode'])} {fps(st['landmarks'])} {fps(st['crop'])} {fps(st['write'])} {fps(cpu)} {fps(wall)}")

    photo = get_detector("mediapipe").detect(astronaut_rgb()[None])[0]
    print(f"crop accuracy: mouth midpoint in the {a.roi_size}x{a.roi_size} crop, px (mean / max over frames)")
    print(f"{'landmarks':34s} {'vs every-frame crop':>20s} {'vs true position':>18s}")
    settings = [("FaceMesh every frame", {}), ("detect-every 2", {"detect_every": 2}),
                ("detect-every 3", {"detect_every": 3}), ("detect-every 4", {"detect_every": 4}),
                ("detect-max-side 256", {"max_side": 256})]
    mids = {}
    for name, kw in settings:
        d_ref, d_true = [], []
        for utt, path in video.items():
            frames = read_video(path)
            _, tf = crop_mouth_rois(rgb_to_grey(frames), get_detector("mediapipe", **kw).detect(frames),
                                    roi_size=a.roi_size, return_transforms=True)
            true = [apply_affine(w, photo[3:5]) for w in warps[utt]]
            mid = np.stack([mouth_geometry(apply_affine(tf[t], true[t]))[0] for t in range(len(tf))])
            mids[name, utt] = mid
            d_ref.append(np.linalg.norm(mid - mids["FaceMesh every frame", utt], axis=1))
            d_true.append(np.linalg.norm(mid - (a.roi_size - 1) / 2.0, axis=1))
        r, t = np.concatenate(d_ref), np.concatenate(d_true)
        print(f"{name:34s} {r.mean():9.2f} / {r.max():5.2f}    {t.mean():8.2f} / {t.max():5.2f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage 1: video -> face landmarks -> aligned grey mouth ROI (25 fps) -> Kaldi ark/scp, one job of N.

Per job (``--job-id J``) it reads ``--video-scp`` (usually ``<data>/split<N>/<J>/video.scp``) and writes in
``--out-dir`` feats.J.{ark,scp,done}, utt2num_frames.J, feats_shape.J and failed.J (``<utt> <reason>``);
without ``--job-id`` the same names without ``.J``. ``--merge --out-dir D --nj N`` concatenates the N jobs'
files into D/{feats.scp, utt2num_frames, feats_shape, failed}, sorted, atomically. The per-utterance crop is
:mod:`vallr_pin.video.pipeline` (also what ``vallr_pin.bin.recognize`` runs); the job files, their crash
safety and the done markers are :mod:`vallr_pin.video.roi_dump`.
"""

from __future__ import annotations

import argparse
import logging

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.video.pipeline import RoiConfig
from vallr_pin.video.roi_dump import merge_jobs, run_job


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Extract aligned grey mouth ROIs (25 fps) from videos into kaldiio ark/scp (one job), "
        "or merge the per-job outputs with --merge.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--video-scp", help="<utt> <video path> list of this job (required unless --merge)")
    p.add_argument(
        "--landmarks-scp",
        help="<utt> <landmarks .npy> list of precomputed float (T,5,2) landmarks (SPEC order, pixels of the "
        "original frames; T = source or 25-fps frame count). If given, no detector runs.",
    )
    p.add_argument(
        "--detector",
        default="mediapipe",
        help="landmark detector when --landmarks-scp is not given: a registered name (mediapipe) or "
        "'package.module:ClassName' of a vallr_pin.video.landmarks.LandmarkDetector subclass",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=1,
        help="run the detector on every k-th frame only (and the last one), interpolating in between; "
        "1 = every frame. Speed option for the mediapipe detector.",
    )
    p.add_argument(
        "--detect-max-side",
        type=int,
        default=None,
        help="downscale frames whose longer side exceeds this many pixels before landmark detection "
        "(landmarks are mapped back; the crop is cut from the decoded frame). Measured no faster; prefer "
        "--decode-max-side",
    )
    p.add_argument("--text", help="<utt> <text> file; utterances with fewer frames than characters fail (CTC needs T >= L)")
    p.add_argument("--out-dir", required=True, help="output directory (e.g. dump/roi/<set>)")
    p.add_argument("--job-id", type=int, default=None, help="job number J: outputs are named feats.J.ark etc.")
    p.add_argument("--roi-size", type=int, default=96, help="side of the square grey mouth crop, pixels")
    p.add_argument(
        "--mouth-width-frac",
        type=float,
        default=0.45,
        help="mouth-corner distance of the reference face as a fraction of the crop width (sets the zoom)",
    )
    p.add_argument("--smooth-window", type=int, default=5, help="frames of the centred moving average on landmarks")
    p.add_argument("--fps", type=float, default=25.0, help="output frame rate (nearest-frame resampling)")
    p.add_argument(
        "--decode-max-side",
        type=int,
        default=None,
        help="let ffmpeg downscale frames whose longer side exceeds this while decoding (e.g. 640 for 1080p "
        "corpora: ~2.5x faster decoding; the mouth must stay wider than roi-size*mouth-width-frac pixels). "
        "Scaled frames come from decord, which decodes ahead: memory then grows with the clip's length",
    )
    p.add_argument("--decode-threads", type=int, default=1, help="decoder threads per job (0: one per core)")
    p.add_argument("--chunk-size", type=int, default=16, help="frames decoded, detected and cropped at a time (bounds memory: 16 frames of 640x480 RGB are 15 MB)")
    p.add_argument("--merge", action="store_true", help="merge jobs 1..--nj of --out-dir into feats.scp etc.")
    p.add_argument("--nj", type=int, default=None, help="number of jobs to merge (with --merge)")
    add_log_level(p)
    return p


def main(argv=None) -> None:
    p = get_parser()
    args = p.parse_args(argv)
    if args.merge and not args.nj:
        p.error("--merge needs --nj N (the number of jobs stage 1 ran)")
    if not args.merge and not args.video_scp:
        p.error("--video-scp is required (or use --merge)")
    with user_errors(args.log_level):
        if args.merge:
            n_ok, n_failed = merge_jobs(args.out_dir, args.nj)
            logging.info(f"{args.out_dir}/feats.scp: {n_ok} utterances, {n_failed} failed (see {args.out_dir}/failed)")
            return
        run_job(RoiConfig.from_namespace(args), args.video_scp, args.out_dir, args.job_id, args.landmarks_scp,
                args.text)


if __name__ == "__main__":
    main()

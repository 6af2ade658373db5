#!/usr/bin/env python3
"""Stage 1: video -> face landmarks -> aligned grey mouth ROI (25 fps) -> Kaldi ark/scp, one job of N.

Per job (``--job-id J``) it reads ``--video-scp`` (usually ``<data>/split<N>/<J>/video.scp``) and writes in
``--out-dir``:

    feats.J.ark          kaldiio numpy payload per utterance: uint8 (T, H*W), row-major frames, grey, 25 fps
    feats.J.scp          <utt> <out-dir>/feats.J.ark:<offset>
    utt2num_frames.J     <utt> T
    feats_shape.J        <utt> T,H*W
    failed.J             <utt> <reason>      (unreadable/corrupt video, no face, too few frames, bad landmarks)
    feats.J.done         fingerprint of the job's inputs and settings (the done marker)

Without ``--job-id`` the same files are written without the ``.J`` part (feats.scp, feats.ark, ...).
``--merge --out-dir D --nj N`` concatenates the N jobs' files into D/{feats.scp, utt2num_frames, feats_shape,
failed}, sorted, atomically.

Why uint8 numpy payloads: a 96x96 grey frame is 9 KB instead of 36 KB as a float Kaldi matrix, and kaldiio
(which ESPnet's loaders use) reads it back as is; Kaldi's own binaries cannot read it, nothing here needs them.

Crash safety: the ark and scp are written as feats.J.ark.tmp / feats.J.scp.tmp and become final (ark renamed,
scp rewritten to point at the final ark, then renamed) only after the last utterance, followed by the other
lists and finally the done marker. A killed job therefore leaves no scp line pointing into a partial ark. On a
re-run a job whose done marker matches its inputs (the video.scp/landmarks/text lines of its utterances and
every option that changes the output; video file contents are not hashed) is skipped; any other job is redone
from scratch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from vallr_pin.datadir import atomic_open, read_kv, write_kv

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
OUTPUT_LISTS = ("utt2num_frames", "feats_shape", "failed")


class UtteranceFailed(Exception):
    """One utterance cannot be turned into features; ``reason`` goes to the ``failed`` list."""


def count_characters(text: str) -> int:
    """Characters a CTC output needs one frame each for: everything except whitespace, punctuation, symbols
    and control characters (stage 1 runs before text normalisation, so raw punctuation may still be there)."""
    return sum(1 for c in text if unicodedata.category(c)[0] not in "ZPSC")


def job_paths(out_dir: str, job_id: Optional[int]) -> Dict[str, str]:
    """File names of one job (``job_id`` None: the un-suffixed names of a single-job run)."""
    sfx = "" if job_id is None else f".{job_id}"
    paths = {
        "ark": os.path.join(out_dir, f"feats{sfx}.ark"),
        "scp": os.path.join(out_dir, f"feats{sfx}.scp"),
        "done": os.path.join(out_dir, f"feats{sfx}.done"),
    }
    paths["ark_tmp"] = paths["ark"] + ".tmp"
    paths["scp_tmp"] = paths["scp"] + ".tmp"
    for name in OUTPUT_LISTS:
        paths[name] = os.path.join(out_dir, f"{name}{sfx}")
    return paths


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
        "corpora: ~2.5x faster decoding; the mouth must stay wider than roi-size*mouth-width-frac pixels)",
    )
    p.add_argument("--decode-threads", type=int, default=1, help="decord decoder threads per job")
    p.add_argument("--chunk-size", type=int, default=64, help="frames decoded at a time (bounds RGB memory)")
    p.add_argument("--merge", action="store_true", help="merge jobs 1..--nj of --out-dir into feats.scp etc.")
    p.add_argument("--nj", type=int, default=None, help="number of jobs to merge (with --merge)")
    p.add_argument("--verbose", type=int, default=1, help="0: warnings only, 1: info, 2: debug (per utterance)")
    return p


def _fingerprint(args, videos: Dict[str, str], landmarks: Optional[Dict[str, str]], texts: Optional[Dict[str, str]]) -> str:
    h = hashlib.sha256()
    settings = {
        k: getattr(args, k)
        for k in (
            "roi_size", "mouth_width_frac", "smooth_window", "fps", "detect_every", "detect_max_side", "decode_max_side"
        )
    }
    settings["detector"] = None if landmarks is not None else args.detector
    h.update(json.dumps(settings, sort_keys=True).encode())
    for utt in sorted(videos):
        # The transcript counts only through its character count (the frames check): stage 2 normalises
        # data/<set>/text in place, and that must not make a re-run of stage 1 redo finished jobs.
        n_chars = count_characters(texts[utt]) if texts and utt in texts else ""
        row = [utt, videos[utt], (landmarks or {}).get(utt, ""), str(n_chars)]
        h.update(("\t".join(row) + "\n").encode("utf-8"))
    return h.hexdigest()


def _job_is_done(paths: Dict[str, str], fingerprint: str) -> bool:
    try:
        with open(paths["done"], encoding="utf-8") as f:
            if f.read().strip() != fingerprint:
                return False
    except FileNotFoundError:
        return False
    return all(os.path.exists(paths[k]) for k in ("scp",) + OUTPUT_LISTS)


def _remove_job_outputs(paths: Dict[str, str]) -> None:
    # Marker and scp first: from here on nothing claims the (possibly partial) ark is valid.
    for key in ("done", "scp", "scp_tmp") + OUTPUT_LISTS + ("ark", "ark_tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(paths[key])


def _match_landmarks(lm: np.ndarray, clip, utt: str) -> np.ndarray:
    """Precomputed landmarks come at the source rate or at the output rate; map them onto output frames."""
    if lm.shape[0] == clip.num_frames:
        return lm
    if lm.shape[0] == clip.num_source_frames:
        return lm[clip.indices]
    raise UtteranceFailed(
        f"bad_landmarks: {lm.shape[0]} landmark frames but the video has {clip.num_source_frames} source "
        f"frames ({clip.num_frames} at the output rate); regenerate the landmarks for this video"
    )


def extract_utterance(
    utt: str,
    video_path: str,
    args,
    detector=None,
    precomputed=None,
    num_chars: Optional[int] = None,
    timing: Optional[Dict[str, float]] = None,
) -> np.ndarray:
    """uint8 (T, roi*roi) features of one utterance; raises :class:`UtteranceFailed` with the reason."""
    from vallr_pin.video.decode import VideoClip, VideoReadError, rgb_to_grey
    from vallr_pin.video.lip_roi import NoFaceError, crop_mouth_rois

    timing = timing if timing is not None else {}
    if num_chars == 0:  # checked before decoding: nothing to learn from, whatever the video holds
        raise UtteranceFailed("empty_text: the transcript has no characters to read (only spaces or punctuation); "
                              "fix it in the data dir's text or let fix_data_dir.sh drop it")
    t0 = time.process_time()
    try:
        clip = VideoClip(
            video_path, target_fps=args.fps, num_threads=args.decode_threads, max_side=args.decode_max_side
        )
    except VideoReadError as e:
        raise UtteranceFailed(f"unreadable_video: {e.reason}")
    if num_chars is not None and clip.num_frames < num_chars:
        raise UtteranceFailed(
            f"too_few_frames: {clip.num_frames} frames < {num_chars} characters of text (CTC needs T >= L)"
        )
    greys: List[np.ndarray] = []
    decode_cpu = [time.process_time() - t0]  # opening the container counts as decoding

    def rgb_chunks():
        it = clip.iter_chunks(args.chunk_size)
        while True:
            t = time.process_time()
            try:
                chunk = next(it)
            except StopIteration:
                decode_cpu[0] += time.process_time() - t
                return
            greys.append(rgb_to_grey(chunk))
            decode_cpu[0] += time.process_time() - t
            yield chunk

    try:
        if precomputed is not None:
            try:
                lm = precomputed.load(utt)
            except ValueError as e:
                raise UtteranceFailed(f"bad_landmarks: {e}")
            for _ in rgb_chunks():
                pass
            lm = _match_landmarks(lm, clip, utt) * np.asarray(clip.scale, dtype=np.float32)
        else:
            lm = detector.detect_stream(rgb_chunks())
    except VideoReadError as e:
        raise UtteranceFailed(f"unreadable_video: {e.reason}")
    t1 = time.process_time()
    timing["decode"] = timing.get("decode", 0.0) + decode_cpu[0]
    timing["landmarks"] = timing.get("landmarks", 0.0) + (t1 - t0) - decode_cpu[0]
    frames = np.concatenate(greys, axis=0)
    try:
        rois = crop_mouth_rois(
            frames, lm, roi_size=args.roi_size, mouth_width_frac=args.mouth_width_frac, smooth_window=args.smooth_window
        )
    except NoFaceError:
        raise UtteranceFailed(f"no_face: no face found in any of {frames.shape[0]} frames")
    missing = int((~np.isfinite(lm).all(axis=(1, 2))).sum())
    if missing:
        logging.debug(f"{utt}: landmarks missing in {missing}/{len(lm)} frames, interpolated")
    timing["crop"] = timing.get("crop", 0.0) + time.process_time() - t1
    return rois.reshape(rois.shape[0], -1)


def run_job(args) -> Dict[str, float]:
    """Process one job's utterances; returns CPU seconds per part and frame counts."""
    import cv2
    import kaldiio
    from tqdm import tqdm

    cv2.setNumThreads(1)  # one core per job: the launcher runs nj jobs side by side
    paths = job_paths(args.out_dir, args.job_id)
    videos = read_kv(args.video_scp)
    landmarks = read_kv(args.landmarks_scp) if args.landmarks_scp else None
    texts = read_kv(args.text) if args.text else None
    fingerprint = _fingerprint(args, videos, landmarks, texts)
    stats = {"decode": 0.0, "landmarks": 0.0, "crop": 0.0, "write": 0.0, "frames": 0, "ok": 0, "failed": 0}
    if _job_is_done(paths, fingerprint):
        logging.info(f"{paths['scp']} is complete for these inputs ({paths['done']}); skipping the job")
        stats["skipped"] = 1
        return stats
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if args.job_id is not None:
        # A merged feats.scp from an earlier run would point into this job's ark, which is about to change.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(args.out_dir, "feats.scp"))
    _remove_job_outputs(paths)

    detector = precomputed = None
    if landmarks is not None:
        from vallr_pin.video.landmarks import PrecomputedLandmarks

        precomputed = PrecomputedLandmarks(args.landmarks_scp)
    else:
        from vallr_pin.video.landmarks import get_detector

        kwargs = {}
        if args.detect_every != 1:
            kwargs["detect_every"] = args.detect_every
        if args.detect_max_side:
            kwargs["max_side"] = args.detect_max_side
        detector = get_detector(args.detector, **kwargs)

    num_frames: Dict[str, str] = {}
    shapes: Dict[str, str] = {}
    failed: Dict[str, str] = {}
    job = "" if args.job_id is None else f" job {args.job_id}"
    with kaldiio.WriteHelper(f"ark,scp:{paths['ark_tmp']},{paths['scp_tmp']}", write_function="numpy") as writer:
        bar = tqdm(sorted(videos), desc=f"lip_roi{job}", unit="utt", file=sys.stderr, dynamic_ncols=True)
        for utt in bar:
            num_chars = None
            if texts is not None:
                if utt in texts:
                    num_chars = count_characters(texts[utt])
                else:
                    logging.warning(f"{args.text}: no text for '{utt}'; its frame count is not checked")
            try:
                feats = extract_utterance(utt, videos[utt], args, detector, precomputed, num_chars, stats)
            except UtteranceFailed as e:
                reason = " ".join(str(e).split())
                logging.warning(f"{utt} ({videos[utt]}) failed: {reason}")
                failed[utt] = reason
                stats["failed"] += 1
                continue
            t = time.process_time()
            writer[utt] = feats
            stats["write"] += time.process_time() - t
            num_frames[utt] = str(feats.shape[0])
            shapes[utt] = f"{feats.shape[0]},{feats.shape[1]}"
            stats["frames"] += feats.shape[0]
            stats["ok"] += 1
            logging.debug(f"{utt}: wrote {feats.shape[0]} frames")

    # All utterances done: make the outputs final (ark, then scp pointing at it, then lists, then marker).
    with open(paths["scp_tmp"], encoding="utf-8") as f:
        scp_rows = []
        for line in f:
            utt, loc = line.rstrip("\n").split(maxsplit=1)
            ark, _, offset = loc.rpartition(":")
            if ark != paths["ark_tmp"]:
                raise RuntimeError(f"{paths['scp_tmp']}: unexpected ark path '{ark}' for '{utt}'")
            scp_rows.append((utt, f"{paths['ark']}:{offset}"))
    os.replace(paths["ark_tmp"], paths["ark"])
    write_kv(paths["scp"], scp_rows)
    os.unlink(paths["scp_tmp"])
    write_kv(paths["utt2num_frames"], num_frames)
    write_kv(paths["feats_shape"], shapes)
    write_kv(paths["failed"], failed)
    with atomic_open(paths["done"]) as f:
        f.write(fingerprint + "\n")
    if detector is not None and hasattr(detector, "close"):
        detector.close()

    cpu = stats["decode"] + stats["landmarks"] + stats["crop"] + stats["write"]
    logging.info(
        f"{paths['scp']}: {stats['ok']} utterances ({stats['frames']} frames) written, {stats['failed']} failed"
        + (f" (see {paths['failed']})" if stats["failed"] else "")
        + (f"; {stats['frames'] / cpu:.1f} frames per CPU-second" if cpu > 0 and stats["frames"] else "")
    )
    if stats["ok"] == 0 and videos:
        logging.error(f"job{job}: no utterance of {args.video_scp} could be processed; check {paths['failed']}")
    return stats


def merge_jobs(out_dir: str, nj: int) -> Tuple[int, int]:
    """Concatenate jobs 1..nj of ``out_dir`` into feats.scp, utt2num_frames, feats_shape, failed (sorted,
    atomic). Returns (utterances written, utterances failed). Raises if a job is missing or unfinished."""
    missing = [j for j in range(1, nj + 1) if not os.path.exists(job_paths(out_dir, j)["done"])]
    if missing:
        raise RuntimeError(
            f"{out_dir}: jobs {missing} have not finished (no feats.J.done); re-run stage 1 for them before merging"
        )
    merged: Dict[str, Dict[str, str]] = {"scp": {}, **{name: {} for name in OUTPUT_LISTS}}
    for j in range(1, nj + 1):
        paths = job_paths(out_dir, j)
        for key, table in merged.items():
            for utt, value in read_kv(paths[key]).items():
                if utt in table:
                    raise RuntimeError(f"{paths[key]}: utterance '{utt}' also appears in another job; re-split the data")
                table[utt] = value
    write_kv(os.path.join(out_dir, "utt2num_frames"), merged["utt2num_frames"])
    write_kv(os.path.join(out_dir, "feats_shape"), merged["feats_shape"])
    write_kv(os.path.join(out_dir, "failed"), merged["failed"])
    write_kv(os.path.join(out_dir, "feats.scp"), merged["scp"])  # last: its presence means the merge finished
    return len(merged["scp"]), len(merged["failed"])


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if args.merge:
        if not args.nj:
            sys.exit("--merge needs --nj N (the number of jobs stage 1 ran)")
        n_ok, n_failed = merge_jobs(args.out_dir, args.nj)
        logging.info(f"{args.out_dir}/feats.scp: {n_ok} utterances, {n_failed} failed (see {args.out_dir}/failed)")
        if n_ok == 0:
            sys.exit(f"{args.out_dir}: no utterance produced features; read {args.out_dir}/failed")
        return
    if not args.video_scp:
        sys.exit("--video-scp is required (or use --merge)")
    run_job(args)


if __name__ == "__main__":
    main()

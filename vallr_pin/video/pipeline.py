"""One video file -> aligned grey mouth ROI features, with a one-line reason when it cannot be done.

This is stage 1's per-utterance step, shared by ``vallr_pin.bin.lip_roi`` (the recipe's Kaldi-ark jobs, see
:mod:`vallr_pin.video.roi_dump`) and by ``vallr_pin.bin.recognize`` / :class:`vallr_pin.Recognizer` (a packed
model on a user's videos), so a packed model sees exactly the crop its training data was cut with:

    decode (ffmpeg, frame by frame; nearest-frame resampling to ``fps``, :mod:`vallr_pin.video.decode`)
    -> 5-point landmarks per frame (a detector, or a precomputed ``landmarks.scp``, :mod:`~vallr_pin.video.landmarks`)
    -> gap filling, smoothing, similarity alignment and the grey crop (:mod:`vallr_pin.video.lip_roi`)
    -> uint8 (T, roi_size * roi_size)

Failures raise :class:`UtteranceFailed` whose message starts with a reason code (``unreadable_video``,
``truncated_video``, ``no_face``, ``implausible_face``, ``too_few_frames``, ``bad_landmarks``, ``empty_text``)
followed by one line saying what to do.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Dict, Optional

import numpy as np


class UtteranceFailed(Exception):
    """One utterance cannot be turned into features; ``str(e)`` is ``"<reason code>: <what to do>"``."""

    @property
    def code(self) -> str:
        return str(self).split(":", 1)[0].strip()


@dataclasses.dataclass
class RoiConfig:
    """Every setting that changes stage 1's crop (what a packed model must reproduce), plus speed settings.

    roi_size: side of the square grey crop, pixels; mouth_width_frac: mouth-corner distance of the reference face
    as a fraction of the crop width; smooth_window: frames of the centred moving average on landmarks; fps:
    output frame rate (nearest-frame resampling); detector / detect_every / detect_max_side: landmark detection
    (:func:`vallr_pin.video.landmarks.get_detector`); decode_max_side: let ffmpeg downscale large frames while
    decoding. decode_threads and chunk_size change speed and memory only.
    """

    roi_size: int = 96
    mouth_width_frac: float = 0.45
    smooth_window: int = 5
    fps: float = 25.0
    detector: str = "mediapipe"
    detect_every: int = 1
    detect_max_side: Optional[int] = None
    decode_max_side: Optional[int] = None
    decode_threads: int = 1
    chunk_size: int = 16

    # The fields that change the output (stage 1's done-marker fingerprint and a packed model's roi.yaml).
    OUTPUT_FIELDS = ("roi_size", "mouth_width_frac", "smooth_window", "fps", "detect_every", "detect_max_side",
                     "decode_max_side")

    @classmethod
    def from_namespace(cls, ns) -> "RoiConfig":
        """The settings of an argparse namespace (or any object) with attributes of these names."""
        return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})

    def output_settings(self) -> Dict:
        return {k: getattr(self, k) for k in self.OUTPUT_FIELDS}


def count_characters(text: str) -> int:
    """Characters a CTC output needs one frame each for: those of the transcript as stage 2 will write it.

    Stage 1 runs before stage 2 normalises the text, so it counts through the same normaliser
    (:func:`vallr_pin.text.normalize.normalize_text`): "12345" is 一万二千三百四十五, 9 characters, not 5, and
    Latin words and punctuation count nothing. Normalising is idempotent, so the count (and stage 1's done
    markers) stay the same after stage 2 rewrote data/<set>/text in place."""
    from vallr_pin.text.normalize import normalize_text

    return len(normalize_text(text))


def make_detector(cfg: RoiConfig):
    """The landmark detector ``cfg`` names, with its speed options."""
    from vallr_pin.video.landmarks import get_detector

    kwargs = {}
    if cfg.detect_every != 1:
        kwargs["detect_every"] = cfg.detect_every
    if cfg.detect_max_side:
        kwargs["max_side"] = cfg.detect_max_side
    return get_detector(cfg.detector, **kwargs)


def match_landmarks(lm: np.ndarray, clip, utt: str) -> np.ndarray:
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
    cfg: RoiConfig,
    detector=None,
    precomputed=None,
    num_chars: Optional[int] = None,
    timing: Optional[Dict[str, float]] = None,
    info: Optional[Dict] = None,
) -> np.ndarray:
    """uint8 (T, roi*roi) features of one utterance at ``cfg.fps``; raises :class:`UtteranceFailed` with the reason.

    detector: a :class:`~vallr_pin.video.landmarks.LandmarkDetector` (unless ``precomputed``, a
    :class:`~vallr_pin.video.landmarks.PrecomputedLandmarks`, holds ``utt``); num_chars: characters of the
    transcript (fewer frames fail as ``too_few_frames``; None: not checked). ``timing`` accumulates CPU seconds
    per part (decode, landmarks, crop); ``info``, if given, receives the source frame rate and frame counts.

    Frames stream through in chunks of ``cfg.chunk_size``: decoded, turned grey and handed to the detector
    chunk by chunk; the grey frames wait in a :class:`~vallr_pin.video.decode.FrameSpool` (memory, then a
    temporary file) until the whole clip's landmarks give the transforms, then are cropped chunk by chunk. So
    memory does not grow with the clip's length beyond the output (9 KB a frame at 96x96). With precomputed
    landmarks the transforms are known first and nothing waits.
    """
    from vallr_pin.video.decode import FrameSpool, TruncatedVideoError, VideoClip, VideoReadError, rgb_to_grey
    from vallr_pin.video.lip_roi import ImplausibleFaceError, NoFaceError, clip_transforms, warp_rois

    timing = timing if timing is not None else {}
    if num_chars == 0:  # checked before decoding: nothing to learn from, whatever the video holds
        raise UtteranceFailed("empty_text: the transcript has no characters to read once normalised (only spaces, "
                              "punctuation or Latin letters); "
                              "fix it in the data dir's text or let fix_data_dir.sh drop it")
    t0 = time.process_time()
    try:
        clip = VideoClip(
            video_path, target_fps=cfg.fps, num_threads=cfg.decode_threads, max_side=cfg.decode_max_side
        )
    except TruncatedVideoError as e:
        raise UtteranceFailed(f"truncated_video: {e.reason}")
    except VideoReadError as e:
        raise UtteranceFailed(f"unreadable_video: {e.reason}")
    if info is not None:
        info.update(source_fps=clip.source_fps, source_frames=clip.num_source_frames, frames=clip.num_frames)
    if num_chars is not None and clip.num_frames < num_chars:
        raise UtteranceFailed(
            f"too_few_frames: {clip.num_frames} frames < {num_chars} characters of text (CTC needs T >= L)"
        )
    timing["decode"] = timing.get("decode", 0.0) + time.process_time() - t0  # opening counts as decoding
    rois = np.empty((clip.num_frames, cfg.roi_size, cfg.roi_size), dtype=np.uint8)

    def grey_chunks(on_rgb=None):
        """The clip's grey frames (t, H, W) chunk by chunk, timing decoding; ``on_rgb`` sees each RGB chunk."""
        it = clip.iter_chunks(cfg.chunk_size)
        while True:
            t = time.process_time()
            try:
                chunk = next(it)
            except StopIteration:
                timing["decode"] += time.process_time() - t
                return
            except VideoReadError as e:
                raise UtteranceFailed(f"unreadable_video: {e.reason}")
            grey = rgb_to_grey(chunk)
            timing["decode"] += time.process_time() - t
            yield grey, chunk

    def transforms_of(lm, frame_width):
        try:
            return clip_transforms(lm, frame_width, cfg.roi_size, cfg.mouth_width_frac, cfg.smooth_window)
        except NoFaceError:
            raise UtteranceFailed(f"no_face: no face found in any of {clip.num_frames} frames")
        except ImplausibleFaceError as e:
            raise UtteranceFailed(f"implausible_face: {e}")

    def crop(start, grey, transforms):
        t = time.process_time()
        rois[start:start + len(grey)] = warp_rois(grey, transforms[start:start + len(grey)], cfg.roi_size)
        timing["crop"] = timing.get("crop", 0.0) + time.process_time() - t

    if precomputed is not None:
        try:
            lm = precomputed.load(utt)
        except ValueError as e:
            raise UtteranceFailed(f"bad_landmarks: {e}")
        lm = match_landmarks(lm, clip, utt) * np.asarray(clip.scale, dtype=np.float32)
        transforms, start = None, 0
        for grey, _ in grey_chunks():
            if transforms is None:  # the first chunk tells the frame width the plausibility check needs
                transforms = transforms_of(lm, grey.shape[2])
            crop(start, grey, transforms)
            start += len(grey)
    else:
        with FrameSpool() as spool:
            def rgb_for_detector():
                for grey, rgb in grey_chunks():
                    spool.append(grey)
                    yield rgb

            t1 = time.process_time()
            decode_before = timing["decode"]
            lm = detector.detect_stream(rgb_for_detector())
            timing["landmarks"] = timing.get("landmarks", 0.0) + (time.process_time() - t1) - (timing["decode"] - decode_before)
            if spool.num_frames != clip.num_frames:
                raise UtteranceFailed(f"unreadable_video: decoded {spool.num_frames} of {clip.num_frames} frames")
            transforms = transforms_of(lm, spool.shape[1])
            start = 0
            for grey in spool.iter_chunks(cfg.chunk_size):
                crop(start, grey, transforms)
                start += len(grey)
        missing = int((~np.isfinite(lm).all(axis=(1, 2))).sum())
        if missing:
            logging.debug(f"{utt}: landmarks missing in {missing}/{len(lm)} frames, interpolated")
    return rois.reshape(rois.shape[0], -1)


def roi_from_crop_video(video_path: str, cfg: RoiConfig, info: Optional[Dict] = None) -> np.ndarray:
    """uint8 (T, roi*roi) from a video that already is a mouth crop: decoded and resampled like any video, grey,
    the centred square cut out of it and resized to ``cfg.roi_size`` (area interpolation); no landmarks."""
    import cv2

    from vallr_pin.video.decode import VideoClip, VideoReadError, rgb_to_grey

    try:
        clip = VideoClip(video_path, target_fps=cfg.fps, num_threads=cfg.decode_threads)
        frames = np.concatenate([rgb_to_grey(c) for c in clip.iter_chunks(cfg.chunk_size)], axis=0)
    except VideoReadError as e:
        raise UtteranceFailed(f"unreadable_video: {e.reason}")
    if info is not None:
        info.update(source_fps=clip.source_fps, source_frames=clip.num_source_frames, frames=clip.num_frames)
    t, h, w = frames.shape
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    size = (cfg.roi_size, cfg.roi_size)
    out = np.stack([cv2.resize(f[y0:y0 + side, x0:x0 + side], size, interpolation=cv2.INTER_AREA) for f in frames])
    return out.reshape(t, -1)


def write_roi_video(path, rois: np.ndarray, fps: float) -> None:
    """Write uint8 (T, H*W) square crops as a small grey mp4 ('mp4v') at ``fps``, atomically (tmp + rename)."""
    import os

    import cv2

    side = int(round(np.sqrt(rois.shape[1])))
    path = str(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path[:-4] + ".tmp.mp4" if path.endswith(".mp4") else path + ".tmp.mp4"
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (side, side))
    for frame in rois.reshape(-1, side, side):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    os.replace(tmp, path)

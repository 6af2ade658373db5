"""Video decoding for stage 1: decord (CPU) -> uint8 frames resampled to a fixed frame rate (25 fps).

Frame-rate conversion is a *nearest-frame index mapping*, not interpolation: output frame ``j`` shows the
source frame whose timestamp ``i / src_fps`` is closest to ``j / target_fps``, i.e.
``i = round(j * src_fps / target_fps)`` clipped to ``[0, T_src - 1]``. The output length is
``round(T_src * target_fps / src_fps)`` so the clip keeps its duration. A 30 fps clip therefore drops every
6th frame, a 20 fps clip repeats every 4th; a source within 0.01 fps of the target is passed through frame
for frame. Lip movements are never blended across frames, and landmarks computed on source frames map to
output frames with the same indices (see :func:`resample_indices`).

Everything that goes wrong while reading a file (missing, empty, truncated, corrupt stream, zero frames,
unknown frame rate) raises :class:`VideoReadError` naming the file and the reason, so a per-utterance loop can
log it, mark the utterance failed and go on.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

TARGET_FPS = 25.0


class VideoReadError(Exception):
    """A video file could not be decoded. ``path``: the file; ``reason``: one line saying what went wrong."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line: it ends up in the `failed` file
        super().__init__(f"{self.path}: {self.reason}")


def resample_indices(num_src_frames: int, src_fps: float, target_fps: float = TARGET_FPS) -> np.ndarray:
    """Source frame index for every output frame (int64, shape (T_out,)), nearest-frame mapping.

    ``T_out = round(num_src_frames * target_fps / src_fps)`` (at least 1 when there is a source frame);
    ``idx[j] = min(round(j * src_fps / target_fps), num_src_frames - 1)``.
    """
    if num_src_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    if abs(src_fps - target_fps) < 0.01:
        return np.arange(num_src_frames, dtype=np.int64)
    num_out = max(1, int(round(num_src_frames * target_fps / src_fps)))
    # floor(x + 0.5) instead of np.round: numpy rounds halves to even, which would make the mapping uneven.
    idx = np.floor(np.arange(num_out) * (src_fps / target_fps) + 0.5).astype(np.int64)
    return np.minimum(idx, num_src_frames - 1)


class VideoClip:
    """An opened video: source frame count and rate, the resampling index map, and chunked RGB decoding.

    Attributes: ``path``; ``num_source_frames``; ``source_fps``; ``indices`` (int64 (T,), source frame of
    every output frame, see :func:`resample_indices`); ``num_frames`` = T at ``target_fps``.
    ``num_threads`` is decord's decoder thread count (1 = one core, what a per-job launcher expects).

    ``max_side``: if set and the frames' longer side exceeds it, ffmpeg scales frames down while decoding
    (aspect kept). On 1080p input this is ~2.5x faster than full-size decoding (see bench_lip_roi.py) and loses
    nothing when the mouth in the crop is smaller than in the scaled frame. ``scale`` = (sx, sy) maps original
    pixel coordinates to decoded ones (1.0 without scaling), e.g. for precomputed landmarks.
    """

    def __init__(self, path: str, target_fps: float = TARGET_FPS, num_threads: int = 1, max_side: int | None = None):
        import decord  # imported here so modules that only crop or merge need not load ffmpeg

        self.path = path = str(path)
        if not os.path.isfile(path):
            raise VideoReadError(path, "file not found; check the path in video.scp")
        if os.path.getsize(path) == 0:
            raise VideoReadError(path, "empty file (0 bytes); re-copy it or drop the utterance")
        try:
            self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
        except Exception as e:  # decord raises RuntimeError / DECORDError carrying the ffmpeg message
            first = (str(e).strip().splitlines() or [""])[0]
            raise VideoReadError(path, f"cannot open (truncated or not a video?): {first[:200]}")
        self.num_source_frames = len(self._vr)
        if self.num_source_frames <= 0:
            raise VideoReadError(path, "video has zero frames")
        self.scale = (1.0, 1.0)
        if max_side:
            try:  # decord has no size query: decode the first frame to learn it
                h, w = self._vr.next().shape[:2]
                if max(h, w) > max_side:
                    f = max_side / max(h, w)
                    nw, nh = max(2, int(round(w * f))), max(2, int(round(h * f)))
                    self._vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads, width=nw, height=nh)
                    self.scale = (nw / w, nh / h)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0]
                raise VideoReadError(path, f"cannot decode the first frame: {first[:200]}")
        self.source_fps = float(self._vr.get_avg_fps())
        if not np.isfinite(self.source_fps) or self.source_fps <= 0:
            raise VideoReadError(path, f"invalid frame rate ({self.source_fps}); re-encode it with a fixed fps")
        self.target_fps = float(target_fps)
        self.indices = resample_indices(self.num_source_frames, self.source_fps, self.target_fps)
        self.num_frames = len(self.indices)

    def iter_chunks(self, chunk_size: int = 64) -> Iterator[np.ndarray]:
        """Yield uint8 RGB frames (t, H, W, 3), t <= chunk_size, in order, at ``target_fps``.

        Chunks bound memory for long or high-resolution clips: consumers that need the whole clip (landmark
        smoothing) keep only what they need, e.g. grey frames (1/3 of the RGB size)."""
        for start in range(0, self.num_frames, chunk_size):
            sel = self.indices[start:start + chunk_size]
            try:
                frames = self._vr.get_batch(sel.tolist()).asnumpy()
            except Exception as e:  # a corrupt packet mid-stream surfaces here, not at open time
                msg = str(e).strip().splitlines()
                raise VideoReadError(
                    self.path,
                    f"corrupt stream near source frame {int(sel[0])}/{self.num_source_frames}: "
                    f"{(msg[-1] if msg else '')[:200]}",
                )
            if frames.ndim != 4 or frames.shape[0] != len(sel) or frames.shape[-1] != 3:
                raise VideoReadError(
                    self.path, f"decoder returned frames of shape {frames.shape}, expected ({len(sel)}, H, W, 3)"
                )
            yield frames


def iter_video_chunks(
    path: str, target_fps: float = TARGET_FPS, chunk_size: int = 64, num_threads: int = 1, max_side: int | None = None
) -> Iterator[np.ndarray]:
    """Shorthand for ``VideoClip(path, target_fps, num_threads, max_side).iter_chunks(chunk_size)``."""
    return VideoClip(path, target_fps, num_threads, max_side).iter_chunks(chunk_size)


def rgb_to_grey(frames_rgb: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) uint8 grey with OpenCV's BT.601 weights."""
    import cv2

    t, h, w, _ = frames_rgb.shape
    # One cvtColor call over the stacked frames: same result as per-frame calls, one Python round trip.
    return cv2.cvtColor(frames_rgb.reshape(t * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(t, h, w)


def read_video(
    path: str,
    grey: bool = False,
    target_fps: float = TARGET_FPS,
    num_threads: int = 1,
    max_side: int | None = None,
) -> np.ndarray:
    """Whole clip as uint8 frames at ``target_fps``: (T, H, W, 3) RGB, or (T, H, W) grey if ``grey``
    (downscaled so that the longer side is at most ``max_side`` if given).

    Raises :class:`VideoReadError` for unreadable, truncated, corrupt or zero-frame files.
    """
    chunks = [rgb_to_grey(c) if grey else c for c in iter_video_chunks(path, target_fps, num_threads=num_threads, max_side=max_side)]
    if not chunks:
        raise VideoReadError(str(path), "video has zero frames")
    return np.concatenate(chunks, axis=0)

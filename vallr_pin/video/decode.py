"""Video decoding for stage 1: uint8 RGB frames resampled to a fixed frame rate (25 fps), streamed in chunks.

decord opens the file (frame count from its packet index, frame rate, the checks below); the frames are decoded
one when asked for by OpenCV's FFmpeg backend, because decord's reader decodes ahead of its caller into
unbounded memory (:meth:`VideoClip.iter_chunks` says how, and why the pixels are the same).

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

Truncated downloads: an mp4 whose index (``moov``) is at the front, cut short, still opens, and decord indexes
only the packets that are there (742 of a 1,500-frame clip decode without an error). The container's header
still declares the whole clip, so :class:`VideoClip` compares decord's frame count with the frame count the
header declares (``nb_frames``, or duration x frame rate where a format has no frame count), as ffmpeg reports
it through OpenCV's ``CAP_PROP_FRAME_COUNT`` (decord has no call for the declared length). Fewer decodable
frames than ``declared - max(TRUNCATION_MIN_FRAMES, TRUNCATION_TOLERANCE * declared)`` raises
:class:`TruncatedVideoError`: 5% or 3 frames, whichever is more, covers the frame or two that edit lists and
B-frame reordering make the two counts differ by on intact files. A header that declares nothing (0) is not
checked. An mp4 whose index is at the end (what OpenCV and most cameras write) cannot be opened at all once
cut, and fails as unreadable.
"""

from __future__ import annotations

import os
from typing import Iterator, Optional

import numpy as np

TARGET_FPS = 25.0
TRUNCATION_TOLERANCE = 0.05  # fraction of the declared frames that may be missing before a clip is "truncated"
TRUNCATION_MIN_FRAMES = 3


def allowed_missing(declared: int) -> float:
    """How many of a clip's ``declared`` frames may be missing before it counts as truncated."""
    return max(TRUNCATION_MIN_FRAMES, TRUNCATION_TOLERANCE * declared)


SPOOL_MEMORY_BYTES = 16 << 20  # FrameSpool: frames kept in memory before they go to a temporary file


class VideoReadError(Exception):
    """A video file could not be decoded. ``path``: the file; ``reason``: one line saying what went wrong."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line: it ends up in the `failed` file
        super().__init__(f"{self.path}: {self.reason}")


class TruncatedVideoError(VideoReadError):
    """The file holds fewer frames than its container header declares (a cut-short download or copy)."""


def declared_frame_count(path: str) -> int:
    """Frames the container header of ``path`` declares (ffmpeg's ``nb_frames``, else duration x fps, via
    OpenCV); 0 when it declares none or cannot be read."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return int(n) if np.isfinite(n) and n > 0 else 0


def check_not_truncated(path: str, num_frames: int) -> None:
    """Raise :class:`TruncatedVideoError` if ``num_frames`` decodable frames fall short of the declared count by
    more than the tolerance (see the module docstring)."""
    declared = declared_frame_count(path)
    if declared and num_frames < declared - allowed_missing(declared):
        raise TruncatedVideoError(
            path, f"only {num_frames} of the {declared} frames its header declares are in the file (a cut-short "
            "download or copy?); re-copy it or drop the utterance")


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
    ``num_threads`` is the decoder's thread count (1 = one core, what a per-job launcher expects; 0 = one per
    core).

    Opening, the frame count, the frame rate and the truncation check are decord's (its packet index); the
    frames themselves are decoded by :meth:`iter_chunks` through OpenCV's FFmpeg backend, one when asked for,
    so memory does not grow with the clip's length (see :meth:`iter_chunks` for why not decord).

    ``max_side``: if set and the frames' longer side exceeds it, ffmpeg scales frames down while decoding
    (aspect kept), through decord's scaler. On 1080p input this is ~2.5x faster than full-size decoding (see
    bench_lip_roi.py) and loses nothing when the mouth in the crop is smaller than in the scaled frame; but decord
    decodes ahead of its reader, so with scaling the memory grows with the clip's length (~0.7 MB a second of
    640x360 at 25 fps, bench_lip_roi_memory.py). ``scale`` = (sx, sy) maps original pixel coordinates to decoded
    ones (1.0 without scaling), e.g. for precomputed landmarks.
    """

    def __init__(self, path: str, target_fps: float = TARGET_FPS, num_threads: int = 1, max_side: int | None = None):
        import decord  # imported here so modules that only crop or merge need not load ffmpeg

        self.path = path = str(path)
        self.num_threads = int(num_threads)
        if not os.path.isfile(path):
            raise VideoReadError(path, "file not found; check the path in video.scp")
        if os.path.getsize(path) == 0:
            raise VideoReadError(path, "empty file (0 bytes); re-copy it or drop the utterance")
        try:
            vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads)
        except Exception as e:  # decord raises RuntimeError / DECORDError carrying the ffmpeg message
            first = (str(e).strip().splitlines() or [""])[0]
            raise VideoReadError(path, f"cannot open (truncated or not a video?): {first[:200]}")
        self.num_source_frames = len(vr)
        if self.num_source_frames <= 0:
            raise VideoReadError(path, "video has zero frames")
        check_not_truncated(path, self.num_source_frames)
        self.scale = (1.0, 1.0)
        self._scaled = None  # decord reader that scales while decoding (max_side), else None: OpenCV decodes
        if max_side:
            try:  # decord has no size query: decode the first frame to learn it
                h, w = vr.next().shape[:2]
                if max(h, w) > max_side:
                    f = max_side / max(h, w)
                    nw, nh = max(2, int(round(w * f))), max(2, int(round(h * f)))
                    self._scaled = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=num_threads, width=nw,
                                                      height=nh)
                    self.scale = (nw / w, nh / h)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0]
                raise VideoReadError(path, f"cannot decode the first frame: {first[:200]}")
        self.source_fps = float(vr.get_avg_fps())
        del vr  # frees what it decoded ahead (with max_side) and its index; the scaled reader has its own
        if not np.isfinite(self.source_fps) or self.source_fps <= 0:
            raise VideoReadError(path, f"invalid frame rate ({self.source_fps}); re-encode it with a fixed fps")
        self.target_fps = float(target_fps)
        self.indices = resample_indices(self.num_source_frames, self.source_fps, self.target_fps)
        self.num_frames = len(self.indices)

    def iter_chunks(self, chunk_size: int = 64) -> Iterator[np.ndarray]:
        """Yield uint8 RGB frames (t, H, W, 3), t <= chunk_size, in order, at ``target_fps``.

        Frames are decoded in stream order, each source frame once, when the chunk that needs it is asked for;
        the ones the frame-rate mapping skips are dropped. Nothing is decoded ahead: so a slow consumer (the
        landmark detector) holds one chunk of frames, whatever the clip's length.

        Why not decord, which opens the clip: its reader (0.6.0, the last release) hands each packet to a
        decoding thread and, whenever no decoded frame is waiting, keeps pushing packets, up to the rest of the
        file; the thread decodes them all into an unbounded queue while the reader's caller is busy. Measured on
        a 60 s 640x480 clip: up to the whole clip's RGB frames (~1.4 GB) held by decord, freed only with the
        reader (dmlc/decord issues 157, 208, 304). OpenCV's capture decodes with the same ffmpeg decoders and
        converts with the same swscale path in the caller's thread; its frames equal decord's to the byte
        (test_video_lip_roi.py checks it on mp4v, MJPEG, VP8, FFV1, raw and rotated clips). Only scaling while
        decoding (``max_side``) still goes through decord, whose scaler OpenCV does not have.

        A stream that ends early by no more than the truncation tolerance (:data:`TRUNCATION_MIN_FRAMES`,
        :data:`TRUNCATION_TOLERANCE`) repeats its last frame for the missing ones, as decord does; one that ends
        earlier raises :class:`VideoReadError`."""
        frames = self._decord_frames() if self._scaled is not None else self._opencv_frames()
        position = 0  # source frames decoded so far
        decoded = None
        for start in range(0, self.num_frames, chunk_size):
            sel = self.indices[start:start + chunk_size]
            # One array per chunk, filled frame by frame: a list of per-frame arrays stacked afterwards made
            # glibc's heap grow with the clip (freed 0.9 MB frames scattered between the decoder's allocations).
            chunk = None
            for k, i in enumerate(sel):
                while position <= i:
                    decoded = next(frames)
                    position += 1
                if chunk is None:
                    if decoded.ndim != 3 or decoded.shape[-1] != 3:
                        raise VideoReadError(self.path, f"decoder returned frames of shape {decoded.shape}, expected (H, W, 3)")
                    chunk = np.empty((len(sel),) + decoded.shape, dtype=np.uint8)
                chunk[k] = decoded  # a source frame shown twice (a clip below 25 fps) is copied twice
            yield chunk

    def _opencv_frames(self) -> Iterator[np.ndarray]:
        """Source frames (H, W, 3) RGB in stream order, each decoded when asked for; then the last one repeated
        for up to the truncation tolerance of missing frames."""
        import cv2

        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, self.num_threads])
        try:
            if not cap.isOpened():
                raise VideoReadError(self.path, "cannot open it for decoding (truncated or not a video?)")
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # rotation metadata applied, as decord does
            n, frame = 0, None
            while n < self.num_source_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                n += 1
                yield frame
        finally:
            cap.release()
        missing = self.num_source_frames - n
        if frame is None or missing > allowed_missing(self.num_source_frames):
            raise VideoReadError(
                self.path, f"the stream ends after {n} of its {self.num_source_frames} frames (corrupt or cut "
                "short?); re-copy or re-encode it, or drop the utterance")
        while True:  # the generator is only asked for indices below num_source_frames
            yield frame

    def _decord_frames(self) -> Iterator[np.ndarray]:
        """Source frames (H, W, 3) RGB in stream order from the scaling decord reader (``max_side``)."""
        vr, position = self._scaled, 0
        vr.seek(0)
        while True:
            try:
                frame = vr.next()
            except StopIteration:
                raise VideoReadError(
                    self.path, f"the stream ends after {position} of its {self.num_source_frames} frames")
            except Exception as e:  # a corrupt packet mid-stream surfaces here, not at open time
                msg = str(e).strip().splitlines()
                raise VideoReadError(
                    self.path,
                    f"corrupt stream near source frame {position}/{self.num_source_frames}: "
                    f"{(msg[-1] if msg else '')[:200]}",
                )
            position += 1
            yield frame.asnumpy()


class FrameSpool:
    """uint8 frames of one clip (each (t, H, W), same H, W), appended chunk by chunk and read back in order.

    Stage 1 needs the landmarks of the whole clip before it can crop any frame (smoothing, the clip's zoom),
    and decoding twice would cost ~25% more time (decoding's share of stage 1's CPU time with FaceMesh on
    every 3rd frame, 640x480), so the grey frames wait here. Up to ``max_bytes`` they stay in memory; past it they go
    to an anonymous temporary file (``tempfile.SpooledTemporaryFile`` in $TMPDIR, unlinked at once, so a killed
    job leaves nothing behind), which keeps the memory of a long clip flat in its length (page cache is not
    the process's memory). ``max_bytes`` None: :data:`SPOOL_MEMORY_BYTES` (16 MB: 2.2 s of 640x480 grey at
    25 fps; with 64 MB a 60 s clip peaked 25% above a 2 s one, 297 against 236 MB, with 16 MB 3%, 243 MB,
    bench_lip_roi_memory.py); 0 would mean no limit, as in ``SpooledTemporaryFile``, so the
    smallest is 1). Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, max_bytes: Optional[int] = None):
        import tempfile

        max_bytes = SPOOL_MEMORY_BYTES if max_bytes is None else max_bytes
        self._file = tempfile.SpooledTemporaryFile(max_size=max_bytes, prefix="vallr_pin_frames.")
        self.shape = None  # (H, W) of a frame
        self.num_frames = 0

    def append(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if self.shape is None:
            self.shape = frames.shape[1:]
        elif frames.shape[1:] != self.shape:
            raise ValueError(f"frames of shape {frames.shape[1:]} after frames of shape {self.shape}")
        self._file.write(frames.data)
        self.num_frames += frames.shape[0]

    def iter_chunks(self, chunk_size: int = 64) -> Iterator[np.ndarray]:
        """Yield the frames in order, (t, H, W) uint8, t <= chunk_size."""
        self._file.seek(0)
        for start in range(0, self.num_frames, chunk_size):
            buf = np.empty((min(chunk_size, self.num_frames - start),) + tuple(self.shape), dtype=np.uint8)
            if self._file.readinto(buf.data) != buf.nbytes:
                raise OSError("frame spool: short read from its temporary file")
            yield buf

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "FrameSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

"""Five-point face landmarks per frame: detectors, precomputed landmark files, gap filling and smoothing.

Landmark arrays are float32 (T, 5, 2) in pixel (x, y) of the frames they were found on, points in RetinaFace
order (the order SPEC.md fixes for ``landmarks.scp``):

    0 right eye centre   (the subject's right = image left)
    1 left eye centre    (image right)
    2 nose tip
    3 right mouth corner (image left)
    4 left mouth corner  (image right)

A frame where no face was found is a row of NaN.

Detectors
---------
``get_detector("mediapipe")`` (the default) is :class:`MediaPipeFaceMeshDetector`: mediapipe 0.10.21 ships
its face-detection and FaceMesh ``.tflite`` models inside the wheel, so it runs offline. Other detectors plug in
through :func:`register_detector`, or by naming a class as ``"package.module:ClassName"`` (imported on demand).
A RetinaFace + FAN pipeline like the CNVSRC baseline's, for users who have its weights, is a subclass of
:class:`LandmarkDetector` whose ``detect`` returns the 5 points, e.g. with the ``face_alignment`` package
(68-point FAN): eyes = mean of points 36-41 and 42-47, nose tip = 30, mouth corners = 48 and 54. Nothing here
downloads weights: such a class should take a local weights path and fail with a clear message without it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Callable, Dict, Iterable, Optional

import numpy as np

from vallr_pin.datadir import read_kv

NUM_POINTS = 5

# FaceMesh (468-point topology) indices behind the 5 points. Eye centres are the means of the two eye
# corners (outer, inner): corners are stable under blinking, unlike eyelid points.
MESH_RIGHT_EYE = (33, 133)  # image-left eye: outer, inner corner
MESH_LEFT_EYE = (362, 263)  # image-right eye: inner, outer corner
MESH_NOSE_TIP = 1
MESH_RIGHT_MOUTH = 61  # image-left mouth corner
MESH_LEFT_MOUTH = 291  # image-right mouth corner


class LandmarkDetector(ABC):
    """Finds the 5 face points on every frame of one clip."""

    @abstractmethod
    def detect(self, frames_rgb: np.ndarray) -> np.ndarray:
        """frames_rgb: uint8 (T, H, W, 3) RGB of one clip, in time order (detectors may track across frames).

        Returns float32 (T, 5, 2) pixel (x, y) in the input frames' coordinates, NaN rows where no face."""

    def detect_stream(self, chunks: Iterable[np.ndarray]) -> np.ndarray:
        """Same as :meth:`detect` on the concatenation of ``chunks`` (each (t, H, W, 3)), one clip in order.

        Lets the caller decode chunk by chunk; override it to avoid holding the whole RGB clip (the default
        concatenates)."""
        chunks = list(chunks)
        if not chunks:
            return np.zeros((0, NUM_POINTS, 2), dtype=np.float32)
        return self.detect(np.concatenate(chunks, axis=0))


_DETECTORS: Dict[str, Callable[..., LandmarkDetector]] = {}


def register_detector(name: str):
    """Class decorator: make a :class:`LandmarkDetector` available as ``get_detector(name)`` / ``--detector name``."""

    def wrap(cls):
        _DETECTORS[name] = cls
        return cls

    return wrap


def get_detector(name: str, **kwargs) -> LandmarkDetector:
    """A detector by registered name (``"mediapipe"``) or import path ``"pkg.module:Class"``; kwargs go to it."""
    if name in _DETECTORS:
        return _DETECTORS[name](**kwargs)
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, LandmarkDetector)):
            raise TypeError(f"--detector {name}: {cls!r} is not a vallr_pin.video.landmarks.LandmarkDetector")
        return cls(**kwargs)
    raise KeyError(
        f"unknown landmark detector '{name}'; registered: {sorted(_DETECTORS)}, "
        "or give 'package.module:ClassName' of a LandmarkDetector subclass"
    )


@register_detector("mediapipe")
class MediaPipeFaceMeshDetector(LandmarkDetector):
    """mediapipe FaceMesh (468 points, tracking mode) reduced to the 5 points.

    ``static_image_mode=False``: the face detector runs only when tracking is lost, then the mesh model tracks
    the face from frame to frame, which is both faster and steadier than per-frame detection. Tracking state is
    reset at the start of every :meth:`detect` call, so clips do not leak into each other.

    Speed options (both keep the output shape; see test/bench/bench_lip_roi.py for measured effects):
      max_side:     if set, frames whose longer side exceeds it are downscaled (bilinear) before FaceMesh;
                    landmarks are mapped back to full-resolution pixels. FaceMesh crops the face to 192x192
                    itself, and measured on 480p-1080p clips this saved nothing; downscaling while decoding
                    (``VideoClip(max_side=...)``, ``--decode-max-side``) is what pays off on large frames.
      detect_every: run FaceMesh on frames 0, k, 2k, ... and the last frame only, and fill the frames in between
                    by linear interpolation between the two neighbouring processed frames (left NaN if either
                    of them has no face). k=1 (default) processes every frame.

    Orientation: FaceMesh assumes an upright face. On an upside-down one it still returns an upright mesh,
    eyes on the real eyes and the "mouth" on the forehead, so the crop shows hair, and the 5 points look like
    a face. So on the clip's first frame with a face, mediapipe's face detector (BlazeFace, its score is the
    only one mediapipe exposes) scores the frame and the frame turned 180 degrees; if the turned frame scores
    higher by ``orientation_margin`` (upright faces measured 0.92 against 0.58-0.65 turned), the whole clip is
    processed turned and the landmarks mapped back, so they say where the eyes and mouth really are (eyes below
    the mouth) and :func:`vallr_pin.video.lip_roi.check_face_plausible` rejects the clip.
    ``orientation_margin=None`` skips the check.
    """

    def __init__(
        self,
        max_side: Optional[int] = None,
        detect_every: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        orientation_margin: Optional[float] = 0.15,
    ):
        # mediapipe's C++ side prints a few absl warnings per clip to stderr ("Feedback manager requires a
        # model with a single signature..."); they are harmless and no environment variable silences them.
        import mediapipe as mp

        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        self.max_side = max_side
        self.detect_every = int(detect_every)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self.orientation_margin = orientation_margin
        self._face_detection = None
        self._turned: Optional[bool] = None  # per clip: None until a frame with a face decided it

    def _face_score(self, frame: np.ndarray) -> float:
        if self._face_detection is None:
            import mediapipe as mp

            self._face_detection = mp.solutions.face_detection.FaceDetection(
                model_selection=0, min_detection_confidence=0.2)
        res = self._face_detection.process(np.ascontiguousarray(frame))
        return max((d.score[0] for d in res.detections or []), default=0.0)

    def _decide_orientation(self, frame: np.ndarray) -> None:
        if self.orientation_margin is None:
            self._turned = False
            return
        upright, turned = self._face_score(frame), self._face_score(frame[::-1, ::-1])
        if upright or turned:
            self._turned = turned > upright + self.orientation_margin

    def _one(self, frame: np.ndarray) -> Optional[np.ndarray]:
        if self._turned is None:
            self._decide_orientation(frame)
        if self._turned:
            lm = self._one_upright(np.ascontiguousarray(frame[::-1, ::-1]))
            if lm is None:
                return None
            h, w = frame.shape[:2]
            return np.array([w, h], dtype=np.float32) - lm  # back to the frame as stored
        return self._one_upright(frame)

    def _one_upright(self, frame: np.ndarray) -> Optional[np.ndarray]:
        import cv2

        h, w = frame.shape[:2]
        if self.max_side and max(h, w) > self.max_side:
            s = self.max_side / max(h, w)
            frame = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_LINEAR)
        res = self._mesh.process(np.ascontiguousarray(frame))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        # Normalised coordinates are relative to the image, so scaling by the *original* size undoes the resize.
        def p(i):
            return (lm[i].x * w, lm[i].y * h)

        re = np.mean([p(i) for i in MESH_RIGHT_EYE], axis=0)
        le = np.mean([p(i) for i in MESH_LEFT_EYE], axis=0)
        return np.array([re, le, p(MESH_NOSE_TIP), p(MESH_RIGHT_MOUTH), p(MESH_LEFT_MOUTH)], dtype=np.float32)

    def detect(self, frames_rgb: np.ndarray) -> np.ndarray:
        return self.detect_stream([frames_rgb])

    def detect_stream(self, chunks: Iterable[np.ndarray]) -> np.ndarray:
        self._mesh.reset()  # new clip: forget the previous clip's track
        self._turned = None
        k = self.detect_every
        rows = []  # per frame: (5, 2) array, or None (no face / not processed)
        processed = []  # frame indices FaceMesh ran on
        last = None
        for chunk in chunks:
            if chunk.ndim != 4 or chunk.shape[-1] != 3:
                raise ValueError(f"expected RGB frames (t, H, W, 3), got shape {chunk.shape}")
            for frame in chunk:
                t = len(rows)
                if t % k == 0:
                    rows.append(self._one(frame))
                    processed.append(t)
                else:
                    rows.append(None)
                last = frame
        num = len(rows)
        out = np.full((num, NUM_POINTS, 2), np.nan, dtype=np.float32)
        if num == 0:
            return out
        if processed[-1] != num - 1:  # always look at the last frame so the tail is interpolated, not held
            rows[num - 1] = self._one(last)
            processed.append(num - 1)
        for t in processed:
            if rows[t] is not None:
                out[t] = rows[t]
        for a, b in zip(processed[:-1], processed[1:]):
            if b - a > 1 and rows[a] is not None and rows[b] is not None:
                w = ((np.arange(a + 1, b) - a) / (b - a)).astype(np.float32)[:, None, None]
                out[a + 1:b] = (1 - w) * out[a] + w * out[b]
        return out

    def close(self) -> None:
        self._mesh.close()
        if self._face_detection is not None:
            self._face_detection.close()


class PrecomputedLandmarks:
    """Landmarks listed in a ``landmarks.scp`` (``<utt> <path.npy>``), each float (T, 5, 2) as in SPEC.md.

    Relative ``.npy`` paths are taken relative to the current directory (the recipe directory, as for
    ``video.scp``)."""

    def __init__(self, scp: str):
        self.scp = str(scp)
        self.paths = read_kv(scp)

    def __contains__(self, utt: str) -> bool:
        return utt in self.paths

    def load(self, utt: str) -> np.ndarray:
        """float32 (T, 5, 2) for ``utt``; ValueError naming the scp and file if missing or malformed."""
        if utt not in self.paths:
            raise ValueError(f"{self.scp}: no landmarks for utterance '{utt}'; add it or drop --landmarks-scp")
        path = self.paths[utt]
        try:
            lm = np.load(path)
        except Exception as e:
            raise ValueError(f"{self.scp}: utterance '{utt}': cannot load '{path}': {e}")
        if lm.ndim != 3 or lm.shape[1:] != (NUM_POINTS, 2):
            raise ValueError(f"{self.scp}: utterance '{utt}': '{path}' has shape {lm.shape}, expected (T, 5, 2)")
        return lm.astype(np.float32, copy=False)


def interpolate_missing(lm: np.ndarray) -> Optional[np.ndarray]:
    """Fill NaN frames of (T, 5, 2) landmarks by linear interpolation in time; frames before the first / after
    the last detection hold the nearest detection. A frame counts as missing if any of its values is NaN.

    Returns a new float32 array, or None if no frame has a face."""
    lm = np.asarray(lm, dtype=np.float32)
    ok = np.isfinite(lm).all(axis=(1, 2))
    if not ok.any():
        return None
    if ok.all():
        return lm.copy()
    t = np.arange(lm.shape[0])
    flat = lm.reshape(lm.shape[0], -1)
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, t[ok], flat[ok, j])  # np.interp holds the edge values outside [t0, t1]
    return out.reshape(lm.shape)


def smooth(lm: np.ndarray, window: int = 5) -> np.ndarray:
    """Temporal smoothing of NaN-free (T, 5, 2) landmarks over ``window`` frames (auto-avsr style: removes
    detector jitter so the crop does not shake): each frame takes the value at that frame of the least-squares
    straight line through the ``window`` frames around it. Inside the clip (odd ``window``) that is the centred
    moving average. Near the clip ends the window is shifted, not truncated, so it still holds ``window`` frames
    (all of them in a shorter clip): a truncated average lags a moving face by up to half a window at the
    first and last frames, which made the crop's last frame jump ~4 px from its neighbours on a moving real
    face, while the fitted line follows steady motion exactly. ``window <= 1`` returns a copy. Returns float32
    (T, 5, 2)."""
    lm = np.asarray(lm, dtype=np.float64)
    num = lm.shape[0]
    if window <= 1 or num <= 1:
        return lm.astype(np.float32)
    n = min(window, num)
    t = np.arange(num, dtype=np.float64)
    lo = np.clip(np.arange(num) - (window - 1) // 2, 0, num - n)  # the window of frame t is [lo, lo + n)
    hi = lo + n
    zero = np.zeros((1,) + lm.shape[1:])
    sum_y = np.concatenate([zero, np.cumsum(lm, axis=0)])
    sum_ty = np.concatenate([zero, np.cumsum(t[:, None, None] * lm, axis=0)])
    sum_t = np.concatenate([[0.0], np.cumsum(t)])
    sum_tt = np.concatenate([[0.0], np.cumsum(t * t)])
    y0, y1 = sum_y[hi] - sum_y[lo], sum_ty[hi] - sum_ty[lo]
    s1, s2 = sum_t[hi] - sum_t[lo], sum_tt[hi] - sum_tt[lo]
    denom = n * s2 - s1 * s1  # > 0 for n >= 2
    slope = (n * y1 - s1[:, None, None] * y0) / denom[:, None, None]
    out = y0 / n + slope * (t - s1 / n)[:, None, None]
    return out.astype(np.float32)

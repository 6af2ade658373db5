"""Mouth region of interest: align every frame to a reference face, cut a grey mouth crop (default 96x96).

Per frame ``t`` (after :func:`~vallr_pin.video.landmarks.interpolate_missing` and
:func:`~vallr_pin.video.landmarks.smooth` over the clip):

1. Four alignment points are taken from the 5 landmarks: right eye centre, left eye centre, nose tip and the
   *midpoint* of the mouth corners. The midpoint, not the corners themselves, is used so that spreading or
   rounding the lips (what a lip reader must see) does not change the scale of the crop.
2. A similarity transform (rotation, uniform scale, translation; no reflection) is fitted by least squares
   (Umeyama 1991) from those points to the same points of :data:`REFERENCE_FACE`. The fit is dominated by
   the eye line for rotation and by the eye distance and eye-to-mouth distance for scale, so in-plane head
   rotation and distance to the camera are removed.
3. One zoom factor per clip rescales all transforms so that the *median over the clip* of the aligned
   mouth-corner distance spans ``mouth_width_frac`` of the crop width (default 0.45: ~43 of 96 pixels, leaving
   cheeks and chin around the mouth for opening and spreading). The zoom is per clip, not per frame, so the
   mouth still visibly widens and narrows while speaking, and speakers with wide or narrow mouths fill the
   crop alike. Each transform is then translated so that the mouth-corner midpoint lands on the crop centre
   ``((W - 1) / 2, (H - 1) / 2)`` in pixel-centre coordinates.
4. ``cv2.warpAffine`` (bilinear, zero border) samples the crop straight from the full grey frame.

So within a clip the crop follows the head (drift, zoom, in-plane rotation removed) while lip motion is kept;
across clips the mouth has the same typical width.

Before the crop, :func:`check_face_plausible` rejects landmarks that cannot be a face seen upright: the
per-frame fit of step 2 must leave the eyes above the mouth (a fitted rotation within +-90 degrees; an
upside-down video, in its pixels or through rotation metadata, has them below), and the eyes must be between
``MIN_EYE_DISTANCE_PX`` pixels and ``MAX_EYE_DISTANCE_FRAC`` of the frame width apart (less is a face too small
to cut a mouth from, or points collapsed onto one spot; more is no face in this frame). A clip fails
(:class:`ImplausibleFaceError`) when more than half of its frames with landmarks break a rule.

Only the per-frame transforms need the whole clip (smoothing window, the clip's median zoom); they are made
from the (T, 5, 2) landmarks alone by :func:`clip_transforms`, so the frames themselves can be warped chunk by
chunk (:func:`warp_rois` on any slice) and a long clip never has to be in memory at once.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

from vallr_pin.video.landmarks import interpolate_missing, smooth

# The 5-point mean face of insightface/ArcFace alignment (arcface_dst, 112x112 pixels), a standard template
# averaged over many real faces, in SPEC order: right eye, left eye, nose tip, right and left mouth corner.
REFERENCE_FACE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

DEFAULT_ROI_SIZE = 96
DEFAULT_MOUTH_WIDTH_FRAC = 0.45


MIN_EYE_DISTANCE_PX = 6.0  # below: ~8x upsampled mouth in the default crop, or points collapsed on one spot
MAX_EYE_DISTANCE_FRAC = 0.9  # of the frame width
MAX_IMPLAUSIBLE_FRAC = 0.5  # a clip fails when more of its frames with landmarks than this break a rule


class NoFaceError(ValueError):
    """No frame of the clip has landmarks, so there is nothing to align the crop to."""


class ImplausibleFaceError(ValueError):
    """The landmarks are not an upright face of a plausible size (see :func:`check_face_plausible`)."""


def _alignment_points(lm: np.ndarray) -> np.ndarray:
    """(..., 5, 2) -> (..., 4, 2): eyes, nose, mouth-corner midpoint."""
    return np.concatenate([lm[..., :3, :], 0.5 * (lm[..., 3:4, :] + lm[..., 4:5, :])], axis=-2)


_REFERENCE_POINTS = _alignment_points(REFERENCE_FACE)


def _similarity_lstsq(src: np.ndarray, dst: np.ndarray) -> Tuple[float, np.ndarray]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama). Returns (s, R 2x2), proper rotation."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    var_s = (xs ** 2).sum() / len(src)
    return float((d * sign).sum() / var_s), rot


def check_face_plausible(landmarks: np.ndarray, frame_width: Optional[int] = None) -> None:
    """Raise :class:`ImplausibleFaceError` (one line: what is wrong, what to do) unless most frames of the clip
    show an upright face of a plausible size.

    landmarks: float (T, 5, 2) pixel (x, y), NaN rows where no face was found (they are not counted);
    frame_width: pixels, for the upper bound on the eye distance (None: not checked)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    lm = lm[np.isfinite(lm).all(axis=(1, 2))]
    if len(lm) == 0:
        return
    pts = _alignment_points(lm)
    upside_down = np.zeros(len(lm), dtype=bool)
    for t in range(len(lm)):
        _, rot = _similarity_lstsq(pts[t], _REFERENCE_POINTS)
        upside_down[t] = rot[0, 0] < 0  # |rotation| > 90 degrees: after the fit the eyes are below the mouth
    eye_dist = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1)
    too_small = eye_dist < MIN_EYE_DISTANCE_PX
    too_large = eye_dist > MAX_EYE_DISTANCE_FRAC * frame_width if frame_width else np.zeros(len(lm), dtype=bool)
    n, limit = len(lm), MAX_IMPLAUSIBLE_FRAC * len(lm)
    if upside_down.sum() > limit:
        raise ImplausibleFaceError(
            f"the eyes are below the mouth in {int(upside_down.sum())} of {n} frames: the video shows the face "
            "upside down (in its pixels, or through rotation metadata); turn it upright (e.g. ffmpeg -vf "
            "'transpose=2,transpose=2' -metadata:s:v rotate=0) or drop the utterance")
    if too_small.sum() > limit:
        raise ImplausibleFaceError(
            f"the eyes are {np.median(eye_dist[too_small]):.1f} px apart in {int(too_small.sum())} of {n} frames "
            f"(< {MIN_EYE_DISTANCE_PX:g} px): no face large enough to crop a mouth from; check the video or its "
            "landmarks")
    if too_large.sum() > limit:
        raise ImplausibleFaceError(
            f"the eyes are {np.median(eye_dist[too_large]):.0f} px apart in {int(too_large.sum())} of {n} frames, "
            f"more than {MAX_EYE_DISTANCE_FRAC:g} of the {frame_width} px frame width: these are not face "
            "landmarks of this video; check the landmarks file or the detector")


def _roi_hw(roi_size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    if isinstance(roi_size, int):
        return roi_size, roi_size
    h, w = roi_size
    return int(h), int(w)


def estimate_transforms(
    landmarks: np.ndarray,
    roi_size: Union[int, Tuple[int, int]] = DEFAULT_ROI_SIZE,
    mouth_width_frac: float = DEFAULT_MOUTH_WIDTH_FRAC,
) -> np.ndarray:
    """Per-frame 2x3 affine matrices (T, 2, 3) float64 mapping frame pixels (x, y) to crop pixels.

    landmarks: NaN-free float (T, 5, 2) pixel (x, y) of one whole clip, usually already smoothed (the zoom is
    set from the clip's median mouth width, see the module docstring). The crop is (H, W) = roi_size.
    """
    h, w = _roi_hw(roi_size)
    if not 0 < mouth_width_frac < 1:
        raise ValueError(f"mouth_width_frac must be in (0, 1), got {mouth_width_frac}")
    lm = np.asarray(landmarks, dtype=np.float64)
    if not np.isfinite(lm).all():
        raise ValueError("estimate_transforms needs NaN-free landmarks; run interpolate_missing first")
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    pts = _alignment_points(lm)
    num = lm.shape[0]
    out = np.empty((num, 2, 3))
    if num == 0:
        return out
    mouth_width = np.empty(num)  # mouth-corner distance in reference-face pixels, per frame
    for t in range(num):
        s, rot = _similarity_lstsq(pts[t], _REFERENCE_POINTS)
        out[t, :, :2] = s * rot
        mouth_width[t] = s * np.linalg.norm(lm[t, 4] - lm[t, 3])
    zoom = mouth_width_frac * w / max(float(np.median(mouth_width)), 1e-6)  # one factor for the whole clip
    out[:, :, :2] *= zoom
    for t in range(num):
        out[t, :, 2] = centre - out[t, :, :2] @ pts[t, 3]  # mouth-corner midpoint -> crop centre
    return out


def warp_rois(frames_grey: np.ndarray, transforms: np.ndarray, roi_size=DEFAULT_ROI_SIZE) -> np.ndarray:
    """Sample crops: frames (T, H0, W0) uint8 grey, transforms (T, 2, 3) -> uint8 (T, H, W)."""
    import cv2

    h, w = _roi_hw(roi_size)
    out = np.empty((frames_grey.shape[0], h, w), dtype=np.uint8)
    for t in range(frames_grey.shape[0]):
        out[t] = cv2.warpAffine(
            frames_grey[t], transforms[t], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
    return out


def clip_transforms(
    landmarks: np.ndarray,
    frame_width: Optional[int] = None,
    roi_size: Union[int, Tuple[int, int]] = DEFAULT_ROI_SIZE,
    mouth_width_frac: float = DEFAULT_MOUTH_WIDTH_FRAC,
    smooth_window: int = 5,
) -> np.ndarray:
    """Frame->crop transforms (T, 2, 3) of a whole clip from its landmarks alone (no frames needed).

    landmarks: float (T, 5, 2) pixel (x, y), NaN rows where no face was found (filled by linear interpolation,
    then smoothed over ``smooth_window`` frames); frame_width: pixels, for :func:`check_face_plausible`.
    Raises :class:`NoFaceError` if no frame has landmarks, :class:`ImplausibleFaceError` if they are no upright
    face."""
    filled = interpolate_missing(landmarks)
    if filled is None:
        raise NoFaceError("no face found in any frame")
    check_face_plausible(landmarks, frame_width)
    return estimate_transforms(smooth(filled, smooth_window), roi_size, mouth_width_frac)


def crop_mouth_rois(
    frames_grey: np.ndarray,
    landmarks: np.ndarray,
    roi_size: Union[int, Tuple[int, int]] = DEFAULT_ROI_SIZE,
    mouth_width_frac: float = DEFAULT_MOUTH_WIDTH_FRAC,
    smooth_window: int = 5,
    return_transforms: bool = False,
):
    """Aligned grey mouth crops of one clip.

    frames_grey: uint8 (T, H0, W0) at 25 fps; landmarks: float (T, 5, 2) pixel (x, y) on those frames, NaN
    rows where no face was found (filled by linear interpolation, then smoothed over ``smooth_window`` frames).
    Returns uint8 (T, H, W) with (H, W) = roi_size, and the (T, 2, 3) frame->crop transforms if asked.
    Raises :class:`NoFaceError` if no frame has landmarks, :class:`ImplausibleFaceError` if they are no upright
    face (:func:`clip_transforms`). The whole clip in memory: stage 1 itself warps chunk by chunk.
    """
    if frames_grey.ndim != 3:
        raise ValueError(f"expected grey frames (T, H, W), got shape {frames_grey.shape}")
    if landmarks.shape[0] != frames_grey.shape[0]:
        raise ValueError(f"{landmarks.shape[0]} landmark frames for {frames_grey.shape[0]} video frames")
    transforms = clip_transforms(landmarks, frames_grey.shape[2], roi_size, mouth_width_frac, smooth_window)
    rois = warp_rois(frames_grey, transforms, roi_size)
    return (rois, transforms) if return_transforms else rois

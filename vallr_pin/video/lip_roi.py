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
"""

from __future__ import annotations

from typing import Tuple, Union

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


class NoFaceError(ValueError):
    """No frame of the clip has landmarks, so there is nothing to align the crop to."""


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
    Raises :class:`NoFaceError` if no frame has landmarks.
    """
    if frames_grey.ndim != 3:
        raise ValueError(f"expected grey frames (T, H, W), got shape {frames_grey.shape}")
    if landmarks.shape[0] != frames_grey.shape[0]:
        raise ValueError(f"{landmarks.shape[0]} landmark frames for {frames_grey.shape[0]} video frames")
    filled = interpolate_missing(landmarks)
    if filled is None:
        raise NoFaceError("no face found in any frame")
    transforms = estimate_transforms(smooth(filled, smooth_window), roi_size, mouth_width_frac)
    rois = warp_rois(frames_grey, transforms, roi_size)
    return (rois, transforms) if return_transforms else rois

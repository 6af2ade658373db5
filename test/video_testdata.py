"""Tiny real-face videos for the stage-1 tests and benchmark.

The face is ``skimage.data.astronaut()`` (a real photograph, Eileen Collins, public domain, shipped inside
scikit-image). Each video frame is the photo under a known similarity warp (slow drift, zoom and in-plane
rotation), so the true position of any point of the photo in every frame is known exactly.
"""

from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

# Mouth-corner midpoint of the astronaut photo (512x512), roughly; the warp rotates around it.
FACE_CENTRE = (222.0, 125.0)


def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 RGB


def frame_warps(num_frames: int, size: int, scale: float = 1.6, rot_deg: float = 8.0, shift: float = 8.0,
                width: int = None) -> List[np.ndarray]:
    """Per-frame 2x3 photo->frame warps: the face centred in a ``width`` x ``size`` frame (width default: size),
    scaled by ~``scale``, rotating +-``rot_deg``, drifting +-``shift`` px and zooming +-8%, smoothly over the clip
    (one slow cycle, like a head moving while talking)."""
    width = width or size
    warps = []
    for i in range(num_frames):
        ph = 2 * np.pi * i / max(num_frames, 1)
        m = cv2.getRotationMatrix2D(FACE_CENTRE, rot_deg * np.sin(ph), scale * (1 + 0.08 * np.sin(0.5 * ph)))
        m[:, 2] += [width / 2 - FACE_CENTRE[0] + shift * np.sin(ph), size / 2 - FACE_CENTRE[1] + 0.6 * shift * np.cos(ph)]
        warps.append(m)
    return warps


def write_astronaut_video(path: str, num_frames: int = 25, fps: float = 25.0, size: int = 320, width: int = None,
                          **warp_kw) -> List[np.ndarray]:
    """Write an mp4 ('mp4v') of the moving astronaut face, ``width`` x ``size`` pixels (width default: size, a
    square); returns the photo->frame warps (one per frame)."""
    width = width or size
    bgr = cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2BGR)
    warps = frame_warps(num_frames, size, width=width, **warp_kw)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, size))
    for m in warps:
        writer.write(cv2.warpAffine(bgr, m, (width, size), borderMode=cv2.BORDER_REFLECT))
    writer.release()
    return warps


def write_frames_video(path: str, frames_rgb: np.ndarray, fps: float = 25.0) -> None:
    """Write uint8 (T, H, W, 3) RGB frames as an mp4 ('mp4v')."""
    t, h, w, _ = frames_rgb.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames_rgb:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(2, 3) affine applied to (N, 2) points."""
    return pts @ m[:, :2].T + m[:, 2]


def mouth_geometry(corners: np.ndarray) -> Tuple[np.ndarray, float, float]:
    """(2, 2) mouth corners [image-left, image-right] -> (midpoint (2,), distance, angle of the line in degrees)."""
    d = corners[1] - corners[0]
    return corners.mean(0), float(np.hypot(*d)), float(np.degrees(np.arctan2(d[1], d[0])))


def set_mp4_rotation(path: str, degrees: int) -> None:
    """Give an mp4 written by OpenCV a display rotation (the track header's matrix, what phones write and
    ffmpeg calls ``rotate``): players, and decord, show the stored frames turned ``degrees`` clockwise."""
    import struct

    data = bytearray(open(path, "rb").read())
    i = data.find(b"tkhd")
    assert i > 0, f"{path}: no tkhd box"
    version = data[i + 4]
    # version/flags, times, track id, reserved, duration, reserved, layer, alternate group, volume, reserved
    off = i + 4 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4) + 8 + 2 + 2 + 2 + 2
    c, s = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    one = 1 << 16
    data[off:off + 36] = struct.pack(">9i", c * one, s * one, 0, -s * one, c * one, 0, 0, 0, 1 << 30)
    open(path, "wb").write(bytes(data))


def _mp4_boxes(data, start: int = 0, end: int = None):
    """(type, offset, size, header size) of the boxes in data[start:end]."""
    import struct

    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, typ = struct.unpack(">I4s", data[i:i + 8])
        hdr = 8
        if size == 1:
            size, hdr = struct.unpack(">Q", data[i + 8:i + 16])[0], 16
        elif size == 0:
            size = end - i
        yield typ.decode("latin-1"), i, size, hdr
        i += size


def faststart_mp4(path: str) -> list:
    """Move the index (``moov``) of an mp4 written by OpenCV in front of the media data, as ``ffmpeg -movflags
    +faststart`` and streaming sites do (a cut-short download of such a file still opens). Rewrites ``path``;
    returns the byte offset of every frame in the new file, in order (cut there to lose whole frames)."""
    import struct

    data = open(path, "rb").read()
    top = {t: (i, s) for t, i, s, _ in _mp4_boxes(data)}
    (mi, ms), (di, _) = top["moov"], top["mdat"]
    assert mi > di, f"{path}: the index is already in front"
    moov = bytearray(data[mi:mi + ms])
    offsets, sizes = [], []

    def patch(start, end):
        for t, i, s, h in _mp4_boxes(moov, start, end):
            if t in ("trak", "mdia", "minf", "stbl"):
                patch(i + h, i + s)
            elif t == "stco":  # 32-bit chunk offsets: they all move by the index's size
                for k in range(struct.unpack(">I", moov[i + 12:i + 16])[0]):
                    o = i + 16 + 4 * k
                    new = struct.unpack(">I", moov[o:o + 4])[0] + ms
                    moov[o:o + 4] = struct.pack(">I", new)
                    offsets.append(new)
            elif t == "stsz":  # sample sizes: one size for all, or one entry per sample
                size, count = struct.unpack(">II", moov[i + 12:i + 20])
                sizes.extend([size] * count if size else struct.unpack(f">{count}I", moov[i + 20:i + 20 + 4 * count]))

    patch(8, ms)
    assert len(offsets) == 1, f"{path}: {len(offsets)} chunks; only OpenCV's one-chunk files are handled"
    open(path, "wb").write(data[:di] + bytes(moov) + data[di:mi] + data[mi + ms:])
    return [int(x) for x in offsets[0] + np.concatenate([[0], np.cumsum(sizes)[:-1]])]

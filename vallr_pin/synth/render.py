"""Draw a talking face from a viseme trajectory: frames (T, H, W, 3) uint8 BGR, 25 fps, plus known landmarks.

Per utterance the static face (background, hair, ears, skin with soft shading, eyes with pupils, brows, nose,
lighting gradient) is drawn once; per frame only the mouth is drawn (anti-aliased polygons: lips, dark
interior, tongue, teeth), then the whole frame is moved by the head pose (roll, zoom, drift, jitter) with one
``cv2.warpAffine``, lightly blurred, and sensor noise from a small per-utterance bank is added. That keeps
rendering well above 1000 frames per second per core at 160x160 (``python -m vallr_pin.synth.benchmark``).

The faces are plain cartoons, but mediapipe FaceMesh finds them (the renderer was tuned against it), so the
corpus exercises the same landmark -> mouth-ROI path as real video. The renderer also returns its own
landmarks in the project's 5-point order (SPEC.md): [right eye centre (image left), left eye centre, nose tip,
right mouth corner (image left), left mouth corner (image right)], pixel (x, y) of the written frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from vallr_pin.synth.speakers import BGR, Session, Speaker, sample_session
from vallr_pin.synth.visemes import (
    POSE_FIELDS,
    Syllable,
    Timing,
    sample_timing,
    text_to_syllables,
    trajectory,
)

FPS = 25
_SHIFT = 4  # fixed-point bits for cv2 polygon vertices (1/16 px precision)
_ONE = 1 << _SHIFT
_F = {name: i for i, name in enumerate(POSE_FIELDS)}
_NPTS = 13  # points per lip curve


@dataclass
class Rendered:
    """One rendered utterance."""

    frames: np.ndarray  # (T, H, W, 3) uint8, BGR
    landmarks: np.ndarray  # (T, 5, 2) float32, pixel (x, y) in the frames
    poses: np.ndarray  # (T, P) float32 viseme trajectory (see visemes.POSE_FIELDS)
    timing: Timing
    units: list  # text_to_syllables output


def _lit(colour: BGR, gain: float, contrast: float) -> Tuple[float, float, float]:
    c = (np.asarray(colour, np.float32) - 128.0) * contrast + 128.0
    return tuple(float(v) for v in np.clip(c * gain, 0, 255))


class FaceCanvas:
    """The static part of one speaker's face for one session, and the geometry the mouth is drawn in.

    ``size`` is the frame side in pixels (square frames)."""

    def __init__(self, spk: Speaker, ses: Session, size: int):
        self.spk, self.ses, self.size = spk, ses, size
        s = float(size)
        self.cx, self.cy = spk.face_cx * s, spk.face_cy * s
        self.rx, self.ry = spk.face_rx * s, spk.face_ry * s
        shift = ses.yaw * self.rx
        self.eye_r = (self.cx + shift - spk.eye_dx * self.rx, self.cy - spk.eye_y * self.ry)  # image left
        self.eye_l = (self.cx + shift + spk.eye_dx * self.rx, self.cy - spk.eye_y * self.ry)
        self.nose = (self.cx + 1.4 * shift, self.cy + spk.nose_y * self.ry)
        self.mouth = (self.cx + 1.1 * shift, self.cy + spk.mouth_y * self.ry)
        self.mouth_hw = spk.mouth_hw * self.rx
        self.image = self._draw_static()
        # lighting at the mouth, for the per-frame mouth colours (the gradient is baked into the static face)
        self.mouth_gain = float(self._gain_map[int(self.mouth[1]), int(self.mouth[0])])
        g, c = self.mouth_gain, spk.contrast
        self.col_lip = _lit(spk.lip, g, c)
        self.col_lip_hi = _lit(tuple(min(255, int(v * 1.18 + 12)) for v in spk.lip), g, c)
        self.col_lip_dark = _lit(tuple(int(v * 0.75) for v in spk.lip), g, c)
        self.col_interior = _lit(spk.interior, g, c)
        self.col_teeth = _lit(spk.teeth, g, c)
        self.col_tongue = _lit(spk.tongue, g, c)
        self.col_seam = _lit(tuple(int(v * 0.45) for v in spk.lip), g, c)

    # -- static face -----------------------------------------------------------------------------------
    def _draw_static(self) -> np.ndarray:
        spk, s = self.spk, self.size
        img = np.empty((s, s, 3), np.uint8)
        img[:] = spk.background
        cx, cy, rx, ry = self.cx, self.cy, self.rx, self.ry
        sc = lambda c, f: tuple(int(np.clip(v * f, 0, 255)) for v in c)  # noqa: E731
        P = lambda x, y: (int(round(x)), int(round(y)))  # noqa: E731
        A = lambda a, b: (max(1, int(round(a))), max(1, int(round(b))))  # noqa: E731
        # shoulders and neck
        cv2.ellipse(img, P(cx, s * 1.05), A(rx * 2.2, ry * 0.75), 0, 0, 360, sc(spk.background, 0.45)[::-1], -1)
        cv2.rectangle(img, P(cx - 0.42 * rx, cy + 0.5 * ry), P(cx + 0.42 * rx, s), sc(spk.skin, 0.78), -1)
        # hair behind the head, ears
        cv2.ellipse(img, P(cx, cy - 0.12 * ry), A(rx * 1.12, ry * 1.02), 0, 0, 360, spk.hair, -1)
        for side in (-1, 1):
            cv2.ellipse(img, P(cx + side * rx * 0.97, cy - 0.02 * ry), A(rx * 0.13, ry * 0.2), 0, 0, 360,
                        sc(spk.skin, 0.85), -1)
        # face: darker rim, lighter centre (blurred below into soft shading)
        cv2.ellipse(img, P(cx, cy), A(rx, ry), 0, 0, 360, sc(spk.skin, 0.86), -1)
        cv2.ellipse(img, P(cx, cy - 0.04 * ry), A(rx * 0.86, ry * 0.88), 0, 0, 360, spk.skin, -1)
        # hairline / fringe
        cv2.ellipse(img, P(cx, cy - ry * (1.0 - spk.hair_top * 0.35)), A(rx * 1.04, ry * spk.hair_top), 0, 180, 360,
                    spk.hair, -1)
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(1.0, s / 90.0))
        # eyes
        ew = spk.eye_r * rx
        for k, (ex, ey) in enumerate((self.eye_r, self.eye_l)):
            # the eye on the side the head turns away from looks narrower
            w = ew * (1.0 + (1 if k == 0 else -1) * self.ses.yaw * 1.2)
            cv2.ellipse(img, P(ex, ey + 0.15 * ew), A(w * 1.25, ew * 0.75), 0, 180, 360, sc(spk.skin, 0.8), -1)
            cv2.ellipse(img, P(ex, ey), A(w, ew * 0.5), 0, 0, 360, (235, 238, 240), -1, cv2.LINE_AA)
            ir = ew * 0.42
            cv2.circle(img, P(ex + self.ses.yaw * ew, ey), max(1, int(round(ir))), spk.iris, -1, cv2.LINE_AA)
            cv2.circle(img, P(ex + self.ses.yaw * ew, ey), max(1, int(round(ir * 0.5))), (15, 15, 15), -1,
                       cv2.LINE_AA)
            cv2.circle(img, P(ex + self.ses.yaw * ew + ir * 0.3, ey - ir * 0.3), max(1, int(round(ir * 0.18))),
                       (250, 250, 250), -1, cv2.LINE_AA)
            cv2.ellipse(img, P(ex, ey), A(w, ew * 0.5), 0, 180, 360, (40, 35, 35), max(1, int(s / 110)), cv2.LINE_AA)
            # brow: an arc above the eye
            by = ey - spk.brow_gap * ry
            cv2.ellipse(img, P(ex, by + ew * 0.35), A(w * 1.25, ew * 0.55), 0, 195, 345, sc(spk.hair, 0.8),
                        max(1, int(round(spk.brow_thick * rx))), cv2.LINE_AA)
        # nose: bridge shadow, tip, nostrils
        nx, ny = self.nose
        bridge_x = (self.eye_r[0] + self.eye_l[0]) / 2
        cv2.line(img, P(bridge_x + 0.08 * rx, self.eye_r[1] + 0.1 * ry), P(nx + 0.1 * rx, ny - 0.05 * ry),
                 sc(spk.skin, 0.8), max(1, int(s / 100)), cv2.LINE_AA)
        cv2.ellipse(img, P(nx, ny), A(rx * 0.16, ry * 0.06), 0, 0, 180, sc(spk.skin, 0.72), max(1, int(s / 90)),
                    cv2.LINE_AA)
        for side in (-1, 1):
            cv2.ellipse(img, P(nx + side * rx * 0.085, ny + 0.01 * ry), A(rx * 0.05, ry * 0.025), 0, 0, 360,
                        sc(spk.skin, 0.45), -1, cv2.LINE_AA)
        # chin crease under the lower lip
        mx, my = self.mouth
        cv2.ellipse(img, P(mx, my + ry * 0.22), A(rx * 0.16, ry * 0.04), 0, 20, 160, sc(spk.skin, 0.85),
                    max(1, int(s / 120)), cv2.LINE_AA)
        # the same face with closed eyes, for blinks: lids in skin colour over the eye, a lash line below
        closed = img.copy()
        for k, (ex, ey) in enumerate((self.eye_r, self.eye_l)):
            w = ew * (1.0 + (1 if k == 0 else -1) * self.ses.yaw * 1.2)
            cv2.ellipse(closed, P(ex, ey), A(w * 1.08, ew * 0.6), 0, 0, 360, sc(spk.skin, 0.9), -1, cv2.LINE_AA)
            cv2.ellipse(closed, P(ex, ey), A(w, ew * 0.25), 0, 0, 180, (40, 35, 35), max(1, int(s / 110)),
                        cv2.LINE_AA)
        # lighting: gain x side gradient, contrast around mid-grey (once per utterance)
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s - 0.5
        grad = 1.0 + spk.grad_strength * (np.cos(spk.grad_angle) * xx + np.sin(spk.grad_angle) * yy) * 2
        self._gain_map = (spk.brightness * self.ses.light * grad).astype(np.float32)
        out = []
        for im in (img, closed):
            f = (cv2.GaussianBlur(im, (3, 3), 0).astype(np.float32) - 128.0) * spk.contrast + 128.0
            f *= self._gain_map[..., None]
            out.append(np.clip(f, 0, 255).astype(np.uint8))
        self.image_closed_eyes = out[1]
        return out[0]

    # -- mouth -----------------------------------------------------------------------------------------
    def mouth_shape(self, p: np.ndarray) -> dict:
        """Geometry (pixels, relative to the mouth centre) of pose ``p`` (P,)."""
        spk = self.spk
        W0 = self.mouth_hw
        op = float(np.clip(p[_F["open"]], 0, 1.2)) * spk.articulation
        spread, rnd, pro = float(p[_F["spread"]]), float(p[_F["round"]]), float(p[_F["protrude"]])
        teeth, tongue, bite = float(p[_F["teeth"]]), float(p[_F["tongue"]]), float(p[_F["bite"]])
        hw = W0 * (1.0 + 0.16 * spread - 0.38 * rnd)
        gap = W0 * 0.95 * op  # full inner opening height
        iw = hw * (0.86 - 0.30 * rnd)  # inner half-width: rounding makes the opening circular
        top, bot = -0.38 * gap, 0.62 * gap  # the jaw moves the lower lip more than the upper
        thick_u = spk.lip_upper * self.rx * (1.0 + 0.55 * pro - 0.25 * max(spread, 0.0))
        thick_l = spk.lip_lower * self.rx * (1.0 + 0.55 * pro - 0.25 * max(spread, 0.0)) * (1.0 - 0.45 * bite)
        bot -= bite * 0.3 * thick_l
        return dict(hw=hw, iw=iw, top=top, bot=bot, tu=thick_u, tl=thick_l, teeth=teeth, tongue=tongue, gap=gap,
                    rnd=rnd)

    _xs = np.cos(np.linspace(np.pi, 0, _NPTS)).astype(np.float32)  # -1..1, dense at the corners
    _arc = np.sqrt(np.clip(1 - _xs ** 2, 0, 1))

    def draw_mouth(self, img: np.ndarray, p: np.ndarray) -> Tuple[float, float]:
        """Draw pose ``p`` into ``img`` (canvas coordinates); return the mouth-corner half-width (px)."""
        g = self.mouth_shape(p)
        mx, my = self.mouth
        xs, arc = self._xs, self._arc
        bow = 1.0 - self.spk.bow * np.exp(-(xs / 0.16) ** 2) + 0.12 * np.exp(-((np.abs(xs) - 0.3) / 0.14) ** 2)
        # outer contour: upper lip over the inner opening, then lower lip; corners at (+-hw, 0)
        x_out = xs * g["hw"]
        prof = arc ** 0.5
        x_in = np.clip(xs * g["hw"], -g["iw"], g["iw"])
        inner_top = g["top"] * np.sqrt(np.clip(1 - (x_out / max(g["iw"], 1e-3)) ** 2, 0, 1))
        inner_bot = g["bot"] * np.sqrt(np.clip(1 - (x_out / max(g["iw"], 1e-3)) ** 2, 0, 1))
        up = inner_top - g["tu"] * prof * bow
        lo = inner_bot + g["tl"] * prof
        outer = np.concatenate([np.stack([x_out, up], 1), np.stack([x_out[::-1], lo[::-1]], 1)])
        cv2.fillPoly(img, [self._pts(outer, mx, my)], self.col_lip, cv2.LINE_AA, _SHIFT)
        # highlight on the lower lip
        hl = np.stack([x_out * 0.55, inner_bot * 0.55 + (inner_bot + g["tl"] * prof) * 0.45], 1)
        cv2.polylines(img, [self._pts(hl[3:-3], mx, my)], False, self.col_lip_hi, max(1, int(self.size / 110)),
                      cv2.LINE_AA, _SHIFT)
        if g["gap"] > 0.6:
            xi = xs * g["iw"]
            ti = g["top"] * arc
            bi = g["bot"] * arc
            inner = np.concatenate([np.stack([xi, ti], 1), np.stack([xi[::-1], bi[::-1]], 1)])
            cv2.fillPoly(img, [self._pts(inner, mx, my)], self.col_interior, cv2.LINE_AA, _SHIFT)
            th_max = self.mouth_hw * 0.2
            if g["tongue"] > 0.05:
                tb = np.maximum(bi - g["tongue"] * g["gap"] * 0.75, ti)
                sel = slice(2, _NPTS - 2)
                tongue = np.concatenate([np.stack([xi[sel], tb[sel]], 1), np.stack([xi[sel][::-1], bi[sel][::-1]], 1)])
                cv2.fillPoly(img, [self._pts(tongue, mx, my)], self.col_tongue, cv2.LINE_AA, _SHIFT)
            if g["teeth"] > 0.05:
                sel = slice(1, _NPTS - 1)
                tx = xi[sel] * 0.92
                t_top = ti[sel]
                t_bot = np.minimum(t_top + g["teeth"] * th_max, bi[sel])
                teeth = np.concatenate([np.stack([tx, t_top], 1), np.stack([tx[::-1], t_bot[::-1]], 1)])
                cv2.fillPoly(img, [self._pts(teeth, mx, my)], self.col_teeth, cv2.LINE_AA, _SHIFT)
                if g["teeth"] > 0.5:  # lower teeth show when the teeth are close together
                    lt = (g["teeth"] - 0.5) * 1.2 * th_max
                    l_top = np.maximum(bi[sel] - lt, t_bot)
                    lteeth = np.concatenate([np.stack([tx, l_top], 1), np.stack([tx[::-1], bi[sel][::-1]], 1)])
                    cv2.fillPoly(img, [self._pts(lteeth, mx, my)], self.col_teeth, cv2.LINE_AA, _SHIFT)
        else:  # closed: only the seam between the lips
            seam = np.stack([x_out, (inner_top + inner_bot) * 0.5], 1)
            cv2.polylines(img, [self._pts(seam, mx, my)], False, self.col_seam, max(1, int(self.size / 100)),
                          cv2.LINE_AA, _SHIFT)
        return g["hw"], 0.0

    @staticmethod
    def _pts(xy: np.ndarray, mx: float, my: float) -> np.ndarray:
        return np.round((xy + (mx, my)) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _head_motion(ses: Session, T: int, size: int, rng: np.random.Generator, center: Tuple[float, float]
                 ) -> np.ndarray:
    """(T, 2, 3) float32 affine matrices: roll/zoom about the face centre, drift and a smooth jitter."""
    t = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)
    walk = np.cumsum(rng.standard_normal((T, 3)), axis=0)
    walk -= walk.mean(0)
    k = np.ones(5) / 5
    walk = np.stack([np.convolve(np.pad(walk[:, j], 2, mode="edge"), k, mode="valid") for j in range(3)], 1)
    walk /= max(1.0, np.abs(walk).max())
    roll = ses.roll + ses.drift[0] * t + walk[:, 0] * 1.5
    dx = (ses.dx + ses.drift[1] * t + walk[:, 1] * ses.jitter * 4) * size
    dy = (ses.dy + ses.drift[2] * t + walk[:, 2] * ses.jitter * 4) * size
    mats = np.empty((T, 2, 3), np.float32)
    for i in range(T):
        m = cv2.getRotationMatrix2D(center, float(roll[i]), ses.scale)
        m[0, 2] += dx[i]
        m[1, 2] += dy[i]
        mats[i] = m
    return mats


def render_poses(poses: np.ndarray, spk: Speaker, ses: Session, size: int, rng: np.random.Generator,
                 blur: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Frames (T, size, size, 3) uint8 BGR and landmarks (T, 5, 2) float32 for a pose trajectory (T, P).

    ``rng`` drives the head jitter and sensor noise only (it is consumed identically for any ``poses`` of the
    same length, so two trajectories with the same seed differ in the mouth alone)."""
    T = int(poses.shape[0])
    canvas = FaceCanvas(spk, ses, size)
    mats = _head_motion(ses, T, size, rng, (canvas.cx, canvas.cy))
    n_bank = 6
    sigma = spk.noise_sigma
    noise = rng.standard_normal((n_bank, size, size, 3), dtype=np.float32) * sigma
    noise_pos = np.clip(noise, 0, 255).astype(np.uint8)
    noise_neg = np.clip(-noise, 0, 255).astype(np.uint8)
    pick = rng.integers(0, n_bank, size=T)
    frames = np.empty((T, size, size, 3), np.uint8)
    lms = np.empty((T, 5, 2), np.float32)
    static = canvas.image
    mx, my = canvas.mouth
    # mouth region to redraw: everything the lips can reach (generous bounds, clipped to the frame)
    x0, x1 = int(max(0, mx - canvas.mouth_hw * 1.5)), int(min(size, mx + canvas.mouth_hw * 1.5 + 1))
    y0, y1 = int(max(0, my - canvas.mouth_hw * 0.9)), int(min(size, my + canvas.mouth_hw * 1.3 + 1))
    # blinks: ~3 frames every 2-5 s (timing from rng like everything else that is not speech)
    blink = np.zeros(T, bool)
    t = int(rng.integers(10, 60))
    while t < T:
        blink[t:t + 3] = True
        t += int(rng.integers(50, 125))
    work = static.copy()
    base = static
    ksize = (3, 3) if size <= 192 else (5, 5)
    for i in range(T):
        want = canvas.image_closed_eyes if blink[i] else static
        if want is not base:
            base = want
            work[:] = base
        work[y0:y1, x0:x1] = base[y0:y1, x0:x1]
        hw, _ = canvas.draw_mouth(work, poses[i])
        m = mats[i]
        out = cv2.warpAffine(work, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if blur:
            out = cv2.GaussianBlur(out, ksize, 0)
        cv2.add(out, noise_pos[pick[i]], dst=out)
        cv2.subtract(out, noise_neg[pick[i]], dst=out)
        frames[i] = out
        pts = np.array([canvas.eye_r, canvas.eye_l, canvas.nose, (mx - hw, my), (mx + hw, my)], np.float32)
        lms[i] = pts @ m[:, :2].T + m[:, 2]
    return frames, lms


def utterance_rngs(seed: int, key: str) -> Tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Three independent generators (timing, session, frames) for utterance ``key`` of corpus ``seed``.

    Derived from a stable hash of ``key`` (not Python's salted ``hash``) so every run and worker agrees."""
    import zlib

    ss = np.random.SeedSequence([int(seed), zlib.crc32(key.encode("utf-8"))])
    return tuple(np.random.default_rng(s) for s in ss.spawn(3))  # type: ignore[return-value]


def plan_utterance(text: str, spk: Speaker, seed: int = 0, key: str = "",
                   units: Optional[Sequence[Optional[Syllable]]] = None, ses: Optional[Session] = None
                   ) -> Tuple[list, Session, Timing, np.ndarray, np.random.Generator]:
    """Everything of utterance ``key`` but its pixels: (units, session, timing, pose trajectory (T, P), the
    generator of the frames' noise and head motion). What :func:`render_text` draws, and what a tool that needs
    the renderer's per-frame truth (an oracle probe) re-derives without rendering."""
    if units is None:
        units = text_to_syllables(text)
    if not any(u is not None for u in units):
        raise ValueError(f"nothing to render in '{text}' (no Hanzi)")
    r_time, r_ses, r_frame = utterance_rngs(seed, key)
    if ses is None:
        ses = sample_session(spk, r_ses)
    timing = sample_timing(units, r_time, ses.rate)
    return list(units), ses, timing, trajectory(units, timing), r_frame


def render_text(text: str, spk: Speaker, seed: int = 0, key: str = "", size: int = 160,
                units: Optional[Sequence[Optional[Syllable]]] = None, ses: Optional[Session] = None) -> Rendered:
    """Render ``text`` spoken by ``spk``. Same ``(seed, key)`` -> same timing, pose, lighting and noise, so two
    sentences of equal length differ only where their visemes differ."""
    units, ses, timing, poses, r_frame = plan_utterance(text, spk, seed, key, units, ses)
    frames, lms = render_poses(poses, spk, ses, size, r_frame)
    return Rendered(frames, lms, poses, timing, units)


def write_mp4(path: os.PathLike | str, frames: np.ndarray, fps: int = FPS) -> None:
    """Write (T, H, W, 3) uint8 BGR frames as MPEG-4 Part 2 ('mp4v') atomically (temp name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    T, H, W = frames.shape[:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (W, H))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV could not open an mp4v writer (is opencv built with FFmpeg?)")
    try:
        for f in frames:
            writer.write(f)
    finally:
        writer.release()
    if not tmp.exists() or tmp.stat().st_size == 0:
        raise RuntimeError(f"{path}: OpenCV wrote no data")
    os.replace(tmp, path)


def write_landmarks(path: os.PathLike | str, landmarks: np.ndarray) -> None:
    """Write (T, 5, 2) float32 landmarks as ``.npy`` atomically."""
    from vallr_pin.datadir import atomic_open

    with atomic_open(path, "wb") as f:
        np.save(f, np.asarray(landmarks, np.float32))

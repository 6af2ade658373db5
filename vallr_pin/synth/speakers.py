"""Synthetic speakers: everything about a drawn talker that is not *what* they say.

A :class:`Speaker` is a pure function of ``(seed, index)`` (numpy ``SeedSequence``), so speaker ``spk007``
looks the same in every run and on every worker. Per utterance, :func:`sample_session` adds what changes
between recordings of one person: head pose (yaw as a feature shift, roll and position drift plus a small
per-frame jitter), lighting tweaks and the speaking rate of the day.

Units: pixels are given as fractions of the frame side (so one speaker renders at any resolution), colours
as BGR uint8 triples (OpenCV order), rates in frames per syllable at 25 fps.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Tuple

import numpy as np

BGR = Tuple[int, int, int]


def _hsv_bgr(h: float, s: float, v: float) -> BGR:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


@dataclass(frozen=True)
class Speaker:
    """Appearance and articulation of one synthetic talker (fractions of the frame side unless stated)."""

    name: str
    # face geometry
    face_cx: float  # face centre x
    face_cy: float  # face centre y
    face_rx: float  # face ellipse half-width
    face_ry: float  # face ellipse half-height
    eye_dx: float  # eye centre offset from the midline, fraction of face_rx
    eye_y: float  # eye height above face centre, fraction of face_ry
    eye_r: float  # eye half-width, fraction of face_rx
    brow_gap: float  # brow height above the eye, fraction of face_ry
    brow_thick: float  # brow thickness, fraction of face_rx
    nose_y: float  # nose tip below face centre, fraction of face_ry
    mouth_y: float  # mouth line below face centre, fraction of face_ry
    # lips (fractions of face_rx)
    mouth_hw: float  # rest half-width of the mouth
    lip_upper: float  # upper lip thickness at rest
    lip_lower: float  # lower lip thickness at rest
    bow: float  # depth of the cupid's bow (0..0.5 of the upper lip)
    articulation: float  # how far this talker opens (multiplies the 'open' target)
    # colours
    skin: BGR
    lip: BGR
    hair: BGR
    iris: BGR
    background: BGR
    teeth: BGR
    interior: BGR
    tongue: BGR
    # recording conditions
    brightness: float  # gain on the whole frame
    contrast: float  # contrast around mid-grey
    grad_strength: float  # side lighting: +-fraction of brightness across the frame
    grad_angle: float  # direction of the light, radians
    noise_sigma: float  # sensor noise, grey levels
    rate: float  # mean frames per syllable at 25 fps (4-7)
    hair_top: float = 0.0  # hairline drop, fraction of face_ry
    extras: dict = field(default_factory=dict, compare=False)


def sample_speaker(seed: int, index: int, name: str | None = None) -> Speaker:
    """The ``index``-th speaker of corpus ``seed`` (deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919, int(index)]))
    u = rng.uniform
    # skin: hue of real skin tones (orange-red), wide range of lightness
    skin_v = u(0.38, 0.95)
    skin = _hsv_bgr(u(0.03, 0.09), u(0.25, 0.55), skin_v)
    # lips: redder and a bit darker than the skin, never the same colour (the lips must be findable)
    lip = _hsv_bgr(u(-0.02, 0.03), u(0.40, 0.65), skin_v * u(0.62, 0.82))
    hair_v = u(0.05, 0.45)
    hair = _hsv_bgr(u(0.02, 0.1), u(0.2, 0.6), hair_v)
    bg_v = u(0.2, 0.9)
    background = _hsv_bgr(u(0, 1), u(0.0, 0.35), bg_v)
    face_ry = u(0.33, 0.40)
    return Speaker(
        name=name or f"spk{index:03d}",
        face_cx=0.5 + u(-0.03, 0.03),
        face_cy=0.5 + u(-0.02, 0.04),
        face_rx=face_ry * u(0.72, 0.84),
        face_ry=face_ry,
        eye_dx=u(0.36, 0.44),
        eye_y=u(0.18, 0.26),
        eye_r=u(0.16, 0.21),
        brow_gap=u(0.13, 0.18),
        brow_thick=u(0.04, 0.07),
        nose_y=u(0.12, 0.20),
        mouth_y=u(0.44, 0.52),
        mouth_hw=u(0.38, 0.48),
        lip_upper=u(0.09, 0.13),
        lip_lower=u(0.12, 0.17),
        bow=u(0.15, 0.4),
        articulation=u(0.8, 1.15),
        skin=skin,
        lip=lip,
        hair=hair,
        iris=_hsv_bgr(u(0.05, 0.12), u(0.3, 0.8), u(0.15, 0.45)),
        background=background,
        teeth=_hsv_bgr(u(0.1, 0.15), u(0.05, 0.2), u(0.82, 0.95)),
        interior=_hsv_bgr(u(0.95, 1.0), u(0.4, 0.7), u(0.12, 0.25)),
        tongue=_hsv_bgr(u(0.97, 1.02), u(0.35, 0.55), u(0.55, 0.75)),
        brightness=u(0.8, 1.15),
        contrast=u(0.85, 1.15),
        grad_strength=u(0.0, 0.25),
        grad_angle=u(0, 2 * np.pi),
        noise_sigma=u(1.0, 5.0),
        rate=u(4.0, 7.0),
        hair_top=u(0.25, 0.45),
    )


@dataclass(frozen=True)
class Session:
    """Conditions of one recording (one utterance) of a speaker."""

    yaw: float  # head turn as a shift of the inner features, fraction of face_rx (-0.12..0.12)
    roll: float  # in-plane rotation, degrees
    dx: float  # face offset, fraction of the frame
    dy: float
    scale: float  # zoom factor
    drift: Tuple[float, float, float]  # per-utterance linear drift of (roll deg, dx, dy) over the utterance
    jitter: float  # per-frame head jitter amplitude, fraction of the frame (smooth random walk)
    light: float  # brightness multiplier of this session
    rate: float  # frames per syllable of this utterance


def sample_session(spk: Speaker, rng: np.random.Generator) -> Session:
    """Draw one recording's conditions for ``spk`` from ``rng``."""
    u = rng.uniform
    return Session(
        yaw=u(-0.12, 0.12),
        roll=u(-6.0, 6.0),
        dx=u(-0.03, 0.03),
        dy=u(-0.03, 0.03),
        scale=u(0.92, 1.08),
        drift=(u(-2.0, 2.0), u(-0.01, 0.01), u(-0.01, 0.01)),
        jitter=u(0.001, 0.004),
        light=u(0.92, 1.08),
        rate=float(np.clip(spk.rate * u(0.9, 1.1), 4.0, 7.0)),
    )

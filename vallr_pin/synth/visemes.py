"""Mandarin text -> viseme key poses -> per-frame mouth-shape trajectories (the synthetic corpus' "phonetics").

What the camera sees of Mandarin is far less than what is said, and this module keeps exactly that loss:

* every Hanzi becomes one toneless pinyin syllable (pypinyin, polyphones resolved in context); **tones are
  dropped here**, so 妈/麻/马/骂 produce identical trajectories;
* the initial is reduced to one of eight visually confusable classes (b/p/m, f, d/t/n/l, g/k/h, j/q/x,
  zh/ch/sh/r, z/c/s, none), and every member of a class has the *same* lip target, so 爸/怕/妈 look identical;
* the final is a sequence of vowel targets (medial glide, nucleus, off-glide) plus a slight closing for
  -n/-ng codas; y/w are treated as glides of the zero initial (pypinyin's strict initials/finals);
* coarticulation: key poses are joined by cosine interpolation, smoothed by a short Gaussian, and lip
  rounding/protrusion is anticipated from the next ~2 frames (rounding starts before the rounded vowel).

A pose is a vector of :data:`POSE_FIELDS` in normalised units (0 = rest, 1 = extreme for that speaker);
:mod:`vallr_pin.synth.render` turns it into pixels. Trajectories are float32 arrays of shape (T, P) sampled
at the video rate (25 fps in the corpus).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vallr_pin.text.pinyin import VISEME_INITIAL_CLASSES

# Order of the pose vector. Units: fractions of the speaker's maximum.
#   open     : vertical gap between the lips (0 closed .. 1 widest jaw opening)
#   spread   : horizontal stretch of the mouth corners (-1 narrow .. 1 smile-like spread)
#   round    : lip rounding (corners pulled in, opening becomes circular)
#   protrude : lips pushed forward (thicker, darker lips in a frontal view)
#   teeth    : how much of the teeth shows inside the opening
#   tongue   : tongue tip visible behind the teeth (alveolars)
#   bite     : lower lip tucked under the upper teeth (labiodental f)
POSE_FIELDS: Tuple[str, ...] = ("open", "spread", "round", "protrude", "teeth", "tongue", "bite")
P = len(POSE_FIELDS)


def pose(**kw: float) -> np.ndarray:
    """A pose vector (P,) float32 from keyword fields; fields not given are 0 (rest)."""
    unknown = set(kw) - set(POSE_FIELDS)
    if unknown:
        raise KeyError(f"unknown pose fields {sorted(unknown)}; known: {POSE_FIELDS}")
    return np.array([kw.get(k, 0.0) for k in POSE_FIELDS], dtype=np.float32)


REST = pose()

# --- initials: visually confusable classes ------------------------------------------------------------------
# Members of one class share one target: the renderer cannot (and a lip reader should not) tell them apart.
INITIAL_CLASSES = VISEME_INITIAL_CLASSES
INITIAL_TO_CLASS: Dict[str, str] = {ini: cls for cls, inis in INITIAL_CLASSES.items() for ini in inis}

INITIAL_TARGETS: Dict[str, Optional[np.ndarray]] = {
    "bilabial": pose(open=0.0, spread=0.05, protrude=0.1),  # full closure, lips pressed
    "labiodental": pose(open=0.12, teeth=1.0, bite=1.0),  # upper teeth on the lower lip
    "alveolar": pose(open=0.30, spread=0.15, teeth=0.6, tongue=1.0),  # tongue tip at the teeth ridge
    "velar": pose(open=0.42, spread=0.0, teeth=0.3),  # back closure: jaw half open, nothing in front
    "palatal": pose(open=0.16, spread=0.75, teeth=0.9),  # teeth close, lips spread
    "retroflex": pose(open=0.22, spread=-0.2, round=0.45, protrude=0.7, teeth=0.6),  # lips flared forward
    "dental": pose(open=0.10, spread=0.55, teeth=1.0),  # teeth together, slit
    "zero": None,  # no consonant gesture: the final starts at once
}

# --- finals: vowel targets ---------------------------------------------------------------------------------
VOWEL_TARGETS: Dict[str, np.ndarray] = {
    "a": pose(open=1.0, spread=0.2, teeth=0.35),
    "o": pose(open=0.5, spread=-0.4, round=0.8, protrude=0.6, teeth=0.1),
    "e": pose(open=0.45, spread=0.3, teeth=0.3),  # back unrounded [ɤ]
    "ê": pose(open=0.5, spread=0.45, teeth=0.45),  # [ɛ] in ie/ve/ei/uei
    "i": pose(open=0.14, spread=1.0, teeth=0.8),
    "-i": pose(open=0.16, spread=0.45, teeth=0.85),  # apical vowel after z/c/s/zh/ch/sh/r
    "u": pose(open=0.1, spread=-1.0, round=1.0, protrude=1.0),
    "v": pose(open=0.12, spread=-0.7, round=0.9, protrude=0.6, teeth=0.2),  # ü: rounded, less protruded
    "er": pose(open=0.38, spread=0.1, round=0.2, teeth=0.3, tongue=0.3),
}
# Codas close the mouth a little; -n keeps the tongue tip up, -ng does not.
CODA_TARGETS: Dict[str, np.ndarray] = {
    "n": pose(open=0.22, spread=0.2, teeth=0.55, tongue=0.6),
    "ng": pose(open=0.3, spread=0.05, teeth=0.25),
}

# Same ideograph ranges as vallr_pin.text.normalize.is_hanzi: what the renderer speaks is what stage 2 keeps.
_HANZI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Characters after which a speaker pauses (mouth closes for a few frames).
PAUSE_PUNCT = set("，,、；;：:。.！!？?…—")


@dataclass(frozen=True)
class Syllable:
    """One spoken character: the Hanzi, its toneless pinyin, the initial class and the final's vowel targets."""

    char: str
    pinyin: str
    initial: str
    final: str
    initial_class: str
    vowels: Tuple[str, ...]  # keys of VOWEL_TARGETS, in order
    coda: str  # "", "n" or "ng"


def final_to_vowels(final: str, initial: str = "") -> Tuple[Tuple[str, ...], str]:
    """Split a strict pinyin final (pypinyin ``Style.FINALS, strict=True, v_to_u=False``) into vowel targets
    and a coda, e.g. ``"iang" -> (("i", "a"), "ng")``, ``"uei" -> (("u", "ê", "i"), "")``."""
    if final == "er":
        return ("er",), ""
    coda = ""
    if final.endswith("ng"):
        final, coda = final[:-2], "ng"
    elif final.endswith("n") and len(final) > 1:
        final, coda = final[:-1], "n"
    if final in ("i",) and initial in ("z", "c", "s", "zh", "ch", "sh", "r"):
        return ("-i",), coda
    if final == "o" and coda == "ng":  # ong/iong: the nucleus is [ʊ], lips rounded like u
        return ("u",), coda
    if final == "io" and coda == "ng":
        return ("v",), coda
    out: List[str] = []
    for k, ch in enumerate(final):
        if ch == "e":
            prev = final[k - 1] if k else ""
            nxt = final[k + 1] if k + 1 < len(final) else ""
            out.append("ê" if prev in ("i", "v") or nxt == "i" else "e")
        elif ch in VOWEL_TARGETS:
            out.append(ch)
        else:
            raise ValueError(f"cannot map final '{final}' (letter '{ch}') to vowel targets")
    if len(out) > 1 and out[-1] == "o" and out[-2] == "a":  # ao/iao end in an [u] off-glide
        out[-1] = "u"
    if not out:  # syllabic nasal (e.g. 嗯 "n"/"ng"): a nearly closed mouth
        out = ["e"]
    return tuple(out), coda


def _pinyin_syllables(hanzi: str) -> List[str]:
    """Toneless pinyin, one per Hanzi of a Hanzi-only string (``v`` for ü), resolved in context."""
    try:  # the project's own converter keeps renderer and text pipeline on one pinyin convention
        from vallr_pin.text import pinyin as _project_pinyin  # type: ignore

        fn = getattr(_project_pinyin, "hanzi_to_pinyin", None)
        if fn is not None:
            out = fn(hanzi)
            out = out.split() if isinstance(out, str) else list(out)
            if len(out) == len(hanzi):
                return out
    except ImportError:
        pass
    from pypinyin import Style, lazy_pinyin

    out = lazy_pinyin(hanzi, style=Style.NORMAL, v_to_u=False)
    if len(out) != len(hanzi):  # should not happen for Hanzi-only input; fall back to per character
        out = [lazy_pinyin(c, style=Style.NORMAL, v_to_u=False)[0] for c in hanzi]
    return out


def text_to_syllables(text: str) -> List[Optional[Syllable]]:
    """Sentence -> one entry per spoken unit: a :class:`Syllable` per Hanzi, ``None`` per pause punctuation.

    Other characters (spaces, quotes, brackets) are silent and dropped; digits and Latin letters raise,
    because a renderer that silently skipped them would make video and transcript disagree."""
    out: List[Optional[Syllable]] = []
    run: List[str] = []

    def flush() -> None:
        if not run:
            return
        chars = "".join(run)
        from pypinyin.contrib.tone_convert import to_finals, to_initials

        for ch, py in zip(chars, _pinyin_syllables(chars)):
            py = py.lower()
            if not py.isascii() or not py.isalpha():  # a Hanzi pypinyin has no reading for
                raise ValueError(f"no pinyin for character '{ch}' in sentence '{text}'; remove the sentence")
            ini = to_initials(py, strict=True)
            fin = to_finals(py, strict=True, v_to_u=False) or py
            vowels, coda = final_to_vowels(fin, ini)
            out.append(Syllable(ch, py, ini, fin, INITIAL_TO_CLASS.get(ini, "zero"), vowels, coda))
        run.clear()

    for ch in text:
        if _HANZI.match(ch):
            run.append(ch)
            continue
        flush()
        if ch in PAUSE_PUNCT:
            if out and out[-1] is not None:
                out.append(None)
        elif not (ch.isspace() or unicodedata.category(ch)[0] in "PZ"):
            # digits, Latin, compatibility ideographs...: stage 2 would read or fold them, the renderer would
            # not, and video and transcript would disagree
            raise ValueError(f"sentence '{text}' contains '{ch}', which has no viseme rule; remove the sentence "
                             "or write it out in Hanzi")
    flush()
    while out and out[-1] is None:
        out.pop()
    return out


def is_renderable(text: str) -> bool:
    """True when :func:`text_to_syllables` accepts ``text`` and it has at least one Hanzi."""
    try:
        return any(s is not None for s in text_to_syllables(text))
    except ValueError:
        return False


def syllable_keys(syl: Syllable, t0: float, dur: float) -> List[Tuple[float, np.ndarray]]:
    """Key poses ``(time in frames, pose (P,))`` of one syllable spoken over ``[t0, t0 + dur)``."""
    keys: List[Tuple[float, np.ndarray]] = []
    init = INITIAL_TARGETS[syl.initial_class]
    if init is not None:
        # A consonant is a held gesture, not a point: a bilabial closure lasts ~60-100 ms (1.5-2.5 frames at
        # 25 fps). With a single key the cosine blend and the coarticulation smoothing undershoot it, and
        # "baba" never closed the lips (min opening 0.17-0.28 instead of 0), so the initial classes the corpus
        # is built on were barely visible. Two keys hold the target over ~30% of the syllable.
        keys.append((t0 + 0.06 * dur, init))
        keys.append((t0 + 0.36 * dur, init))
        lo, hi = 0.48, 0.92
    else:
        lo, hi = 0.12, 0.92
    if syl.coda:
        hi -= 0.14
    n = len(syl.vowels)
    for k, v in enumerate(syl.vowels):
        target = VOWEL_TARGETS[v]
        if n > 1 and k == n - 1 and v in ("i", "u") and syl.vowels[k - 1] not in ("u", "i", "v"):
            # off-glides of ai/ei/ao/ou are weaker than the full vowel: blend toward the nucleus
            target = 0.7 * target + 0.3 * VOWEL_TARGETS[syl.vowels[k - 1]]
        keys.append((t0 + dur * (lo + (hi - lo) * (k + 0.5) / n), target))
    if syl.coda:
        keys.append((t0 + 0.9 * dur, CODA_TARGETS[syl.coda]))
    return keys


@dataclass
class Timing:
    """Where each unit of :func:`text_to_syllables` sits in time (frames at the video rate)."""

    lead_in: int  # silent frames before the first syllable
    durations: List[float]  # one per unit (syllable or pause)
    tail: int  # silent frames after the last syllable

    @property
    def num_frames(self) -> int:
        return int(round(self.lead_in + sum(self.durations) + self.tail))


def sample_timing(units: Sequence[Optional[Syllable]], rng: np.random.Generator, frames_per_syllable: float,
                  lead_in: Tuple[int, int] = (6, 12), tail: Tuple[int, int] = (6, 12)) -> Timing:
    """Draw durations from ``rng`` only (never from the syllable's identity, which would leak it to the eye).

    ``frames_per_syllable`` is the speaker's mean rate (4-7 frames at 25 fps); each syllable varies +-20%,
    a pause lasts about 1.5 syllables."""
    durs = []
    for u in units:
        jitter = float(rng.uniform(0.8, 1.2))
        durs.append(frames_per_syllable * jitter * (1.5 if u is None else 1.0))
    return Timing(int(rng.integers(lead_in[0], lead_in[1] + 1)), durs, int(rng.integers(tail[0], tail[1] + 1)))


def trajectory(units: Sequence[Optional[Syllable]], timing: Timing, smooth_sigma: float = 0.7,
               anticipation: float = 2.0) -> np.ndarray:
    """Per-frame pose trajectory (T, P) float32, T = ``timing.num_frames``.

    Key poses are joined with cosine (ease-in/out) interpolation, then smoothed with a Gaussian of
    ``smooth_sigma`` frames (coarticulation); rounding/protrusion take the max with their value
    ``anticipation`` frames ahead (scaled 0.8), so lips round before a rounded vowel, as speakers do."""
    keys: List[Tuple[float, np.ndarray]] = [(0.0, REST)]
    t = float(timing.lead_in)
    keys.append((t - 0.5, REST))
    for u, d in zip(units, timing.durations):
        if u is None:
            keys.append((t + 0.5 * d, pose(open=0.02)))
        else:
            keys.extend(syllable_keys(u, t, d))
        t += d
    T = timing.num_frames
    keys.append((t + 1.5, REST))
    keys.append((float(max(T, t + 2)), REST))
    kt = np.array([k[0] for k in keys], dtype=np.float64)
    kp = np.stack([k[1] for k in keys]).astype(np.float64)
    order = np.argsort(kt, kind="stable")
    kt, kp = kt[order], kp[order]
    ft = np.arange(T, dtype=np.float64)
    idx = np.clip(np.searchsorted(kt, ft, side="right") - 1, 0, len(kt) - 2)
    span = np.maximum(kt[idx + 1] - kt[idx], 1e-6)
    a = np.clip((ft - kt[idx]) / span, 0.0, 1.0)
    w = (0.5 - 0.5 * np.cos(np.pi * a))[:, None]
    traj = (1 - w) * kp[idx] + w * kp[idx + 1]
    if smooth_sigma > 0:
        r = int(np.ceil(3 * smooth_sigma))
        g = np.exp(-0.5 * (np.arange(-r, r + 1) / smooth_sigma) ** 2)
        g /= g.sum()
        padded = np.pad(traj, ((r, r), (0, 0)), mode="edge")
        traj = np.stack([np.convolve(padded[:, j], g, mode="valid") for j in range(P)], axis=1)
    if anticipation > 0:
        shift = int(round(anticipation))
        for name in ("round", "protrude"):
            j = POSE_FIELDS.index(name)
            ahead = np.concatenate([traj[shift:, j], np.repeat(traj[-1:, j], shift)])
            traj[:, j] = np.maximum(traj[:, j], 0.8 * ahead)
    return traj.astype(np.float32)


def viseme_key_table() -> Tuple[Tuple[str, str], ...]:
    """Every viseme key (initial viseme class, final) of the GB2312 syllable inventory, sorted: 150 keys.

    Frame label ``k >= 1`` of :func:`frame_viseme_labels` is ``viseme_key_table()[k - 1]``; 0 is silence."""
    from vallr_pin.scoring.error_analysis import viseme_key
    from vallr_pin.text.pinyin import syllable_inventory

    return tuple(sorted({viseme_key(s) for s in syllable_inventory()}))


def syllable_spans(units: Sequence[Optional[Syllable]], timing: Timing) -> List[Tuple[int, int, Syllable]]:
    """``(first frame, end frame, syllable)`` of every spoken syllable (pauses left out), end exclusive and at
    least one frame after the start: where the renderer put each syllable."""
    spans, t = [], float(timing.lead_in)
    for u, d in zip(units, timing.durations):
        if u is not None:
            spans.append((int(round(t)), max(int(round(t + d)), int(round(t)) + 1), u))
        t += d
    return spans


def frame_syllable_index(units: Sequence[Optional[Syllable]], timing: Timing) -> np.ndarray:
    """Per-frame index (T,) int64 of the spoken syllable (0 = the first Hanzi of the sentence), -1 for lead-in,
    pauses and tail: the renderer's character alignment, what a forced alignment gives on real data. Training
    cuts utterances at these boundaries and splices them (``--splice_prob``, :mod:`vallr_pin.tasks.vsr_collate`)."""
    index = np.full(timing.num_frames, -1, dtype=np.int64)
    for k, (start, end, _) in enumerate(syllable_spans(units, timing)):
        index[start:end] = k
    return index


def frame_viseme_labels(units: Sequence[Optional[Syllable]], timing: Timing) -> np.ndarray:
    """Per-frame viseme label (T,) int64 at the video rate, T = ``timing.num_frames``: which syllable's viseme
    key (1 + its index in :func:`viseme_key_table`) the frame belongs to, 0 for lead-in, pauses and tail.

    What a forced alignment would give on real audio-visual data; the mini recipe's auxiliary frame loss
    (``model_conf.frame_label_weight``) trains on it."""
    from vallr_pin.scoring.error_analysis import viseme_key

    index = {k: i + 1 for i, k in enumerate(viseme_key_table())}
    labels = np.zeros(timing.num_frames, dtype=np.int64)
    for start, end, syl in syllable_spans(units, timing):
        labels[start:end] = index[viseme_key(syl.pinyin)]
    return labels

"""Toneless pinyin, one syllable per Hanzi, for the pinyin decoder and the LLM prompt.

Readings come from pypinyin (``lazy_pinyin``, ``Style.NORMAL``, ``strict=True``, ``v_to_u=False``):

- Polyphones are resolved in context by pypinyin's phrase dictionaries (its segmenter picks the longest
  dictionary phrase): 银行 -> yin hang but 行走 -> xing zou; 长大 -> zhang da, 长度 -> chang du;
  吃了 -> le, 了解 -> liao jie; 重要 -> zhong, 重新 -> chong. A character outside every phrase gets its
  most frequent reading.
- Tones are dropped (lips do not show them): the inventory is the toneless syllables.
- u-umlaut is written ``v`` only where it is written with dots in standard pinyin, i.e. after n and l:
  女 nv, 绿 lv, 旅游 lv you, 虐 nve, 略 lve. After j/q/x and y the dots are dropped by the spelling rules
  themselves, so 去 is ``qu``, 居 ``ju``, 鱼 ``yu``, 学 ``xue`` (``strict=True`` keeps that standard spelling;
  ``v_to_u=False`` keeps ``v`` rather than ``ü`` so every token is ASCII).
- Erhua: 儿 is always its own syllable ``er``: 一会儿 -> yi hui er, 哪儿 -> na er. Each written character is one
  token of the char decoder, so the pinyin sequence must keep one syllable per character even where the
  speaker merges 儿 into the previous syllable (huir); the visual cue of the rhotic ending is then carried
  by the ``er`` token.
- A Hanzi that pypinyin has no reading for (a few hundred rare ideographs outside GB2312) gets ``<unk>``,
  so the sequence still has one token per character; ``vallr_pin.bin.prepare_text`` counts them.

pypinyin 0.55.0 gives 413 distinct toneless readings over the 6763 GB2312 Hanzi counting every reading of
every character (heteronyms), 400 counting only each character's default reading.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

from pypinyin import Style, lazy_pinyin, pinyin

from vallr_pin.text.normalize import is_hanzi

UNK = "<unk>"

# Initials that look alike on the lips (DESIGN.md section 4). One table for the whole toolkit: the renderer
# draws each class with one lip target, and error analysis counts a substitution within a class (same final)
# as a viseme confusion, so the two must never disagree. "" is the zero initial.
VISEME_INITIAL_CLASSES: Dict[str, Tuple[str, ...]] = {
    "bilabial": ("b", "p", "m"),
    "labiodental": ("f",),
    "alveolar": ("d", "t", "n", "l"),
    "velar": ("g", "k", "h"),
    "palatal": ("j", "q", "x"),
    "retroflex": ("zh", "ch", "sh", "r"),
    "dental": ("z", "c", "s"),
    "zero": ("",),
}


def _unk_per_char(chars: str) -> List[str]:
    return [UNK] * len(chars)


def hanzi_to_pinyin(text: str) -> List[str]:
    """Toneless pinyin for a normalised transcript, one syllable per character (context-resolved polyphones).

    Args:
        text: Hanzi only (the output of ``vallr_pin.text.normalize.normalize_text``).
    Returns:
        ``len(text)`` lowercase ASCII syllables (``v`` for u-umlaut), ``<unk>`` for a Hanzi with no reading.
    Raises:
        ValueError: if ``text`` holds a non-Hanzi character (normalise first), or if pypinyin does not return
            exactly one syllable per character.
    """
    bad = [ch for ch in text if not is_hanzi(ch)]
    if bad:
        raise ValueError(
            f"hanzi_to_pinyin: {text!r} holds non-Hanzi characters {''.join(bad)!r}; "
            "run vallr_pin.text.normalize.normalize_text on it first"
        )
    syllables = lazy_pinyin(text, style=Style.NORMAL, strict=True, v_to_u=False, errors=_unk_per_char)
    if len(syllables) != len(text) or any((not s) or (" " in s) for s in syllables):
        raise ValueError(
            f"hanzi_to_pinyin: pypinyin returned {len(syllables)} syllables {syllables} for "
            f"{len(text)} characters {text!r}; expected exactly one per character"
        )
    return syllables


def pinyin_string(text: str) -> str:
    """``hanzi_to_pinyin`` joined by single spaces: the value written to ``data/<set>/text_pinyin``."""
    return " ".join(hanzi_to_pinyin(text))


def pinyin_per_char(text: str) -> List[Optional[str]]:
    """One toneless syllable per character of ``text`` (context-resolved, as ``hanzi_to_pinyin`` on each run of
    Hanzi); None for a non-Hanzi character or a Hanzi without a reading. Unlike ``hanzi_to_pinyin`` it takes any
    text, e.g. a hypothesis holding ``<unk>`` or Latin letters."""
    out: List[Optional[str]] = []
    run = ""
    for ch in text + "\0":  # the sentinel flushes the last Hanzi run
        if is_hanzi(ch):
            run += ch
            continue
        if run:
            out.extend(None if s == UNK else s for s in hanzi_to_pinyin(run))
            run = ""
        if ch != "\0":
            out.append(None)
    return out


def gb2312_hanzi() -> List[str]:
    """The 6763 Hanzi of GB2312 (levels 1 and 2, rows 16-87), in GB2312 order."""
    chars = []
    for hi in range(0xB0, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:  # the 5 unassigned cells at the end of row 55
                continue
    return chars


@functools.lru_cache(maxsize=None)
def syllable_inventory(heteronyms: bool = True) -> tuple:
    """Sorted toneless readings pypinyin has for the GB2312 Hanzi (reference for the data-derived token list).

    Args:
        heteronyms: count every reading of a polyphone (True; 413 with pypinyin 0.55.0) or only the default
            reading (False; 400).
    Returns:
        A sorted tuple of syllables, same spelling as ``hanzi_to_pinyin``.
    """
    inventory = set()
    for ch in gb2312_hanzi():
        inventory.update(char_readings(ch) if heteronyms
                         else pinyin(ch, style=Style.NORMAL, strict=True, v_to_u=False)[0])
    return tuple(sorted(inventory))


@functools.lru_cache(maxsize=None)
def char_readings(ch: str) -> Tuple[str, ...]:
    """Every toneless reading pypinyin has for one Hanzi out of context (heteronyms: 行 -> xing, hang), same
    spelling as ``hanzi_to_pinyin``; () for a character without one."""
    return tuple(r for r in pinyin(ch, style=Style.NORMAL, heteronym=True, strict=True, v_to_u=False)[0]
                 if r and r.isascii() and r.isalpha())

"""ESPnet token lists (``tokens.txt``): one token a line, the line number is the token id.

Order (the one ESPnet's ``tokenize_text --add_symbol '<blank>:0' '<unk>:1' '<sos/eos>:-1'`` gives):
``<blank>`` (id 0, the CTC blank), ``<unk>`` (id 1), the tokens by descending training count with ties broken
by code point (so the list is reproducible, unlike ESPnet's insertion-order ties), and ``<sos/eos>`` last.
The char list counts characters of ``data/<train>/text``; the pinyin list counts the space-separated
syllables of ``data/<train>/text_pinyin``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, List, Mapping, Sequence

from vallr_pin.datadir import PathLike, atomic_open

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"
SPECIAL_TOKENS = (BLANK, UNK, SOS_EOS)


def char_tokens(text: str) -> List[str]:
    """One token per character; whitespace is not a token (normalised text has none)."""
    return [ch for ch in text if not ch.isspace()]


def pinyin_tokens(text_pinyin: str) -> List[str]:
    """Syllables of a ``text_pinyin`` value (space separated)."""
    return text_pinyin.split()


def count_tokens(sequences: Iterable[Sequence[str]]) -> Counter:
    """Token counts over token sequences; special tokens (e.g. ``<unk>`` for an unreadable Hanzi) are skipped
    because they already have fixed places in the list."""
    counts: Counter = Counter()
    for seq in sequences:
        counts.update(t for t in seq if t not in SPECIAL_TOKENS)
    return counts


def build_token_list(counts: Mapping[str, int], min_count: int = 1, extra_tokens: Iterable[str] = ()) -> List[str]:
    """``<blank>``, ``<unk>``, tokens by descending count (ties by code point), extras never seen, ``<sos/eos>``.

    Args:
        counts: token -> count in the training transcripts.
        min_count: tokens seen fewer times are left out (they map to ``<unk>``).
        extra_tokens: tokens to add after the counted ones even if unseen (e.g. the full GB2312 syllable
            inventory, so that dev/test syllables missing from a small training set are not ``<unk>``).
    """
    kept = [(tok, n) for tok, n in counts.items() if n >= min_count and tok not in SPECIAL_TOKENS]
    tokens = [tok for tok, _ in sorted(kept, key=lambda tn: (-tn[1], tn[0]))]
    seen = set(tokens)
    tokens += sorted(t for t in set(extra_tokens) if t not in seen and t not in SPECIAL_TOKENS)
    return [BLANK, UNK] + tokens + [SOS_EOS]


def write_token_list(path: PathLike, tokens: Sequence[str]) -> None:
    """Write ``tokens.txt`` atomically, one token a line."""
    _check(path, tokens)
    with atomic_open(path) as f:
        for tok in tokens:
            f.write(tok + "\n")


def read_token_list(path: PathLike) -> List[str]:
    """Read ``tokens.txt``; checks the ESPnet layout and that no token is repeated."""
    tokens = [line.rstrip("\n") for line in open(Path(path), encoding="utf-8") if line.strip()]
    _check(path, tokens)
    return tokens


def _check(path: PathLike, tokens: Sequence[str]) -> None:
    if len(tokens) < 3 or tokens[0] != BLANK or tokens[1] != UNK or tokens[-1] != SOS_EOS:
        raise ValueError(
            f"{path}: not an ESPnet token list (want '{BLANK}', '{UNK}' first and '{SOS_EOS}' last); "
            "rebuild it with python -m vallr_pin.bin.prepare_text"
        )
    dup = [t for t, n in Counter(tokens).items() if n > 1]
    if dup:
        raise ValueError(f"{path}: repeated tokens {dup[:10]}; rebuild it with python -m vallr_pin.bin.prepare_text")
    bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise ValueError(f"{path}: tokens with whitespace {bad[:10]!r}; a token is one line without spaces")

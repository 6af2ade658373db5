"""Read the per-set N-best lists stage II works on: this toolkit's JSONL (stages 5/6) or another recogniser's.

``nbest.jsonl``, one line per utterance (SPEC "N-best"):
``{"utt": str, "nbest": [{"text": str, "score": float}, ...] (best first), "pinyin": str, "ref": str|null}``;
``pinyin`` and ``ref`` may be left out (a recogniser without a pinyin branch, no references).

ESPnet's decode layout (``asr_inference --nbest K``): a directory holding ``1best_recog/text``, ...,
``Kbest_recog/text`` (Kaldi ``<utt> <hyp>``; tokens may be space-separated, spaces are dropped), optionally
``{k}best_recog/score`` (one float a line; 0 where missing) and ``pinyin`` (``<utt> <syllables>``).

Recognisers without a pinyin branch: :func:`read_nbest` derives the toneless pinyin of each utterance from its
1-best hypothesis (``--pinyin-from hypothesis``, or ``auto`` when no utterance of the input has one).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

PathLike = Union[str, os.PathLike]


@dataclass
class NbestEntry:
    """One utterance: hypotheses best first (Hanzi, no spaces), their scores, toneless pinyin, reference."""

    utt: str
    texts: List[str]
    scores: List[float]
    pinyin: str
    ref: Optional[str]
    context: Optional[str] = None  # text the prompt shows before the task (data/<set>/context), if any

    @property
    def onebest(self) -> str:
        return self.texts[0] if self.texts else ""


PINYIN_FROM = ("auto", "nbest", "hypothesis")


def read_nbest(path: PathLike, pinyin_from: str = "auto") -> List[NbestEntry]:
    """N-best entries from ``path``: an ``nbest.jsonl`` file, or a directory holding one, or an ESPnet decode
    directory (``{k}best_recog/text``).

    pinyin_from: ``nbest`` keeps the input's pinyin (empty where it has none); ``hypothesis`` derives every
    utterance's pinyin from its 1-best; ``auto`` derives it when no utterance of the input has any pinyin
    (a recogniser without a pinyin branch), else keeps it (an empty pinyin then stays empty: the pinyin branch
    found nothing, and the constrained mode counts it).
    """
    if pinyin_from not in PINYIN_FROM:
        raise ValueError(f"unknown pinyin source '{pinyin_from}'; choose one of {PINYIN_FROM}")
    p = Path(path)
    if p.is_dir():
        if (p / "nbest.jsonl").is_file():
            entries = read_nbest_jsonl(p / "nbest.jsonl")
        elif (p / "1best_recog" / "text").is_file():
            entries = read_espnet_nbest_dir(p)
        else:
            raise FileNotFoundError(f"{p}: neither nbest.jsonl nor 1best_recog/text (ESPnet's --nbest layout) "
                                    "is there; point at a decode directory")
    elif p.is_file():
        entries = read_nbest_jsonl(p)
    else:
        raise FileNotFoundError(f"N-best input {p} does not exist")
    if pinyin_from == "hypothesis" or (pinyin_from == "auto" and not any(e.pinyin for e in entries)):
        for e in entries:
            e.pinyin = hypothesis_pinyin(e.onebest)
    return entries


def hypothesis_pinyin(text: str) -> str:
    """Toneless pinyin of a hypothesis, one syllable per character (``<unk>`` for one without a reading)."""
    from vallr_pin.text.pinyin import UNK, pinyin_per_char

    return " ".join(s or UNK for s in pinyin_per_char(text))


def read_espnet_nbest_dir(d: PathLike) -> List[NbestEntry]:
    """ESPnet's ``{k}best_recog/{text,score}`` layout (plus an optional ``pinyin`` file) as N-best entries;
    utterances are those of ``1best_recog/text``, hypotheses best first, an utterance with fewer than K simply
    has fewer."""
    from vallr_pin.datadir import read_kv

    d = Path(d)
    ks = sorted(int(q.name.split("best_recog")[0]) for q in d.glob("*best_recog")
                if q.name.split("best_recog")[0].isdigit() and (q / "text").is_file())
    if not ks or ks[0] != 1:
        raise FileNotFoundError(f"{d}: no 1best_recog/text")
    texts: List[Dict[str, str]] = [read_kv(d / f"{k}best_recog" / "text") for k in ks]
    scores: List[Dict[str, str]] = [read_kv(d / f"{k}best_recog" / "score")
                                    if (d / f"{k}best_recog" / "score").is_file() else {} for k in ks]
    pinyin = read_kv(d / "pinyin") if (d / "pinyin").is_file() else {}
    entries = []
    for utt in sorted(texts[0]):
        hyps, scs = [], []
        for k, (tk, sk) in enumerate(zip(texts, scores), 1):
            if utt not in tk:
                continue
            hyps.append("".join(tk[utt].split()))
            try:
                scs.append(float(sk.get(utt, 0.0)))
            except ValueError:
                raise ValueError(f"{d}/{k}best_recog/score: utterance '{utt}' has score '{sk[utt]}', not a "
                                 "number") from None
        entries.append(NbestEntry(utt=utt, texts=hyps, scores=scs, pinyin=" ".join(pinyin.get(utt, "").split()),
                                  ref=None))
    return entries


def attach_context(entries: List[NbestEntry], contexts: Mapping[str, str], path: str, optional: bool = False
                   ) -> int:
    """Set each entry's ``context`` from ``contexts`` (``data/<set>/context``: ``<utt> <text>``, a bare ``<utt>``
    line is an empty context). An utterance missing from it is a ValueError naming them, unless ``optional``
    (then it has no context). Returns how many entries got one."""
    missing = [e.utt for e in entries if e.utt not in contexts]
    if missing and not optional:
        shown = ", ".join(f"'{u}'" for u in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"{path}: no context line for {len(missing)} utterance(s): {shown}; add a line "
                         "'<utt> <text>' for each (a bare '<utt>' is an empty context), or pass --context-optional")
    n = 0
    for e in entries:
        if e.utt in contexts:
            e.context = contexts[e.utt]
            n += 1
    return n


def read_nbest_jsonl(path: PathLike) -> List[NbestEntry]:
    """Parse ``nbest.jsonl``; a malformed line raises ValueError naming the file, line and utterance."""
    entries: List[NbestEntry] = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e}); re-run the decoding stage that wrote it") from e
            utt = row.get("utt")
            if not isinstance(utt, str) or not utt:
                raise ValueError(f"{where}: missing 'utt'")
            if utt in seen:
                raise ValueError(f"{where}: utterance '{utt}' appears twice; re-run the decoding stage")
            seen.add(utt)
            nbest = row.get("nbest")
            if not isinstance(nbest, list) or not all(isinstance(h, dict) and "text" in h for h in nbest):
                raise ValueError(f"{where}: utterance '{utt}' needs 'nbest': [{{'text': ..., 'score': ...}}, ...]")
            ref = row.get("ref")
            entries.append(
                NbestEntry(
                    utt=utt,
                    texts=["".join(str(h["text"]).split()) for h in nbest],
                    scores=[float(h.get("score", 0.0)) for h in nbest],
                    pinyin=" ".join(str(row.get("pinyin") or "").split()),
                    ref=None if ref is None else "".join(str(ref).split()),
                )
            )
    return entries

"""Read the per-set N-best JSONL written by decoding (stages 5/6).

One line per utterance (SPEC "N-best"):
``{"utt": str, "nbest": [{"text": str, "score": float}, ...] (best first), "pinyin": str, "ref": str|null}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Union

PathLike = Union[str, os.PathLike]


@dataclass
class NbestEntry:
    """One utterance: hypotheses best first (Hanzi, no spaces), their scores, toneless pinyin, reference."""

    utt: str
    texts: List[str]
    scores: List[float]
    pinyin: str
    ref: Optional[str]

    @property
    def onebest(self) -> str:
        return self.texts[0] if self.texts else ""


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

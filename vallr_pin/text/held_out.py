"""Keep evaluation sentences out of text that trains something (the tiny LLM's pre-training text, synthetic
LLM instruction data): a candidate sentence is *held out* when it equals a held-out sentence or, the shorter of
the two having ``min_overlap`` or more Hanzi, contains or is contained in one ("他开车的速度太快了吗" goes with
"他开车的速度太快了").

Both sides are compared after the transcript normaliser (``normalize_text``). A check costs O(L^2) set look-ups
for a candidate of L Hanzi, whatever the number of held-out sentences: every substring of a held-out sentence of
``min_overlap`` or more Hanzi is indexed once.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence


class HeldOutSentences:
    """The sentences a candidate must share nothing with (module docstring).

    Args:
        sentences: held-out sentences, any text (normalised here).
        min_overlap: containment counts when the shorter sentence has at least this many Hanzi (0: only equality).
    """

    def __init__(self, sentences: Iterable[str], min_overlap: int = 4):
        from vallr_pin.text.normalize import normalize_text

        self.min_overlap = min_overlap
        self.sentences = {normalize_text(s) for s in sentences}
        self.sentences.discard("")
        self._substrings = set()
        if min_overlap > 0:
            for h in self.sentences:
                for i in range(len(h)):
                    for j in range(i + min_overlap, len(h) + 1):
                        self._substrings.add(h[i:j])

    def __len__(self) -> int:
        return len(self.sentences)

    def leaks(self, text: str) -> bool:
        """True when the normalised ``text`` is a held-out sentence or a near copy of one."""
        if text in self.sentences:
            return True
        if self.min_overlap <= 0 or len(text) < self.min_overlap:
            return False
        if text in self._substrings:  # contained in a held-out sentence
            return True
        n = len(text)
        return any(text[i:j] in self.sentences for i in range(n) for j in range(i + self.min_overlap, n + 1))


def lm_text_sentences(candidates: Sequence[str], held_out: Sequence[str], min_overlap: int = 4) -> List[str]:
    """Normalised Hanzi sentences of ``candidates`` (unique, in order) that share nothing with ``held_out``
    (:class:`HeldOutSentences`)."""
    from vallr_pin.text.normalize import normalize_text

    held = HeldOutSentences(held_out, min_overlap)
    out, seen = [], set()
    for s in candidates:
        t = normalize_text(s)
        if not t or t in seen or held.leaks(t):
            continue
        seen.add(t)
        out.append(t)
    return out

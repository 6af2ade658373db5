"""Output guard for LLM refinement: turn a raw generation into a Hanzi-only sentence, or fall back to the 1-best.

An LLM asked for "the corrected sentence only" still sometimes returns a ``<think>`` block (Qwen3's mixed
template emits ``<think>\\n\\n</think>`` first), a prefix ("修正后的句子：..."), quotes, punctuation, an explanation
on the following lines, English, a run-on continuation, or a fluent sentence unrelated to the candidates. Scoring such text as is would charge the LLM for format
noise and let a hallucinated paragraph destroy a correct 1-best; the paper's zero-shot row (CER worse than no LLM)
shows how much this matters. The guard therefore cleans what it can and falls back to the VSR 1-best otherwise,
counting every fallback by reason so that a run reports how often the LLM was overruled.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional, Sequence, Tuple

import editdistance

from vallr_pin.text.normalize import normalize_text

# CJK Unified Ideographs, Extension A, and Compatibility Ideographs (the normaliser folds the latter).
HANZI_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Letters of any script other than Hanzi (Latin words, pinyin): a mostly-letters answer is "not Chinese".
_OTHER_LETTER_RE = re.compile(r"[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]")
_THINK_RE = re.compile(r"<think>.*?</think>", re.S)
# "修正后的句子：", "答案:", "Corrected sentence:", "输出：" ... : a short label ending in a colon at line start.
_PREFIX_RE = re.compile(r"^\s*[^\n:：]{0,32}?[:：]\s*")
_PAREN_RE = re.compile(r"[（(][^（()）]*[)）]")
# The prompt numbers its candidates ("1. ..."), and an answer may echo that numbering ("1. 我想去银行", "2.",
# "10.", "1、", "1)"); left in, the normaliser would read the digit as 一. A dot followed by a digit is a decimal.
_NUMBERING_RE = re.compile(r"^\s*[0-9０-９]{1,3}\s*(?:[.．](?![0-9０-９])|[、)）])\s*")

REASONS = ("empty", "not_chinese", "too_long", "too_short", "too_different", "no_candidates")


class OutputGuard:
    """Clean a raw LLM answer; fall back to the 1-best when it is not a plausible transcript.

    Args:
        min_ratio: fall back when len(answer) < min_ratio * len(shortest candidate) (characters).
        max_ratio: fall back when len(answer) > max_ratio * len(longest candidate).
        min_hanzi_share: fall back ("not_chinese") when, among letters and Hanzi of the chosen line, fewer than
            this share are Hanzi.
        max_edit_ratio: fall back ("too_different") when the character edit distance from the answer to the
            closest candidate exceeds this share of that candidate's length: a corrector fixes homophones and
            look-alikes, it does not write a new sentence (None: no check).
    Attributes:
        counts: Counter of fallback reasons over all calls (plus "ok" for accepted answers).
    """

    def __init__(self, min_ratio: float = 0.5, max_ratio: float = 1.5, min_hanzi_share: float = 0.5,
                 max_edit_ratio: Optional[float] = 0.6):
        if not 0 <= min_ratio <= 1 <= max_ratio:
            raise ValueError(f"need 0 <= min_ratio <= 1 <= max_ratio, got {min_ratio}, {max_ratio}")
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.min_hanzi_share = min_hanzi_share
        self.max_edit_ratio = max_edit_ratio
        self.counts: Counter = Counter()

    @staticmethod
    def extract(raw: str) -> str:
        """The answer line of a raw generation: think blocks, label prefixes and list numbering removed, first
        line with content kept (explanations usually follow on later lines). Punctuation is still in."""
        text = _THINK_RE.sub("", raw or "")
        # an unclosed <think> means the budget ran out while thinking: nothing after it is an answer
        text = text.split("<think>")[0].replace("</think>", "")
        # parenthesised remarks ("（把田改成天）") are explanations, not transcript
        text = _PAREN_RE.sub("", text)
        lines = [_NUMBERING_RE.sub("", _PREFIX_RE.sub("", line, count=1), count=1) for line in text.splitlines()]
        # prefer the first line with Hanzi (an English preamble may come first); else the first with letters,
        # so that an all-English answer is reported as "not_chinese" rather than "empty"
        for line in lines:
            if HANZI_RE.search(line):
                return line.strip()
        for line in lines:
            if _OTHER_LETTER_RE.search(line):
                return line.strip()
        return ""

    def __call__(self, raw: str, candidates: Sequence[str]) -> Tuple[str, Optional[str]]:
        """Returns ``(text, reason)``: the cleaned Hanzi answer and None, or the 1-best and the fallback reason."""
        onebest = candidates[0] if candidates else ""
        line = self.extract(raw)
        # the transcript normaliser of stage 2, so that the answer is scored like the references
        # (digits read out, full-width folded, punctuation/Latin dropped)
        hanzi = normalize_text(line)
        n_other = len(_OTHER_LETTER_RE.findall(line))
        reason: Optional[str] = None
        lens = [len(c) for c in candidates if c]
        if not hanzi:
            reason = "not_chinese" if n_other else "empty"
        elif len(hanzi) < self.min_hanzi_share * (len(hanzi) + n_other):
            reason = "not_chinese"
        elif not lens:
            reason = "no_candidates"
        elif len(hanzi) > self.max_ratio * max(lens):
            reason = "too_long"
        elif len(hanzi) < self.min_ratio * min(lens):
            reason = "too_short"
        elif self.max_edit_ratio is not None and min(
                editdistance.eval(hanzi, c) / len(c) for c in candidates if c) > self.max_edit_ratio:
            reason = "too_different"
        self.counts[reason or "ok"] += 1
        return (onebest, reason) if reason else (hanzi, None)

    def stats(self) -> dict:
        """``{"n": total, "ok": n, "fallback": n, "by_reason": {reason: n}}`` for guard_stats.json."""
        n = sum(self.counts.values())
        by_reason = {r: self.counts.get(r, 0) for r in REASONS}
        return {"n": n, "ok": self.counts.get("ok", 0), "fallback": n - self.counts.get("ok", 0),
                "by_reason": by_reason}

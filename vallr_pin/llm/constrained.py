"""Pinyin-constrained generation (``llm_refine --mode constrained``): the LLM may write, position by position,
only characters the lips and the pinyin branch allow, then must end the answer.

Per position ``i`` of the pinyin branch's 1-best ``P^ = p_1 .. p_n`` the allowed characters are (cumulative
relaxation levels, ``--constrain-level``, chosen on dev):

- ``pinyin``: characters one of whose toneless readings (pypinyin, heteronyms included) is ``p_i``;
- ``nbest``: those plus the character each N-best candidate has at position ``i`` (a candidate as long as the
  pinyin is read position by position; another is aligned to it by its reading, ``scoring.cer.align``);
- ``viseme``: those plus every character whose reading looks like ``p_i`` on the lips (same viseme class of the
  initial and same final, ``scoring.error_analysis.viseme_key``).

After the ``n``-th character only an end-of-turn token is allowed, so the answer always has the pinyin's length
and generation cannot run on.

Why a trie over the vocabulary's *bytes*: Qwen's tokenizer is a byte-level BPE. A common Hanzi is one token, a
rare one (龘) is two or three byte tokens, and many tokens hold two or more Hanzi (今天, 我们的). Masking "one token
= one character" would forbid every multi-character token and could not write a rare character at all. So each
token id is decoded once to its bytes (:func:`token_bytes`), the byte strings go into a trie
(:class:`TokenTrie`), and at each step the allowed tokens are the trie paths that keep the UTF-8 of the answer
so far a prefix of some allowed character sequence (:meth:`PositionConstraint.allowed`): a token may end inside
a character (the next token completes it) or span several positions.

Hooks: transformers' ``generate(logits_processor=[PinyinLogitsProcessor(...)])`` here (what
:class:`vallr_pin.llm.refine.ConstrainedRefiner` runs). vLLM (GPU) takes batch-level processors
(``vllm.v1.sample.logits_processor``); the per-request function it wraps is
:meth:`PositionConstraint.vllm_request_processor` (``(output_token_ids, logits) -> logits``, the signature of
``AdapterLogitsProcessor.new_req_logits_processor``'s result), the request's positions passed in
``SamplingParams.extra_args``. vLLM is not installed on this project's CPU machines, so that path is documented
and its function unit-tested, not run end to end; ``llm_refine --mode constrained`` runs on the transformers
backend (on a GPU too).
"""

from __future__ import annotations

import functools
import re
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

LEVELS = ("pinyin", "nbest", "viseme")
FALLBACK_REASONS = ("empty_pinyin", "length_mismatch", "no_allowed_character")
_SP_BYTE_RE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def token_bytes(tokenizer) -> List[Optional[bytes]]:
    """The bytes each token id stands for (None for special/added tokens, which are not answer text).

    Byte-level BPE (Qwen, GPT-2): the token string is in the bytes-to-unicode alphabet and maps back byte by byte;
    SentencePiece byte fallback tokens ``<0xE4>`` are one byte; anything else is decoded as a string."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    out: List[Optional[bytes]] = []
    for tid, tok in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if tid in special or tok is None:
            out.append(None)
        elif all(c in byte_of for c in tok):
            out.append(bytes(byte_of[c] for c in tok))
        elif _SP_BYTE_RE.match(tok):
            out.append(bytes([int(tok[3:5], 16)]))
        else:
            out.append(tokenizer.convert_tokens_to_string([tok]).replace("\u2581", " ").encode("utf-8"))
    return out


class TokenTrie:
    """Byte trie of a vocabulary: node = dict byte -> child, plus the token ids ending at the node (key -1)."""

    def __init__(self, vocab_bytes: Sequence[Optional[bytes]]):
        self.root: dict = {}
        self.vocab_bytes = list(vocab_bytes)
        for tid, b in enumerate(self.vocab_bytes):
            if not b:
                continue
            node = self.root
            for byte in b:
                node = node.setdefault(byte, {})
            node.setdefault(-1, []).append(tid)

    @classmethod
    @functools.lru_cache(maxsize=4)
    def _cached(cls, key: Tuple[Optional[bytes], ...]) -> "TokenTrie":
        return cls(key)

    @classmethod
    def for_tokenizer(cls, tokenizer) -> "TokenTrie":
        """One trie per vocabulary (built once: 151k tokens of Qwen3 take ~1 s)."""
        return cls._cached(tuple(token_bytes(tokenizer)))

    def can_spell(self, data: bytes) -> bool:
        """Whether some sequence of tokens spells exactly ``data`` (always true with all 256 byte tokens)."""
        reach = [False] * (len(data) + 1)
        reach[0] = True
        for i in range(len(data)):
            if not reach[i]:
                continue
            node = self.root
            for j in range(i, len(data)):
                node = node.get(data[j])
                if node is None:
                    break
                if -1 in node:
                    reach[j + 1] = True
        return reach[-1]


@functools.lru_cache(maxsize=None)
def reading_index() -> Tuple[Dict[str, FrozenSet[str]], Dict[Tuple[str, str], FrozenSet[str]]]:
    """(toneless syllable -> Hanzi, viseme key -> Hanzi) over GB2312, every reading of every character."""
    from vallr_pin.scoring.error_analysis import viseme_key
    from vallr_pin.text.pinyin import char_readings, gb2312_hanzi

    by_syl: Dict[str, Set[str]] = {}
    for ch in gb2312_hanzi():
        for syl in char_readings(ch):
            by_syl.setdefault(syl, set()).add(ch)
    by_vis: Dict[Tuple[str, str], Set[str]] = {}
    for syl, chars in by_syl.items():
        try:
            by_vis.setdefault(viseme_key(syl), set()).update(chars)
        except (KeyError, ValueError):  # a reading outside the initial/final tables: no viseme class
            continue
    return ({k: frozenset(v) for k, v in by_syl.items()}, {k: frozenset(v) for k, v in by_vis.items()})


def nbest_chars_at(pinyin: Sequence[str], candidates: Iterable[str]) -> List[Set[str]]:
    """Per pinyin position, the characters the candidates put there: positionally for a candidate of the
    pinyin's length, else through an alignment of the candidate's reading to the pinyin."""
    from vallr_pin.scoring.cer import align
    from vallr_pin.text.pinyin import UNK, pinyin_per_char

    out: List[Set[str]] = [set() for _ in pinyin]
    for cand in candidates:
        if not cand:
            continue
        if len(cand) == len(pinyin):
            for i, ch in enumerate(cand):
                out[i].add(ch)
            continue
        readings = [r or UNK for r in pinyin_per_char(cand)]
        i = j = 0
        for op, ref, hyp in align(list(pinyin), readings):
            if op in ("C", "S"):
                out[i].add(cand[j])
            i += ref is not None
            j += hyp is not None
    return out


def position_sets(pinyin: Sequence[str], candidates: Sequence[str], level: str = "nbest"
                  ) -> Tuple[Optional[List[FrozenSet[str]]], Optional[str]]:
    """The allowed characters per position, or ``(None, reason)`` when the utterance cannot be constrained:
    ``empty_pinyin``; ``length_mismatch`` (no candidate is as long as the pinyin: the two branches disagree on
    the length, and forcing either would delete or insert); ``no_allowed_character`` (a position, e.g. ``<unk>``,
    with nothing allowed)."""
    from vallr_pin.scoring.error_analysis import viseme_key

    if level not in LEVELS:
        raise ValueError(f"unknown constraint level '{level}'; choose one of {LEVELS}")
    pinyin = list(pinyin)
    if not pinyin:
        return None, "empty_pinyin"
    if not any(len(c) == len(pinyin) for c in candidates):
        return None, "length_mismatch"
    by_syl, by_vis = reading_index()
    rank = LEVELS.index(level)
    nb = nbest_chars_at(pinyin, candidates) if rank >= 1 else [set() for _ in pinyin]
    sets: List[FrozenSet[str]] = []
    for syl, extra in zip(pinyin, nb):
        allowed = set(by_syl.get(syl, ())) | extra
        if rank >= 2:
            try:
                allowed |= by_vis.get(viseme_key(syl), frozenset())
            except (KeyError, ValueError):
                pass
        if not allowed:
            return None, "no_allowed_character"
        sets.append(frozenset(allowed))
    return sets, None


class PositionConstraint:
    """The allowed answers of one utterance, as an automaton over UTF-8 bytes, queried against a TokenTrie.

    Args:
        sets: allowed characters per position (:func:`position_sets`).
        trie: the tokenizer's :class:`TokenTrie`.
        eos_ids: token ids that end the answer (end of turn), allowed only after the last position.
    """

    def __init__(self, sets: Sequence[FrozenSet[str]], trie: TokenTrie, eos_ids: Iterable[int]):
        self.trie = trie
        self.eos_ids = sorted(set(eos_ids))
        self.n = len(sets)
        # one byte trie per position over the UTF-8 of its characters; a leaf (empty dict) completes a character
        self.char_tries: List[dict] = []
        self._longest = 0  # bytes of the longest allowed answer
        for chars in sets:
            root: dict = {}
            for ch in sorted(chars):
                data = ch.encode("utf-8")
                if not trie.can_spell(data):
                    continue
                node = root
                for b in data:
                    node = node.setdefault(b, {})
            if not root:
                raise ValueError("no allowed character can be spelled with this vocabulary")
            self.char_tries.append(root)
            self._longest += max(len(ch.encode("utf-8")) for ch in chars)
        self._cache: Dict[bytes, List[int]] = {}

    def _state(self, data: bytes) -> Optional[Tuple[int, dict]]:
        """(position, node in its char trie) after ``data``; None when ``data`` left the allowed answers."""
        pos, node = 0, self.char_tries[0] if self.n else {}
        for b in data:
            if pos >= self.n:
                return None
            node = node.get(b)
            if node is None:
                return None
            if not node:  # a character completed
                pos += 1
                node = self.char_tries[pos] if pos < self.n else {}
        return pos, node

    def allowed(self, data: bytes) -> List[int]:
        """Token ids that may follow the answer bytes ``data`` (eos ids once all positions are written; [] if
        ``data`` is not a prefix of an allowed answer)."""
        hit = self._cache.get(data)
        if hit is not None:
            return hit
        state = self._state(data)
        out: List[int] = []
        if state is not None:
            pos, node = state
            if pos >= self.n:
                out = list(self.eos_ids)
            else:
                self._walk(self.trie.root, pos, node, out)
        self._cache[data] = out
        return out

    def _walk(self, tnode: dict, pos: int, cnode: dict, out: List[int]) -> None:
        # depth-first over the token trie, in step with the automaton: only bytes the answer allows
        for b, tchild in tnode.items():
            if b == -1:
                continue
            nxt = cnode.get(b)
            if nxt is None:
                continue
            npos, nnode = pos, nxt
            if not nxt:  # character completed
                npos += 1
                nnode = self.char_tries[npos] if npos < self.n else None
            if -1 in tchild:
                out.extend(tchild[-1])
            if nnode is not None:
                self._walk(tchild, npos, nnode, out)

    def answer_bytes(self, token_ids: Sequence[int]) -> bytes:
        return b"".join(self.trie.vocab_bytes[t] or b"" for t in token_ids)

    def mask_row(self, generated: Sequence[int], logits):
        """Set every disallowed logit of one row to -inf (in place, returned). ``generated``: the answer's token
        ids so far. A row whose answer already ended, or (never expected) that left the allowed answers, is
        given the eos ids only, so generation always stops with what it has."""
        import torch

        if any(t in self.eos_ids for t in generated):
            return logits
        ids = self.allowed(self.answer_bytes(generated)) or self.eos_ids
        keep = torch.full_like(logits, float("-inf"))
        idx = torch.tensor(ids, dtype=torch.long, device=logits.device)
        keep.index_fill_(-1, idx, 0.0)
        logits += keep
        return logits

    def vllm_request_processor(self):
        """vLLM's per-request logits processor: ``fn(output_token_ids: list[int], logits: Tensor) -> Tensor``
        (wrap it with ``vllm.v1.sample.logits_processor.AdapterLogitsProcessor.new_req_logits_processor``)."""
        return lambda output_token_ids, logits: self.mask_row(list(output_token_ids), logits)

    def max_new_tokens(self) -> int:
        """Enough tokens for the longest spelling (one byte a token) plus the end of turn: generation under the
        constraint always reaches the end."""
        return self._longest + 1


class PinyinLogitsProcessor:
    """A transformers logits processor (``generate(logits_processor=LogitsProcessorList([...]))`` calls it as
    ``(input_ids, scores) -> scores``, so no transformers import is needed here) for a left-padded batch: row
    ``b`` follows ``constraints[b]`` (None: unconstrained). ``prompt_len`` is the padded prompt length, so
    ``input_ids[:, prompt_len:]`` is the answer."""

    def __init__(self, constraints: Sequence[Optional[PositionConstraint]], prompt_len: int):
        self.constraints = list(constraints)
        self.prompt_len = prompt_len

    def __call__(self, input_ids, scores):
        for b, c in enumerate(self.constraints):
            if c is not None:
                c.mask_row(input_ids[b, self.prompt_len:].tolist(), scores[b])
        return scores

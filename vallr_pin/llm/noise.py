"""Error-noise augmentation of the LLM instruction data: synthetic N-best lists made from extra text, with the
errors of the recogniser's own N-best (issue 19, item 5).

Stage 7 has only as many training prompts as stage 6 decoded utterances. Text is cheap (``lm_text.txt`` of the
mini recipe, any text file for a real corpus), so this module turns sentences into prompts that look like the
recogniser's: it *measures* the errors of the training-set N-best (:func:`measure`) and *transplants* them onto
new sentences (:class:`NoiseMaker`).

What is measured (jiwer alignments; every rate per character of the side compared against):

- ``vs_reference[k]``: rank k against the reference: substitution / deletion / insertion rates, the share of
  lists whose rank k *is* the reference (the rank structure: where in the list the right sentence sits), and
  what the substitutions are (``homophone``: same toneless reading; ``same_viseme``: another syllable with the
  same initial viseme class and final; ``other``; ``vallr_pin.scoring.error_analysis``).
- ``vs_onebest[k]`` (k >= 2): rank k against the 1-best, since a beam's hypotheses are variants of each other:
  S/D/I rates, the share of those substitutions that fall where the 1-best is wrong (``sub_on_error``), how
  often such a substitution puts the reference character back (``repair``), and the categories of the others.
- ``pinyin``: the pinyin branch's best against the reference's reading (syllables): S/D/I, the share equal to
  it, same-viseme vs other substitutions, and the share of lists whose pinyin is exactly the reading of their
  1-best (``from_onebest``: a model rescoring with its pinyin branch, or a recogniser without one).
- ``list_sizes``: how many hypotheses a list has.

How a synthetic list is made (:meth:`NoiseMaker.make`): one measured list is drawn as a *donor*, uniformly
among the lists whose reference has the new sentence's length (or the nearest length measured), and its error
counts, scaled to the new sentence's length (stochastic rounding;
a donor with errors always gives at least one), are applied: the 1-best corrupts the sentence, each further
rank corrupts the 1-best (preferring the 1-best's wrong positions and repairing them at the measured shares),
and the pinyin line is a corrupted copy of the sentence's reading with the donor's syllable errors (or the
reading of the synthetic 1-best, for a donor whose pinyin was that of its 1-best). Substitutes are drawn by the
measured category: a homophone or a same-viseme character of the character replaced (pypinyin readings; the
viseme classes of ``vallr_pin.text.pinyin``), from the characters the recogniser writes and the text holds
(weighted by frequency), else from the 3,755 common GB2312 characters; inserted characters by frequency.
Lists keep their hypotheses unique. Everything is drawn from one ``random.Random(seed)``: the same inputs and
seed give the same lists.

:func:`measure` of the synthetic lists against their sentences gives back the measured rates (within sampling
noise; test/test_llm_noise.py); ``build_llm_data`` writes both profiles into ``stats.json``.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from vallr_pin.llm.nbest import NbestEntry
from vallr_pin.scoring.error_analysis import HOMOPHONE, OTHER, SAME_VISEME, classify_substitution, viseme_key

CHAR_CATEGORIES = (HOMOPHONE, SAME_VISEME, OTHER)
PINYIN_CATEGORIES = (SAME_VISEME, OTHER)
N_COMMON_GB2312 = 3755  # GB2312 level 1: the common characters


def _fit(sdi: Tuple[int, int, int], n: int) -> Tuple[int, int, int]:
    """(S, D, I) with S + D cut to the ``n`` units there are to substitute or delete, in their proportion."""
    s, d, i = sdi
    if s + d > n:
        s = round(s * n / (s + d))
        d = n - s
    return s, d, i


@dataclass
class ListRecord:
    """The measured errors of one N-best list, a donor for synthetic lists.

    ``counts[0]`` is ``(n_ref, S, D, I)`` of the 1-best against the reference; ``counts[k]`` (k >= 1) is
    ``(len(1-best), S, D, I)`` of rank k+1 against the 1-best. ``pinyin`` is ``(n_ref_syllables, S, D, I)`` of the
    pinyin line against the reference's reading; ``pinyin_from_onebest``: that line is the 1-best's reading.
    """

    counts: List[Tuple[int, int, int, int]]
    pinyin: Tuple[int, int, int, int]
    pinyin_from_onebest: bool

    @property
    def n_ref(self) -> int:
        return self.counts[0][0]


def _align(pairs: Sequence[Tuple[Sequence[str], Sequence[str]]]) -> List[List[Tuple[str, int, int]]]:
    """Token alignments (jiwer) of ``(ref tokens, hyp tokens)`` pairs, one op per token: ``(op, i, j)`` with op in
    equal/substitute/delete/insert, i the ref index (insert: the next ref index), j the hyp index (delete: the
    next hyp index)."""
    import jiwer

    out: List[Optional[List[Tuple[str, int, int]]]] = [None] * len(pairs)
    todo = []
    for n, (ref, hyp) in enumerate(pairs):
        if not ref or not hyp:  # jiwer needs a non-empty side; the alignment is trivial then
            out[n] = [("delete", i, 0) for i in range(len(ref))] + [("insert", 0, j) for j in range(len(hyp))]
        else:
            todo.append(n)
    for start in range(0, len(todo), 20000):
        batch = todo[start:start + 20000]
        res = jiwer.process_words([" ".join(pairs[n][0]) for n in batch], [" ".join(pairs[n][1]) for n in batch])
        for n, chunks in zip(batch, res.alignments):
            ops = []
            for c in chunks:
                if c.type in ("equal", "substitute"):
                    ops += [(c.type, c.ref_start_idx + d, c.hyp_start_idx + d)
                            for d in range(c.ref_end_idx - c.ref_start_idx)]
                elif c.type == "delete":
                    ops += [("delete", i, c.hyp_start_idx) for i in range(c.ref_start_idx, c.ref_end_idx)]
                else:
                    ops += [("insert", c.ref_start_idx, j) for j in range(c.hyp_start_idx, c.hyp_end_idx)]
            out[n] = ops
    return out  # type: ignore[return-value]


def _sdi(ops: Sequence[Tuple[str, int, int]]) -> Tuple[int, int, int]:
    c = Counter(op for op, _, _ in ops)
    return c["substitute"], c["delete"], c["insert"]


def _readings(text: str) -> List[Optional[str]]:
    from vallr_pin.text.pinyin import pinyin_per_char

    return pinyin_per_char(text)


def _key(syllable: Optional[str]):
    if not syllable or syllable.startswith("<"):
        return None
    try:
        return viseme_key(syllable)
    except (KeyError, ValueError):
        return None


def _clean(text: str) -> List[str]:
    """A hypothesis as the scorer counts it (``<unk>`` one character), as a list of characters."""
    from vallr_pin.scoring.cer import normalize_hypothesis

    return list(normalize_hypothesis(text))


def _shares(counter: Counter, keys: Sequence[str]) -> Dict[str, float]:
    total = sum(counter[k] for k in keys)
    return {k: round(counter[k] / total, 4) if total else 0.0 for k in keys}


def _rate(x: int, n: int) -> float:
    return round(x / n, 4) if n else 0.0


def measure(entries: Sequence[NbestEntry]) -> Tuple[dict, List[ListRecord]]:
    """The error profile of N-best lists with references (module docstring) and one :class:`ListRecord` per
    list. Entries without a reference or without hypotheses are left out."""
    from vallr_pin.llm.nbest import hypothesis_pinyin
    from vallr_pin.scoring.cer import normalize_reference

    lists = []
    for e in entries:
        if not e.ref or not e.texts:
            continue
        ref = list(normalize_reference(e.ref))
        if not ref:
            continue
        hyps = [_clean(t) for t in e.texts]
        ref_py = hypothesis_pinyin("".join(ref))
        # the pinyin line is the 1-best's reading (and wrong: a right one is a corrupted copy without errors)
        from_one = e.pinyin == hypothesis_pinyin("".join(hyps[0])) and e.pinyin != ref_py
        lists.append((ref, hyps, e.pinyin.split(), ref_py.split(), from_one))
    # every alignment in one batch per kind
    pairs_ref = [(ref, h) for ref, hyps, *_ in lists for h in hyps]
    pairs_one = [(hyps[0], h) for _, hyps, *_ in lists for h in hyps[1:]]
    pairs_py = [(ref_py, py) for _, _, py, ref_py, _ in lists]
    ali_ref, ali_one, ali_py = iter(_align(pairs_ref)), iter(_align(pairs_one)), iter(_align(pairs_py))

    k_max = max((len(h) for _, h, *_ in lists), default=0)
    vr = [Counter() for _ in range(k_max)]
    vr_cat = [Counter() for _ in range(k_max)]
    vo = [Counter() for _ in range(k_max)]
    vo_cat = [Counter() for _ in range(k_max)]
    py, py_cat = Counter(), Counter()
    sizes: Counter = Counter()
    records: List[ListRecord] = []
    for ref, hyps, hyp_py, ref_py, py_from_one in lists:
        sizes[len(hyps)] += 1
        ref_read = _readings("".join(ref))
        hyp_read = [_readings("".join(h)) for h in hyps]
        counts = []
        errors_one: Dict[int, str] = {}  # 1-best position -> reference character, where the 1-best substitutes
        for k, h in enumerate(hyps):
            ops = next(ali_ref)
            s, d, i = _sdi(ops)
            vr[k].update(lists=1, chars=len(ref), sub=s, dele=d, ins=i, exact=int(h == ref))
            for op, a, b in ops:
                if op == "substitute":
                    vr_cat[k][classify_substitution(ref_read[a], hyp_read[k][b])] += 1
                    if k == 0:
                        errors_one[b] = ref[a]
            if k == 0:
                counts.append((len(ref), s, d, i))
        for k, h in enumerate(hyps[1:], 1):
            ops = next(ali_one)
            s, d, i = _sdi(ops)
            counts.append((len(hyps[0]), s, d, i))
            vo[k].update(lists=1, chars=len(hyps[0]), sub=s, dele=d, ins=i, sub_where_wrong=s if errors_one else 0)
            for op, a, b in ops:
                if op != "substitute":
                    continue
                if a in errors_one:
                    vo[k]["sub_on_error"] += 1
                    if h[b] == errors_one[a]:
                        vo[k]["repair"] += 1
                        continue
                vo_cat[k][classify_substitution(hyp_read[0][a], hyp_read[k][b])] += 1
        ops = next(ali_py)
        s, d, i = _sdi(ops)
        py.update(lists=1, syllables=len(ref_py), sub=s, dele=d, ins=i, exact=int(hyp_py == ref_py),
                  from_onebest=int(py_from_one))
        for op, a, b in ops:
            if op == "substitute" and not py_from_one:
                py_cat[SAME_VISEME if _key(ref_py[a]) is not None and _key(ref_py[a]) == _key(hyp_py[b])
                       else OTHER] += 1
        records.append(ListRecord(counts=counts, pinyin=(len(ref_py), s, d, i), pinyin_from_onebest=py_from_one))

    profile = {
        "n_lists": len(lists),
        "ref_chars": sum(len(r) for r, *_ in lists),
        "list_sizes": {str(k): sizes[k] for k in sorted(sizes)},
        "vs_reference": [
            {"rank": k + 1, "n_lists": c["lists"], "sub": _rate(c["sub"], c["chars"]),
             "del": _rate(c["dele"], c["chars"]), "ins": _rate(c["ins"], c["chars"]),
             "cer": _rate(c["sub"] + c["dele"] + c["ins"], c["chars"]), "exact": _rate(c["exact"], c["lists"]),
             "sub_categories": _shares(vr_cat[k], CHAR_CATEGORIES)}
            for k, c in enumerate(vr)],
        "vs_onebest": [
            {"rank": k + 1, "n_lists": c["lists"], "sub": _rate(c["sub"], c["chars"]),
             "del": _rate(c["dele"], c["chars"]), "ins": _rate(c["ins"], c["chars"]),
             "sub_on_error": _rate(c["sub_on_error"], c["sub_where_wrong"]),
             "repair": _rate(c["repair"], c["sub_on_error"]),
             "sub_categories": _shares(vo_cat[k], CHAR_CATEGORIES)}
            for k, c in enumerate(vo) if k >= 1],
        "pinyin": {"n_lists": py["lists"], "sub": _rate(py["sub"], py["syllables"]),
                   "del": _rate(py["dele"], py["syllables"]), "ins": _rate(py["ins"], py["syllables"]),
                   "exact": _rate(py["exact"], py["lists"]), "from_onebest": _rate(py["from_onebest"], py["lists"]),
                   "sub_categories": _shares(py_cat, PINYIN_CATEGORIES)},
    }
    return profile, records


class _Weighted:
    """Items with weights, drawn with replacement (``random.Random`` passed in, so one seed drives all)."""

    def __init__(self, items: Sequence, weights: Sequence[float]):
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))

    def __bool__(self) -> bool:
        return bool(self.items)

    def draw(self, rng: random.Random):
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


class _CharIndex:
    """Characters by toneless reading and by viseme key, weighted by frequency."""

    def __init__(self, counts: Dict[str, float]):
        by_reading: Dict[str, Dict[str, float]] = {}
        by_key: Dict[tuple, Dict[str, float]] = {}
        self.reading: Dict[str, Optional[str]] = {}
        for ch in sorted(counts):
            r = _readings(ch)[0]
            self.reading[ch] = r
            if r is None:
                continue
            by_reading.setdefault(r, {})[ch] = counts[ch]
            k = _key(r)
            if k is not None:
                by_key.setdefault(k, {})[ch] = counts[ch]
        self.by_reading = {r: _Weighted(list(d), list(d.values())) for r, d in by_reading.items()}
        self.by_key = {k: _Weighted(list(d), list(d.values())) for k, d in by_key.items()}
        self.readings_per_key = Counter(_key(r) for r in by_reading if _key(r) is not None)
        self.all = _Weighted(sorted(counts), [counts[c] for c in sorted(counts)])

    def homophone(self, rng, ch: str, reading: str) -> Optional[str]:
        pool = self.by_reading.get(reading)
        if not pool or pool.items == [ch]:
            return None
        while True:
            c = pool.draw(rng)
            if c != ch:
                return c

    def same_viseme(self, rng, ch: str, reading: str) -> Optional[str]:
        key = _key(reading)
        pool = self.by_key.get(key)
        if not pool or self.readings_per_key[key] - (reading in self.by_reading) < 1:
            return None
        while True:
            c = pool.draw(rng)
            if self.reading[c] != reading:
                return c


class NoiseMaker:
    """Synthetic N-best lists with the errors of measured ones (module docstring).

    Args:
        profile, records: :func:`measure` of the recogniser's training-set N-best.
        vocabulary: texts whose characters (and syllables) substitutes and insertions are drawn from, by
            frequency: the extra text and the recogniser's hypotheses.
        seed: of the one random generator behind every draw.
    """

    def __init__(self, profile: dict, records: Sequence[ListRecord], vocabulary: Iterable[str], seed: int = 0):
        from vallr_pin.llm.nbest import hypothesis_pinyin
        from vallr_pin.text.normalize import is_hanzi
        from vallr_pin.text.pinyin import UNK, gb2312_hanzi, syllable_inventory

        if not records:
            raise ValueError("no N-best list with a reference to measure errors on; error-noise augmentation "
                             "needs the training-set N-best with references")
        self.profile = profile
        self.rng = random.Random(seed)
        self.records = list(records)
        self.by_length: Dict[int, List[int]] = {}
        for n, r in enumerate(self.records):
            self.by_length.setdefault(r.n_ref, []).append(n)
        self.lengths = sorted(self.by_length)
        chars: Counter = Counter()
        syllables: Counter = Counter()
        for text in vocabulary:
            hanzi = "".join(c for c in text if is_hanzi(c))
            chars.update(hanzi)
            syllables.update(s for s in hypothesis_pinyin(hanzi).split() if s != UNK)
        if not chars:
            raise ValueError("the vocabulary for substitutes holds no Hanzi; give an extra text with sentences")
        self.vocab = _CharIndex(dict(chars))
        self.common = _CharIndex({c: 1.0 for c in gb2312_hanzi()[:N_COMMON_GB2312]})
        inventory = {s: 0.5 for s in syllable_inventory(False)}
        inventory.update(syllables)
        self.syllables = _Weighted(sorted(syllables) or sorted(inventory),
                                   [syllables[s] for s in sorted(syllables)] or [1.0] * len(inventory))
        self.syllables_by_key: Dict[tuple, _Weighted] = {}
        by_key: Dict[tuple, List[str]] = {}
        for s in sorted(inventory):
            if _key(s) is not None:
                by_key.setdefault(_key(s), []).append(s)
        self.syllables_by_key = {k: _Weighted(v, [inventory[s] for s in v]) for k, v in by_key.items()}
        self.char_shares = [_Weighted(CHAR_CATEGORIES, [r["sub_categories"][c] for c in CHAR_CATEGORIES])
                            if any(r["sub_categories"].values()) else _Weighted([OTHER], [1.0])
                            for r in profile["vs_reference"][:1] + profile["vs_onebest"]]
        pc = profile["pinyin"]["sub_categories"]
        self.pinyin_shares = (_Weighted(PINYIN_CATEGORIES, [pc[c] for c in PINYIN_CATEGORIES])
                              if any(pc.values()) else _Weighted([OTHER], [1.0]))
        # per list kind (the 1-best, then rank k against the 1-best): factors on the donors' (S, D, I) counts, 1
        # until calibrated
        self.count_fix = [[1.0, 1.0, 1.0] for _ in self.char_shares]
        self.pinyin_fix = [1.0, 1.0, 1.0]
        self.p_on_error = [r["sub_on_error"] for r in profile["vs_onebest"]]
        self.p_repair = [r["repair"] for r in profile["vs_onebest"]]
        self.fallbacks: Counter = Counter()  # substitutes not of the drawn category (none such exists)

    def calibrate(self, sentences: Sequence[str], rounds: int = 2, sample: int = 2000) -> List[dict]:
        """Correct the drawing shares so that the synthetic lists *measure* as the real ones.

        The shares of substitution categories, ``sub_on_error`` and ``repair`` are measured after an alignment,
        and an alignment of a substitution next to a deletion or of a repeated repair is ambiguous: drawn at
        the measured shares, the synthetic lists measure a little off (homophones ~10 % fewer). Each round
        makes lists for up to ``sample`` of ``sentences``, measures them, and scales every share (and the
        factors on the donors' S/D/I counts) by measured-real / measured-synthetic (each factor within [0.5, 2];
        its square root for ``sub_on_error`` and ``repair``, which rest on few substitutions). Returns the
        measured profiles."""

        def fix(value: float, target: float, got: float, power: float = 1.0) -> float:
            if target <= 0 or got <= 0:
                return value if got <= 0 else 0.0 if target <= 0 else value
            return value * min(2.0, max(0.5, target / got)) ** power

        def fix_shares(w: _Weighted, target: Dict[str, float], got: Dict[str, float]) -> _Weighted:
            if w.items == [OTHER] or not any(got.values()):
                return w
            old = dict(zip(w.items, [b - a for a, b in zip([0.0] + w.cum[:-1], w.cum)]))
            new = {c: fix(old[c], target[c], got[c]) for c in w.items}
            return _Weighted(list(new), list(new.values())) if any(new.values()) else w

        history = []
        pool = list(sentences)[:sample]
        start = self.rng.getstate()
        for _ in range(rounds if pool else 0):
            # the same random draws every round, so that the rounds correct the shares, not the sampling noise
            self.rng.setstate(start)
            synth = [self.entry(f"calib-{n}", sent) for n, sent in enumerate(pool)]
            got, _ = measure(synth)
            history.append(got)
            want = self.profile
            # an alignment also reads a deletion next to an insertion as two substitutions: counts drift too
            kinds = [(want["vs_reference"][0], got["vs_reference"][0])] + list(zip(want["vs_onebest"],
                                                                                   got["vs_onebest"]))
            for k, (w, g) in enumerate(kinds):
                self.count_fix[k] = [fix(f, w[op], g[op]) for f, op in zip(self.count_fix[k], ("sub", "del", "ins"))]
            self.char_shares[0] = fix_shares(self.char_shares[0], want["vs_reference"][0]["sub_categories"],
                                             got["vs_reference"][0]["sub_categories"])
            for k, (w, g) in enumerate(zip(want["vs_onebest"], got["vs_onebest"])):
                self.char_shares[k + 1] = fix_shares(self.char_shares[k + 1], w["sub_categories"],
                                                     g["sub_categories"])
                # damped: these shares rest on few substitutions (a few hundred), so their measured ratio is noisy
                self.p_on_error[k] = min(1.0, fix(self.p_on_error[k], w["sub_on_error"], g["sub_on_error"], 0.5))
                self.p_repair[k] = min(1.0, fix(self.p_repair[k], w["repair"], g["repair"], 0.5))
            self.pinyin_fix = [fix(f, want["pinyin"][op], got["pinyin"][op])
                               for f, op in zip(self.pinyin_fix, ("sub", "del", "ins"))]
            self.pinyin_shares = fix_shares(self.pinyin_shares, want["pinyin"]["sub_categories"],
                                            got["pinyin"]["sub_categories"])
        return history

    def entry(self, utt: str, sentence: str) -> NbestEntry:
        """:meth:`make` as an N-best entry with ``sentence`` as its reference (scores 0)."""
        texts, pinyin = self.make(sentence)
        return NbestEntry(utt=utt, texts=texts, scores=[0.0] * len(texts), pinyin=pinyin, ref=sentence)

    # -- drawing ---------------------------------------------------------------------------------------------
    def _round(self, x: float) -> int:
        n = int(x)
        return n + (self.rng.random() < x - n)

    def _donors(self, n: int) -> List[int]:
        """The measured lists of references as long as ``n`` characters, else of the nearest length(s)."""
        if n in self.by_length:
            return self.by_length[n]
        gap = min(abs(n - m) for m in self.lengths)
        return [i for m in self.lengths if abs(n - m) == gap for i in self.by_length[m]]

    def _scaled(self, counts: Tuple[int, int, int, int], n: Optional[int], factors: Sequence[float]
                ) -> Tuple[int, int, int]:
        """The donor's (S, D, I) scaled from its length to ``n`` (None: not scaled) and by the calibrated
        ``factors``; at least one error when it had any."""
        n0, s, d, i = counts
        f = n / n0 if n0 and n is not None else 1.0
        fs, fd, fi = factors
        out = [self._round(s * f * fs), self._round(d * f * fd), self._round(i * f * fi)]
        if not any(out) and (s or d or i):
            out[_Weighted(range(3), [s, d, i]).draw(self.rng)] = 1
        return out[0], out[1], out[2]

    def _draw(self, ch: str, reading: Optional[str], category: str, avoid: Optional[str] = None) -> Optional[str]:
        """A substitute for ``ch`` of ``category`` (not ``avoid``), or None when there is none."""
        for _ in range(20):
            c = None
            if category == HOMOPHONE and reading:
                c = self.vocab.homophone(self.rng, ch, reading) or self.common.homophone(self.rng, ch, reading)
            elif category == SAME_VISEME and reading:
                c = self.vocab.same_viseme(self.rng, ch, reading) or self.common.same_viseme(self.rng, ch, reading)
            elif category == OTHER:
                key = _key(reading)
                for _ in range(50):
                    c = self.vocab.all.draw(self.rng)
                    if c != ch and (key is None or _key(self.vocab.reading[c]) != key):
                        break
                else:
                    c = None
            if c is None or c != avoid:
                return c
        return None

    def _substitute(self, ch: str, reading: Optional[str], category: str, avoid: Optional[str] = None) -> str:
        """A substitute of ``category`` or, where none exists, of the next one (counted in ``fallbacks``)."""
        order = {HOMOPHONE: (HOMOPHONE, SAME_VISEME, OTHER), SAME_VISEME: (SAME_VISEME, OTHER)}.get(category, (OTHER,))
        for cat in order:
            c = self._draw(ch, reading, cat, avoid)
            if c is not None:
                if cat != category:
                    self.fallbacks[f"{category}->{cat}"] += 1
                return c
        while True:  # a one-character vocabulary: anything else
            c = self.common.all.draw(self.rng)
            if c not in (ch, avoid):
                return c

    def _edit(self, src: Sequence[str], readings: Sequence[Optional[str]], sdi: Tuple[int, int, int],
              shares: _Weighted, errors: Optional[Dict[int, str]] = None, p_on_error: float = 0.0,
              p_repair: float = 0.0) -> Tuple[List[str], Dict[int, str]]:
        """``src`` with S substitutions, D deletions and I insertions at random places. ``errors`` (position ->
        the reference character there) are the 1-best's wrong positions: a substitution goes there with
        probability ``p_on_error`` and then restores the reference character with probability ``p_repair``.
        Returns the new characters and, for each substituted output position, the character it replaced."""
        rng = self.rng
        n = len(src)
        s, d, i = _fit(sdi, n)
        errors = errors or {}
        on_err = sorted(errors)
        off_err = [j for j in range(n) if j not in errors]
        rng.shuffle(on_err)
        rng.shuffle(off_err)
        plan: Dict[int, str] = {}  # position -> its substitute
        for _ in range(s):
            use_err = bool(on_err) and (not off_err or rng.random() < p_on_error)
            pool = on_err if use_err else off_err
            if not pool:
                break
            if use_err and rng.random() < p_repair:
                j = pool.pop()
                plan[j] = errors[j]
                continue
            # the category first, then a position where it exists (no homophone of 一 yi, no same-viseme
            # syllable of fa): the measured shares stay those of all substitutions
            cat = shares.draw(rng)
            for idx in range(len(pool) - 1, -1, -1):
                c = self._draw(src[pool[idx]], readings[pool[idx]], cat, errors.get(pool[idx]))
                if c is not None:
                    plan[pool.pop(idx)] = c
                    break
            else:
                j = pool.pop()
                plan[j] = self._substitute(src[j], readings[j], cat, errors.get(j))
        rest = [j for j in range(n) if j not in plan]
        dels = set(rng.sample(rest, min(d, len(rest))))
        ins = Counter(rng.randrange(n + 1) for _ in range(i))
        out: List[str] = []
        replaced: Dict[int, str] = {}
        for j in range(n + 1):
            out += [self.vocab.all.draw(rng) for _ in range(ins[j])]
            if j == n:
                break
            if j in dels:
                continue
            if j in plan:
                replaced[len(out)] = src[j]
            out.append(plan.get(j, src[j]))
        return out, replaced

    def _pinyin(self, syllables: Sequence[str], sdi: Tuple[int, int, int]) -> List[str]:
        """The reference's reading with S/D/I syllable errors: a substitute of the same viseme key or another."""
        rng = self.rng
        n = len(syllables)
        s, d, i = _fit(sdi, n)
        picks = rng.sample(range(n), s + d)
        subs, dels = set(picks[:s]), set(picks[s:])
        ins = Counter(rng.randrange(n + 1) for _ in range(i))
        out: List[str] = []
        for j in range(n + 1):
            out += [self.syllables.draw(rng) for _ in range(ins[j])]
            if j == n:
                break
            if j in dels:
                continue
            syl = syllables[j]
            if j not in subs:
                out.append(syl)
                continue
            key, new = _key(syl), None
            if self.pinyin_shares.draw(rng) == SAME_VISEME and key in self.syllables_by_key:
                pool = self.syllables_by_key[key]
                if len(pool.items) > 1:
                    while new is None or new == syl:
                        new = pool.draw(rng)
            if new is None:
                for _ in range(50):
                    new = self.syllables.draw(rng)
                    if new != syl and (key is None or _key(new) != key):
                        break
            out.append(new)
        return out

    def make(self, sentence: str) -> Tuple[List[str], str]:
        """A synthetic N-best list (best first, unique) and pinyin line for the Hanzi ``sentence``."""
        from vallr_pin.llm.nbest import hypothesis_pinyin

        rng = self.rng
        rec = self.records[rng.choice(self._donors(len(sentence)))]
        ref = list(sentence)
        ref_read = _readings(sentence)
        for _ in range(5):
            one, replaced = self._edit(ref, ref_read, self._scaled(rec.counts[0], len(ref), self.count_fix[0]),
                                       self.char_shares[0])
            # a donor whose pinyin line was its wrong 1-best's reading needs a 1-best that reads wrong too
            if not rec.pinyin_from_onebest or _readings("".join(one)) != ref_read:
                break
        # where the 1-best substitutes, the reference character it replaced (the 1-best's wrong positions)
        errors = dict(replaced)
        texts = ["".join(one)]
        one_read = _readings(texts[0])
        for k, counts in enumerate(rec.counts[1:], 1):
            for _ in range(10):  # hypotheses of a list are unique
                # not scaled by length: the donor's 1-best is about as long, and a beam's variants differ by a few
                # edits whatever the length (scaling 1 edit by 8/9 would round to 0 and be forced back to 1)
                sdi = self._scaled(counts, None, self.count_fix[k])
                cand, _ = self._edit(one, one_read, sdi, self.char_shares[k], errors, self.p_on_error[k - 1],
                                     self.p_repair[k - 1])
                cand = "".join(cand)
                if cand and cand not in texts:
                    texts.append(cand)
                    break
        if rec.pinyin_from_onebest:
            pinyin = hypothesis_pinyin(texts[0])
        else:
            ref_py = hypothesis_pinyin(sentence).split()
            pinyin = " ".join(self._pinyin(ref_py, self._scaled(rec.pinyin, len(ref_py), self.pinyin_fix)))
        return texts, pinyin

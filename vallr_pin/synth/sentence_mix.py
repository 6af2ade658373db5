"""New training sentences recombined from the words of the real ones (word-bigram random walks).

Why: a lip reader trained on a few thousand sentences learns to recognise those sentences, not to read
syllables (egs/mini_cnvsrc/vsr1/RESULTS.md: a new sentence cost ~40 CER points, a new speaker ~5). A real corpus
has tens of thousands of distinct sentences; the synthetic one can have them too: a random walk on the word
bigram graph of the *training* sentences makes sentences that are new as wholes, with the same words, characters
and local word order as the training text. They are only ever spoken in the training split; dev and test stay
real sentences, and a generated sentence equal to, containing or contained in an evaluation sentence (the
near-copy rule of ``render_corpus --lm-text``) is never kept.

Deterministic: the same inputs and generator give the same sentences.
"""

from __future__ import annotations

import collections
from typing import Dict, List, Sequence

import numpy as np

BOS, EOS = "<s>", "</s>"


def _hanzi_count(text: str) -> int:
    from vallr_pin.text.normalize import is_hanzi

    return sum(1 for c in text if is_hanzi(c))


def recombine_sentences(word_lists: Sequence[Sequence[str]], n: int, rng: np.random.Generator,
                        min_chars: int = 4, max_chars: int = 16, held_out: Sequence[str] = (),
                        existing: Sequence[str] = (), unigram_mix: float = 0.15, min_overlap: int = 4,
                        max_tries_per_sentence: int = 50) -> List[str]:
    """Up to ``n`` distinct new sentences (Hanzi only, ending in "。") from word bigrams of ``word_lists``.

    Each next word follows the previous one as in some training sentence, except with probability
    ``unigram_mix`` where any word is drawn by its frequency (new word pairs, so whole sentences cannot be
    looked up). A sentence is kept when it has ``min_chars..max_chars`` Hanzi, is not in ``existing`` and is
    no near copy of a ``held_out`` sentence (equal, or one containing the other when the shorter has
    ``min_overlap`` or more Hanzi). Fewer than ``n`` come back only if ``n * max_tries_per_sentence`` walks
    were not enough."""
    from vallr_pin.text.normalize import normalize_text

    follows: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    unigrams: collections.Counter = collections.Counter()
    for words in word_lists:
        words = [w for w in (normalize_text(w) for w in words) if w]
        if not words:
            continue
        unigrams.update(words)
        for a, b in zip([BOS] + words, words + [EOS]):
            follows[a][b] += 1
    if not unigrams:
        raise ValueError("no words to recombine: the training sentences have no Hanzi words")
    uni_words = sorted(unigrams)
    uni_p = np.array([unigrams[w] for w in uni_words], dtype=np.float64)
    uni_p /= uni_p.sum()
    table = {a: (sorted(c), np.array([c[b] for b in sorted(c)], dtype=np.float64)) for a, c in follows.items()}
    table = {a: (ws, p / p.sum()) for a, (ws, p) in table.items()}

    held = [normalize_text(s) for s in held_out]
    held = [h for h in held if h]
    seen = {normalize_text(s) for s in existing}
    out: List[str] = []
    for _ in range(n * max_tries_per_sentence):
        if len(out) >= n:
            break
        words, prev, length = [], BOS, 0
        while length <= max_chars:
            if prev != BOS and rng.random() < unigram_mix:
                nxt = uni_words[int(rng.choice(len(uni_words), p=uni_p))]
                if rng.random() < 0.25:  # a unigram jump may also end the sentence
                    nxt = EOS if length >= min_chars else nxt
            else:
                ws, p = table.get(prev, table[BOS])
                nxt = ws[int(rng.choice(len(ws), p=p))]
            if nxt == EOS:
                break
            words.append(nxt)
            length += _hanzi_count(nxt)
            prev = nxt
        text = "".join(words)
        if not (min_chars <= length <= max_chars) or text in seen:
            continue
        if any(text == h or (min(len(text), len(h)) >= min_overlap and (h in text or text in h)) for h in held):
            continue
        seen.add(text)
        out.append(text + "。")
    return out

"""Bootstrap over utterances: how far a corpus CER, or the difference between two systems, is from noise.

A test set is a sample of utterances, so its CER has sampling error, and with the 150-utterance sets of a mini
recipe a one-point gap between two systems can be luck. Resampling the utterances with replacement (Bisani &
Ney 2004, "Bootstrap estimates for confidence intervals in ASR performance evaluation") gives both figures
without assuming a distribution: the percentile interval of the corpus CER, and -- drawing the *same*
utterances for two systems scored on one set -- how often one system's CER is below the other's.

Inputs are per-utterance ``(errors, ref length)`` (S+D+I and N, e.g. the ``#csid`` lines of
``score_cer/utt_errors.txt``), one entry per utterance in the same order for every system. A resample's corpus
CER is sum(errors) / sum(lengths) over its utterances, as for the whole set (not a mean of utterance CERs).
Results depend only on the inputs, ``resamples`` and ``seed`` (numpy ``Generator``).
"""

from __future__ import annotations

from typing import Iterator, Sequence, Tuple

import numpy as np

DEFAULT_RESAMPLES = 1000
# Resampled indices held in memory at once (int64), so that 1000 resamples of a 20k-utterance set stay small.
_CHUNK_ELEMENTS = 1 << 22


def _columns(*columns: Sequence[int]) -> np.ndarray:
    """The per-utterance columns as one (utterances x columns) int64 array; all the same non-zero length."""
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"per-utterance lists of different lengths {sorted(lengths)}: the systems must be "
                         "scored on the same utterances, in the same order")
    if not lengths.pop():
        raise ValueError("no utterances to resample")
    return np.stack([np.asarray(c, dtype=np.int64) for c in columns], axis=1)


def resampled_sums(*columns: Sequence[int], resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Column sums over ``resamples`` bootstrap resamples of the utterances: (resamples x len(columns)) int64.

    Each resample draws as many utterance indices as there are utterances, with replacement; every column
    is summed over the same indices, which is what makes a comparison of two systems paired.
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    data = _columns(*columns)
    return np.concatenate(list(_chunked_sums(data, resamples, np.random.default_rng(seed))))


def _chunked_sums(data: np.ndarray, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    n = data.shape[0]
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, per_chunk):
        idx = rng.integers(0, n, size=(min(per_chunk, resamples - start), n))
        yield data[idx].sum(axis=1)


def _cer(errors: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Percent; N = 0 (only with empty references) gives 0 without errors and inf with, as CorpusScore.cer."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cer = 100.0 * errors / lengths
    return np.where(lengths > 0, cer, np.where(errors > 0, np.inf, 0.0))


def cer_interval(errs: Sequence[int], lens: Sequence[int], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 alpha: float = 0.05) -> Tuple[float, float]:
    """(low, high) percentile bootstrap interval of the corpus CER in percent, coverage ``1 - alpha``.

    ``errs``/``lens``: per utterance S+D+I and reference length N (characters).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    sums = resampled_sums(errs, lens, resamples=resamples, seed=seed)
    low, high = np.percentile(_cer(sums[:, 0], sums[:, 1]), [50.0 * alpha, 100.0 - 50.0 * alpha])
    return float(low), float(high)


def paired_win_rate(errs_a: Sequence[int], errs_b: Sequence[int], lens: Sequence[int],
                    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, strict: bool = True) -> float:
    """Share of paired resamples in which system B's corpus CER is strictly below A's (``strict=False``: at or
    below, i.e. B no worse).

    ``errs_a``/``errs_b``: per utterance S+D+I of the two systems on the same utterances; ``lens``: their
    common reference lengths. With equal N in a resample, comparing CERs is comparing error counts, so ties
    are exact: two identical systems give 0.0 (strict) and 1.0 (not strict).
    """
    sums = resampled_sums(errs_a, errs_b, lens, resamples=resamples, seed=seed)
    b_wins = sums[:, 1] < sums[:, 0] if strict else sums[:, 1] <= sums[:, 0]
    return float(np.mean(b_wins))

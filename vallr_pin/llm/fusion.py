"""Score fusion for N-best rescoring with the LLM (stage 9, ``--mode rescore``): pick the candidate that
maximises ``llm_weight * log P_LLM + vsr_weight * log P_VSR + length_bonus * len(candidate)``, and tune the
weights on a development set as Kaldi's scoring tunes its LM weight (``LMWT``) and word insertion penalty.

Why the weights: an LLM's log-probability and the VSR beam score live on different scales, and a sum of
per-token log-probabilities prefers short answers (every extra character costs probability), so an
un-weighted sum trades substitutions for deletions. Any shallow fusion of a language model with an acoustic
(here: visual) model tunes these two numbers on held-out data; the real recipe's generative mode needs none.

The tuning is done on stored scores (``raw.jsonl`` of :mod:`vallr_pin.bin.llm_refine` keeps every candidate's
LLM and VSR scores), so the grid costs no LLM forward pass; the weights chosen on the development set are
then applied unchanged to the test sets.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from vallr_pin.llm.guard import OutputGuard
from vallr_pin.scoring.cer import score_utterance

DEFAULT_LLM_WEIGHTS = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DEFAULT_LENGTH_BONUSES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


@dataclasses.dataclass(frozen=True)
class FusionWeights:
    llm_weight: float = 1.0
    vsr_weight: float = 0.0
    length_bonus: float = 0.0  # added per character of the candidate (whitespace ignored)

    def score(self, llm: float, vsr: float, candidate: str) -> float:
        return self.llm_weight * llm + self.vsr_weight * vsr + self.length_bonus * len("".join(candidate.split()))


def choose(candidates: Sequence[str], llm_scores: Sequence[float], vsr_scores: Sequence[float],
           weights: FusionWeights) -> Optional[int]:
    """Index of the best candidate under ``weights`` (the first on ties, i.e. the better VSR rank); None if
    there are no candidates."""
    if not (len(candidates) == len(llm_scores) == len(vsr_scores)):
        raise ValueError(f"{len(candidates)} candidates but {len(llm_scores)} LLM and {len(vsr_scores)} VSR scores")
    if not candidates:
        return None
    total = [weights.score(a, b, c) for a, b, c in zip(llm_scores, vsr_scores, candidates)]
    return max(range(len(candidates)), key=total.__getitem__)


@dataclasses.dataclass(frozen=True)
class ScoredNbest:
    """One utterance of a rescored ``raw.jsonl``: its candidates in VSR rank order and their scores."""

    utt: str
    candidates: Tuple[str, ...]
    llm_scores: Tuple[float, ...]
    vsr_scores: Tuple[float, ...]
    onebest: str

    @classmethod
    def from_record(cls, rec: Mapping[str, object]) -> "ScoredNbest":
        missing = [k for k in ("candidates", "llm_scores", "vsr_scores") if k not in rec]
        if missing:
            raise ValueError(f"utterance '{rec.get('utt')}': no {', '.join(missing)} in raw.jsonl; it was not "
                             "written by llm_refine --mode rescore (generative answers cannot be re-weighted)")
        return cls(str(rec["utt"]), tuple(rec["candidates"]), tuple(float(x) for x in rec["llm_scores"]),
                   tuple(float(x) for x in rec["vsr_scores"]), str(rec.get("onebest", "")))

    def pick(self, weights: FusionWeights, guard: Optional[OutputGuard] = None) -> Tuple[str, str, Optional[str]]:
        """``(raw, text, reason)`` as llm_refine's rescore mode writes them: the best candidate under
        ``weights``, then the output guard's cleaned text (or the 1-best and the fallback reason)."""
        i = choose(self.candidates, self.llm_scores, self.vsr_scores, weights)
        raw = self.candidates[i] if i is not None else ""
        text, reason = (guard or OutputGuard())(raw, self.candidates)
        return raw, text, reason


def utterance_errors(nbests: Sequence[ScoredNbest], refs: Mapping[str, str], weights: FusionWeights,
                     guard: Optional[OutputGuard] = None) -> List[Tuple[int, int]]:
    """(S+D+I, N) of each utterance of ``nbests`` that has a reference, in order (the input of
    :mod:`vallr_pin.scoring.bootstrap`)."""
    guard = guard or OutputGuard()
    scores = (score_utterance(u.utt, refs[u.utt], u.pick(weights, guard)[1]) for u in nbests if u.utt in refs)
    return [(s.errors, s.n_ref) for s in scores]


def corpus_errors(nbests: Sequence[ScoredNbest], refs: Mapping[str, str], weights: FusionWeights,
                  guard: Optional[OutputGuard] = None) -> Tuple[int, int]:
    """(S+D+I, N) over the utterances of ``nbests`` that have a reference."""
    per_utt = utterance_errors(nbests, refs, weights, guard)
    return sum(e for e, _ in per_utt), sum(n for _, n in per_utt)


def tune(nbests: Sequence[ScoredNbest], refs: Mapping[str, str],
         llm_weights: Sequence[float] = DEFAULT_LLM_WEIGHTS,
         length_bonuses: Sequence[float] = DEFAULT_LENGTH_BONUSES,
         vsr_weight: float = 1.0,
         guard: Optional[OutputGuard] = None) -> Tuple[FusionWeights, List[Dict[str, float]]]:
    """Grid search for the weights with the lowest CER on ``nbests`` against ``refs``.

    ``guard``: the output guard llm_refine used (its settings; default ones when None).
    Returns the best weights and the whole grid (``llm_weight``, ``length_bonus``, ``cer``). Ties go to the
    larger LLM weight, then to the smaller length bonus (the least VSR-like setting that is as good).
    """
    if not any(u.utt in refs for u in nbests):
        raise ValueError("no utterance of the N-best has a reference: tune on a set with its text")
    if not llm_weights or not length_bonuses:
        raise ValueError(f"empty grid: llm_weights {list(llm_weights)}, length_bonuses {list(length_bonuses)}")
    grid: List[Dict[str, float]] = []
    best: Optional[Tuple[Tuple[float, float, float], FusionWeights]] = None
    for w, b in itertools.product(llm_weights, length_bonuses):
        weights = FusionWeights(llm_weight=w, vsr_weight=vsr_weight, length_bonus=b)
        errors, n = corpus_errors(nbests, refs, weights, guard)
        cer = 100.0 * errors / max(n, 1)
        grid.append({"llm_weight": w, "length_bonus": b, "cer": round(cer, 2)})
        key = (errors, -w, b)
        if best is None or key < best[0]:
            best = (key, weights)
    return best[1], grid


def read_records(d: Path, llm_refine_opts: str = "--mode rescore") -> List[dict]:
    """The records of ``d/raw.jsonl`` (llm_refine's output), with a clear error when it is missing (saying how
    to write it: ``llm_refine <llm_refine_opts> --out-dir d``)."""
    path = Path(d) / "raw.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run vallr_pin.bin.llm_refine "
                                f"{llm_refine_opts + ' ' if llm_refine_opts else ''}--out-dir {d}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]

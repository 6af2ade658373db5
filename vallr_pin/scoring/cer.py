"""Character error rate with substitution / deletion / insertion counts that agree exactly with sclite.

CER = (S + D + I) / N over characters, spaces removed (the texts are already normalised Hanzi).

Why our own alignment and not just an edit distance: a plain Levenshtein distance gives S+D+I but several
alignments reach it with different S/D/I splits, and sclite (the scorer ESPnet's ``score_cer/result.txt``
comes from) does *not* minimise the unit edit distance. It minimises a weighted cost -- correct 0,
substitution 4, insertion 3, deletion 3 (``wwd_WORD`` in SCTK's ``word.c``) -- and breaks ties in its
dynamic programme (``calculate_internal_cells`` in SCTK's ``net_dp.c``) as: diagonal (correct/substitution)
if it is <= both others, else deletion if strictly cheaper than insertion, else insertion. We run the same
programme with the same tie-breaking, so per-utterance and total S/D/I equal sclite's. (Rarely the 4/3/3
weights pick an alignment with one more error than the unit edit distance; we follow sclite, the number
papers report, and ``jiwer`` may then differ by that error: see test_scoring_cer.py.)
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from vallr_pin.text.normalize import normalize_text

# sclite's default word weights (SCTK word.c, wwd_WORD).
SUB_COST = 4
INS_COST = 3
DEL_COST = 3

# Alignment operations, the letters Kaldi's align-text / wer_per_utt_details.pl use.
CORRECT, SUB, DEL, INS = "C", "S", "D", "I"

AlignedPair = Tuple[str, Optional[str], Optional[str]]  # (op, ref char or None, hyp char or None)


class EmptyReferenceError(ValueError):
    """A reference transcript with no characters: CER is undefined for it (N = 0)."""


def normalize_for_scoring(text: str) -> str:
    """Remove all whitespace; nothing else (the texts are normalised by stage 2 / the LLM output guard)."""
    return "".join(text.split())


# A decoder's <unk> token: one character that matches no reference character, so it counts as one error (not
# five for "<", "u", "n", "k", ">", nor none if the normaliser dropped it).
UNK_TOKEN = "<unk>"
UNK_CHAR = "\ufffd"


def normalize_reference(text: str) -> str:
    """A reference transcript as the scorer counts it: the stage-2 normaliser (Hanzi only: punctuation,
    spaces and Latin dropped, digits read out, see ``vallr_pin.text.normalize``)."""
    return normalize_text(text)


def normalize_hypothesis(text: str) -> str:
    """A hypothesis normalised exactly as the reference, except that each ``<unk>`` stays one character."""
    return UNK_CHAR.join(normalize_text(part) for part in text.split(UNK_TOKEN))


def normalize_transcripts(
    refs: Mapping[str, str], hyps: Mapping[str, str]
) -> Tuple[Dict[str, str], Dict[str, str], List[str]]:
    """Both sides through the same normaliser, so that a reference's punctuation is no error of the hypothesis.

    Returns ``(refs, hyps, changed)``: the normalised texts and the reference utterances the normaliser
    changed (beyond whitespace), which the caller reports: stage 2 normally did that already."""
    nrefs = {utt: normalize_reference(t) for utt, t in refs.items()}
    nhyps = {utt: normalize_hypothesis(t) for utt, t in hyps.items()}
    changed = [utt for utt, t in refs.items() if nrefs[utt] != "".join(t.split())]
    return nrefs, nhyps, changed


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[AlignedPair]:
    """Align two token sequences exactly as sclite does (weights 4/3/3, sclite's tie-breaking).

    Returns the alignment from first to last token as ``(op, ref_token, hyp_token)`` with op in C/S/D/I;
    ``ref_token`` is None for an insertion, ``hyp_token`` None for a deletion. O(len(ref) * len(hyp)).
    """
    n, m = len(ref), len(hyp)
    # cost[i][j]: best cost aligning ref[:i] with hyp[:j]; back[i][j]: the move that reached it.
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[""] * (m + 1) for _ in range(n + 1)]
    for j in range(1, m + 1):
        cost[0][j] = cost[0][j - 1] + INS_COST
        back[0][j] = INS
    for i in range(1, n + 1):
        cost[i][0] = cost[i - 1][0] + DEL_COST
        back[i][0] = DEL
        prev, cur, r = cost[i - 1], cost[i], ref[i - 1]
        brow = back[i]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if r == hyp[j - 1] else SUB_COST)
            dele = prev[j] + DEL_COST
            ins = cur[j - 1] + INS_COST
            # Order of the comparisons is sclite's; it decides which of equal-cost alignments is reported.
            if diag <= dele and diag <= ins:
                cur[j], brow[j] = diag, (CORRECT if r == hyp[j - 1] else SUB)
            elif dele < ins:
                cur[j], brow[j] = dele, DEL
            else:
                cur[j], brow[j] = ins, INS
    out: List[AlignedPair] = []
    i, j = n, m
    while i > 0 or j > 0:
        op = back[i][j]
        if op in (CORRECT, SUB):
            out.append((op, ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif op == DEL:
            out.append((op, ref[i - 1], None))
            i -= 1
        else:
            out.append((op, None, hyp[j - 1]))
            j -= 1
    out.reverse()
    return out


@dataclasses.dataclass(frozen=True)
class UttScore:
    """Scores of one utterance. ``n_ref`` is the number of reference characters (N)."""

    utt: str
    ref: str
    hyp: str
    alignment: Tuple[AlignedPair, ...]
    n_ref: int
    sub: int
    dele: int
    ins: int
    hyp_missing: bool = False

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def correct(self) -> int:
        return self.n_ref - self.sub - self.dele


def score_utterance(
    utt: str, ref: str, hyp: str, allow_empty_ref: bool = False, hyp_missing: bool = False
) -> UttScore:
    """Score one utterance. ``ref``/``hyp`` are raw texts; whitespace is removed before alignment.

    An empty hypothesis is all deletions. An empty reference raises :class:`EmptyReferenceError` naming the
    utterance unless ``allow_empty_ref`` (then every hypothesis character is an insertion and N = 0).
    """
    r, h = normalize_for_scoring(ref), normalize_for_scoring(hyp)
    if not r and not allow_empty_ref:
        raise EmptyReferenceError(
            f"utterance '{utt}': the reference text is empty, so its CER is undefined; remove the utterance "
            "from the reference (utils/fix_data_dir.sh) or pass --allow-empty-ref to count its hypothesis "
            "characters as insertions"
        )
    ali = tuple(align(r, h))
    counts = {SUB: 0, DEL: 0, INS: 0, CORRECT: 0}
    for op, _, _ in ali:
        counts[op] += 1
    return UttScore(
        utt=utt, ref=r, hyp=h, alignment=ali, n_ref=len(r),
        sub=counts[SUB], dele=counts[DEL], ins=counts[INS], hyp_missing=hyp_missing,
    )


@dataclasses.dataclass(frozen=True)
class CorpusScore:
    """Per-utterance scores (in reference order) and their totals."""

    utts: Tuple[UttScore, ...]

    @property
    def sub(self) -> int:
        return sum(u.sub for u in self.utts)

    @property
    def dele(self) -> int:
        return sum(u.dele for u in self.utts)

    @property
    def ins(self) -> int:
        return sum(u.ins for u in self.utts)

    @property
    def n_ref(self) -> int:
        return sum(u.n_ref for u in self.utts)

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def n_sent(self) -> int:
        return len(self.utts)

    @property
    def n_sent_err(self) -> int:
        return sum(1 for u in self.utts if u.errors > 0)

    @property
    def cer(self) -> float:
        """Percent. With N = 0 (only possible with allow_empty_ref) any error gives inf, none gives 0."""
        if self.n_ref == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.n_ref

    @property
    def ser(self) -> float:
        """Sentence error rate in percent: share of utterances with at least one error."""
        return 100.0 * self.n_sent_err / self.n_sent if self.n_sent else 0.0

    @property
    def missing_hyp(self) -> List[str]:
        return [u.utt for u in self.utts if u.hyp_missing]

    @property
    def empty_ref(self) -> List[str]:
        return [u.utt for u in self.utts if u.n_ref == 0]

    def summary(self) -> Dict[str, object]:
        """The ``summary.json`` payload (SPEC: cer, sub, del, ins, n_ref, ser, n_sent, plus diagnostics)."""
        return {
            "cer": round(self.cer, 4),
            "sub": self.sub,
            "del": self.dele,
            "ins": self.ins,
            "n_ref": self.n_ref,
            "ser": round(self.ser, 4),
            "n_sent": self.n_sent,
            "n_sent_err": self.n_sent_err,
            "n_missing_hyp": len(self.missing_hyp),
            "n_empty_ref": len(self.empty_ref),
        }

    def summary_line(self) -> str:
        """One line for logs and RESULTS: ``CER 12.34% [S=.. D=.. I=.. N=..] SER 56.78% (n_sent=..)``."""
        return (
            f"CER {self.cer:.2f}% [S={self.sub} D={self.dele} I={self.ins} N={self.n_ref}] "
            f"SER {self.ser:.2f}% ({self.n_sent_err}/{self.n_sent} sentences with errors)"
        )


def score_corpus(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    allow_empty_ref: bool = False,
    ref_name: str = "reference",
    hyp_name: str = "hypothesis",
) -> CorpusScore:
    """Score every reference utterance against its hypothesis.

    A reference utterance without a hypothesis is scored as an empty hypothesis (all deletions) and flagged
    ``hyp_missing`` (the caller warns). A hypothesis utterance absent from the reference is an error: it means
    the two files come from different sets. ``ref_name``/``hyp_name`` (file paths) appear in error messages.
    """
    extra = [u for u in hyps if u not in refs]
    if extra:
        raise ValueError(
            f"{hyp_name}: {len(extra)} utterance(s) not in {ref_name}, e.g. '{extra[0]}'; "
            "check that the hypothesis was decoded from the same data set as the reference"
        )
    scores = []
    for utt, ref in refs.items():
        try:
            scores.append(
                score_utterance(utt, ref, hyps.get(utt, ""), allow_empty_ref, hyp_missing=utt not in hyps)
            )
        except EmptyReferenceError as e:
            raise EmptyReferenceError(f"{ref_name}: {e}") from None
    return CorpusScore(utts=tuple(scores))

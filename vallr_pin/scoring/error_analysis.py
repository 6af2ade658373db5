"""What kind of character errors a lip reader makes: confusions, and how many substitutions are homophones.

Lips do not show tones and barely distinguish b/p/m, so the expected dominant error of a visual speech
recogniser is a *homophone* substitution: the hypothesis character has the same toneless pinyin as the
reference character (他 -> 她 ta, 是 -> 事 shi). That is the error the pinyin decoder and the LLM refinement
are meant to fix, so it is counted separately from:

- ``same_viseme``: a different syllable that looks the same on the lips -- initials in the same visual class
  (b/p/m, f, d/t/n/l, g/k/h, j/q/x, zh/ch/sh/r, z/c/s, zero initial y/w) and the same final (爸 ba -> 妈 ma);
- ``other``: anything else (你 ni -> 我 wo).

Two rates say which of those a system's errors are, over the whole sentence (insertions and deletions
included): the *reading error rate* (RER) compares the toneless pinyin of the hypothesis characters with that of
the reference, and the *viseme error rate* (VER) compares their viseme keys (initial class + final). CER far
above RER means homophone choice; RER far above VER means look-alike syllables; a high VER means the system does
not read the lips at all, and no pinyin or language model downstream can recover what it did not see.

The viseme confusion matrix (:func:`viseme_confusion`, drawn by :func:`plot_viseme_confusion`) counts every
aligned character pair by the visual class of the two initials: a row spread over several columns means the
system cannot tell those lip shapes apart; mass off the diagonal of a class the lips show well (bilabial,
labiodental) means it is not reading them.

Pinyin is taken in sentence context (``vallr_pin.text.pinyin.hanzi_to_pinyin`` on each run of Hanzi, so
polyphones such as 行 hang/xing are resolved as in the text_pinyin files); a non-Hanzi character has none and
its substitutions count as ``other``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from vallr_pin.datadir import atomic_open
from vallr_pin.scoring.cer import CORRECT, DEL, INS, SUB, CorpusScore, UttScore, align
from vallr_pin.text.pinyin import VISEME_INITIAL_CLASSES, pinyin_per_char

HOMOPHONE, SAME_VISEME, OTHER = "homophone", "same_viseme", "other"

# The toolkit's one table of visually confusable initials; spelled y/w (pypinyin's strict split has none)
# belong to the zero initial.
INITIAL_VISEME_CLASS: Dict[str, str] = {
    **{i: cls for cls, inis in VISEME_INITIAL_CLASSES.items() for i in inis},
    **{i: "zero" for i in ("y", "w")},
}
# Rows/columns of the confusion matrix: the classes in the toolkit table's order, then the non-characters.
VISEME_CLASSES: Tuple[str, ...] = tuple(VISEME_INITIAL_CLASSES)
DELETED, INSERTED = "del", "ins"
# Two-letter initials first so that "zhang" splits as zh + ang, not z + hang.
_INITIALS_LONGEST_FIRST = sorted((i for i in INITIAL_VISEME_CLASS if i), key=len, reverse=True)


def split_syllable(syllable: str) -> Tuple[str, str]:
    """Toneless pinyin syllable -> (initial, final) as spelled: ``zhang`` -> (zh, ang), ``er`` -> ("", er)."""
    for ini in _INITIALS_LONGEST_FIRST:
        if syllable.startswith(ini) and len(syllable) > len(ini):
            return ini, syllable[len(ini):]
    return "", syllable


def viseme_key(syllable: str) -> Tuple[str, str]:
    """(initial viseme class, final): two syllables with the same key look alike on the lips."""
    ini, fin = split_syllable(syllable)
    return INITIAL_VISEME_CLASS[ini], fin


def classify_substitution(ref_py: Optional[str], hyp_py: Optional[str]) -> str:
    """homophone / same_viseme / other for one substituted pair of syllables (None = no reading)."""
    if ref_py is None or hyp_py is None:
        return OTHER
    if ref_py == hyp_py:
        return HOMOPHONE
    if viseme_key(ref_py) == viseme_key(hyp_py):
        return SAME_VISEME
    return OTHER


@dataclasses.dataclass(frozen=True)
class Substitution:
    utt: str
    ref: str
    hyp: str
    ref_pinyin: Optional[str]
    hyp_pinyin: Optional[str]
    category: str


def aligned_pinyin(u: UttScore) -> Iterator[Tuple[str, Optional[str], Optional[str], Optional[str], Optional[str]]]:
    """``(op, ref char, hyp char, ref pinyin, hyp pinyin)`` along the alignment of one scored utterance; pinyin
    in context, None for a missing side or a character without a reading."""
    ref_py, hyp_py = pinyin_per_char(u.ref), pinyin_per_char(u.hyp)
    i = j = 0  # positions in u.ref / u.hyp
    for op, r, h in u.alignment:
        yield (op, r, h, ref_py[i] if op != INS else None, hyp_py[j] if op != DEL else None)
        if op in (CORRECT, SUB, DEL):
            i += 1
        if op in (CORRECT, SUB, INS):
            j += 1


def utterance_substitutions(u: UttScore) -> List[Substitution]:
    """Every substitution of one scored utterance with its pinyin (in context) and category."""
    return [Substitution(u.utt, r, h, rp, hp, classify_substitution(rp, hp))
            for op, r, h, rp, hp in aligned_pinyin(u) if op == SUB]


@dataclasses.dataclass(frozen=True)
class VisemeConfusion:
    """Aligned character pairs counted by initial viseme class: ``counts[i][j]`` pairs with reference class
    ``rows[i]`` and hypothesis class ``cols[j]``. With indels, row ``ins`` holds insertions (by hypothesis
    class) and column ``del`` deletions (by reference class). ``unreadable``: pairs left out because a
    character has no pinyin (non-Hanzi, ``<unk>``)."""

    rows: Tuple[str, ...]
    cols: Tuple[str, ...]
    counts: Tuple[Tuple[int, ...], ...]
    unreadable: int

    def row_normalised(self) -> List[List[float]]:
        """Each row divided by its sum (a row without pairs stays 0): P(hypothesis class | reference class)."""
        return [[c / sum(row) if sum(row) else 0.0 for c in row] for row in self.counts]

    def to_json(self) -> Dict[str, object]:
        return {"rows": list(self.rows), "cols": list(self.cols), "counts": [list(r) for r in self.counts],
                "unreadable": self.unreadable}

    @classmethod
    def from_json(cls, d: Dict[str, object]) -> "VisemeConfusion":
        """Inverse of :meth:`to_json` (the ``viseme_confusion`` entry of error_analysis.json)."""
        return cls(tuple(d["rows"]), tuple(d["cols"]), tuple(tuple(r) for r in d["counts"]), int(d["unreadable"]))


def viseme_confusion(utts: Iterable[UttScore], indels: bool = True) -> VisemeConfusion:
    """Confusion matrix of initial viseme classes (the 8 of ``VISEME_INITIAL_CLASSES``) over the aligned
    characters of ``utts``: correct and substituted pairs by (reference class, hypothesis class); with
    ``indels`` also deletions (column ``del``) and insertions (row ``ins``)."""
    rows = VISEME_CLASSES + ((INSERTED,) if indels else ())
    cols = VISEME_CLASSES + ((DELETED,) if indels else ())
    counts = [[0] * len(cols) for _ in rows]
    ri, ci = {c: k for k, c in enumerate(rows)}, {c: k for k, c in enumerate(cols)}
    unreadable = 0
    for u in utts:
        for op, _, _, rp, hp in aligned_pinyin(u):
            if op in (DEL, INS) and not indels:
                continue
            ref_cls = INSERTED if op == INS else (viseme_key(rp)[0] if rp else None)
            hyp_cls = DELETED if op == DEL else (viseme_key(hp)[0] if hp else None)
            if ref_cls is None or hyp_cls is None:
                unreadable += 1
                continue
            counts[ri[ref_cls]][ci[hyp_cls]] += 1
    return VisemeConfusion(rows, cols, tuple(tuple(r) for r in counts), unreadable)


def plot_viseme_confusion(conf: VisemeConfusion, path: str | os.PathLike, title: str) -> None:
    """Write ``conf`` as a PNG heatmap (atomically): rows reference class, columns hypothesis class, colour the
    row-normalised share, each cell annotated with its count."""
    # Imported here: matplotlib costs about a second to import, which --no-plot and the other entry points
    # importing this module should not pay. Figure + the Agg canvas draw without pyplot or a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    share = conf.row_normalised()
    fig = Figure(figsize=(1.0 + 0.75 * len(conf.cols), 1.2 + 0.6 * len(conf.rows)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(conf.cols)), conf.cols, rotation=45, ha="right")
    ax.set_yticks(range(len(conf.rows)), conf.rows)
    ax.set_xlabel("hypothesis initial class")
    ax.set_ylabel("reference initial class")
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(conf.counts):
        for j, count in enumerate(row):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                        color="white" if share[i][j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="share of the row")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def _errors(ref: Sequence[object], hyp: Sequence[object]) -> int:
    return sum(op != CORRECT for op, _, _ in align(ref, hyp))


def reading_errors(ref: str, hyp: str) -> Tuple[int, int]:
    """(reading errors, viseme errors) of ``hyp`` against ``ref``: edit distances between their per-character
    toneless pinyin and between their viseme keys. A character without a reading stands for itself."""
    def readings(text: str) -> Tuple[List[object], List[object]]:
        pys = list(zip(pinyin_per_char(text), text))
        return [p or ch for p, ch in pys], [viseme_key(p) if p else ch for p, ch in pys]

    (ref_py, ref_vis), (hyp_py, hyp_vis) = readings(ref), readings(hyp)
    return _errors(ref_py, hyp_py), _errors(ref_vis, hyp_vis)


def analyse(score: CorpusScore, top_k: int = 20) -> Dict[str, object]:
    """Error breakdown of a scored set: totals, substitution categories, most frequent confusions,
    deletions and insertions (``top_k`` of each, most frequent first, ties by character)."""
    subs: List[Substitution] = []
    deletions: collections.Counter = collections.Counter()
    insertions: collections.Counter = collections.Counter()
    for u in score.utts:
        subs.extend(utterance_substitutions(u))
        for op, r, h in u.alignment:
            if op == DEL:
                deletions[r] += 1
            elif op == INS:
                insertions[h] += 1
    categories = collections.Counter(s.category for s in subs)
    rer = ver = 0
    for u in score.utts:
        r, v = reading_errors(u.ref, u.hyp)
        rer, ver = rer + r, ver + v
    pairs: Dict[Tuple[str, str], List[Substitution]] = collections.defaultdict(list)
    for s in subs:
        pairs[(s.ref, s.hyp)].append(s)
    ranked = sorted(pairs.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top_k]
    confusions = []
    for (r, h), items in ranked:
        cats = collections.Counter(s.category for s in items)
        py = collections.Counter((s.ref_pinyin, s.hyp_pinyin) for s in items).most_common(1)[0][0]
        confusions.append({
            "ref": r, "hyp": h, "count": len(items), "ref_pinyin": py[0], "hyp_pinyin": py[1],
            "category": cats.most_common(1)[0][0],
        })
    n_sub = len(subs)
    return {
        "n_ref": score.n_ref,
        "n_sent": score.n_sent,
        "cer": round(score.cer, 4),
        "sub": score.sub,
        "del": score.dele,
        "ins": score.ins,
        "substitution_categories": {c: categories.get(c, 0) for c in (HOMOPHONE, SAME_VISEME, OTHER)},
        "homophone_share_of_sub": round(100.0 * categories.get(HOMOPHONE, 0) / n_sub, 2) if n_sub else 0.0,
        "reading_error_rate": round(100.0 * rer / score.n_ref, 4) if score.n_ref else 0.0,
        "viseme_error_rate": round(100.0 * ver / score.n_ref, 4) if score.n_ref else 0.0,
        "viseme_confusion": viseme_confusion(score.utts).to_json(),
        "top_confusions": confusions,
        "top_deletions": [{"char": c, "count": n} for c, n in _ranked(deletions, top_k)],
        "top_insertions": [{"char": c, "count": n} for c, n in _ranked(insertions, top_k)],
    }


def _ranked(counter: collections.Counter, k: int) -> Sequence[Tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def format_report(analysis: Dict[str, object], title: str = "") -> str:
    """Human-readable ``error_analysis.txt``."""
    a = analysis
    cats = a["substitution_categories"]
    lines = []
    if title:
        lines.append(f"# {title}")
    lines.append(
        f"CER {a['cer']:.2f}% over N={a['n_ref']} characters, {a['n_sent']} sentences: "
        f"S={a['sub']} D={a['del']} I={a['ins']}"
    )
    lines.append(
        f"Reading error rate (toneless pinyin of the characters) {a['reading_error_rate']:.2f}%, "
        f"viseme error rate (initial class + final) {a['viseme_error_rate']:.2f}%"
    )
    n_sub = a["sub"] or 1
    lines.append("Substitutions by kind:")
    for c in (HOMOPHONE, SAME_VISEME, OTHER):
        lines.append(f"  {c:<12} {cats[c]:>7}  ({100.0 * cats[c] / n_sub:5.1f}% of S)")
    lines.append("")
    lines.append("Most frequent confusions (ref -> hyp):")
    lines.append(f"  {'count':>6}  ref -> hyp  pinyin           kind")
    for c in a["top_confusions"]:
        py = f"{c['ref_pinyin'] or '-'} -> {c['hyp_pinyin'] or '-'}"
        lines.append(f"  {c['count']:>6}  {c['ref']}  -> {c['hyp']}   {py:<16} {c['category']}")
    for key, name in (("top_deletions", "deleted"), ("top_insertions", "inserted")):
        lines.append("")
        lines.append(f"Most frequently {name} characters:")
        lines.append("  " + "  ".join(f"{d['char']}:{d['count']}" for d in a[key]) if a[key] else "  (none)")
    return "\n".join(lines) + "\n"

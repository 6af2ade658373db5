"""Confidence gating for stage II: leave an utterance's Stage I 1-best alone, without an LLM call, when Stage I
is sure of it.

What ``nbest.jsonl`` (stage 5) holds per utterance is the N-best with its joint CTC/attention beam scores and the
pinyin branch's 1-best, so two confidences can be read from it (:data:`FEATURES`):

- ``margin``: score of the 1-best minus score of the 2nd hypothesis (beam log-probabilities; :data:`NO_RIVAL`
  with a single hypothesis). A wide margin means the beam had no close rival.
- ``pinyin``: the share of the 1-best's characters whose toneless reading (in context, as stage 2 reads a
  transcript) is the pinyin branch's syllable at that position; 0 when the two differ in length. 1.0 means the
  two independently trained branches agree on every syllable.

A CTC-versus-attention agreement would need the CTC branch's own hypothesis, which the decode does not write
(its beam scores already mix both), so it is not offered.

The gate skips the LLM where ``confidence >= threshold``. :func:`gate_curve` computes, from an ungated
refinement of the development set (every utterance refined), CER and LLM-call fraction for every threshold at
once, since a gated utterance simply keeps its 1-best; :func:`choose_threshold` picks the lowest CER (the fewest
calls among equals), and the threshold then applies unchanged to the test sets.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from vallr_pin.scoring.cer import score_corpus

FEATURES = ("margin", "pinyin")
NO_RIVAL = 1e9  # the margin of a single-hypothesis N-best (finite, so that raw.jsonl stays plain JSON)


def _agreement(a: Sequence[Optional[str]], b: Sequence[Optional[str]]) -> float:
    if not a or len(a) != len(b):
        return 0.0
    return sum(x is not None and x == y for x, y in zip(a, b)) / len(a)


def confidences(texts: Sequence[str], scores: Sequence[float], pinyin: str) -> Dict[str, float]:
    """The confidences of one utterance's Stage I output (module docstring)."""
    from vallr_pin.text.pinyin import pinyin_per_char

    out: Dict[str, float] = {}
    if len(scores) >= 2:
        out["margin"] = round(float(scores[0]) - float(scores[1]), 4)
    else:
        out["margin"] = NO_RIVAL if texts else 0.0
    onebest = texts[0] if texts else ""
    out["pinyin"] = round(_agreement(pinyin_per_char(onebest), pinyin.split()), 4)
    return out


def gated(conf: Mapping[str, float], feature: str, threshold: float) -> bool:
    """True when the LLM is skipped: the utterance's ``feature`` confidence reaches ``threshold``."""
    if feature not in conf:
        raise ValueError(f"gate feature '{feature}' is not among this utterance's confidences {sorted(conf)}")
    return conf[feature] >= threshold


def gate_curve(records: Sequence[dict], refs: Mapping[str, str], feature: str) -> List[dict]:
    """CER and LLM-call fraction for every useful threshold of ``feature``, from an ungated refinement.

    records: ``raw.jsonl`` rows of llm_refine (``utt``, ``text``, ``onebest``, ``confidence``).
    Returns rows ``{"threshold", "llm_calls", "call_fraction", "cer"}`` from "always call" (a threshold above
    every confidence) to "never call" (threshold = the lowest confidence), by decreasing threshold."""
    vals = sorted({r["confidence"][feature] for r in records}, reverse=True)
    thresholds = [vals[0] + 1.0] + vals if vals else []
    rows = []
    for t in thresholds:
        hyps = {r["utt"]: (r["onebest"] if r["confidence"][feature] >= t else r["text"]) for r in records}
        calls = sum(r["confidence"][feature] < t for r in records)
        score = score_corpus({u: refs[u] for u in hyps}, hyps)
        rows.append({"threshold": t, "llm_calls": calls, "call_fraction": round(calls / max(1, len(records)), 4),
                     "cer": round(score.cer, 4)})
    return rows


def choose_threshold(curve: Sequence[dict]) -> dict:
    """The row with the lowest CER; among equal CERs the one with the fewest LLM calls."""
    return min(curve, key=lambda r: (r["cer"], r["llm_calls"]))


def plot_curves(curves: Mapping[str, Sequence[dict]], chosen: Mapping[str, dict], path, title: str) -> None:
    """CER against the share of utterances sent to the LLM, one line per feature, chosen points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vallr_pin.datadir import atomic_open

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for feature, rows in curves.items():
        rows = sorted(rows, key=lambda r: r["call_fraction"])
        ax.plot([100 * r["call_fraction"] for r in rows], [r["cer"] for r in rows], marker="o", ms=4, label=feature)
        if feature in chosen:
            c = chosen[feature]
            ax.scatter([100 * c["call_fraction"]], [c["cer"]], s=90, facecolors="none", edgecolors="black",
                       zorder=3)
    ax.set_xlabel("utterances sent to the LLM (%)")
    ax.set_ylabel("CER (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(title="gate on (o: chosen)")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)

#!/usr/bin/env python3
"""How much could *any* language model gain by re-ranking a decoded N-best? A ceiling check for stage 9.

It trains a character trigram LM (interpolated absolute discounting, D = 0.75) on the given text, rescores the
N-best of ``nbest.jsonl`` with ``VSR score + w * LM + b * length`` over a grid of (w, b), and prints the CER of
each cell next to the 1-best and the oracle of the first K candidates. If no cell beats the 1-best by more than
noise, the candidates are too wrong for a language prior to pick the right one, and an LLM refining the same
N-best has nothing to work with either: improve Stage I first. ``--prior lexicon`` scores with a word prior
instead, jieba's general dictionary (:class:`WordLexicon`), and ``--prior both`` with the sum: language the
demo's text does not hold.

Without options it checks egs/mini_cnvsrc/vsr1's dual-model dev and test N-best after stage 5, with an LM that
learns every sentence the tiny LLM and the VSR model saw (``make bench`` runs it so; it skips when the recipe has
not been run)::

    tools/venv/bin/python test/bench/bench_lm_rescoring_ceiling.py \\
        [--nbest egs/mini_cnvsrc/vsr1/exp/vsr_dual/decode_vsr_valid.acc_char.ave/dev/nbest.jsonl \\
         --text egs/mini_cnvsrc/vsr1/data/train/text egs/mini_cnvsrc/vsr1/downloads/mini_cnvsrc/lm_text.txt]
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


class CharTrigram:
    """Interpolated absolute-discounting character trigram with <s>/</s> and a uniform floor."""

    def __init__(self, sentences, order: int = 3, discount: float = 0.75):
        self.n, self.d = order, discount
        self.count = [collections.Counter() for _ in range(order + 1)]
        self.ctx = [collections.Counter() for _ in range(order + 1)]
        self.follow = [collections.defaultdict(set) for _ in range(order + 1)]
        vocab = set()
        for s in sentences:
            t = ["<s>"] * (order - 1) + list(s) + ["</s>"]
            vocab.update(t)
            for i in range(order - 1, len(t)):
                for k in range(1, order + 1):
                    h = tuple(t[i - k + 1:i])
                    self.count[k][h + (t[i],)] += 1
                    self.ctx[k][h] += 1
                    self.follow[k][h].add(t[i])
        self.vocab = len(vocab) + 1  # + unseen

    def prob(self, h, w, k):
        if k == 0:
            return 1.0 / self.vocab
        h = h[len(h) - (k - 1):] if k > 1 else ()
        c = self.ctx[k][h]
        lower = self.prob(h, w, k - 1)
        if c == 0:
            return lower
        return max(self.count[k][h + (w,)] - self.d, 0) / c + self.d * len(self.follow[k][h]) / c * lower

    def logprob(self, s: str) -> float:
        t = ["<s>"] * (self.n - 1) + list(s) + ["</s>"]
        return sum(math.log(self.prob(tuple(t[i - self.n + 1:i]), t[i], self.n)) for i in range(self.n - 1, len(t)))


class WordLexicon:
    """A word-level prior from jieba's dictionary (installed with FunASR; 349k words with their counts in a
    large general corpus, MIT licence): the log-probability of a sentence's most probable segmentation into those
    words, as jieba segments, an unknown character counting once. It knows which character pairs are words in
    general Mandarin, which the demo's few thousand sentences cannot teach a character LM."""

    def __init__(self):
        import jieba

        jieba.setLogLevel(60)
        self.dt = jieba.dt
        self.dt.check_initialized()
        self.log_total = math.log(self.dt.total)

    def logprob(self, s: str) -> float:
        if not s:
            return 0.0
        freq, dag, route = self.dt.FREQ, self.dt.get_DAG(s), {len(s): 0.0}
        for i in range(len(s) - 1, -1, -1):
            route[i] = max(math.log(freq.get(s[i:j + 1]) or 1) - self.log_total + route[j + 1] for j in dag[i])
        return route[0]


class Both:
    """The sum of the character trigram's and the word lexicon's log-probabilities."""

    def __init__(self, *priors):
        self.priors = priors

    def logprob(self, s: str) -> float:
        return sum(p.logprob(s) for p in self.priors)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mini = REPO / "egs" / "mini_cnvsrc" / "vsr1"
    dec = mini / "exp" / "vsr_dual" / "decode_vsr_valid.acc_char.ave"
    p.add_argument("--nbest", nargs="+", default=[str(dec / "dev" / "nbest.jsonl"), str(dec / "test" / "nbest.jsonl")],
                   help="nbest.jsonl of decoded sets (stage 5)")
    p.add_argument("--text", nargs="+",
                   default=[str(mini / "data" / "train" / "text"), str(mini / "downloads" / "mini_cnvsrc" / "lm_text.txt")],
                   help="LM training text (Kaldi text or a sentence a line)")
    p.add_argument("--k", type=int, default=5, help="candidates re-ranked (the prompt shows 5: stages 7 and 9's "
                                                    "--max-candidates)")
    p.add_argument("--lm-weights", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 1.0])
    p.add_argument("--length-bonus", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    p.add_argument("--prior", choices=("trigram", "lexicon", "both"), default="trigram",
                   help="trigram: a character trigram of --text; lexicon: jieba's general word dictionary "
                        "(WordLexicon); both: their sum")
    args = p.parse_args(argv)
    missing = [f for f in args.nbest + (args.text if args.prior != "lexicon" else []) if not Path(f).is_file()]
    if missing:
        print(f"skipped: {missing[0]} is missing (run egs/mini_cnvsrc/vsr1 through stage 5, or give --nbest/--text)")
        return
    from vallr_pin.text.normalize import read_sentences  # the tiny LLM's own reader of the same files

    if args.prior == "trigram":
        lm = CharTrigram(read_sentences(args.text))
    elif args.prior == "lexicon":
        lm = WordLexicon()
    else:
        lm = Both(CharTrigram(read_sentences(args.text)), WordLexicon())
    print(f"prior: {args.prior}")
    for path in args.nbest:
        report(lm, path, args)


def report(lm, path: str, args) -> None:
    """Print the 1-best, the oracle and the re-ranking grid of ``path`` with ``lm`` (anything with ``logprob``)."""
    import editdistance

    from vallr_pin.llm.nbest import read_nbest_jsonl

    entries = [e for e in read_nbest_jsonl(path) if e.ref is not None]
    n_ref = sum(len(e.ref) for e in entries)

    def cer(choice):
        return 100.0 * sum(editdistance.eval(c, e.ref) for c, e in zip(choice, entries)) / n_ref

    cands = [e.texts[: args.k] or [""] for e in entries]
    scores = [(e.scores[: args.k] or [0.0]) for e in entries]
    lms = [[lm.logprob(c) for c in cs] for cs in cands]
    print(f"{path}: {len(entries)} utterances, N={n_ref}; 1-best CER {cer([c[0] for c in cands]):.2f}, "
          f"oracle@{args.k} {cer([min(c, key=lambda h, e=e: editdistance.eval(h, e.ref)) for c, e in zip(cands, entries)]):.2f}"
          f" (the reference itself among them for {sum(e.ref in c for c, e in zip(cands, entries))})")
    print("CER of VSR + w * prior + b * length (rows w, columns b):")
    print(f"{'w':>6} " + " ".join(f"{'b=' + str(b):>8}" for b in args.length_bonus))
    for w in args.lm_weights:
        row = []
        for b in args.length_bonus:
            pick = [c[max(range(len(c)), key=lambda i: s[i] + w * l[i] + b * len(c[i]))]
                    for c, s, l in zip(cands, scores, lms)]
            row.append(cer(pick))
        print(f"{w:>6} " + " ".join(f"{x:>8.2f}" for x in row))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stages 7 and 9 with ``external_nbest``: bring another recogniser's N-best lists into this toolkit's layout, so
that stage II (LLM data, fine-tuning, refinement) works on the output of any VSR system.

Reads ``--src``, one set of an external recogniser, in either documented layout (``vallr_pin.llm.nbest``):

- ESPnet's decode directory: ``1best_recog/text`` ... ``Kbest_recog/text`` (``asr_inference --nbest K``),
  optional ``{k}best_recog/score`` and ``pinyin``;
- JSONL, one utterance a line: ``{"utt": ..., "nbest": [{"text": ..., "score": ...}, ...], "pinyin": ...,
  "ref": ...}`` (``pinyin``, ``score`` and ``ref`` optional), as a file or a directory holding ``nbest.jsonl``.

A recogniser without a pinyin branch gives no pinyin: it is derived from each utterance's 1-best hypothesis
(``--pinyin-from``). References come from ``--text`` (data/<set>/text) where given.

Writes into ``--out-dir`` (atomically): ``nbest.jsonl`` (what ``build_llm_data`` and ``llm_refine`` read) and
``text`` (the 1-best, Kaldi format: score it as Stage I of that system).

Example:
    python -m vallr_pin.bin.import_nbest --src /path/to/espnet/exp/decode_test --text data/test/text \\
        --out-dir exp/nbest_external/test
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.llm.nbest import PINYIN_FROM, read_nbest


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True,
                   help="an external recogniser's N-best of one set: ESPnet decode dir or JSONL (see above)")
    p.add_argument("--out-dir", required=True, help="output directory (nbest.jsonl, text)")
    p.add_argument("--text", default=None, help="reference transcripts (Kaldi text) to attach as 'ref'")
    p.add_argument("--pinyin-from", default="auto", choices=list(PINYIN_FROM),
                   help="auto: the recogniser's pinyin if it gives any, else derived from each 1-best; "
                        "nbest: the recogniser's only; hypothesis: always derived from the 1-best")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        return run(args)


def run(args: argparse.Namespace) -> dict:
    entries = read_nbest(args.src, args.pinyin_from)
    if not entries:
        raise ValueError(f"{args.src}: no utterances")
    if args.text:
        refs = read_kv(args.text)
        unknown = [e.utt for e in entries if e.utt not in refs]
        if unknown:
            raise ValueError(f"{args.text}: no reference for {len(unknown)} utterance(s) of {args.src}, e.g. "
                             f"'{unknown[0]}'; the N-best and the data dir must be of the same set")
        for e in entries:
            e.ref = "".join(refs[e.utt].split())
    out = Path(args.out_dir)
    with atomic_open(out / "nbest.jsonl") as f:
        for e in entries:
            f.write(json.dumps({"utt": e.utt, "nbest": [{"text": t, "score": s} for t, s in zip(e.texts, e.scores)],
                                "pinyin": e.pinyin, "ref": e.ref}, ensure_ascii=False) + "\n")
    write_kv(out / "text", {e.utt: e.onebest for e in entries})
    stats = {"n": len(entries), "mean_nbest": round(sum(len(e.texts) for e in entries) / len(entries), 2),
             "with_ref": sum(e.ref is not None for e in entries)}
    logging.info("%s -> %s: %d utterances, %.1f hypotheses each, %d with a reference", args.src, out, stats["n"],
                 stats["mean_nbest"], stats["with_ref"])
    return stats


if __name__ == "__main__":
    main()

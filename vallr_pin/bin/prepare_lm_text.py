#!/usr/bin/env python3
"""Stage 2 with ``--use_lm true``: the character LM's training and validation text, ``<id> <Hanzi>`` per line
as ESPnet's ``lm_train`` reads it (``--token_type char``).

Training text: the training transcripts (``--transcripts``, Kaldi ``text``, one sentence each, as they are),
then every ``--text`` file (plain text: sentences or paragraphs, one a line), cut into clauses. A sentence or
clause that is a sentence of a ``--held-out`` set (dev, test) or a near copy of one is dropped
(:mod:`vallr_pin.text.lm_text`).
Validation text: the ``--valid`` transcripts, as they are. Both files are written whole or not at all; a summary
of what was kept goes to ``<out-dir>/lm_text_stats.json``.

Example:
    python -m vallr_pin.bin.prepare_lm_text --out-dir dump/lm --transcripts data/train/text \\
        --valid data/dev/text --held-out data/dev/text data/test/text --text extra.txt
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, iter_kv
from vallr_pin.text.held_out import HeldOutSentences
from vallr_pin.text.lm_text import held_out_from, lm_clauses


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", type=Path, required=True, help="writes train.txt, valid.txt, lm_text_stats.json")
    p.add_argument("--transcripts", type=Path, nargs="+", required=True,
                   help="Kaldi text of the training set(s), kept as whole sentences")
    p.add_argument("--valid", type=Path, required=True, help="Kaldi text of the validation set (LM model selection)")
    p.add_argument("--held-out", type=Path, nargs="*", default=[],
                   help="Kaldi text of the evaluation sets: their sentences and near copies never reach train.txt")
    p.add_argument("--text", type=Path, nargs="*", default=[], help="extra plain text files, cut into clauses")
    p.add_argument("--min-chars", type=int, default=2, help="shortest clause kept (characters)")
    p.add_argument("--max-chars", type=int, default=30, help="longest clause kept (characters)")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        for path in [args.valid, *args.transcripts, *args.held_out, *args.text]:
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
        held = HeldOutSentences(held_out_from(args.held_out))
        args.out_dir.mkdir(parents=True, exist_ok=True)
        summary, seen, n = {}, set(), 0
        with atomic_open(args.out_dir / "train.txt") as out:
            for path in args.transcripts:  # the training sentences themselves, whole
                kept = 0
                for utt, text in iter_kv(path):
                    text = "".join(text.split())
                    if text and not held.leaks(text):
                        seen.add(text)
                        out.write(f"{utt} {text}\n")
                        kept += 1
                summary[str(path)] = {"kept": kept}
            for path in args.text:
                stats: dict = {}
                with open(path, encoding="utf-8") as lines:
                    try:
                        for clause in lm_clauses(lines, held, args.min_chars, args.max_chars, seen, stats):
                            out.write(f"lm{n:07d} {clause}\n")
                            n += 1
                    except UnicodeDecodeError:
                        raise ValueError(f"{path}: not UTF-8 text (after line {stats['clauses']} clauses); convert "
                                         "it, e.g. iconv -f GB18030 -t UTF-8") from None
                summary[str(path)] = stats
                logging.info("%s: %d clauses kept of %d (held out %d, duplicates %d)", path, stats["kept"],
                             stats["clauses"], stats["held_out"], stats["duplicate"])
        with atomic_open(args.out_dir / "valid.txt") as out:
            for utt, text in iter_kv(args.valid):
                out.write(f"{utt} {''.join(text.split())}\n")
        with atomic_open(args.out_dir / "lm_text_stats.json") as f:
            json.dump(summary, f, indent=1, ensure_ascii=False)
        total = sum(s["kept"] for s in summary.values())
        if total == 0:
            raise ValueError(f"no LM training text is left in {args.out_dir / 'train.txt'}; check --transcripts")
        logging.info("%s: %d lines (%d training sentences + %d clauses)", args.out_dir / "train.txt", total,
                     total - n, n)


if __name__ == "__main__":
    main()

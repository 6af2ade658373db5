#!/usr/bin/env python3
"""Write ``data/<set>/context`` for context-aware prompts: each utterance's context is the preceding sentence
of the same speaker (VSR-LLM gives the LLM the transcript of what came before; a corpus whose utterances are
cut from longer recordings in order has it for free).

Utterances of a speaker are taken in utterance-id order (Kaldi ids sort in recording order: speaker prefix,
then a running number); the first utterance of each speaker gets an empty context (a bare ``<utt>`` line).
The text is ``<data-dir>/text`` as it is when this runs.

Example:
    python -m vallr_pin.bin.make_context --data-dir data/train data/dev data/test
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import read_kv, write_kv


def previous_sentence(text: Dict[str, str], utt2spk: Dict[str, str]) -> Dict[str, str]:
    """``{utt: text of the same speaker's previous utterance}`` ("" for a speaker's first)."""
    last: Dict[str, str] = {}
    out: Dict[str, str] = {}
    for utt in sorted(text):
        spk = utt2spk.get(utt)
        if spk is None:
            raise ValueError(f"utterance '{utt}' has no speaker in utt2spk; run utils/fix_data_dir.sh first")
        out[utt] = last.get(spk, "")
        last[spk] = text[utt]
    return out


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", nargs="+", required=True, help="Kaldi data dirs (text, utt2spk)")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        for d in map(Path, args.data_dir):
            ctx = previous_sentence(read_kv(d / "text"), read_kv(d / "utt2spk"))
            write_kv(d / "context", ctx)
            logging.info("%s/context: %d utterances, %d with a preceding sentence", d, len(ctx),
                         sum(bool(v) for v in ctx.values()))


if __name__ == "__main__":
    main()

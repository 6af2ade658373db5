#!/usr/bin/env python3
"""Stage 2: normalise transcripts to Hanzi, write toneless pinyin, build the char and pinyin token lists.

For every data dir ``D`` given with ``--data-dirs``:

- ``D/text.orig``: the transcripts as stage 0 wrote them (copied once from ``D/text``, byte for byte).
- ``D/text``: normalised in place (``vallr_pin.text.normalize``), Hanzi only; utterances that normalise to
  nothing are left out.
- ``D/empty_text``: ``<utt> <reason>`` for those left out (reason ``empty_original`` or
  ``no_hanzi_after_normalization``). The recipe runs ``utils/fix_data_dir.sh D`` afterwards so that
  ``video.scp``/``utt2spk``/``feats.scp`` drop them as well and stage 1 / training skip them.
- ``D/text_pinyin``: ``<utt> syl syl ...``, one toneless syllable per character (``vallr_pin.text.pinyin``).

From ``--train-dir`` only: ``<token-list-dir>/char/tokens.txt`` and ``<token-list-dir>/pinyin/tokens.txt``
(ESPnet order, see ``vallr_pin.text.token_list``).

Re-running is idempotent: once ``text.orig`` exists, normalisation starts from it, so the outputs are identical.
``text`` counts as our own output when every key is in ``text.orig`` and every value is already normalised; then
the utterances are those of ``text`` (which ``fix_data_dir.sh`` may have filtered) plus those listed as empty.
Otherwise ``text`` was rewritten (stage 0 re-run) and it replaces ``text.orig``. Stage 0 scripts should delete
``text.orig`` when they write a fresh ``text`` so that a re-written, already-clean ``text`` is not mistaken for
ours.

Example::

    python -m vallr_pin.bin.prepare_text --data-dirs data/train data/dev data/test \\
        --train-dir data/train --token-list-dir data/token_list
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.text.normalize import normalize_text
from vallr_pin.text.pinyin import UNK as PINYIN_UNK
from vallr_pin.text.pinyin import pinyin_string, syllable_inventory
from vallr_pin.text.token_list import (
    build_token_list,
    char_tokens,
    count_tokens,
    pinyin_tokens,
    write_token_list,
)

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Outputs per data dir: text (normalised), text.orig, text_pinyin, empty_text; "
        "token lists <token-list-dir>/{char,pinyin}/tokens.txt from the training set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data-dirs",
        nargs="+",
        required=True,
        help="Kaldi data dirs whose 'text' is normalised in place and given a 'text_pinyin' "
        "(e.g. data/train data/dev data/test).",
    )
    parser.add_argument(
        "--train-dir",
        required=True,
        help="The data dir the token lists are counted on (normalised too if not among --data-dirs).",
    )
    parser.add_argument(
        "--token-list-dir",
        default="data/token_list",
        help="Writes char/tokens.txt and pinyin/tokens.txt here.",
    )
    parser.add_argument(
        "--min-count",
        type=int,
        default=1,
        help="Characters/syllables seen fewer times in the training text are left out of the token lists "
        "(they become <unk>).",
    )
    parser.add_argument(
        "--pinyin-extra-syllables",
        choices=["none", "gb2312"],
        default="none",
        help="'none': the pinyin token list holds only syllables seen in training (the paper's data-derived "
        "inventory); 'gb2312': also append every toneless reading of the GB2312 Hanzi not seen in training, "
        "so dev/test syllables are never <unk>.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"],
        help="Logging level.",
    )
    return parser


def _copy_atomic(src: Path, dst: Path) -> None:
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def load_original_text(data_dir: Path) -> Dict[str, str]:
    """The un-normalised transcripts of ``data_dir`` (from ``text.orig`` once it exists, see module doc)."""
    text_path, orig_path = data_dir / "text", data_dir / "text.orig"
    if not orig_path.exists():
        if not text_path.exists():
            raise FileNotFoundError(f"{text_path}: no transcripts; run stage 0 (local/data.sh) for {data_dir}")
        _copy_atomic(text_path, orig_path)
        return read_kv(orig_path)

    original = read_kv(orig_path)
    if not text_path.exists():
        logging.warning(f"{text_path} is missing; re-creating it from {orig_path}")
        return original
    current = read_kv(text_path)
    ours = all(utt in original for utt in current) and all(normalize_text(v) == v for v in current.values())
    if not ours:
        logging.warning(
            f"{text_path} was rewritten after {orig_path} (stage 0 re-run?): taking it as the new original"
        )
        _copy_atomic(text_path, orig_path)
        return read_kv(orig_path)
    # Keep the utterance set of our previous output (fix_data_dir.sh may have removed some since) plus the
    # utterances that were left out as empty, so empty_text comes out the same again.
    return {utt: raw for utt, raw in original.items() if utt in current or normalize_text(raw) == ""}


def prepare_data_dir(data_dir: Path) -> Tuple[Dict[str, str], Dict[str, str], Counter]:
    """Normalise ``data_dir/text`` in place and write ``text_pinyin`` and ``empty_text``.

    Returns:
        (text, text_pinyin, counts): the written normalised text and pinyin maps and the per-rule counts
        (plus ``utts``, ``kept``, ``empty``, ``chars``, ``pinyin_unk``).
    """
    original = load_original_text(data_dir)
    counts: Counter = Counter()
    text: Dict[str, str] = {}
    text_pinyin: Dict[str, str] = {}
    empty: Dict[str, str] = {}
    for utt, raw in tqdm(original.items(), desc=f"normalise {data_dir}", unit="utt", disable=None):
        norm = normalize_text(raw, counts)
        if not norm:
            empty[utt] = "empty_original" if not raw.strip() else "no_hanzi_after_normalization"
            continue
        try:
            py = pinyin_string(norm)
        except ValueError as e:
            raise ValueError(f"{data_dir}/text.orig, utterance {utt}: {e}") from e
        counts["pinyin_unk"] += py.split().count(PINYIN_UNK)
        text[utt] = norm
        text_pinyin[utt] = py
    counts.update(utts=len(original), kept=len(text), empty=len(empty), chars=sum(map(len, text.values())))
    # text last: until it is replaced, a crash leaves the previous run's consistent state or raw text.
    write_kv(data_dir / "text_pinyin", text_pinyin)
    write_kv(data_dir / "empty_text", empty)
    write_kv(data_dir / "text", text)
    if empty:
        logging.warning(
            f"{data_dir}: {len(empty)} utterances have no Hanzi after normalisation and were left out of "
            f"{data_dir}/text (listed in {data_dir}/empty_text); run utils/fix_data_dir.sh {data_dir}"
        )
    return text, text_pinyin, counts


def _oov_rate(sequences: List[List[str]], vocab: set) -> float:
    total = sum(len(s) for s in sequences)
    oov = sum(1 for s in sequences for t in s if t not in vocab)
    return 100.0 * oov / max(total, 1)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    cmd = [sys.executable, "-m", "vallr_pin.bin.prepare_text"] + list(sys.argv[1:] if argv is None else argv)
    logging.info(f"Command: {' '.join(cmd)}")

    data_dirs = [Path(d) for d in args.data_dirs]
    train_dir = Path(args.train_dir)
    if all(d.resolve() != train_dir.resolve() for d in data_dirs):
        data_dirs.append(train_dir)

    results = {}
    for d in data_dirs:
        text, text_pinyin, counts = prepare_data_dir(d)
        results[d.resolve()] = (text, text_pinyin)
        actions = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if k not in ("utts", "kept", "empty"))
        logging.info(
            f"{d}: {counts['utts']} utterances, {counts['kept']} kept, {counts['empty']} empty; {actions}"
        )
        if counts["pinyin_unk"]:
            logging.warning(f"{d}: {counts['pinyin_unk']} Hanzi have no pypinyin reading (written as <unk>)")

    train_text, train_pinyin = results[train_dir.resolve()]
    if not train_text:
        raise ValueError(f"{train_dir}/text: no utterance has Hanzi after normalisation; cannot build token lists")
    char_list = build_token_list(count_tokens(char_tokens(t) for t in train_text.values()), args.min_count)
    extra = syllable_inventory() if args.pinyin_extra_syllables == "gb2312" else ()
    pinyin_counts = count_tokens(pinyin_tokens(p) for p in train_pinyin.values())
    pinyin_list = build_token_list(pinyin_counts, args.min_count, extra_tokens=extra)
    out = Path(args.token_list_dir)
    write_token_list(out / "char" / "tokens.txt", char_list)
    write_token_list(out / "pinyin" / "tokens.txt", pinyin_list)
    logging.info(
        f"token lists from {train_dir}: {len(char_list) - 3} chars -> {out / 'char' / 'tokens.txt'}, "
        f"{len(pinyin_list) - 3} pinyin syllables ({len(pinyin_counts)} seen in training; pypinyin has "
        f"{len(syllable_inventory())} for GB2312) -> {out / 'pinyin' / 'tokens.txt'}"
    )
    char_vocab, pinyin_vocab = set(char_list), set(pinyin_list)
    for d in data_dirs:
        if d.resolve() == train_dir.resolve():
            continue
        text, text_pinyin = results[d.resolve()]
        logging.info(
            f"{d}: OOV w.r.t. the training token lists: "
            f"chars {_oov_rate([char_tokens(t) for t in text.values()], char_vocab):.2f}%, "
            f"syllables {_oov_rate([pinyin_tokens(p) for p in text_pinyin.values()], pinyin_vocab):.2f}%"
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage 2: normalise transcripts to Hanzi, write toneless pinyin, build the char and pinyin token lists.

For every data dir ``D`` given with ``--data-dirs``:

- ``D/text.orig``: the transcripts as stage 0 wrote them (copied once from ``D/text``), with later hand
  corrections of ``D/text`` folded in (below).
- ``D/text``: normalised in place (``vallr_pin.text.normalize``), Hanzi only, traditional characters converted
  to simplified (OpenCC ``t2s``; ``--traditional-to-simplified false`` keeps them); utterances that normalise
  to nothing are left out.
- ``D/empty_text``: ``<utt> <reason>`` for those left out (reason ``empty_original`` or
  ``no_hanzi_after_normalization``). The recipe runs ``utils/fix_data_dir.sh D`` afterwards so that
  ``video.scp``/``utt2spk``/``feats.scp`` drop them as well and stage 1 / training skip them.
- ``D/text.sha1``: ``<utt> <sha1>`` of each line written to ``D/text`` (how a later hand correction is seen).
- ``D/text_pinyin``: ``<utt> syl syl ...``, one toneless syllable per character (``vallr_pin.text.pinyin``).

From ``--train-dir`` only: ``<token-list-dir>/char/tokens.txt`` and ``<token-list-dir>/pinyin/tokens.txt``
(ESPnet order, see ``vallr_pin.text.token_list``).

Re-running is idempotent: once ``text.orig`` exists, normalisation starts from it, so the outputs are identical.
``D/text.sha1`` records, per utterance, the SHA-1 of the line this stage wrote to ``text``. On a re-run a line of
``text`` whose hash still matches is ours and is normalised again from ``text.orig``; an utterance missing from
``text`` stays out (``fix_data_dir.sh`` filtered it), except those listed as empty. A line whose hash differs
(or a new utterance) was changed after stage 2: a transcript corrected by hand, as a Kaldi or ESPnet user would
correct ``data/<set>/text``. That line becomes the utterance's new original: it replaces the utterance's line in
``text.orig`` and is normalised like any other, so the correction survives every later re-run. When every line
changed, ``text`` was rewritten as a whole (stage 0 re-run) and replaces ``text.orig``. Stage 0 scripts delete
``text.orig`` when they write a fresh ``text``. (Without ``text.sha1``, from an older run, a line counts as ours
when it equals the normalised ``text.orig`` line.) Because our lines are normalised again from ``text.orig``,
a change of the normaliser (e.g. traditional -> simplified, added after a data dir was prepared) or of
``--traditional-to-simplified`` takes effect on the next run of this stage.

Every file is read as UTF-8: a GBK transcript stops the stage with one line naming the file and line and the
``iconv`` command that converts it, before any data dir is rewritten, so after the conversion the re-run starts from
the converted ``text`` (a ``text.orig`` that is not UTF-8 is replaced by it as well). A UTF-8 byte-order mark is
dropped with a warning.

Example::

    python -m vallr_pin.bin.prepare_text --data-dirs data/train data/dev data/test \\
        --train-dir data/train --token-list-dir data/token_list
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import NotUtf8Error, read_kv, write_kv
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
        "--traditional-to-simplified",
        choices=["true", "false"],
        default="true",
        help="Convert traditional characters to simplified (OpenCC t2s, normalisation rule 2), so that 銀行 and "
        "银行 are the same tokens and read yin hang; 'false' for a corpus whose token lists must stay traditional.",
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
    add_log_level(parser)
    return parser


def _line_sha1(value: str) -> str:
    return hashlib.sha1(value.encode("utf-8")).hexdigest()


def load_original_text(data_dir: Path, traditional_to_simplified: bool = True) -> Dict[str, str]:
    """The un-normalised transcripts of ``data_dir``: ``text.orig`` with the lines of ``text`` that changed
    since this stage wrote them folded in (see the module doc). Updates ``text.orig`` (atomically) when it
    changes. ``traditional_to_simplified`` is the normalisation used to recognise our own lines of a ``text``
    written without ``text.sha1``."""
    text_path, orig_path, sums_path = data_dir / "text", data_dir / "text.orig", data_dir / "text.sha1"
    # read text first: a text that is not UTF-8 stops here, before it can become a stale text.orig
    current = read_kv(text_path) if text_path.exists() else None
    original = None
    if orig_path.exists():
        try:
            original = read_kv(orig_path)
        except NotUtf8Error as e:
            if current is None:
                raise
            logging.warning(f"{e}; {text_path} is UTF-8, so it replaces {orig_path}")
    if original is None:
        if current is None:
            raise FileNotFoundError(f"{text_path}: no transcripts; run stage 0 (local/data.sh) for {data_dir}")
        write_kv(orig_path, current)
        return current
    if current is None:
        logging.warning(f"{text_path} is missing; re-creating it from {orig_path}")
        return original

    written = read_kv(sums_path) if sums_path.exists() else None

    def ours(utt: str, value: str) -> bool:
        if written is not None:
            return written.get(utt) == _line_sha1(value)
        return utt in original and normalize_text(
            original[utt], traditional_to_simplified=traditional_to_simplified) == value

    changed = {utt: value for utt, value in current.items() if not ours(utt, value)}
    if changed and len(changed) == len(current):
        logging.warning(
            f"{text_path} was rewritten after {orig_path} (stage 0 re-run?): taking it as the new original")
        write_kv(orig_path, current)
        return current
    # Keep the utterance set of our previous output (fix_data_dir.sh may have removed some since) plus the
    # utterances that were left out as empty, so empty_text comes out the same again.
    merged = {utt: raw for utt, raw in original.items() if utt in current or normalize_text(raw) == ""}
    if changed:
        merged.update(changed)
        logging.warning(
            f"{text_path}: {len(changed)} utterance(s) changed since stage 2 wrote it (e.g. "
            f"{', '.join(sorted(changed)[:3])}): taking them as corrected transcripts and updating {orig_path}")
        write_kv(orig_path, {**original, **changed})
    return merged


def prepare_data_dir(
    data_dir: Path, traditional_to_simplified: bool = True
) -> Tuple[Dict[str, str], Dict[str, str], Counter]:
    """Normalise ``data_dir/text`` in place and write ``text_pinyin`` and ``empty_text``.

    ``traditional_to_simplified``: normalisation rule 2 (OpenCC t2s, counted as ``traditional_converted``).

    Returns:
        (text, text_pinyin, counts): the written normalised text and pinyin maps and the per-rule counts
        (plus ``utts``, ``kept``, ``empty``, ``chars``, ``pinyin_unk``).
    """
    original = load_original_text(data_dir, traditional_to_simplified)
    counts: Counter = Counter()
    text: Dict[str, str] = {}
    text_pinyin: Dict[str, str] = {}
    empty: Dict[str, str] = {}
    for utt, raw in tqdm(original.items(), desc=f"normalise {data_dir}", unit="utt", disable=None):
        norm = normalize_text(raw, counts, traditional_to_simplified=traditional_to_simplified)
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
    write_kv(data_dir / "text.sha1", {utt: _line_sha1(value) for utt, value in text.items()})
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
    with user_errors(args.log_level):
        run(args, argv)


def run(args: argparse.Namespace, argv: Optional[Sequence[str]] = None) -> None:
    cmd = [sys.executable, "-m", "vallr_pin.bin.prepare_text"] + list(sys.argv[1:] if argv is None else argv)
    logging.info(f"Command: {' '.join(cmd)}")

    data_dirs = [Path(d) for d in args.data_dirs]
    train_dir = Path(args.train_dir)
    if all(d.resolve() != train_dir.resolve() for d in data_dirs):
        data_dirs.append(train_dir)
    for d in data_dirs:  # every transcript readable (UTF-8) before any data dir is rewritten
        if (d / "text").exists():
            read_kv(d / "text")

    results = {}
    for d in data_dirs:
        text, text_pinyin, counts = prepare_data_dir(d, args.traditional_to_simplified == "true")
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

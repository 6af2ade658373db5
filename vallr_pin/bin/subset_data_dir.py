#!/usr/bin/env python3
"""Copy a deterministic, speaker-stratified subset of a Kaldi data/dump directory (like Kaldi's
utils/subset_data_dir.sh, with the subset spread over speakers in proportion to their utterances).

Every ``<utt> ...`` list of --src that the stages read (feats.scp, text, text_pinyin, utt2spk, utt2num_frames,
feats_shape, video.scp, landmarks.scp, failed) is filtered to the chosen utterances and written to --dst
(spk2utt rebuilt), atomically. Used by stage 6 to dump N-best on part of a large training set
(vsr.sh --nbest_train_subset).

    python -m vallr_pin.bin.subset_data_dir --src dump/roi/train --dst dump/roi/train_sub3000 --size 3000
    python -m vallr_pin.bin.subset_data_dir --src dump/roi/train --dst dump/roi/train_sub10pc --size 0.1
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import read_kv, speaker_stratified_subset, utt2spk_to_spk2utt, write_kv

LISTS = ("feats.scp", "text", "text_pinyin", "utt2spk", "utt2num_frames", "feats_shape", "video.scp",
         "landmarks.scp", "pose.scp", "visemes.scp", "align.scp", "failed")


def _write_if_changed(path: Path, items: dict) -> None:
    """A re-run that picks the same subset leaves the files as they are (mtimes too: make-style checks hold)."""
    if path.is_file() and read_kv(path) == dict(items) and list(read_kv(path)) == sorted(items):
        return
    write_kv(path, items)


def size_arg(value: str):
    """'3000' -> 3000 (a count); '0.1' -> 0.1 (a fraction)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be a count (3000) or a fraction (0.1), got '{value}'")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="data or dump directory with utt2spk")
    p.add_argument("--dst", type=Path, required=True, help="output directory (its lists are replaced)")
    p.add_argument("--size", type=size_arg, required=True, help="utterances to keep: a count or a fraction")
    add_log_level(p)
    args = p.parse_args(argv)
    with user_errors(args.log_level):
        if not (args.src / "utt2spk").is_file():
            raise ValueError(f"{args.src}/utt2spk: missing; --src must be a Kaldi data or dump directory")
        utt2spk = read_kv(args.src / "utt2spk")
        if (args.src / "feats.scp").is_file():  # only utterances that have features can be decoded
            feats = read_kv(args.src / "feats.scp")
            utt2spk = {u: s for u, s in utt2spk.items() if u in feats}
        keep = set(speaker_stratified_subset(utt2spk, args.size))
        for name in LISTS:
            if (args.src / name).is_file():
                _write_if_changed(args.dst / name, {k: v for k, v in read_kv(args.src / name).items() if k in keep})
        _write_if_changed(args.dst / "spk2utt", utt2spk_to_spk2utt({u: utt2spk[u] for u in keep}))
    logging.info("wrote %s: %d of %d utterances, %d speakers", args.dst, len(keep), len(utt2spk),
                 len({utt2spk[u] for u in keep}))


if __name__ == "__main__":
    main()

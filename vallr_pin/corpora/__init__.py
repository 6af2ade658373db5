"""Corpus readers: scan a released corpus tree and return utterance records for stage 0.

Each corpus module (``cnvsrc``, ``cmlr``) turns its own directory layout into a list of :class:`Utterance`;
everything after that (duplicate checks, Kaldi data-dir writing) is shared here, so a new corpus only needs a
scanner. Utterance ids are ``<spk>-<original id>`` so that sorting by utterance also groups speakers (Kaldi).

Transcripts are read with :func:`read_transcript`: UTF-8 (a BOM is tolerated) first, then GB18030 (a superset
of GBK/GB2312, the encoding older Chinese corpora ship), so either kind of file is read correctly; the raw
sentence is kept as is (normalisation is stage 2's job).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

from vallr_pin.datadir import write_data_dir

PathLike = os.PathLike | str

# How many missing files an error message lists before summarising the rest.
_MAX_LISTED = 10


class CorpusError(RuntimeError):
    """Bad or incomplete corpus tree; the message names the file(s) and what to do."""


@dataclass(frozen=True)
class Utterance:
    """One utterance of a corpus.

    utt: Kaldi utterance id, ``<spk>-<original id>`` (no whitespace).
    spk: speaker id (no whitespace).
    video: absolute path of the ``.mp4`` file.
    text: raw transcript (one line, Hanzi as released; not normalised).
    landmarks: optional absolute path of a ``(T, 5, 2)`` float32 ``.npy`` of face landmarks shipped with the
        corpus (written to ``landmarks.scp``; stage 1 then uses them instead of a detector).
    frame_targets: optional absolute path of a ``(T, D)`` float32 ``.npy`` of per-frame training targets
        (written to ``pose.scp``; the synthetic corpus' renderer poses, for ``model_conf.frame_target_weight``).
    frame_labels: optional absolute path of a ``(T,)`` int64 ``.npy`` of per-frame class labels (written to
        ``visemes.scp``; the synthetic corpus' viseme alignment, for ``model_conf.frame_label_weight``).
    frame_align: optional absolute path of a ``(T,)`` int64 ``.npy``: the index of the transcript character
        spoken in each frame, -1 for none (written to ``align.scp``; the synthetic corpus' renderer timing, for
        the splice augmentation of training, ``--splice_prob``).
    """

    utt: str
    spk: str
    video: str
    text: str
    landmarks: Optional[str] = None
    frame_targets: Optional[str] = None
    frame_labels: Optional[str] = None
    frame_align: Optional[str] = None


def make_utt_id(spk: str, original_id: str) -> str:
    """``<spk>-<original id>`` with any whitespace in the original id replaced by ``_``."""
    utt = f"{spk}-{'_'.join(original_id.split())}"
    if any(c.isspace() for c in spk):
        raise CorpusError(f"speaker id '{spk}' contains whitespace; Kaldi ids cannot")
    return utt


def read_list_lines(path: PathLike) -> List[str]:
    """The lines (no line ends) of a corpus list file (a split list, a baseline csv, an id list, char_units.txt),
    UTF-8 with a byte-order mark dropped. Raises :class:`CorpusError` naming the file when it is missing, and the
    file and line when it is not UTF-8 (lists from Windows tools are often GBK)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: list file missing; check the path") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = raw[:e.start].count(b"\n") + 1
        raise CorpusError(f"{path}: line {lineno} is not UTF-8; convert the list with `iconv -f GB18030 -t UTF-8`")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # the newlines open() would split at


def read_transcript(path: PathLike) -> str:
    """First non-empty line of a transcript file, stripped.

    Tries UTF-8 (BOM removed) then GB18030. Raises :class:`CorpusError` naming the file when it is missing,
    undecodable or has no text."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{path}: transcript file missing") from None
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            content = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise CorpusError(f"{path}: transcript is neither UTF-8 nor GB18030/GBK; re-encode it as UTF-8")
    for line in content.splitlines():
        line = " ".join(line.split())  # one line, single spaces (tabs/CR/full-width space runs collapsed)
        if line:
            return line
    raise CorpusError(f"{path}: transcript file is empty")


def report_missing(missing: Sequence[str], what: str, allow_missing: bool) -> None:
    """Raise (or, with ``allow_missing``, warn) about missing files, naming the first few of them."""
    if not missing:
        return
    listed = "\n  ".join(missing[:_MAX_LISTED])
    more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    msg = f"{len(missing)} {what}:\n  {listed}{more}"
    if allow_missing:
        logging.warning("%s\nskipping these utterances (--allow-missing)", msg)
        return
    raise CorpusError(f"{msg}\nfix the corpus tree (or pass --allow-missing to skip these utterances)")


def check_unique(utts: Iterable[Utterance]) -> List[Utterance]:
    """Return the utterances as a list; a repeated utterance id is an error naming both videos."""
    seen: Dict[str, Utterance] = {}
    out: List[Utterance] = []
    for u in utts:
        if u.utt in seen:
            raise CorpusError(
                f"utterance id '{u.utt}' occurs twice: {seen[u.utt].video} and {u.video}; "
                "the same corpus part was probably given twice"
            )
        seen[u.utt] = u
        out.append(u)
    return out


def write_utterances(data_dir: PathLike, utts: Iterable[Utterance]) -> int:
    """Write a Kaldi data dir (video.scp, text, utt2spk, spk2utt) for the utterances; returns their number."""
    utts = check_unique(utts)
    if not utts:
        raise CorpusError(f"{data_dir}: no utterances to write; check the corpus root and lists")
    # A fresh stage 0 invalidates stage 2's memory of the original transcripts (text.orig, empty_text):
    # without this, prepare_text could take a re-written raw text for its own earlier output.
    for stale in ("text.orig", "empty_text", "pose.scp", "visemes.scp", "align.scp"):  # frame files: rewritten below if any
        Path(data_dir, stale).unlink(missing_ok=True)
    with_landmarks = [u for u in utts if u.landmarks]
    if with_landmarks and len(with_landmarks) != len(utts):
        raise CorpusError(f"{data_dir}: {len(utts) - len(with_landmarks)} utterances have no landmarks file while "
                          "others do; landmarks.scp must cover every utterance or none")
    with_targets = [u for u in utts if u.frame_targets]
    if with_targets and len(with_targets) != len(utts):
        raise CorpusError(f"{data_dir}: {len(utts) - len(with_targets)} utterances have no frame-target file while "
                          "others do; pose.scp must cover every utterance or none")
    extra = {}
    if with_landmarks:
        extra["landmarks.scp"] = {u.utt: u.landmarks for u in utts}
    if with_targets:
        extra["pose.scp"] = {u.utt: u.frame_targets for u in utts}
    with_labels = [u for u in utts if u.frame_labels]
    if with_labels and len(with_labels) != len(utts):
        raise CorpusError(f"{data_dir}: {len(utts) - len(with_labels)} utterances have no frame-label file while "
                          "others do; visemes.scp must cover every utterance or none")
    if with_labels:
        extra["visemes.scp"] = {u.utt: u.frame_labels for u in utts}
    with_align = [u for u in utts if u.frame_align]
    if with_align and len(with_align) != len(utts):
        raise CorpusError(f"{data_dir}: {len(utts) - len(with_align)} utterances have no alignment file while "
                          "others do; align.scp must cover every utterance or none")
    if with_align:
        extra["align.scp"] = {u.utt: u.frame_align for u in utts}
    write_data_dir(
        data_dir,
        video={u.utt: u.video for u in utts},
        text={u.utt: u.text for u in utts},
        utt2spk={u.utt: u.spk for u in utts},
        extra=extra or None,
    )
    logging.info("wrote %s: %d utterances, %d speakers", data_dir, len(utts), len({u.spk for u in utts}))
    return len(utts)

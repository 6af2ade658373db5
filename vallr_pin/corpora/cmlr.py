"""CMLR (Zhao et al., 2019: Chinese Mandarin Lip Reading, 11 speakers, 102,072 sentences) -> utterance records.

Layout (videos CONFIRMED by public code that opens ``CMLR/video/s1/20170121/section_1_000.80_002.91.mp4``
beside ``CMLR/audio/s1/20170121/section_1_000.80_002.91.wav``; the rest as the dataset's release describes it
and as ASSUMED here -- adapt this module if your copy differs)::

    <cmlr>/video/s<N>/<YYYYMMDD>/<section>.mp4
    <cmlr>/text/s<N>/<YYYYMMDD>/<section>.txt     first non-empty line = the sentence (UTF-8 or GBK;
                                                  further lines, e.g. pinyin, are ignored)
    <cmlr>/{train,val,test}.csv                   official split: one ``s<N>/<date>/<section>`` per line
                                                  (a header line or extra comma-separated columns are ignored)

Speaker id = ``s<N>``; utterance id = ``s<N>-<date>-<section>`` (e.g. ``s1-20170121-section_1_000.80_002.91``).
Stage-0 sets: train <- train.csv, dev <- val.csv, test <- test.csv.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional

from tqdm import tqdm

from vallr_pin.corpora import CorpusError, Utterance, make_utt_id, read_list_lines, read_transcript, report_missing

SPLIT_LISTS = {"train": "train.csv", "dev": "val.csv", "test": "test.csv"}


def read_split_list(path: Path) -> List[str]:
    """Entries ``s<N>/<date>/<section>`` of an official split list (extension, header and extra columns
    dropped)."""
    if not path.is_file():
        raise CorpusError(f"{path}: CMLR split list missing; it ships with the corpus (train.csv/val.csv/"
                          "test.csv) -- copy it there or pass --cmlr-lists-dir")
    entries: List[str] = []
    for lineno, line in enumerate(read_list_lines(path), 1):
        field = line.strip().split(",")[0].strip().replace("\\", "/")
        if not field:
            continue
        for ext in (".mp4", ".txt", ".wav"):
            field = field[: -len(ext)] if field.endswith(ext) else field
        field = field.split("video/", 1)[-1]  # tolerate lists that include the video/ prefix
        parts = field.split("/")
        if len(parts) != 3:
            if lineno == 1:  # header line
                continue
            raise CorpusError(f"{path}:{lineno}: expected 's<N>/<date>/<section>', got {line.strip()!r}")
        entries.append(field)
    if not entries:
        raise CorpusError(f"{path}: split list has no utterances")
    return entries


def utterances_for(root: Path, entries: List[str], allow_missing: bool = False,
                   desc: str = "") -> List[Utterance]:
    """Locate video and transcript of each ``s<N>/<date>/<section>`` entry and read the transcript."""
    videos = {e: root / "video" / f"{e}.mp4" for e in entries}
    texts = {e: root / "text" / f"{e}.txt" for e in entries}
    missing_video = [str(v) for v in videos.values() if not v.is_file()]
    report_missing(missing_video, "CMLR videos listed but missing", allow_missing)
    missing_text = [str(texts[e]) for e in entries if videos[e].is_file() and not texts[e].is_file()]
    report_missing(missing_text, "CMLR transcript files missing", allow_missing)
    out: List[Utterance] = []
    for e in tqdm(entries, desc=desc or "read transcripts", unit="utt", mininterval=5, disable=None):
        if not videos[e].is_file() or not texts[e].is_file():
            continue
        spk, date, section = e.split("/")
        out.append(Utterance(make_utt_id(spk, f"{date}-{section}"), spk, str(videos[e].resolve()),
                             read_transcript(texts[e])))
    return out


def prepare_cmlr(root: Path, lists_dir: Optional[Path] = None,
                 allow_missing: bool = False) -> Dict[str, List[Utterance]]:
    """``{"train": [...], "dev": [...], "test": [...]}`` following the official lists in ``lists_dir``
    (default: the corpus root)."""
    root = Path(root)
    if not (root / "video").is_dir():
        raise CorpusError(f"{root}: no video/ folder; point --cmlr-root (db.sh CMLR) at the unpacked CMLR corpus")
    lists_dir = Path(lists_dir) if lists_dir else root
    sets: Dict[str, List[Utterance]] = {}
    seen: Dict[str, str] = {}
    for name, fname in SPLIT_LISTS.items():
        entries = read_split_list(lists_dir / fname)
        for e in entries:  # the official splits are disjoint; a clash means a wrong list file
            if e in seen and seen[e] != name:
                raise CorpusError(f"{lists_dir / fname}: '{e}' is also in the {seen[e]} list")
            seen[e] = name
        sets[name] = utterances_for(root, entries, allow_missing, name)
        logging.info("CMLR %s: %d utterances", name, len(sets[name]))
    return sets

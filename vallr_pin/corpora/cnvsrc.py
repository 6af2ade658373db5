"""CNVSRC fixed-track data (CN-CVS, CN-CVS2-P1, CN-CVS3, CNVSRC.Dev/Eval) -> utterance records.

Layouts CONFIRMED from the challenge baselines (MKT-Dataoceanai/CNVSRC2023Baseline README.md and
preparation/README.md, sectum1919/CNVSRC2024Baseline preparation/README.md, liu12366262626/CNVSRC2025
VSR/preparation/README.md):

* CN-CVS, after untarring news_part*.tar.gz / speech_part*.tar.gz::

      <cncvs>/news/n001/video/n001_00001_001.mp4   ... n028
      <cncvs>/speech/s00001/video/s00001_001_00001.mp4 ... s02529

  The speaker id is the speaker folder (``n001``, ``s02270``).
* CNVSRC dev/eval sets (2024/2025 naming; the 2023 release used ``multi-speaker/`` and ``single-speaker/``,
  also accepted)::

      <cnvsrc>/cnvsrc-multi/{dev,eval}/video/80100246.mp4   (+ dev/audio/*.wav, cnvsrc-multi-*-infos.json)
      <cnvsrc>/cnvsrc-single/{dev,eval}/video/00023065.mp4
* The baselines' list files ``data/<set>/{train,valid,test}.csv``: one row per utterance,
  ``<dataset>,<video path relative to the dataset dir>,<frames>,<labels>``, e.g.
  ``cncvs,speech/s02270/video/s02270_001_00001.mp4,165,2 5570 ...`` or
  ``cnvsrc-multi,dev/video/80100246.mp4,74,3034 800 ...``; ``<labels>`` are token ids of the baseline's
  ``datamodule/char_units.txt`` (``<char> <id>`` per line, ids from 1) -- pass that file as ``char_units`` to
  decode them -- or, in some lists, the sentence itself.

ASSUMED (not documented in any public source found; adapt here if your copy differs):

* Per-utterance transcripts live in a ``text/`` folder beside ``video/`` with the video's stem and ``.txt``:
  ``<cncvs>/speech/s02270/text/s02270_001_00001.txt``, ``<cnvsrc>/cnvsrc-multi/dev/text/80100246.txt``;
  first non-empty line = sentence, UTF-8 or GBK. If your release carries text only in list files, pass those
  lists (``label_csvs``) instead; then the transcript files are not read at all.
* CN-CVS2-P1 and CN-CVS3 use CN-CVS's per-speaker layout (``<root>[/<group>]/<spk>/video/<id>.mp4``).
* CNVSRC-Multi video ids come in two forms (the baselines' lists of Multi.Dev hold 15,291 ``80100246``-style
  and 5,159 ``v0010316``-style ids); the speaker/session is taken to be the first 5 digits (``80100``) or the
  ``v`` and 3 digits (``v001``). It is only used to group utterances in ``spk2utt`` (and so for speaker-
  stratified subsets) and can be changed with ``multi_speaker_regex``.
  CNVSRC-Single is one speaker by definition.

The dev/valid split: CNVSRC-Multi.Dev (20,450 utterances) is training data in S1-S3 *and* the dev set, so the
baselines split it: 15,353 for training (their ``data/cnvsrc-multi/train.csv``) and 5,097 held out
(``valid.csv``, the same list in the 2023 and 2024 baselines, whose "CER on Dev" is measured on it). The recipe
ships those ids as ``egs/cnvsrc/vsr1/conf/cnvsrc-multi_valid.list``, the default ``dev_list``.

Training-set compositions of the VALLR-Pin papers (Table I): S1 = CN-CVS + CNVSRC.Dev (single- and
multi-speaker dev sets), S2 = S1 + CN-CVS2-P1, S3 = S2 + CN-CVS3.

Speaker ids carry a part tag (``cncvs_s02270``, ``cncvs3_s00001``, ``multi_80100``, ``single``) so that speaker
folders with the same name in different corpora never merge; utterance ids are ``<spk>-<video stem>``.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from tqdm import tqdm

from vallr_pin.corpora import CorpusError, Utterance, make_utt_id, read_list_lines, read_transcript, report_missing

# Speaker-folder corpora (CN-CVS style) and the tag put in front of their speaker ids.
SPEAKER_FOLDER_PARTS = {"cncvs": "cncvs", "cncvs2_p1": "cncvs2p1", "cncvs3": "cncvs3"}
# CNVSRC challenge sets: part -> (dataset folder names, oldest last; split folder).
CNVSRC_SET_PARTS = {
    "single_dev": (("cnvsrc-single", "single-speaker"), "dev"),
    "multi_dev": (("cnvsrc-multi", "multi-speaker"), "dev"),
    "single_eval": (("cnvsrc-single", "single-speaker"), "eval"),
    "multi_eval": (("cnvsrc-multi", "multi-speaker"), "eval"),
}
PARTS = tuple(SPEAKER_FOLDER_PARTS) + tuple(CNVSRC_SET_PARTS)

_S1 = ("cncvs", "single_dev", "multi_dev")
COMPOSITIONS: Dict[str, Tuple[str, ...]] = {
    "S1": _S1,
    "S2": _S1 + ("cncvs2_p1",),
    "S3": _S1 + ("cncvs2_p1", "cncvs3"),
}

DEFAULT_MULTI_SPEAKER_REGEX = r"^(\d{5}|v\d{3})"


@dataclass(frozen=True)
class _Entry:
    """A located utterance before its transcript is read."""

    spk: str
    original_id: str
    video: Path
    text_file: Path
    text: Optional[str] = None  # given by a list file; else read from text_file


# ---------------------------------------------------------------------------------------------------------
# Locating videos


def _text_file_for(video: Path) -> Path:
    """``.../<x>/video/<id>.mp4`` -> ``.../<x>/text/<id>.txt`` (assumed layout, see module docstring)."""
    return video.parent.parent / "text" / (video.stem + ".txt")


def cnvsrc_dataset_dir(cnvsrc_root: Path, part: str) -> Path:
    """The dataset folder of a CNVSRC set part (``cnvsrc-multi`` or the 2023 name ``multi-speaker``)."""
    names, _ = CNVSRC_SET_PARTS[part]
    for name in names:
        if (cnvsrc_root / name).is_dir():
            return cnvsrc_root / name
    raise CorpusError(
        f"{cnvsrc_root}: no {' or '.join(names)}/ folder for part '{part}'; untar the CNVSRC package there "
        "or point --cnvsrc-root at the folder that holds it"
    )


class _Speakers:
    """Speaker id of a located video, per part."""

    def __init__(self, multi_speaker_regex: str = DEFAULT_MULTI_SPEAKER_REGEX):
        self.multi_re = re.compile(multi_speaker_regex)

    def __call__(self, part: str, video: Path) -> str:
        if part in SPEAKER_FOLDER_PARTS:
            # <spk>/video/<id>.mp4
            return f"{SPEAKER_FOLDER_PARTS[part]}_{video.parent.parent.name}"
        if part.startswith("single"):
            return "single"
        m = self.multi_re.search(video.stem)
        if not m:
            raise CorpusError(
                f"{video}: video id does not match the CNVSRC-Multi speaker pattern "
                f"'{self.multi_re.pattern}'; pass --multi-speaker-regex with one capture group"
            )
        return f"multi_{m.group(1) if m.groups() else m.group(0)}"


def _part_base(part: str, root: Path) -> Path:
    """The folder list-file paths of a part are relative to (CN-CVS root, or the CNVSRC dataset folder)."""
    return root if part in SPEAKER_FOLDER_PARTS else cnvsrc_dataset_dir(root, part)


def scan_part(part: str, root: Path, speakers: _Speakers) -> List[_Entry]:
    """Find every video of a part under its root (layouts in the module docstring)."""
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus root of part '{part}' does not exist; set it in db.sh")
    if part in SPEAKER_FOLDER_PARTS:
        # <root>/<spk>/video/*.mp4 or <root>/<group>/<spk>/video/*.mp4 (CN-CVS: group = news|speech)
        videos = sorted(set(root.glob("*/video/*.mp4")) | set(root.glob("*/*/video/*.mp4")))
    else:
        _, split = CNVSRC_SET_PARTS[part]
        split_dir = cnvsrc_dataset_dir(root, part) / split
        if not split_dir.is_dir():
            raise CorpusError(f"{split_dir}: missing; untar the CNVSRC {part.replace('_', ' ')} package")
        videos = sorted(split_dir.glob("video/*.mp4"))
    if not videos:
        raise CorpusError(f"{root}: no .mp4 videos found for part '{part}' (expected layout: see "
                          "vallr_pin/corpora/cnvsrc.py)")
    return [_Entry(speakers(part, v), v.stem, v, _text_file_for(v)) for v in videos]


# ---------------------------------------------------------------------------------------------------------
# Baseline list files


def read_char_units(path: Path) -> Dict[int, str]:
    """``<char> <id>`` per line (CNVSRC baseline ``char_units.txt``) -> ``{id: char}``."""
    units: Dict[int, str] = {}
    for lineno, line in enumerate(read_list_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise CorpusError(f"{path}:{lineno}: expected '<char> <id>', got {line.strip()!r}")
        units[int(parts[1])] = parts[0]
    return units


def _decode_labels(labels: str, units: Optional[Mapping[int, str]], where: str) -> str:
    tokens = labels.split()
    if tokens and all(t.isdigit() for t in tokens):
        if units is None:
            raise CorpusError(f"{where}: labels are token ids; pass the baseline's char_units.txt "
                              "(--char-units) to decode them")
        try:
            return "".join(units[int(t)] for t in tokens)
        except KeyError as e:
            raise CorpusError(f"{where}: token id {e.args[0]} is not in --char-units; wrong units file?")
    return " ".join(tokens)


def read_label_csv(
    path: Path,
    part: str,
    root: Path,
    speakers: _Speakers,
    units: Optional[Mapping[int, str]],
) -> List[_Entry]:
    """Rows ``<dataset>,<relpath>[,<frames>,<labels>]`` of a baseline list file -> entries of ``part``.

    With a labels column the transcript comes from it (token ids decoded with ``units``); without one it is
    read from the assumed ``text/`` file."""
    base = _part_base(part, root)
    entries: List[_Entry] = []
    for lineno, row in enumerate(csv.reader(read_list_lines(path)), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[1].endswith(".mp4"):
            if lineno == 1:  # header line
                continue
            raise CorpusError(f"{path}:{lineno}: expected '<dataset>,<relpath>.mp4[,<frames>,<labels>]'")
        video = base / row[1]
        text = _decode_labels(row[-1], units, f"{path}:{lineno} ({video.stem})") if len(row) >= 4 else None
        entries.append(_Entry(speakers(part, video), video.stem, video, _text_file_for(video), text))
    if not entries:
        raise CorpusError(f"{path}: list file has no utterances")
    return entries


def read_id_list(path: Path) -> Set[str]:
    """Utterance stems named by a list: baseline csv rows (the .mp4 path is used) or one id/path per line;
    lines starting with '#' are comments."""
    ids: Set[str] = set()
    for line in read_list_lines(path):
        if line.lstrip().startswith("#"):
            continue
        fields = [x.strip() for x in line.strip().split(",") if x.strip()]
        if not fields:
            continue
        field = next((x for x in fields if x.endswith(".mp4")), fields[0])
        ids.add(Path(field).stem if "/" in field or field.endswith(".mp4") else field)
    if not ids:
        raise CorpusError(f"{path}: list file is empty")
    return ids


# ---------------------------------------------------------------------------------------------------------
# Entries -> utterances


def to_utterances(entries: Sequence[_Entry], allow_missing: bool = False, desc: str = "") -> List[Utterance]:
    """Check videos exist, read transcripts; missing files are reported by name (see ``report_missing``)."""
    missing_video = [str(e.video) for e in entries if not e.video.is_file()]
    report_missing(missing_video, "video files listed but missing", allow_missing)
    have_video = [e for e in entries if e.video.is_file()]
    missing_text = [str(e.text_file) for e in have_video if e.text is None and not e.text_file.is_file()]
    report_missing(missing_text, "transcript files missing", allow_missing)
    skip = set(missing_text)
    out: List[Utterance] = []
    for e in tqdm(have_video, desc=desc or "read transcripts", unit="utt", mininterval=5, disable=None):
        if e.text is None and str(e.text_file) in skip:
            continue
        text = e.text if e.text is not None else read_transcript(e.text_file)
        out.append(Utterance(make_utt_id(e.spk, e.original_id), e.spk, str(e.video.resolve()), text))
    return out


@dataclass
class CnvsrcSets:
    """The utterances of the three data dirs stage 0 writes."""

    train: List[Utterance]
    dev: List[Utterance]
    test: List[Utterance]


def prepare_cnvsrc(
    roots: Mapping[str, Path],
    composition: str = "S3",
    dev_part: Optional[str] = "multi_dev",
    test_part: Optional[str] = "multi_eval",
    dev_list: Optional[Path] = None,
    test_list: Optional[Path] = None,
    label_csvs: Optional[Mapping[str, Sequence[Path]]] = None,
    char_units: Optional[Path] = None,
    multi_speaker_regex: str = DEFAULT_MULTI_SPEAKER_REGEX,
    allow_missing: bool = False,
) -> CnvsrcSets:
    """Collect train/dev/test utterances.

    roots: part -> root folder: CN-CVS-style parts take the corpus folder (``.../cncvs`` holding news/ and
        speech/); CNVSRC set parts take the folder holding ``cnvsrc-multi/`` and ``cnvsrc-single/``.
    composition: S1|S2|S3 (see module docstring); every part it names must have a root.
    dev_part/test_part: part used for dev/test (None: skip that set).
    dev_list: the utterances of ``dev_part`` that form the dev set (e.g. the baseline's valid.csv); they are
        removed from training. Required when ``dev_part`` is also a training part.
    test_list: the utterances of ``test_part`` to score (default: every video of the part). The test set is
        scored in full, so an utterance it names without a video (or transcript) is an error naming it, even
        with ``allow_missing``.
    label_csvs: part -> list files; when given, the part's utterances are the listed rows (not a scan).
    """
    if composition not in COMPOSITIONS:
        raise CorpusError(f"unknown training-set composition '{composition}'; choose from {sorted(COMPOSITIONS)}")
    label_csvs = dict(label_csvs or {})
    for part in label_csvs:
        if part not in PARTS:
            raise CorpusError(f"--label-csv names unknown part '{part}'; parts: {', '.join(PARTS)}")
    train_parts = COMPOSITIONS[composition]
    if dev_part in train_parts and dev_list is None:
        raise CorpusError(
            f"dev set '{dev_part}' is also training data in {composition}; pass --dev-list with the held-out "
            "utterances (e.g. the CNVSRC baseline's data/cnvsrc-multi/valid.csv) so the two do not overlap"
        )
    units = read_char_units(char_units) if char_units else None
    speakers = _Speakers(multi_speaker_regex)
    needed = list(dict.fromkeys(list(train_parts) + [p for p in (dev_part, test_part) if p]))
    entries: Dict[str, List[_Entry]] = {}
    for part in needed:
        root = roots.get(part)
        if root is None:
            raise CorpusError(f"part '{part}' is needed (composition {composition} / dev / test) but has no root; "
                              "set it in db.sh")
        root = Path(root)
        if part in label_csvs:
            entries[part] = [e for f in label_csvs[part] for e in read_label_csv(Path(f), part, root, speakers, units)]
        else:
            entries[part] = scan_part(part, root, speakers)
        logging.info("part %s: %d utterances located", part, len(entries[part]))

    heldout = read_id_list(dev_list) if dev_list else None
    dev_entries: List[_Entry] = []
    if dev_part:
        dev_entries = entries[dev_part]
        if heldout is not None:
            dev_entries = [e for e in dev_entries if e.original_id in heldout]
            absent = sorted(heldout - {e.original_id for e in entries[dev_part]})
            report_missing(absent, f"utterances of --dev-list {dev_list} not found in part '{dev_part}'",
                           allow_missing)
    train_entries: List[_Entry] = []
    for part in train_parts:
        part_entries = entries[part]
        if part == dev_part and heldout is not None:
            part_entries = [e for e in part_entries if e.original_id not in heldout]
        train_entries.extend(part_entries)
    test_entries = entries[test_part] if test_part else []
    if test_part and test_list is not None:
        wanted = read_id_list(test_list)
        test_entries = [e for e in test_entries if e.original_id in wanted]
        absent = sorted(wanted - {e.original_id for e in entries[test_part]})
        report_missing([f"{u} (no video {u}.mp4 in part '{test_part}')" for u in absent],
                       f"utterances of --test-list {test_list} without a video", False)
    return CnvsrcSets(
        train=to_utterances(train_entries, allow_missing, "train"),
        dev=to_utterances(dev_entries, allow_missing, "dev"),
        test=to_utterances(test_entries, False, "test"),  # every test utterance is scored: none may drop out
    )

"""The synthetic mini corpus (egs/mini_cnvsrc/vsr1) -> utterance records.

``vallr_pin.bin.render_corpus`` writes a CNVSRC-like raw layout::

    <root>/{train,dev,test}.csv            header: uttid,spk,video,text,landmarks (paths relative to <root>)
    <root>/<split>/<spk>/<uttid>.mp4       rendered lip video, 25 fps
    <root>/<split>/<spk>/<uttid>.txt       the sentence (UTF-8, punctuation as in the source text)
    <root>/<split>/<spk>/<uttid>.landmarks.npy   the renderer's known (T, 5, 2) landmarks
    <root>/<split>/<spk>/<uttid>.pose.npy        the renderer's (T, 7) mouth pose per frame -> ``pose.scp``
    <root>/<split>/<spk>/<uttid>.visemes.npy     the renderer's (T,) viseme label per frame -> ``visemes.scp``
    <root>/<split>/<spk>/<uttid>.align.npy       the renderer's (T,) character index per frame -> ``align.scp``

Utterance ids (``spk003_0012``) are already speaker-prefixed, so they are kept as they are. The transcript
is read from the ``.txt`` file (the same reader as the real corpora), not the csv, so stage 0 reads what a
user would see on disk.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

from vallr_pin.corpora import CorpusError, Utterance, read_transcript, report_missing

SPLITS = ("train", "dev", "test")
_COLUMNS = ("uttid", "spk", "video", "text", "landmarks")  # and "pose" since the pose files exist


def read_split(root: Path, split: str, use_landmarks: bool = True, allow_missing: bool = False) -> List[Utterance]:
    """Utterances listed in ``<root>/<split>.csv``; missing files are reported by name."""
    root = Path(root).resolve()
    listing = root / f"{split}.csv"
    if not listing.is_file():
        raise CorpusError(f"{listing}: list file missing; render the corpus first (local/data.sh does it)")
    with open(listing, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and any(c not in rows[0] for c in _COLUMNS):
        raise CorpusError(f"{listing}: expected columns {','.join(_COLUMNS)}, got {','.join(rows[0])}")
    utts: List[Utterance] = []
    missing: List[str] = []
    for row in rows:
        video = root / row["video"]
        txt = video.with_suffix(".txt")
        lm = root / row["landmarks"] if use_landmarks and row["landmarks"] else None
        pose = root / row["pose"] if row.get("pose") else None
        vis = root / row["visemes"] if row.get("visemes") else None
        ali = root / row["align"] if row.get("align") else None
        absent = [str(p) for p in (video, txt, lm, pose, vis, ali) if p is not None and not p.is_file()]
        if absent:
            missing.extend(absent)
            continue
        if not row["uttid"].startswith(row["spk"]):
            raise CorpusError(f"{listing}: utterance '{row['uttid']}' is not prefixed by its speaker '{row['spk']}'")
        utts.append(Utterance(utt=row["uttid"], spk=row["spk"], video=str(video), text=read_transcript(txt),
                              landmarks=str(lm) if lm else None, frame_targets=str(pose) if pose else None,
                              frame_labels=str(vis) if vis else None, frame_align=str(ali) if ali else None))
    report_missing(missing, f"files listed in {listing} are missing", allow_missing)
    return utts


def prepare_mini_cnvsrc(root: Path, use_landmarks: bool = True, allow_missing: bool = False) -> Dict[str, List[Utterance]]:
    """``{train, dev, test}`` utterances of a rendered mini corpus."""
    return {split: read_split(root, split, use_landmarks, allow_missing) for split in SPLITS}

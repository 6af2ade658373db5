"""Stage 1's jobs: the ROI features of a ``video.scp`` as a kaldiio ark/scp, crash-safe and resumable.

Per job (``job_id`` J) :func:`run_job` writes in ``out_dir``:

    feats.J.ark          kaldiio numpy payload per utterance: uint8 (T, H*W), row-major frames, grey, 25 fps
    feats.J.scp          <utt> <out-dir>/feats.J.ark:<offset>
    utt2num_frames.J     <utt> T
    feats_shape.J        <utt> T,H*W
    failed.J             <utt> <reason>      (unreadable/corrupt video, no face, too few frames, bad landmarks)
    roi_conf.J.json      the settings that shaped the crop (RoiConfig output fields, detector or null for
                         precomputed landmarks): what ``vallr_pin.bin.pack_model`` gives a packed model
    feats.J.done         fingerprint of the job's inputs and settings (the done marker)

Without a job id the same files are written without the ``.J`` part (feats.scp, feats.ark, ...).
:func:`merge_jobs` concatenates the N jobs' files into {feats.scp, utt2num_frames, feats_shape, failed}, sorted,
atomically, and writes roi_conf.json (the jobs must agree on it).

Why uint8 numpy payloads: a 96x96 grey frame is 9 KB instead of 36 KB as a float Kaldi matrix, and kaldiio
(which ESPnet's loaders use) reads it back as is; Kaldi's own binaries cannot read it, nothing here needs them.

Crash safety: the ark and scp are written as feats.J.ark.tmp / feats.J.scp.tmp and become final (ark renamed,
scp rewritten to point at the final ark, then renamed) only after the last utterance, followed by the other
lists and finally the done marker. A killed job therefore leaves no scp line pointing into a partial ark. On a
re-run a job whose done marker matches its inputs is skipped; any other job is redone from scratch. The
inputs are the video.scp/landmarks lines of its utterances, each transcript's character count, every option
that changes the output, and the identity of every video and landmarks file: its size and modification time
(ns), as make and rsync judge a file. So a video that failed and was re-copied (new mtime) is redone, and an
unchanged job is skipped after one ``stat`` per file. A content hash would also catch a same-size rewrite
that kept its mtime (``cp -p`` of a different file of the same size), but it reads every byte of every video
on every re-run (hours on CNVSRC); after such a copy, ``touch`` the file.

A set with no usable utterance fails: a job without ``--job-id`` (the whole set) and :func:`merge_jobs` raise
:class:`NoUsableUtterance`, and no feats.scp is written (stage 2 would otherwise read an empty one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Tuple

from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.video.pipeline import RoiConfig, UtteranceFailed, count_characters, extract_utterance, make_detector

OUTPUT_LISTS = ("utt2num_frames", "feats_shape", "failed")


class NoUsableUtterance(ValueError):
    """Every utterance of a set failed; the message names the set and its ``failed`` file."""

    def __init__(self, out_dir: str, n_failed: int, failed_file: str):
        super().__init__(
            f"{out_dir}: all {n_failed} utterances of set '{os.path.basename(os.path.normpath(out_dir))}' failed, "
            f"no feats.scp written; the reasons are in {failed_file}")


def file_identity(path: str) -> str:
    """``<size>:<mtime_ns>`` of ``path`` (``missing`` if it cannot be stat'ed): what the done marker compares."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def job_paths(out_dir: str, job_id: Optional[int]) -> Dict[str, str]:
    """File names of one job (``job_id`` None: the un-suffixed names of a single-job run)."""
    sfx = "" if job_id is None else f".{job_id}"
    paths = {
        "ark": os.path.join(out_dir, f"feats{sfx}.ark"),
        "scp": os.path.join(out_dir, f"feats{sfx}.scp"),
        "done": os.path.join(out_dir, f"feats{sfx}.done"),
        "roi_conf": os.path.join(out_dir, f"roi_conf{sfx}.json"),
    }
    paths["ark_tmp"] = paths["ark"] + ".tmp"
    paths["scp_tmp"] = paths["scp"] + ".tmp"
    for name in OUTPUT_LISTS:
        paths[name] = os.path.join(out_dir, f"{name}{sfx}")
    return paths


def roi_settings(cfg: RoiConfig, precomputed_landmarks: bool) -> Dict:
    """The settings a job's crops were made with (roi_conf.J.json): output fields plus the detector (None when
    the landmarks were precomputed)."""
    settings = cfg.output_settings()
    settings["detector"] = None if precomputed_landmarks else cfg.detector
    return settings


def fingerprint(cfg: RoiConfig, videos: Dict[str, str], landmarks: Optional[Dict[str, str]],
                texts: Optional[Dict[str, str]]) -> str:
    """What a finished job was made from: its input lines, the size and mtime of their files and every setting
    that changes the output."""
    h = hashlib.sha256()
    settings = roi_settings(cfg, landmarks is not None)
    h.update(json.dumps(settings, sort_keys=True).encode())
    for utt in sorted(videos):
        # The transcript counts only through its character count (the frames check): stage 2 normalises
        # data/<set>/text in place, and that must not make a re-run of stage 1 redo finished jobs.
        n_chars = count_characters(texts[utt]) if texts and utt in texts else ""
        lm = (landmarks or {}).get(utt, "")
        row = [utt, videos[utt], file_identity(videos[utt]), lm, file_identity(lm) if lm else "", str(n_chars)]
        h.update(("\t".join(row) + "\n").encode("utf-8"))
    return h.hexdigest()


def _job_is_done(paths: Dict[str, str], fp: str) -> bool:
    try:
        with open(paths["done"], encoding="utf-8") as f:
            if f.read().strip() != fp:
                return False
    except FileNotFoundError:
        return False
    return all(os.path.exists(paths[k]) for k in ("scp", "roi_conf") + OUTPUT_LISTS)


def _remove_job_outputs(paths: Dict[str, str]) -> None:
    # Marker and scp first: from here on nothing claims the (possibly partial) ark is valid.
    for key in ("done", "scp", "scp_tmp", "roi_conf") + OUTPUT_LISTS + ("ark", "ark_tmp"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(paths[key])


def run_job(cfg: RoiConfig, video_scp: str, out_dir: str, job_id: Optional[int] = None,
            landmarks_scp: Optional[str] = None, text: Optional[str] = None) -> Dict[str, float]:
    """Process one job's utterances (``video_scp``: ``<utt> <video path>``; ``landmarks_scp``: precomputed
    landmarks, no detector runs; ``text``: transcripts for the frames-vs-characters check). Returns CPU seconds
    per part and frame counts."""
    import cv2
    import kaldiio
    from tqdm import tqdm

    cv2.setNumThreads(1)  # one core per job: the launcher runs nj jobs side by side
    paths = job_paths(out_dir, job_id)
    videos = read_kv(video_scp)
    landmarks = read_kv(landmarks_scp) if landmarks_scp else None
    texts = read_kv(text) if text else None
    fp = fingerprint(cfg, videos, landmarks, texts)
    stats = {"decode": 0.0, "landmarks": 0.0, "crop": 0.0, "write": 0.0, "frames": 0, "ok": 0, "failed": 0}
    if _job_is_done(paths, fp):
        logging.info(f"{paths['scp']} is complete for these inputs ({paths['done']}); skipping the job")
        stats["skipped"] = 1
        return stats
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if job_id is not None:
        # A merged feats.scp from an earlier run would point into this job's ark, which is about to change.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out_dir, "feats.scp"))
    _remove_job_outputs(paths)

    detector = precomputed = None
    if landmarks is not None:
        from vallr_pin.video.landmarks import PrecomputedLandmarks

        precomputed = PrecomputedLandmarks(landmarks_scp)
    else:
        detector = make_detector(cfg)

    num_frames: Dict[str, str] = {}
    shapes: Dict[str, str] = {}
    failed: Dict[str, str] = {}
    job = "" if job_id is None else f" job {job_id}"
    with kaldiio.WriteHelper(f"ark,scp:{paths['ark_tmp']},{paths['scp_tmp']}", write_function="numpy") as writer:
        bar = tqdm(sorted(videos), desc=f"lip_roi{job}", unit="utt", file=sys.stderr, dynamic_ncols=True)
        for utt in bar:
            num_chars = None
            if texts is not None:
                if utt in texts:
                    num_chars = count_characters(texts[utt])
                else:
                    logging.warning(f"{text}: no text for '{utt}'; its frame count is not checked")
            try:
                feats = extract_utterance(utt, videos[utt], cfg, detector, precomputed, num_chars, stats)
            except UtteranceFailed as e:
                reason = " ".join(str(e).split())
                logging.warning(f"{utt} ({videos[utt]}) failed: {reason}")
                failed[utt] = reason
                stats["failed"] += 1
                continue
            t = time.process_time()
            writer[utt] = feats
            stats["write"] += time.process_time() - t
            num_frames[utt] = str(feats.shape[0])
            shapes[utt] = f"{feats.shape[0]},{feats.shape[1]}"
            stats["frames"] += feats.shape[0]
            stats["ok"] += 1
            logging.debug(f"{utt}: wrote {feats.shape[0]} frames")

    # All utterances done: make the outputs final (ark, then scp pointing at it, then lists, then marker).
    with open(paths["scp_tmp"], encoding="utf-8") as f:
        scp_rows = []
        for line in f:
            utt, loc = line.rstrip("\n").split(maxsplit=1)
            ark, _, offset = loc.rpartition(":")
            if ark != paths["ark_tmp"]:
                raise RuntimeError(f"{paths['scp_tmp']}: unexpected ark path '{ark}' for '{utt}'")
            scp_rows.append((utt, f"{paths['ark']}:{offset}"))
    os.replace(paths["ark_tmp"], paths["ark"])
    write_kv(paths["scp"], scp_rows)
    os.unlink(paths["scp_tmp"])
    write_kv(paths["utt2num_frames"], num_frames)
    write_kv(paths["feats_shape"], shapes)
    write_kv(paths["failed"], failed)
    with atomic_open(paths["roi_conf"]) as f:
        json.dump(roi_settings(cfg, landmarks is not None), f, sort_keys=True)
        f.write("\n")
    with atomic_open(paths["done"]) as f:
        f.write(fp + "\n")
    if detector is not None and hasattr(detector, "close"):
        detector.close()

    cpu = stats["decode"] + stats["landmarks"] + stats["crop"] + stats["write"]
    logging.info(
        f"{paths['scp']}: {stats['ok']} utterances ({stats['frames']} frames) written, {stats['failed']} failed"
        + (f" (see {paths['failed']})" if stats["failed"] else "")
        + (f"; {stats['frames'] / cpu:.1f} frames per CPU-second" if cpu > 0 and stats["frames"] else "")
    )
    if stats["ok"] == 0 and videos:
        if job_id is None:  # the whole set: nothing for stage 2 to read
            os.unlink(paths["scp"])
            raise NoUsableUtterance(out_dir, stats["failed"], paths["failed"])
        logging.warning(f"job{job}: no utterance of {video_scp} could be processed; see {paths['failed']}")
    return stats


def merge_jobs(out_dir: str, nj: int) -> Tuple[int, int]:
    """Concatenate jobs 1..nj of ``out_dir`` into feats.scp, utt2num_frames, feats_shape, failed (sorted,
    atomic). Returns (utterances written, utterances failed). Raises ValueError if a job is missing or
    unfinished, :class:`NoUsableUtterance` if every utterance failed."""
    missing = [j for j in range(1, nj + 1) if not os.path.exists(job_paths(out_dir, j)["done"])]
    if missing:
        raise ValueError(
            f"{out_dir}: jobs {missing} have not finished (no feats.J.done); re-run stage 1 for them before merging"
        )
    merged: Dict[str, Dict[str, str]] = {"scp": {}, **{name: {} for name in OUTPUT_LISTS}}
    for j in range(1, nj + 1):
        paths = job_paths(out_dir, j)
        for key, table in merged.items():
            for utt, value in read_kv(paths[key]).items():
                if utt in table:
                    raise ValueError(f"{paths[key]}: utterance '{utt}' also appears in another job; re-split the data")
                table[utt] = value
    confs = {}
    for j in range(1, nj + 1):
        with contextlib.suppress(FileNotFoundError):
            confs[j] = Path(job_paths(out_dir, j)["roi_conf"]).read_text(encoding="utf-8")
    if len(set(confs.values())) > 1:
        raise ValueError(f"{out_dir}: jobs were run with different crop settings ({job_paths(out_dir, 1)['roi_conf']} "
                           "and others differ); re-run stage 1 with one set of options")
    if confs:
        with atomic_open(os.path.join(out_dir, "roi_conf.json")) as f:
            f.write(next(iter(confs.values())))
    write_kv(os.path.join(out_dir, "utt2num_frames"), merged["utt2num_frames"])
    write_kv(os.path.join(out_dir, "feats_shape"), merged["feats_shape"])
    write_kv(os.path.join(out_dir, "failed"), merged["failed"])
    if not merged["scp"] and merged["failed"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(out_dir, "feats.scp"))  # one from an earlier run would be stale
        raise NoUsableUtterance(out_dir, len(merged["failed"]), os.path.join(out_dir, "failed"))
    write_kv(os.path.join(out_dir, "feats.scp"), merged["scp"])  # last: its presence means the merge finished
    return len(merged["scp"]), len(merged["failed"])

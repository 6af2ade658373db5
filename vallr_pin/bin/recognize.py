#!/usr/bin/env python3
"""Recognise your own videos with a packed model (``vallr_pin.bin.pack_model``): video files in, JSON lines out.

    python -m vallr_pin.bin.recognize --model packed/vsr_dual clip1.mp4 clip2.mov > out.jsonl
    python -m vallr_pin.bin.recognize --model packed/vsr_dual --video-scp data/test/video.scp \\
        --output out.jsonl --text-out hyp.txt

Every video goes through stage 1's crop (any container and resolution ffmpeg reads, rotation metadata applied,
any frame rate resampled to the model's 25 fps: the JSON line's ``note`` says so), stage 5's decoding and, when
the model has an LLM adapter and the base LLM is found, stage 9's refinement (batched). One JSON line per
video, in input order, to stdout or ``--output``: utt, video, text (final), pinyin, nbest [{text, score}],
onebest, llm {text, raw, reason (null: the guard accepted the answer), mode}, failure (null or
"<code>: <reason>"), frames, fps, source_fps, source_frames, note, timings {roi, vsr, llm} in seconds. Logs, the
progress bar and the summary go to stderr. Exit status: 0 all recognised, 1 some failed (their lines say why),
2 nothing could run (bad model directory, wrong base LLM, bad arguments).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".flv", ".wmv", ".3gp", ".ts")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files (utterance id: the file name stem)")
    p.add_argument("--model", required=True, help="packed model directory (or its --archive file)")
    p.add_argument("--video-scp", default=None, help="Kaldi list <utt> <video path> instead of VIDEO arguments")
    p.add_argument("--dir", default=None, help="every video file under this directory (by suffix, sorted)")
    p.add_argument("--landmarks", default=None,
                   help="<utt> <landmarks .npy> list (float (T,5,2), SPEC order, source-frame pixels) used "
                        "instead of the detector for the utterances it lists")
    p.add_argument("--roi-input", action="store_true",
                   help="the videos already are mouth crops: no landmarks, centre square resized to the ROI size")
    p.add_argument("--llm-model", default=None, help="base LLM directory (default: the path recorded when packing)")
    p.add_argument("--no-llm", action="store_true", help="VSR only, even if the model has an LLM adapter")
    p.add_argument("--detector", default=None, help="landmark detector instead of the packed one")
    p.add_argument("--device", default="cpu", help="cpu or cuda (VSR model)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--batch", type=int, default=16, help="videos recognised before each batched LLM call")
    p.add_argument("--output", default=None, help="JSON lines file (written atomically); default stdout")
    p.add_argument("--text-out", default=None, help="also write a Kaldi text <utt> <text> (recognised videos)")
    p.add_argument("--save-roi", default=None, metavar="DIR", help="write the crop the model saw as DIR/<utt>.mp4")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-level", default="INFO", help="DEBUG shows tracebacks")
    return p


def collect_inputs(args) -> List:
    """The VideoInputs of the command line (VIDEO..., --video-scp, --dir), with --landmarks attached."""
    from vallr_pin.datadir import read_kv
    from vallr_pin.recognizer import VideoInput

    items: List[VideoInput] = []
    if args.video_scp:
        items += [VideoInput(path, utt) for utt, path in read_kv(args.video_scp).items()]
    if args.dir:
        root = Path(args.dir)
        if not root.is_dir():
            raise ValueError(f"--dir {root}: not a directory")
        for f in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()):
            items.append(VideoInput(str(f), "-".join(f.relative_to(root).with_suffix("").parts)))
    items += [VideoInput(v) for v in args.videos]
    if not items:
        raise ValueError("no videos: give VIDEO files, --video-scp or --dir")
    seen = collections.Counter()
    for it in items:  # unique ids: two clip.mp4 in different folders become clip and clip-2
        seen[it.utt] += 1
        if seen[it.utt] > 1:
            it.utt = f"{it.utt}-{seen[it.utt]}"
    if args.landmarks:
        lms = read_kv(args.landmarks)
        for it in items:
            it.landmarks = lms.get(it.utt)
    return items


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    results_out = sys.stdout
    # stdout carries the JSON lines only: ESPnet and FunASR print notices with print() while importing
    with contextlib.redirect_stdout(sys.stderr):
        return run(args, results_out)


def run(args, results_out) -> int:
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    debug = args.log_level.upper() == "DEBUG"
    from vallr_pin.datadir import atomic_open, write_kv
    from vallr_pin.packing import ModelDirError
    from vallr_pin.recognizer import Recognizer

    try:
        items = collect_inputs(args)
        rec = Recognizer.from_pretrained(args.model, llm_model=args.llm_model, use_llm=False if args.no_llm else None,
                                         device=args.device, detector=args.detector, threads=args.threads)
    except (ModelDirError, OSError, ValueError) as e:
        if debug:
            raise
        print(f"recognize: {e}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    reasons: collections.Counter = collections.Counter()
    texts = {}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(atomic_open(args.output)) if args.output else results_out
        bar = stack.enter_context(tqdm(total=len(items), desc="recognize", unit="video", file=sys.stderr,
                                       disable=args.no_progress, dynamic_ncols=True))
        for start in range(0, len(items), max(1, args.batch)):
            chunk = items[start:start + max(1, args.batch)]
            for res in rec.recognize(chunk, roi_input=args.roi_input, save_roi=args.save_roi):
                out.write(res.to_json() + "\n")
                if res.ok:
                    texts[res.utt] = res.text
                else:
                    reasons[res.failure_code] += 1
                    logging.warning(f"{res.utt} ({res.video}): {res.failure}")
            out.flush()
            bar.update(len(chunk))
    rec.close()
    if args.text_out:
        write_kv(args.text_out, texts)
    n_failed = sum(reasons.values())
    summary = f"recognize: {len(items)} videos, {len(items) - n_failed} recognised, {n_failed} failed"
    if n_failed:
        summary += " (" + ", ".join(f"{code}: {n}" for code, n in sorted(reasons.items())) + ")"
    llm = "with LLM refinement" if rec.llm_model else "without LLM refinement"
    print(f"{summary}; {llm}", file=sys.stderr)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())

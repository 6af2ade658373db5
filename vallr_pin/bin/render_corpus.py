#!/usr/bin/env python3
"""Render a synthetic CNVSRC-like lip-reading corpus from Mandarin sentences (the data of egs/mini_cnvsrc).

SYNTHETIC DATA: the videos are drawn by ``vallr_pin.synth`` (a viseme renderer), not recorded. Results on it
say whether the pipeline works, not how well a model reads real lips.

Layout written under ``--out`` (paths in the lists are relative to ``--out``)::

    <out>/<split>/<spk>/<uttid>.mp4             25 fps, mp4v (MPEG-4 Part 2), square frames of --size px
    <out>/<split>/<spk>/<uttid>.txt             the sentence, UTF-8, one line, as given (punctuation kept;
                                                stage 2 normalises it to Hanzi)
    <out>/<split>/<spk>/<uttid>.landmarks.npy   (T, 5, 2) float32 renderer-known landmarks, SPEC.md order
    <out>/<split>/<spk>/<uttid>.pose.npy        (T, 7) float32 mouth pose the renderer drew in each frame
                                                (vallr_pin.synth.visemes.POSE_FIELDS): the frame targets of
                                                the mini recipe's auxiliary frontend loss
    <out>/<split>/<spk>/<uttid>.visemes.npy     (T,) int64 viseme label per frame (0 silence, k = key k-1 of
                                                vallr_pin.synth.visemes.viseme_key_table()): the renderer's
                                                alignment, for the auxiliary frame classification loss
    <out>/<split>/<spk>/<uttid>.align.npy       (T,) int64 index of the Hanzi spoken in each frame (-1 none):
                                                where training may cut and splice utterances (--splice_prob)
    <out>/<split>.csv                           header ``uttid,spk,video,text,landmarks,pose,visemes,align``; one row per
                                                utterance; file columns are paths relative to <out>
    <out>/speakers.csv                          ``spk,split`` for every speaker
    <out>/lm_text.txt                           with ``--lm-text``: text an LLM may pre-train on (below)
    <out>/ATTRIBUTION.txt                       where the sentences come from and their licence

``split`` is train, dev, test. Speakers are ``spk001`` ... numbered over train, then dev, then test, so the
three splits never share a speaker (test speakers are unseen); sentences are shuffled and cut into disjoint
train/dev/test pools (dev/test get one distinct sentence per utterance when there are enough). Utterance ids
are ``<spk>_<nnnn>`` (speaker-prefixed, as Kaldi wants).

Deterministic: every speaker and utterance is seeded from ``--seed`` and its id, so the output does not depend
on ``--nj``. Idempotent: an utterance whose three files exist is skipped; files are written to temp names and
renamed, so a killed run leaves no half-written video behind.

Sentences with ``--sentences-from hsk`` come from the PyPI package ``hsk-sentences-audio`` (4,354 graded HSK 3.0
sentences; dataset licence CC-BY-SA-4.0, https://github.com/no7z/hsk-sentences-audio; retain the attribution
when redistributing the text).

``--lm-text`` also writes ``lm_text.txt``: every source sentence (all HSK levels with ``--sentences-from hsk``,
not only those up to ``--hsk-max-level``, and of any length) that the corpus never speaks: neither a sentence of
any split nor a near copy of one (same Hanzi, or one containing the other when the shorter has 4 or more Hanzi).
It stands in for the general text a real LLM was pre-trained on. Never the evaluation sentences, and by default
not the training transcripts either: Qwen3 has not memorised CNVSRC's transcripts, and a tiny LLM that has
memorised its training sentences learns from their N-best to *recall* a known sentence, which fails on every
unseen test sentence (measured: egs/mini_cnvsrc/vsr1/RESULTS.md). ``--lm-text-with-train`` keeps the training
sentences in (only dev/test and their near copies are excluded).

Example::

    python -m vallr_pin.bin.render_corpus --out downloads/mini_cnvsrc --sentences-from hsk \\
        --num-train-speakers 24 --num-dev-speakers 3 --num-test-speakers 3 --utts-per-speaker 50 --nj 2
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import multiprocessing as mp
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open
from vallr_pin.text.held_out import lm_text_sentences

SPLITS = ("train", "dev", "test")
HSK_ATTRIBUTION = (
    "Sentences: hsk-sentences-audio 1.0.0 (PyPI), 4,354 HSK 3.0 graded Chinese sentences by the "
    "hsk-sentences-audio contributors, https://github.com/no7z/hsk-sentences-audio ; dataset licence "
    "CC-BY-SA-4.0 (https://creativecommons.org/licenses/by-sa/4.0/). The sentence texts are redistributed "
    "unchanged in the .txt files; the videos are synthetic renderings by vallr_pin.synth."
)


@dataclass(frozen=True)
class Job:
    split: str
    spk: str
    spk_index: int
    uttid: str
    text: str


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="output root of the raw corpus layout")
    p.add_argument("--sentences-from", choices=["hsk", "file"], default=None,
                   help="hsk: the hsk-sentences-audio package; file: --sentences-file "
                        "(default: file when --sentences-file is given, else hsk)")
    p.add_argument("--sentences-file", type=Path, default=None,
                   help="UTF-8 text file, one sentence a line (used with --sentences-from file, or alone)")
    p.add_argument("--hsk-max-level", type=int, default=None,
                   help="with --sentences-from hsk, keep sentences of HSK level <= this (default: all levels)")
    p.add_argument("--num-train-speakers", type=int, default=24, help="speakers in train (default: 24)")
    p.add_argument("--num-dev-speakers", type=int, default=3, help="speakers in dev, unseen in train (default: 3)")
    p.add_argument("--num-test-speakers", type=int, default=3,
                   help="speakers in test, unseen in train and dev (default: 3)")
    p.add_argument("--utts-per-speaker", type=int, default=50,
                   help="utterances per speaker when no --num-*-utts total is given (default: 50)")
    for split in SPLITS:
        p.add_argument(f"--num-{split}-utts", type=int, default=None,
                       help=f"total {split} utterances, spread evenly over its speakers "
                            f"(overrides --utts-per-speaker for {split})")
    p.add_argument("--generated-train-sentences", type=int, default=0,
                   help="add this many new training sentences recombined from the words of the training "
                        "sentences (word-bigram walks; vallr_pin/synth/sentence_mix.py), so that the training "
                        "split has more distinct sentences than the source; dev/test are unaffected (default: 0)")
    p.add_argument("--extra-train-sentences", type=int, default=0,
                   help="with --sentences-from hsk and --hsk-max-level: add up to this many real sentences of the "
                        "higher HSK levels to the training split only (seeded draw; none that is a near copy of "
                        "a dev/test sentence). dev/test stay drawn from levels <= --hsk-max-level, unchanged; the "
                        "sentences drawn leave lm_text.txt like every spoken one (default: 0)")
    p.add_argument("--min-chars", type=int, default=2, help="drop sentences with fewer Hanzi (default: 2)")
    p.add_argument("--max-chars", type=int, default=20, help="drop sentences with more Hanzi (default: 20)")
    p.add_argument("--size", type=int, default=160, help="frame side in pixels, square frames (default: 160)")
    p.add_argument("--lm-text", action="store_true",
                   help="also write <out>/lm_text.txt: all source sentences the corpus does not speak, nor near "
                        "copies of them")
    p.add_argument("--lm-text-with-train", action="store_true",
                   help="lm_text.txt keeps the training sentences (only dev/test and near copies excluded)")
    p.add_argument("--lm-text-only", action="store_true",
                   help="write lm_text.txt (implies --lm-text) and stop before rendering: the corpus plan is "
                        "deterministic, so an LLM can be built from it while the videos render")
    p.add_argument("--seed", type=int, default=0, help="corpus seed: speakers, splits, timing, noise (default: 0)")
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar (e.g. in CI logs)")
    add_log_level(p)
    return p


# -- sentences ---------------------------------------------------------------------------------------------
def load_hsk_sentences(max_level: Optional[int] = None, min_level: Optional[int] = None) -> List[str]:
    """The ``chinese`` field of every hsk-sentences-audio record (CC-BY-SA-4.0; see HSK_ATTRIBUTION) of HSK level
    ``min_level`` to ``max_level`` (either bound optional)."""
    try:
        import hsk_sentences_audio
    except ImportError as e:
        raise ValueError("--sentences-from hsk needs the PyPI package hsk-sentences-audio "
                         "(pip install hsk-sentences-audio==1.0.0), or use --sentences-file") from e
    return [r["chinese"] for r in hsk_sentences_audio.load_sentences()
            if (max_level is None or int(r["hsk_level"]) <= max_level)
            and (min_level is None or int(r["hsk_level"]) >= min_level)]


def load_hsk_words() -> Dict[str, List[str]]:
    """sentence -> its words, as hsk-sentences-audio segments them (``tokens[].word``)."""
    import hsk_sentences_audio

    return {r["chinese"]: [t["word"] for t in r.get("tokens") or []] for r in hsk_sentences_audio.load_sentences()}


def load_sentence_file(path: Path) -> List[str]:
    """One sentence per non-empty line of a UTF-8 file."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: --sentences-file not found; give a UTF-8 file with one sentence a "
                                "line, or --sentences-from hsk") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e}); convert it with iconv -f GBK -t UTF-8") from None


def filter_sentences(sentences: Sequence[str], min_chars: int, max_chars: int) -> Tuple[List[str], Dict[str, int]]:
    """Unique renderable sentences with ``min_chars <= #Hanzi <= max_chars``, first occurrence order; and
    counts of what was dropped."""
    from vallr_pin.synth.visemes import text_to_syllables

    seen, out = set(), []
    dropped = {"duplicate": 0, "unrenderable": 0, "too_short": 0, "too_long": 0}
    for s in sentences:
        s = "".join(s.split())  # spaces carry nothing visible; keep transcripts compact
        if s in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(s)
        try:
            n = sum(1 for u in text_to_syllables(s) if u is not None)
        except ValueError:
            dropped["unrenderable"] += 1
            continue
        if n < min_chars:
            dropped["too_short"] += 1
        elif n > max_chars:
            dropped["too_long"] += 1
        else:
            out.append(s)
    return out, dropped


def plan_corpus(sentences: Sequence[str], n_spk: Dict[str, int], n_utts: Dict[str, int], seed: int,
                generated: int = 0, words_of: Optional[Dict[str, Sequence[str]]] = None, min_chars: int = 2,
                max_chars: int = 20, extra_train: Sequence[str] = (), num_extra_train: int = 0) -> List[Job]:
    """Assign speakers and sentences to splits (both disjoint across splits) and list the utterances.

    ``n_spk[split]`` speakers share ``n_utts[split]`` utterances evenly (the first speakers get one more when it
    does not divide). dev and test take ``min(n_utts, 10%)`` distinct sentences each from a seeded shuffle,
    train the rest; within a split the pool is cycled, so sentences repeat only when a split has more
    utterances than sentences.

    ``generated > 0`` adds that many sentences recombined from the words of the train pool
    (:func:`vallr_pin.synth.sentence_mix.recombine_sentences`; ``words_of`` maps a sentence to its words, else
    its characters are the words) to the train pool only, shuffled in with the real ones; the dev/test pools
    are the same as without them, and no generated sentence is a near copy of one of theirs.

    ``num_extra_train > 0`` draws that many real sentences (seeded) from ``extra_train`` (e.g. higher HSK levels)
    into the train pool, before the generated ones are made from it: the dev/test pools are the same as without
    them, and none is a near copy of a dev/test sentence (:class:`vallr_pin.text.held_out.HeldOutSentences`)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1301]))
    order = [sentences[i] for i in rng.permutation(len(sentences))]
    n = len(order)
    pools: Dict[str, List[str]] = {}
    start = 0
    for split in ("test", "dev"):
        if n_utts[split] > 0:
            k = max(1, min(n_utts[split], n // 10))
            pools[split] = order[start:start + k]
            start += k
    pools["train"] = order[start:]
    if num_extra_train > 0:
        from vallr_pin.text.held_out import HeldOutSentences

        from vallr_pin.text.normalize import normalize_text

        held = HeldOutSentences(pools.get("dev", []) + pools.get("test", []))
        have = set(sentences)
        cand = [s for s in dict.fromkeys(extra_train) if s not in have]
        xrng = np.random.default_rng(np.random.SeedSequence([int(seed), 1307]))
        picked = []
        for i in xrng.permutation(len(cand)):  # near copies are skipped in draw order (HeldOutSentences compares
            if len(picked) == num_extra_train:  # normalised text: "好久不见。" goes with "好久不见你去哪儿了")
                break
            if not held.leaks(normalize_text(cand[i])):
                picked.append(cand[i])
        if len(picked) < num_extra_train:
            logging.warning("only %d of %d extra real training sentences available", len(picked), num_extra_train)
        pools["train"] = pools["train"] + picked
        sentences = list(sentences) + picked  # generated sentences must not copy them either
    if generated > 0:
        from vallr_pin.synth.sentence_mix import recombine_sentences

        words_of = words_of or {}
        extra = recombine_sentences(
            [words_of.get(s) or list(s) for s in pools["train"]], generated,
            np.random.default_rng(np.random.SeedSequence([int(seed), 1303])), min_chars=max(min_chars, 2),
            max_chars=max_chars, held_out=pools.get("dev", []) + pools.get("test", []), existing=sentences)
        if len(extra) < generated:
            logging.warning("only %d of %d generated training sentences could be made", len(extra), generated)
        pools["train"] = pools["train"] + extra
    if generated > 0 or num_extra_train > 0:  # shuffled in: a train split smaller than its pool speaks them too
        pools["train"] = [pools["train"][i] for i in rng.permutation(len(pools["train"]))]
    for split in SPLITS:
        if n_utts[split] > 0 and not pools.get(split):
            raise ValueError(f"not enough sentences ({n}) for disjoint train/dev/test pools; give more sentences "
                             "or relax --min-chars/--max-chars")
    jobs: List[Job] = []
    spk_index = 0
    for split in SPLITS:
        ns, nu = n_spk[split], n_utts[split]
        if nu > 0 and ns <= 0:
            raise ValueError(f"{nu} {split} utterances requested but --num-{split}-speakers is {ns}")
        pool = pools.get(split, [])
        cursor = 0
        for j in range(ns):
            spk_index += 1
            spk = f"spk{spk_index:03d}"
            count = nu // ns + (1 if j < nu % ns else 0)
            for k in range(count):
                jobs.append(Job(split, spk, spk_index, f"{spk}_{k:04d}", pool[cursor % len(pool)]))
                cursor += 1
    return jobs


# -- rendering ---------------------------------------------------------------------------------------------
def _paths(out: Path, job: Job) -> Dict[str, Path]:
    d = out / job.split / job.spk
    return {"video": d / f"{job.uttid}.mp4", "text": d / f"{job.uttid}.txt",
            "landmarks": d / f"{job.uttid}.landmarks.npy", "pose": d / f"{job.uttid}.pose.npy",
            "visemes": d / f"{job.uttid}.visemes.npy", "align": d / f"{job.uttid}.align.npy"}


def is_complete(out: Path, job: Job) -> bool:
    """All its files exist, and the transcript is this job's (a re-plan with other options redoes it)."""
    p = _paths(out, job)
    if not all(q.exists() and q.stat().st_size > 0 for q in p.values()):
        return False
    return p["text"].read_text(encoding="utf-8").strip() == job.text


_WORKER: Dict[str, object] = {}


def _init_worker(out: str, seed: int, size: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only oversubscribe
    _WORKER.update(out=Path(out), seed=seed, size=size)


def render_job(job: Job) -> Tuple[str, int]:
    """Render and write one utterance; returns (uttid, number of frames)."""
    from vallr_pin.synth.render import render_text, write_landmarks, write_mp4
    from vallr_pin.synth.speakers import sample_speaker
    from vallr_pin.synth.visemes import frame_syllable_index, frame_viseme_labels

    out, seed, size = _WORKER["out"], int(_WORKER["seed"]), int(_WORKER["size"])
    spk = sample_speaker(seed, job.spk_index, job.spk)
    try:
        r = render_text(job.text, spk, seed=seed, key=job.uttid, size=size)
    except ValueError as e:
        raise RuntimeError(f"utterance {job.uttid} ('{job.text}'): {e}") from e
    p = _paths(out, job)
    write_landmarks(p["landmarks"], r.landmarks)
    with atomic_open(p["pose"], "wb") as f:
        np.save(f, np.asarray(r.poses, np.float32))
    with atomic_open(p["visemes"], "wb") as f:
        np.save(f, frame_viseme_labels(r.units, r.timing)[: len(r.frames)])
    with atomic_open(p["align"], "wb") as f:
        np.save(f, frame_syllable_index(r.units, r.timing)[: len(r.frames)])
    write_mp4(p["video"], r.frames)
    with atomic_open(p["text"]) as f:  # last: its presence with the right sentence marks the utt complete
        f.write(job.text + "\n")
    return job.uttid, len(r.frames)


def write_lists(out: Path, jobs: Sequence[Job]) -> None:
    for split in SPLITS:
        rows = sorted((j for j in jobs if j.split == split), key=lambda j: j.uttid)
        if not rows:
            continue
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["uttid", "spk", "video", "text", "landmarks", "pose", "visemes", "align"])
        for j in rows:
            p = _paths(out, j)
            w.writerow([j.uttid, j.spk] + [p[k].relative_to(out).as_posix()
                                           for k in ("video", "text", "landmarks", "pose", "visemes", "align")])
        with atomic_open(out / f"{split}.csv") as f:
            f.write(buf.getvalue())
    spk_rows = sorted({(j.spk, j.split) for j in jobs})
    with atomic_open(out / "speakers.csv") as f:
        f.write("spk,split\n" + "".join(f"{s},{sp}\n" for s, sp in spk_rows))


def write_lm_text(args: argparse.Namespace, raw: Sequence[str], jobs: Sequence[Job]) -> None:
    """``<out>/lm_text.txt`` (module docstring); rewritten only when its content changes, so a background reader
    (local/data.sh builds the tiny LLM from it while the videos render) never sees it replaced."""
    source = load_hsk_sentences(None) if args.sentences_from == "hsk" else raw
    held_out = sorted({j.text for j in jobs if j.split != "train" or not args.lm_text_with_train})
    lm = lm_text_sentences(source, held_out)
    text = "".join(f"{t}\n" for t in lm)
    path = args.out / "lm_text.txt"
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        with atomic_open(path) as f:
            f.write(text)
    logging.info("wrote %s: %d sentences (%d source sentences, %d held-out %s sentences and their near copies "
                 "excluded)", path, len(lm), len(source), len(held_out),
                 "dev/test" if args.lm_text_with_train else "corpus")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        render(args)


def render(args: argparse.Namespace) -> None:
    """Everything :func:`main` does once the arguments are parsed."""
    if args.sentences_from is None:
        args.sentences_from = "file" if args.sentences_file is not None else "hsk"
    if args.sentences_from == "file":
        if args.sentences_file is None:
            raise ValueError("--sentences-from file needs --sentences-file")
        raw = load_sentence_file(args.sentences_file)
        attribution = f"Sentences: {args.sentences_file} (user-provided)."
    else:
        raw = load_hsk_sentences(args.hsk_max_level)
        attribution = HSK_ATTRIBUTION
        print(HSK_ATTRIBUTION, flush=True)
    sentences, dropped = filter_sentences(raw, args.min_chars, args.max_chars)
    logging.info("%d sentences read, %d kept (dropped: %s)", len(raw), len(sentences), dropped)
    if not sentences:
        source = args.sentences_file if args.sentences_from == "file" else "hsk-sentences-audio"
        raise ValueError(f"{source}: none of its {len(raw)} sentences can be rendered (dropped: {dropped}); give "
                         f"Mandarin sentences in Hanzi with {args.min_chars} to {args.max_chars} characters")
    n_spk = {"train": args.num_train_speakers, "dev": args.num_dev_speakers, "test": args.num_test_speakers}
    n_utts = {s: (getattr(args, f"num_{s}_utts") if getattr(args, f"num_{s}_utts") is not None
                  else n_spk[s] * args.utts_per_speaker) for s in SPLITS}
    extra: List[str] = []
    if args.extra_train_sentences > 0:
        if args.sentences_from != "hsk" or args.hsk_max_level is None:
            raise ValueError("--extra-train-sentences draws from the HSK levels above --hsk-max-level: it needs "
                             "--sentences-from hsk and --hsk-max-level")
        extra, _ = filter_sentences(load_hsk_sentences(min_level=args.hsk_max_level + 1), args.min_chars,
                                    args.max_chars)
    jobs = plan_corpus(sentences, n_spk, n_utts, args.seed, generated=args.generated_train_sentences,
                       words_of=load_hsk_words() if args.sentences_from == "hsk" and args.generated_train_sentences
                       else None, min_chars=args.min_chars, max_chars=args.max_chars,
                       extra_train=extra, num_extra_train=args.extra_train_sentences)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.lm_text or args.lm_text_only:
        write_lm_text(args, raw, jobs)
    if args.lm_text_only:
        return
    todo = [j for j in jobs if not is_complete(args.out, j)]
    logging.info("%d utterances planned (%s), %d to render, %d already complete", len(jobs),
                 ", ".join(f"{s} {sum(j.split == s for j in jobs)}" for s in SPLITS), len(todo),
                 len(jobs) - len(todo))
    t0, frames = time.time(), 0
    bar = tqdm(total=len(todo), desc="render", unit="utt", disable=args.no_progress)
    if args.nj <= 1:
        _init_worker(str(args.out), args.seed, args.size)
        for j in todo:
            frames += render_job(j)[1]
            bar.update()
    else:
        ctx = mp.get_context("spawn")  # fork would copy mediapipe/torch state of an importing parent
        with ctx.Pool(args.nj, initializer=_init_worker, initargs=(str(args.out), args.seed, args.size)) as pool:
            for _, t in pool.imap_unordered(render_job, todo, chunksize=4):
                frames += t
                bar.update()
    bar.close()
    dt = max(time.time() - t0, 1e-9)
    if todo:
        logging.info("rendered %d utterances, %d frames in %.1f s (%.0f frames/s with nj=%d)", len(todo), frames,
                     dt, frames / dt, args.nj)
    write_lists(args.out, jobs)
    with atomic_open(args.out / "ATTRIBUTION.txt") as f:
        f.write(attribution + "\n")
    logging.info("wrote %s/{train,dev,test}.csv", args.out)


if __name__ == "__main__":
    main()

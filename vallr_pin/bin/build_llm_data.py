#!/usr/bin/env python3
"""Stage 7: build LLM instruction data (predicted pinyin + N-best -> reference) in ms-swift ``messages`` JSONL.

Paper section II.C.2: the training set is decoded by VSR checkpoints from early, middle and late training (stage
6); their hypotheses have different error rates, which diversifies the errors the LLM learns to correct. Each
input ``nbest.jsonl`` is tagged by its checkpoint (``early=path``), and every sample records ``utt`` and ``ckpt``.

Written to ``--out-dir`` (atomically): ``train.jsonl``, ``dev.jsonl`` (ms-swift rows
``{"messages": [system, user, assistant], "utt": ..., "ckpt": ...}``) and ``stats.json``.

- Samples whose 1-best is already right are kept (the LLM must learn to leave a correct sentence alone); their
  share is reported.
- Identical prompts (same system+user text, e.g. the mid and late checkpoints giving the same N-best for an
  utterance) are kept once; the count is reported, and so are "conflicts" (same prompt, different reference).
- ``--context data/<set>/context ...``: context-aware prompts (the same option of ``llm_refine``); every utterance
  must have a line unless ``--context-optional``.
- An input may also be another recogniser's ESPnet decode directory (``{k}best_recog/text``); without pinyin the
  prompt's pinyin is derived from the 1-best (``--pinyin-from``, ``vallr_pin.llm.nbest``).
- ``--noise-text lm_text.txt --noise-ratio R``: error-noise augmentation (``vallr_pin.llm.noise``): besides the
  real samples, R times as many synthetic ones (training split only), made by corrupting sentences of the text
  with the S/D/I rates, substitution kinds (homophone / same viseme / other), rank structure and pinyin errors
  measured on the ``--nbest`` lists themselves; both profiles (measured, and measured again on the synthetic
  lists) go into ``stats.json`` under ``noise``. Sentences of the dev split, of ``--noise-exclude`` files
  (``data/<dev,test>/text``) and near copies of them (``--noise-min-overlap`` Hanzi) never become samples;
  only sentences as long as the measured references are used. ``--noise-seed`` makes it reproducible.
- Every row also carries ``onebest`` (the first candidate), which GRPO's reward reads (``llm_sft --rlhf grpo``).
- The dev split comes from ``--dev-nbest`` (e.g. the dev set decoded by the late checkpoint) or, without it, from
  a stable hash of the utterance id (``--dev-fraction``), so that all checkpoints of an utterance land on the
  same side.

Example:
    python -m vallr_pin.bin.build_llm_data --out-dir exp/llm_data \\
        --nbest early=exp/vsr/nbest_train_early/nbest.jsonl mid=... late=... \\
        --dev-nbest late=exp/vsr/decode_beam5_late/dev/nbest.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv
from vallr_pin.llm.nbest import PINYIN_FROM, NbestEntry, attach_context, read_nbest
from vallr_pin.llm.prompt import build_messages, load_template
from vallr_pin.scoring.cer import score_corpus



def parse_tagged(spec: str) -> Tuple[str, str]:
    """``early=path/nbest.jsonl`` -> ("early", path); a bare path is tagged by its parent directory name."""
    if "=" in spec and not Path(spec).exists():
        tag, path = spec.split("=", 1)
        return tag, path
    return Path(spec).parent.name or "nbest", spec


def in_dev(utt: str, fraction: float) -> bool:
    """Stable pseudo-random split by utterance id (md5, not Python's salted hash)."""
    h = int(hashlib.md5(utt.encode("utf-8")).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def attach_refs(entries: List[NbestEntry], path: str, refs: Optional[Dict[str, str]], text_path: Optional[str]):
    """Fill ``ref`` from ``--text`` where given (it wins over the JSONL); error naming file and utt if absent."""
    for e in entries:
        if refs is not None and e.utt in refs:
            e.ref = "".join(refs[e.utt].split())
        if e.ref is None:
            raise ValueError(
                f"{path}: utterance '{e.utt}' has no 'ref' and "
                + (f"{text_path} does not list it" if text_path else "no --text was given")
                + "; pass the reference transcripts with --text data/<set>/text")


def build_split(
    tagged: Sequence[Tuple[str, List[NbestEntry]]], lang: str, template, max_candidates: Optional[int]
) -> Tuple[List[dict], dict]:
    """Rows for one split (in input order, duplicates removed) and their statistics."""
    rows: List[dict] = []
    seen: Dict[str, str] = {}  # prompt key -> reference of the kept sample
    stats = {"per_ckpt": {}, "n_in": 0, "n_duplicate": 0, "n_conflict": 0, "n_skipped_empty": 0}
    for tag, entries in tagged:
        refs = {e.utt: e.ref for e in entries if e.ref}
        hyps = {e.utt: e.onebest for e in entries if e.ref}
        score = score_corpus(refs, hyps) if refs else None
        n_correct = sum(1 for e in entries if e.ref and e.onebest == e.ref)
        stats["per_ckpt"][tag] = {
            "n_utts": len(entries),
            "cer_1best": round(score.cer, 2) if score else None,
            "share_1best_correct": round(100.0 * n_correct / max(1, len(refs)), 2),
        }
        for e in entries:
            stats["n_in"] += 1
            if not e.ref or not e.texts:
                stats["n_skipped_empty"] += 1
                continue
            messages = build_messages(e.pinyin, e.texts, e.ref, lang=lang, template=template,
                                      max_candidates=max_candidates, context=e.context)
            key = json.dumps(messages[:-1], ensure_ascii=False)
            if key in seen:
                stats["n_duplicate"] += 1
                stats["n_conflict"] += int(seen[key] != e.ref)
                continue
            seen[key] = e.ref
            rows.append({"messages": messages, "utt": e.utt, "ckpt": tag, "onebest": e.onebest,
                         "onebest_correct": e.onebest == e.ref})
    n_ok = sum(r["onebest_correct"] for r in rows)
    stats["n_out"] = len(rows)
    stats["share_1best_correct"] = round(100.0 * n_ok / max(1, len(rows)), 2)
    return rows, stats


def build_noise_rows(args, train_in, dev_in, train_rows: List[dict], template, max_cands: Optional[int]
                     ) -> Tuple[List[dict], dict]:
    """Synthetic training rows from ``--noise-text`` (module docstring) and their statistics."""
    import random

    from vallr_pin.llm.noise import NoiseMaker, measure
    from vallr_pin.text.held_out import HeldOutSentences
    from vallr_pin.text.normalize import read_sentences

    if args.noise_ratio <= 0:
        raise ValueError(f"--noise-ratio {args.noise_ratio}: must be > 0 (leave out --noise-text for none)")
    real = [e for _, es in train_in for e in es]
    profile, records = measure(real)
    if not records:
        raise ValueError(f"--noise-text needs references in the training N-best ({args.nbest}) to measure "
                         "the errors on; pass --text data/<train>/text")
    excluded = [e.ref for _, es in dev_in for e in es if e.ref]
    for path in args.noise_exclude:
        excluded += list(read_kv(path).values())
    held = HeldOutSentences(excluded, args.noise_min_overlap)
    lengths = [r.n_ref for r in records]
    lo, hi = min(lengths), max(lengths)
    counts = {"read": 0, "duplicate": 0, "held_out": 0, "length": 0}
    pool, seen = [], set()
    for t in read_sentences(args.noise_text, kaldi=args.noise_text_format == "kaldi"):
        counts["read"] += 1
        if t in seen:
            counts["duplicate"] += 1
        elif not lo <= len(t) <= hi:  # the cheap test first: leaks() is quadratic in the line's length
            counts["length"] += 1
        elif held.leaks(t):
            counts["held_out"] += 1
        else:
            pool.append(t)
        seen.add(t)
    if not pool:
        raise ValueError(f"{','.join(args.noise_text)}: no sentence left for synthetic samples ({counts}: "
                         f"sentences must be {lo}-{hi} Hanzi long, the measured references' range, and not "
                         "held out)")
    random.Random(args.noise_seed).shuffle(pool)
    n_target = round(args.noise_ratio * len(train_rows))
    if n_target == 0:
        raise ValueError(f"--noise-ratio {args.noise_ratio} x {len(train_rows)} training rows rounds to no "
                         "synthetic sample; raise it or leave out --noise-text")
    # substitutes come from the characters of the sentences used and of the recogniser's hypotheses (not the
    # whole text: a corpus-sized file would cost a pinyin look-up per line)
    maker = NoiseMaker(profile, records, pool[:n_target] + [t for e in real for t in e.texts], seed=args.noise_seed)
    # calibrated on as many lists as will be made (at least 500, at most 2000: ~1 s per 100 lists and round)
    maker.calibrate(pool, rounds=args.noise_calibration_rounds, sample=min(2000, max(500, n_target)))
    maker.fallbacks.clear()  # count only the lists written, not the calibration's draws
    synthetic = [maker.entry(f"noise-{n:06d}", pool[n % len(pool)]) for n in range(n_target)]
    # never a held-out sentence, whatever the code above does
    leaked = [e.ref for e in synthetic if held.leaks(e.ref)]
    if leaked:  # not an assert: it must hold under python -O too
        raise RuntimeError(f"noise augmentation would train on {len(leaked)} held-out sentence(s), e.g. "
                           f"'{leaked[0]}'; this is a bug, please report it")
    rows, stats = build_split([("noise", synthetic)], args.lang, template, max_cands)
    real_prompts = {json.dumps(r["messages"][:-1], ensure_ascii=False) for r in train_rows}
    kept = [r for r in rows if json.dumps(r["messages"][:-1], ensure_ascii=False) not in real_prompts]
    synthetic_profile, _ = measure(synthetic)
    noise = {"text": args.noise_text, "ratio": args.noise_ratio, "seed": args.noise_seed,
             "sentences": {**counts, "used": len(pool), "excluded_sentences": len(held),
                           "length_range": [lo, hi], "reused": max(0, n_target - len(pool))},
             "n_rows": len(kept), "n_same_as_real": len(rows) - len(kept), "n_duplicate": stats["n_duplicate"],
             "substitute_fallbacks": dict(maker.fallbacks), "measured": profile, "synthetic": synthetic_profile}
    logging.info("noise: %d synthetic samples from %d sentences of %s (%d read; dropped %d duplicate, %d held out, "
                 "%d outside %d-%d Hanzi); 1-best CER %.1f%% measured, %.1f%% synthetic", len(kept), len(pool),
                 ",".join(args.noise_text), counts["read"], counts["duplicate"], counts["held_out"], counts["length"],
                 lo, hi, 100 * profile["vs_reference"][0]["cer"], 100 * synthetic_profile["vs_reference"][0]["cer"])
    return kept, noise


def write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with atomic_open(path) as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if k != "onebest_correct"}, ensure_ascii=False) + "\n")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nbest", "--train", dest="nbest", nargs="+", required=True,
                   help="training-set N-best JSONL files, each TAG=PATH (tag = checkpoint, e.g. early=...); "
                        "a bare PATH is tagged by its directory name")
    p.add_argument("--dev-nbest", "--dev", dest="dev_nbest", nargs="*", default=[],
                   help="N-best JSONL files for the dev split (TAG=PATH); without them --dev-fraction of the "
                        "training utterances is held out")
    p.add_argument("--dev-fraction", type=float, default=0.05,
                   help="share of training utterances held out as dev when no --dev-nbest is given")
    p.add_argument("--text", nargs="*", default=[],
                   help="Kaldi text files with references (fill or override the JSONL 'ref' field)")
    p.add_argument("--out-dir", required=True, help="output directory (train.jsonl, dev.jsonl, stats.json)")
    p.add_argument("--lang", default="zh", choices=["zh", "en"], help="language of the built-in prompt")
    p.add_argument("--prompt-template", default=None,
                   help="prompt template file (.txt user text, or .yaml/.json with system/user) with "
                        "{pinyin} and {candidates}; default: the built-in one for --lang")
    p.add_argument("--max-candidates", type=int, default=5, help="N-best hypotheses shown in the prompt (0: all)")
    p.add_argument("--context", nargs="*", default=[],
                   help="data/<set>/context files ('<utt> <text>'): context shown before the task (as llm_refine)")
    p.add_argument("--context-optional", action="store_true",
                   help="utterances missing from --context get no context (default: an error naming them)")
    p.add_argument("--pinyin-from", default="auto", choices=list(PINYIN_FROM),
                   help="prompt pinyin: the input's (nbest), derived from the 1-best (hypothesis), or auto "
                        "(derived when an input has none at all: a recogniser without a pinyin branch)")
    g = p.add_argument_group("error-noise augmentation (synthetic N-best lists from extra text)")
    g.add_argument("--noise-text", nargs="*", default=[],
                   help="text files (one sentence a line; Kaldi '<utt> <text>' with --noise-text-format kaldi) "
                        "to make synthetic training samples from; e.g. the mini recipe's lm_text.txt")
    g.add_argument("--noise-text-format", default="plain", choices=["plain", "kaldi"],
                   help="plain: a sentence per line; kaldi: '<utt> <text>' lines")
    g.add_argument("--noise-ratio", type=float, default=1.0,
                   help="synthetic samples per real training sample (0.5: half as many)")
    g.add_argument("--noise-exclude", nargs="*", default=[],
                   help="Kaldi text files (data/<dev,test>/text) whose sentences, and near copies, never become "
                        "synthetic samples (the dev split's references are always excluded)")
    g.add_argument("--noise-min-overlap", type=int, default=4,
                   help="a text sentence containing, or contained in, an excluded one of this many Hanzi or "
                        "more is excluded too (0: only identical sentences)")
    g.add_argument("--noise-seed", type=int, default=0, help="seed of every random draw of the augmentation")
    g.add_argument("--noise-calibration-rounds", type=int, default=2,
                   help="rounds correcting the drawing shares until the synthetic lists measure as the real "
                        "ones (vallr_pin.llm.noise.NoiseMaker.calibrate; 0: none)")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        return run(args)


def run(args: argparse.Namespace) -> dict:
    template = load_template(args.prompt_template, args.lang)
    refs: Optional[Dict[str, str]] = None
    for t in args.text:
        refs = {**(refs or {}), **read_kv(t)}
    text_path = ",".join(args.text) or None
    contexts: Optional[Dict[str, str]] = None
    for c in args.context:
        contexts = {**(contexts or {}), **read_kv(c)}

    def load(specs):
        out = []
        for spec in specs:
            tag, path = parse_tagged(spec)
            entries = read_nbest(path, args.pinyin_from)
            attach_refs(entries, path, refs, text_path)
            if contexts is not None:
                attach_context(entries, contexts, ",".join(args.context), args.context_optional)
            logging.info("%s: %d utterances from %s", tag, len(entries), path)
            out.append((tag, entries))
        return out

    train_in = load(args.nbest)
    if args.dev_nbest:
        dev_in = load(args.dev_nbest)
        dev_utts = {e.utt for _, es in dev_in for e in es}
        overlap = dev_utts & {e.utt for _, es in train_in for e in es}
        if overlap:
            raise ValueError(f"{len(overlap)} utterance(s) are both in --nbest and --dev-nbest, e.g. "
                             f"'{sorted(overlap)[0]}'; the dev split must be disjoint from training")
    else:
        dev_in = [(tag, [e for e in es if in_dev(e.utt, args.dev_fraction)]) for tag, es in train_in]
        train_in = [(tag, [e for e in es if not in_dev(e.utt, args.dev_fraction)]) for tag, es in train_in]
    max_cands = args.max_candidates or None
    train_rows, train_stats = build_split(train_in, args.lang, template, max_cands)
    dev_rows, dev_stats = build_split(dev_in, args.lang, template, max_cands)
    if not train_rows:
        raise ValueError(f"no training samples built from {args.nbest}; check that the files hold utterances")
    noise_stats = None
    if args.noise_text:
        noise_rows, noise_stats = build_noise_rows(args, train_in, dev_in, train_rows, template, max_cands)
        train_rows += noise_rows
    out_dir = Path(args.out_dir)
    write_jsonl(out_dir / "train.jsonl", train_rows)
    write_jsonl(out_dir / "dev.jsonl", dev_rows)
    stats = {"train": train_stats, "dev": dev_stats, "lang": args.lang, "max_candidates": max_cands,
             "prompt_template": args.prompt_template, "context": args.context or None, "noise": noise_stats}
    with atomic_open(out_dir / "stats.json") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)
    for split, st in (("train", train_stats), ("dev", dev_stats)):
        for tag, c in st["per_ckpt"].items():
            logging.info("%s/%s: %d utts, 1-best CER %s%%, 1-best correct %.1f%%", split, tag, c["n_utts"],
                         c["cer_1best"], c["share_1best_correct"])
        logging.info("%s: %d samples written (%d duplicate prompts dropped, %d of them with a different "
                     "reference; %d empty skipped); 1-best already correct in %.1f%%", split, st["n_out"],
                     st["n_duplicate"], st["n_conflict"], st["n_skipped_empty"], st["share_1best_correct"])
    return stats


if __name__ == "__main__":
    main()

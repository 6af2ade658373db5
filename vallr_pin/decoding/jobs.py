"""Stage 5/6 decoding jobs: one job decodes a key split of a set's feats.scp into ESPnet's N-best layout.

A job writes, into its output directory, ``{k}best_recog/{text,score,token}`` (k = 1..nbest), ``text``
(= 1best), ``pinyin`` and ``nbest.jsonl`` (SPEC.md), each file atomically, then a ``.done`` marker describing
what was decoded. Re-running a job whose marker matches the request does nothing, so after a crash or a killed
job only the unfinished jobs run again. :func:`merge_jobs` joins the jobs into the set's decode directory.

A decode list (:func:`read_decode_list`) runs several such jobs in one process: each line of the file holds the
options of one job, shell-quoted, on top of the command line's. On a CPU, importing ESPnet + FunASR costs 15-20 s
per process, more than decoding a mini set takes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.decoding.search import Recognition, VideoToText

DONE = ".done"


class DecodeListError(ValueError):
    """A decode list or a job's options are unusable; the message names the file and line."""


def signature(args: argparse.Namespace) -> Dict:
    """What a finished job decoded; a re-run is skipped only when this is unchanged."""
    def file_id(path: Optional[str]):
        # By content, not mtime: re-running stage 4 re-writes the same averaged model, and that must not
        # make stages 5/6 decode everything again.
        if path is None:
            return None
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return [str(path), os.stat(path).st_size, h.hexdigest()]

    keys_digest = None
    if args.key_file:
        keys_digest = hashlib.sha1(Path(args.key_file).read_bytes()).hexdigest()
    opts = {k: getattr(args, k) for k in (
        "beam_size", "ctc_weight", "penalty", "maxlenratio", "minlenratio", "nbest", "beam_search_impl",
        "pinyin_decode_mode", "pinyin_beam_size", "pinyin_ctc_weight", "normalize_length",
        "pinyin_rescore_weight")}
    # options added later enter the signature only when not at their defaults: a decode from before they
    # existed keeps its signature (nothing decodes again)
    if args.pinyin_search_weight:
        opts.update(pinyin_search_weight=args.pinyin_search_weight)
    if args.pre_beam_ratio != 1.5:
        opts.update(pre_beam_ratio=args.pre_beam_ratio)
    if args.lm_weight:  # the LM's files, by content, like the model's (no LM: the signature of before it existed)
        opts.update(lm_weight=args.lm_weight, lm_train_config=file_id(args.lm_train_config),
                    lm_file=file_id(args.lm_file))
    return dict(model_file=file_id(args.model_file), train_config=file_id(args.train_config),
                data=[list(x) for x in args.data_path_and_name_and_type], keys=keys_digest,
                ref_text=args.ref_text, options=opts)


def write_outputs(output_dir: Path, results: Dict[str, Recognition], refs: Dict[str, str], nbest: int) -> None:
    """Write the ESPnet-layout N-best files, ``text``, ``pinyin`` and ``nbest.jsonl``, each atomically."""
    for k in range(1, nbest + 1):
        have = {u: r.nbest[k - 1] for u, r in results.items() if len(r.nbest) >= k}
        if k == 1:  # every utterance gets a 1best line, empty when the search found nothing
            have = {u: (r.nbest[0] if r.nbest else ("", [], float("-inf"))) for u, r in results.items()}
        d = output_dir / f"{k}best_recog"
        write_kv(d / "text", {u: h[0] for u, h in have.items()})
        write_kv(d / "token", {u: " ".join(h[1]) for u, h in have.items()})
        write_kv(d / "score", {u: f"{h[2]:.4f}" for u, h in have.items()})
    write_kv(output_dir / "text", {u: (r.nbest[0][0] if r.nbest else "") for u, r in results.items()})
    write_kv(output_dir / "pinyin", {u: r.pinyin for u, r in results.items()})
    with atomic_open(output_dir / "nbest.jsonl") as f:
        for utt in sorted(results):
            r = results[utt]
            row = {"utt": utt, "nbest": [{"text": t, "score": round(s, 4)} for t, _, s in r.nbest],
                   "pinyin": r.pinyin, "ref": refs.get(utt)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def merge_jobs(job_dirs: Sequence[str], output_dir: str) -> None:
    """Concatenate finished jobs' outputs into ``output_dir`` (sorted, atomic); refuse unfinished jobs."""
    output_dir = Path(output_dir)
    unfinished = [d for d in job_dirs if not (Path(d) / DONE).exists()]
    if unfinished:
        raise ValueError(f"jobs not finished (no {DONE}): {unfinished}; re-run the decoding stage first")
    kv_files = sorted({str(p.relative_to(d)) for d in map(Path, job_dirs) for p in d.rglob("*")
                       if p.is_file() and p.name in ("text", "token", "score", "pinyin")})
    for rel in kv_files:
        merged: Dict[str, str] = {}
        for d in job_dirs:
            path = Path(d) / rel
            if not path.exists():
                continue
            for utt, value in read_kv(path).items():
                if utt in merged:
                    raise ValueError(f"{path}: utterance {utt} was decoded by two jobs; check the key splits")
                merged[utt] = value
        write_kv(output_dir / rel, merged)
    rows = {}
    for d in job_dirs:
        with open(Path(d) / "nbest.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                rows[row["utt"]] = line if line.endswith("\n") else line + "\n"
    with atomic_open(output_dir / "nbest.jsonl") as f:
        for utt in sorted(rows):
            f.write(rows[utt])
    logging.info(f"Merged {len(job_dirs)} jobs, {len(rows)} utterances into {output_dir}")


def decode_job(args: argparse.Namespace) -> None:
    from vallr_pin.tasks.vsr import VSRTask

    output_dir = Path(args.output_dir)
    sig = signature(args)
    done = output_dir / DONE
    if done.exists():
        if json.loads(done.read_text(encoding="utf-8")) == sig:
            logging.info(f"{output_dir}: already decoded with the same model and options, skipping")
            return
        logging.warning(f"{output_dir}: {DONE} is for another model/options; decoding again")
        done.unlink()

    torch.set_num_threads(args.num_threads)
    speech2text = VideoToText(
        train_config=args.train_config, model_file=args.model_file, device=args.device,
        beam_size=args.beam_size, ctc_weight=args.ctc_weight, penalty=args.penalty,
        maxlenratio=args.maxlenratio, minlenratio=args.minlenratio, nbest=args.nbest,
        beam_search_impl=args.beam_search_impl, pinyin_decode_mode=args.pinyin_decode_mode,
        pinyin_beam_size=args.pinyin_beam_size, pinyin_ctc_weight=args.pinyin_ctc_weight,
        normalize_length=args.normalize_length, pinyin_rescore_weight=args.pinyin_rescore_weight,
        lm_train_config=args.lm_train_config, lm_file=args.lm_file, lm_weight=args.lm_weight,
        pinyin_search_weight=args.pinyin_search_weight, pre_beam_ratio=args.pre_beam_ratio,
    )
    loader = VSRTask.build_streaming_iterator(
        data_path_and_name_and_type=args.data_path_and_name_and_type,
        dtype="float32", batch_size=args.batch_size, key_file=args.key_file, num_workers=0,
        preprocess_fn=VSRTask.build_preprocess_fn(speech2text.train_args, train=False),
        collate_fn=VSRTask.build_collate_fn(speech2text.train_args, train=False),
        allow_variable_data_keys=False, inference=True,
    )
    refs = read_kv(args.ref_text) if args.ref_text else {}
    results: Dict[str, Recognition] = {}
    n_total = sum(1 for _ in open(args.key_file or args.data_path_and_name_and_type[0][0], encoding="utf-8"))
    with tqdm(total=n_total, desc=f"decode {output_dir.name}", unit="utt", disable=None) as bar:
        for keys, batch in loader:
            recs = speech2text(batch["video"], batch["video_lengths"])
            for key, rec in zip(keys, recs):
                results[key] = rec
                if rec.nbest:
                    logging.info(f"{key}: {rec.nbest[0][0]} | {rec.pinyin}")
            bar.update(len(keys))
    write_outputs(output_dir, results, refs, args.nbest)
    with atomic_open(done) as f:
        f.write(json.dumps(sig, ensure_ascii=False))
    logging.info(f"Decoded {len(results)} utterances into {output_dir}")


def check_job_args(args: argparse.Namespace, where: str = "") -> None:
    missing = [f"--{k}" for k in ("train_config", "model_file", "output_dir") if getattr(args, k) is None]
    if not args.data_path_and_name_and_type:
        missing.append("--data_path_and_name_and_type")
    if missing:
        raise DecodeListError(f"{where}{' '.join(missing)} required")
    # Checked before any model is loaded (and, for a decode list, before its first job runs).
    files = [("--train_config", args.train_config, "the exp/vsr_<tag>/config.yaml stage 4 wrote"),
             ("--model_file", args.model_file, "a checkpoint of stage 4 (e.g. exp/vsr_<tag>/valid.acc_char.ave.pth)"),
             ("--key_file", args.key_file, "a split of the set's feats.scp"),
             ("--ref_text", args.ref_text, "the set's data/<set>/text")]
    files += [("--data_path_and_name_and_type", triple[0], "the set's dump/roi/<set>/feats.scp (stage 1)")
              for triple in args.data_path_and_name_and_type]
    if args.lm_weight:
        if not args.lm_train_config or not args.lm_file:
            raise DecodeListError(f"{where}--lm_weight {args.lm_weight} needs --lm_train_config and --lm_file")
        files += [("--lm_train_config", args.lm_train_config, "the exp/lm_<tag>/config.yaml stage 4 wrote"),
                  ("--lm_file", args.lm_file, "a checkpoint of the LM of stage 4")]
    for opt, path, what in files:
        if path is not None and not os.path.isfile(path):
            raise DecodeListError(f"{where}{opt} {path}: no such file; give {what}")
    pinyin_opts = [f"--{k} {getattr(args, k)}" for k in ("pinyin_rescore_weight", "pinyin_search_weight")
                   if getattr(args, k)]
    if pinyin_opts:  # a char-only model has no pinyin branch (VideoToText would refuse it, but only when loading)
        import yaml

        from vallr_pin.tasks.vsr import uses_pinyin

        with open(args.train_config, encoding="utf-8") as f:
            conf = yaml.safe_load(f) or {}
        if not uses_pinyin(argparse.Namespace(model_conf=conf.get("model_conf") or {})):
            raise DecodeListError(f"{where}{' and '.join(pinyin_opts)} need a dual model; {args.train_config} has "
                                  "no pinyin branch: give 0 for a char-only model")


def read_decode_list(path: str, parser: argparse.ArgumentParser, base_argv: Sequence[str]):
    """The jobs of ``--decode_list``: one Namespace per non-empty, non-comment line, parsed from ``base_argv`` (the
    command line without ``--decode_list``) followed by the line's words, so a line's options win. Every line is
    parsed and checked before any decoding starts: a typo on the last line does not surface after an hour."""
    base_has_data = any(w.split("=")[0] == "--data_path_and_name_and_type" for w in base_argv)
    jobs = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            words = shlex.split(line)
            opts = {w.split("=")[0] for w in words if w.startswith("--")}
            for bad in ("--merge", "--decode_list", "--config"):
                if bad in opts:
                    raise DecodeListError(f"{path}:{lineno}: {bad} is not allowed in a decode list line")
            if base_has_data and "--data_path_and_name_and_type" in opts:
                raise DecodeListError(f"{path}:{lineno}: --data_path_and_name_and_type is on the command line "
                                     "and on the line; give it in one place")
            try:
                ns = parser.parse_args([*base_argv, *words])
            except SystemExit:
                raise DecodeListError(f"{path}:{lineno}: bad options (argparse's message above)")
            check_job_args(ns, f"{path}:{lineno}: ")
            jobs.append(ns)
    if not jobs:
        raise DecodeListError(f"{path}: no jobs (empty decode list)")
    outs = [str(j.output_dir) for j in jobs]
    dup = sorted({o for o in outs if outs.count(o) > 1})
    if dup:
        raise DecodeListError(f"{path}: two lines write the same --output_dir {dup[0]}")
    return jobs


def without_option(argv: Sequence[str], name: str) -> List[str]:
    """argv without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for w in argv:
        if skip:
            skip = False
        elif w == name:
            skip = True
        elif not w.startswith(name + "="):
            out.append(w)
    return out

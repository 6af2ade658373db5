#!/usr/bin/env python3
"""Stage 9: refine the N-best lists of a decoded set with the LLM (fine-tuned adapter, or zero-shot).

Reads ``<decode dir>/nbest.jsonl`` (stage 5), asks the LLM for the corrected sentence with the same prompt as the
training data (``vallr_pin.llm.prompt.build_messages``), greedy decoding, in batches through ms-swift's engines
(``--backend auto``, the default: vLLM when it is importable and CUDA is available, else transformers; or
``--backend transformers`` on CPU/GPU, ``--backend vllm`` on a GPU with vLLM installed), cleans each answer with
the output guard (fallback to the 1-best), and writes to ``--out-dir`` (atomically):

- ``text``: refined transcripts, Kaldi format ``<utt> <hanzi>``, sorted (score it like any decode ``text``);
- ``raw.jsonl``: per utterance the raw LLM output, the guarded text, the fallback reason (null if accepted),
  the 1-best and the reference; in ``--mode rescore`` also every candidate with its LLM and VSR scores
  (``vallr_pin.bin.tune_fusion`` tunes the fusion weights from them);
- ``guard_stats.json``: fallback counts by reason, plus the settings used, LLM calls, and what the options below
  did (constraint fallbacks, gated utterances, CER per polishing round).

Beyond the paper (issue 19), each an option:

- ``--mode constrained``: greedy generation under the pinyin constraint (``vallr_pin.llm.constrained``): only
  characters whose reading is the pinyin branch's syllable at that position (``--constrain-level pinyin``), or
  also the N-best's characters there (``nbest``), or also same-viseme characters (``viseme``); then the end of
  the answer. An utterance that cannot be constrained keeps its 1-best (counted by reason).
- ``--gate-feature margin|pinyin --gate-threshold T``: no LLM call where Stage I is sure (``vallr_pin.llm.gating``;
  ``vallr_pin.bin.tune_gate`` picks T on dev and draws the CER-vs-calls curve). Every row of raw.jsonl carries
  its confidences, so an ungated run can be gated afterwards.
- ``--polish-rounds K``: iterative polishing, the refined sentence goes back in as the top candidate.
- ``--context FILE``: context-aware prompts from ``data/<set>/context`` (``--context-optional``: utterances it
  lacks get none; otherwise they are an error).
- ``--nbest`` may be an ESPnet decode directory (``{k}best_recog/text``) of any recogniser; ``--pinyin-from``
  says where the pinyin comes from (``vallr_pin.llm.nbest``).

Example:
    python -m vallr_pin.bin.llm_refine --nbest exp/vsr/decode_beam5_late/test/nbest.jsonl \\
        --model /models/Qwen3-4B-Instruct-2507 --adapter exp/llm_lora/adapter \\
        --out-dir exp/llm_lora/refine_test --batch-size 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open, read_kv, write_kv
from vallr_pin.llm.constrained import FALLBACK_REASONS as CONSTRAINT_FALLBACKS
from vallr_pin.llm.fusion import FusionWeights
from vallr_pin.llm.gating import FEATURES, confidences, gated
from vallr_pin.llm.guard import OutputGuard
from vallr_pin.llm.nbest import PINYIN_FROM, attach_context, read_nbest
from vallr_pin.llm.prompt import load_template
from vallr_pin.llm.refine import (ConstrainedRefiner, Refined, Refiner, Rescorer, make_engine, polish,
                                  resolve_backend)
from vallr_pin.scoring.cer import score_corpus



def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nbest", required=True,
                   help="nbest.jsonl of the decoded set (stage 5), or an ESPnet decode dir ({k}best_recog/text)")
    p.add_argument("--model", required=True, help="base LLM directory (run.sh llm_model=)")
    p.add_argument("--adapter", default=None,
                   help="LoRA checkpoint from stage 8 (exp/llm_<tag>/adapter); omit for zero-shot refinement")
    p.add_argument("--out-dir", required=True, help="output directory (text, raw.jsonl, guard_stats.json)")
    p.add_argument("--backend", default="auto", choices=["auto", "transformers", "vllm"],
                   help="ms-swift inference engine: auto (vllm when the vllm package is importable and torch sees a "
                        "CUDA device, else transformers; rescore mode: transformers), transformers (CPU/GPU) or "
                        "vllm (GPU, vllm installed)")
    p.add_argument("--batch-size", type=int, default=16, help="utterances per generate call")
    p.add_argument("--model-type", default=None,
                   help="ms-swift model_type (default: from the adapter's args.json, else qwen3)")
    p.add_argument("--template", default=None,
                   help="ms-swift chat template (default: from the adapter's args.json, else qwen3_nothinking)")
    p.add_argument("--torch-dtype", default=None, choices=[None, "float32", "bfloat16", "float16"],
                   help="model dtype (default: ms-swift's choice from the model config)")
    p.add_argument("--lang", default="zh", choices=["zh", "en"], help="prompt language (as in stage 7)")
    p.add_argument("--prompt-template", default=None, help="prompt template file (as in stage 7)")
    p.add_argument("--max-candidates", type=int, default=5, help="N-best shown in the prompt (as in stage 7; 0: all)")
    p.add_argument("--max-new-ratio", type=float, default=1.5,
                   help="max_new_tokens = ratio * tokens of the longest candidate + --max-new-slack")
    p.add_argument("--max-new-slack", type=int, default=8, help="extra new tokens (end of turn, think tags)")
    p.add_argument("--guard-min-ratio", type=float, default=0.5,
                   help="fall back to the 1-best when the answer is shorter than this times the shortest candidate")
    p.add_argument("--guard-max-ratio", type=float, default=1.5,
                   help="fall back to the 1-best when the answer is longer than this times the longest candidate")
    p.add_argument("--guard-max-edit-ratio", type=float, default=0.6,
                   help="fall back to the 1-best when the answer's edit distance to the closest candidate exceeds "
                        "this share of its length (negative: no check)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vllm only")
    p.add_argument("--max-model-len", type=int, default=None, help="vllm only: context length to allocate")
    p.add_argument("--mode", default="generate", choices=["generate", "rescore", "constrained"],
                   help="generate: the LLM writes the corrected sentence (the paper; real LLMs); rescore: the LLM "
                        "scores each N-best candidate as the answer to the same prompt and the best is kept "
                        "(eq. 18 restricted to the N-best; for LLMs too small to generate, e.g. the mini recipe); "
                        "constrained: the LLM writes under the pinyin constraint (--constrain-level)")
    p.add_argument("--rescore-vsr-weight", type=float, default=0.0,
                   help="rescore mode: weight of the VSR beam score added to the LLM log-probability")
    p.add_argument("--rescore-llm-weight", type=float, default=1.0,
                   help="rescore mode: weight of the LLM log-probability (tune it with vallr_pin.bin.tune_fusion)")
    p.add_argument("--rescore-length-bonus", type=float, default=0.0,
                   help="rescore mode: added per character of a candidate (counters the LLM's preference for "
                        "short answers, like Kaldi's word insertion penalty)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--constrain-level", default="nbest", choices=["pinyin", "nbest", "viseme"],
                   help="constrained mode: per position allow the homophones of the pinyin syllable (pinyin), also "
                        "the N-best's characters there (nbest), also same-viseme characters (viseme)")
    p.add_argument("--gate-feature", default=None, choices=list(FEATURES),
                   help="skip the LLM where this Stage I confidence reaches --gate-threshold: margin (1-best minus "
                        "2nd-best beam score) or pinyin (share of 1-best characters read as the pinyin branch's "
                        "syllable); default: no gate")
    p.add_argument("--gate-threshold", type=float, default=None,
                   help="gate threshold (python -m vallr_pin.bin.tune_gate chooses it on dev)")
    p.add_argument("--polish-rounds", type=int, default=1,
                   help="iterative polishing: rounds in all, each refined sentence going back in as the top "
                        "candidate (1: a single pass)")
    p.add_argument("--context", default=None,
                   help="data/<set>/context: '<utt> <text>' shown before the task (same option as stage 7)")
    p.add_argument("--context-optional", action="store_true",
                   help="utterances missing from --context get no context (default: an error naming them)")
    p.add_argument("--pinyin-from", default="auto", choices=list(PINYIN_FROM),
                   help="pinyin of the prompt: the N-best input's (nbest), derived from the 1-best (hypothesis), "
                        "or auto: derived when the input has none at all (a recogniser without a pinyin branch)")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        return run(args)


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not Path(args.model).is_dir():
        raise FileNotFoundError(f"LLM model directory '{args.model}' does not exist; set llm_model=<dir> in run.sh")
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"'{args.adapter}' holds no adapter_config.json; run stage 8 (llm_sft) first, or "
                                "omit --adapter for zero-shot refinement")
    if (args.gate_feature is None) != (args.gate_threshold is None):
        raise ValueError("--gate-feature and --gate-threshold go together (python -m vallr_pin.bin.tune_gate "
                         "prints both)")
    if args.polish_rounds < 1:
        raise ValueError(f"--polish-rounds {args.polish_rounds}: need 1 or more")
    entries = read_nbest(args.nbest, args.pinyin_from)
    if not entries:
        raise ValueError(f"{args.nbest}: no utterances")
    n_context = 0
    if args.context:
        n_context = attach_context(entries, read_kv(args.context), args.context, args.context_optional)
    conf = {e.utt: confidences(e.texts, e.scores, e.pinyin) for e in entries}
    skip = {e.utt for e in entries if args.gate_feature and gated(conf[e.utt], args.gate_feature,
                                                                  args.gate_threshold)}
    template = load_template(args.prompt_template, args.lang)
    args.backend = resolve_backend(args.backend, args.mode)
    logging.info("backend: %s", args.backend)
    engine = make_engine(args.model, args.adapter, args.backend, args.model_type, args.template, args.torch_dtype,
                         args.batch_size, args.gpu_memory_utilization, args.max_model_len)
    guard = OutputGuard(min_ratio=args.guard_min_ratio, max_ratio=args.guard_max_ratio,
                        max_edit_ratio=None if args.guard_max_edit_ratio < 0 else args.guard_max_edit_ratio)
    if args.mode == "rescore":
        refiner = Rescorer(engine, guard, lang=args.lang, template=template,
                           max_candidates=args.max_candidates or None, batch_size=args.batch_size,
                           weights=FusionWeights(llm_weight=args.rescore_llm_weight,
                                                 vsr_weight=args.rescore_vsr_weight,
                                                 length_bonus=args.rescore_length_bonus))
    elif args.mode == "constrained":
        refiner = ConstrainedRefiner(engine, guard, lang=args.lang, template=template,
                                     max_candidates=args.max_candidates or None, batch_size=args.batch_size,
                                     level=args.constrain_level)
    else:
        refiner = Refiner(engine, guard, lang=args.lang, template=template,
                          max_candidates=args.max_candidates or None, batch_size=args.batch_size,
                          max_new_ratio=args.max_new_ratio, max_new_slack=args.max_new_slack)
    t0 = time.time()
    todo = [e for e in entries if e.utt not in skip]
    refined, history, calls = polish(refiner, todo, args.polish_rounds)
    by_utt = {r.utt: (r, h) for r, h in zip(refined, history)}
    results, rounds = [], []
    for e in entries:
        if e.utt in by_utt:
            r, h = by_utt[e.utt]
        else:  # gated: Stage I is sure, no LLM call; in rescore mode its only candidate is the 1-best
            extra = ({"candidates": [e.onebest], "llm_scores": [0.0], "vsr_scores": e.scores[:1] or [0.0]}
                     if args.mode == "rescore" else {})
            r, h = Refined(e.utt, "", e.onebest, "gated", e.onebest, e.ref, **extra), []
        results.append(r)
        rounds.append(h)
    elapsed = time.time() - t0
    out = Path(args.out_dir)
    with atomic_open(out / "raw.jsonl") as f:
        for r, h in zip(results, rounds):
            rec = {"utt": r.utt, "raw": r.raw, "text": r.text, "reason": r.reason, "onebest": r.onebest,
                   "ref": r.ref, "confidence": conf[r.utt]}
            if args.polish_rounds > 1:
                rec["rounds"] = h  # the text after each round it took part in (converged: no more rounds)
            if r.candidates is not None:  # rescore mode: what tune_fusion re-weights
                rec.update(candidates=r.candidates, llm_scores=r.llm_scores, vsr_scores=r.vsr_scores)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    stats = guard.stats()
    if args.mode == "rescore":
        stats["fusion"] = dataclasses.asdict(refiner.weights)
    n_unconstrained = 0
    if args.mode == "constrained":
        stats["constraint"] = {"level": args.constrain_level,
                               "fallback": {k: refiner.fallbacks.get(k, 0) for k in CONSTRAINT_FALLBACKS}}
        n_unconstrained = sum(refiner.fallbacks.values())
    stats["llm_calls"] = sum(calls) - n_unconstrained  # utterance-rounds the LLM saw
    if args.gate_feature:
        stats["gate"] = {"feature": args.gate_feature, "threshold": args.gate_threshold, "n_gated": len(skip)}
    if args.polish_rounds > 1:
        stats["polish"] = polish_summary(entries, results, rounds, args.polish_rounds, calls)
    if args.context:
        stats["context"] = {"file": args.context, "n_with_context": n_context}
    stats.update({"n_changed_from_1best": sum(r.text != r.onebest for r in results),
                  "utts_per_second": round(len(results) / max(elapsed, 1e-9), 3), "model": args.model,
                  "adapter": args.adapter, "backend": args.backend, "mode": args.mode, "batch_size": args.batch_size,
                  "guard": {"min_ratio": guard.min_ratio, "max_ratio": guard.max_ratio,
                            "max_edit_ratio": guard.max_edit_ratio},
                  # what a packed model needs to ask the LLM the same way (vallr_pin.bin.pack_model)
                  "prompt": {"lang": args.lang, "template": args.prompt_template,
                             "max_candidates": args.max_candidates or None},
                  "max_new_ratio": args.max_new_ratio, "max_new_slack": args.max_new_slack})
    with atomic_open(out / "guard_stats.json") as f:
        json.dump(stats, f, ensure_ascii=False, indent=2)
    # text last: its presence marks a finished refinement for the recipe
    write_kv(out / "text", {r.utt: r.text for r in results})
    logging.info("%d utterances in %.1f s (%.2f utt/s); guard fallbacks %d/%d %s; %d changed from the 1-best",
                 len(results), elapsed, stats["utts_per_second"], stats["fallback"], stats["n"],
                 {k: v for k, v in stats["by_reason"].items() if v}, stats["n_changed_from_1best"])
    return stats


def polish_summary(entries, results, rounds, n_rounds: int, calls) -> dict:
    """Per round (0 = Stage I 1-best): CER where every utterance has a reference, and how many texts changed."""
    refs = {e.utt: e.ref for e in entries}
    texts = [{e.utt: e.onebest for e in entries}]
    for k in range(n_rounds):
        texts.append({r.utt: (h[min(k, len(h) - 1)] if h else r.text) for r, h in zip(results, rounds)})
    have_refs = all(v is not None for v in refs.values())
    return {"rounds": n_rounds, "utterances_per_round": list(calls) + [0] * (n_rounds - len(calls)),
            "n_changed_per_round": [sum(texts[k][u] != texts[k - 1][u] for u in refs) for k in range(1, len(texts))],
            "cer_per_round": [round(score_corpus(refs, t).cer, 2) for t in texts] if have_refs else None}


if __name__ == "__main__":
    main()

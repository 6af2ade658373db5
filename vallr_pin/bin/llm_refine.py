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
- ``guard_stats.json``: fallback counts by reason, plus the settings used.

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
from vallr_pin.datadir import atomic_open, write_kv
from vallr_pin.llm.fusion import FusionWeights
from vallr_pin.llm.guard import OutputGuard
from vallr_pin.llm.nbest import read_nbest_jsonl
from vallr_pin.llm.prompt import load_template
from vallr_pin.llm.refine import Refiner, Rescorer, make_engine, resolve_backend



def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nbest", required=True, help="nbest.jsonl of the decoded set (stage 5)")
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
    p.add_argument("--mode", default="generate", choices=["generate", "rescore"],
                   help="generate: the LLM writes the corrected sentence (the paper; real LLMs); rescore: the LLM "
                        "scores each N-best candidate as the answer to the same prompt and the best is kept "
                        "(eq. 18 restricted to the N-best; for LLMs too small to generate, e.g. the mini recipe)")
    p.add_argument("--rescore-vsr-weight", type=float, default=0.0,
                   help="rescore mode: weight of the VSR beam score added to the LLM log-probability")
    p.add_argument("--rescore-llm-weight", type=float, default=1.0,
                   help="rescore mode: weight of the LLM log-probability (tune it with vallr_pin.bin.tune_fusion)")
    p.add_argument("--rescore-length-bonus", type=float, default=0.0,
                   help="rescore mode: added per character of a candidate (counters the LLM's preference for "
                        "short answers, like Kaldi's word insertion penalty)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
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
    entries = read_nbest_jsonl(args.nbest)
    if not entries:
        raise ValueError(f"{args.nbest}: no utterances")
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
    else:
        refiner = Refiner(engine, guard, lang=args.lang, template=template,
                          max_candidates=args.max_candidates or None, batch_size=args.batch_size,
                          max_new_ratio=args.max_new_ratio, max_new_slack=args.max_new_slack)
    t0 = time.time()
    results = refiner.refine(entries)
    elapsed = time.time() - t0
    out = Path(args.out_dir)
    with atomic_open(out / "raw.jsonl") as f:
        for r in results:
            rec = {"utt": r.utt, "raw": r.raw, "text": r.text, "reason": r.reason, "onebest": r.onebest,
                   "ref": r.ref}
            if r.candidates is not None:  # rescore mode: what tune_fusion re-weights
                rec.update(candidates=r.candidates, llm_scores=r.llm_scores, vsr_scores=r.vsr_scores)
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    stats = guard.stats()
    if args.mode == "rescore":
        stats["fusion"] = dataclasses.asdict(refiner.weights)
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


if __name__ == "__main__":
    main()

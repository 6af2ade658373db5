#!/usr/bin/env python3
"""Benchmark: LLM refinement throughput (utterances/second), batched vs one at a time, same model and prompts.

Runs ``vallr_pin.llm.refine.Refiner`` (ms-swift TransformersEngine, greedy) over N synthetic N-best entries
twice: ``--batch-size 1`` and ``--batch-size B``; prints both rates and their ratio as one JSON line. Without
``--model`` a tiny random-init Qwen3 (the recipe's default size) is made in a temp dir; a random model rarely
emits end-of-turn, so both runs generate the full token budget: a like-for-like comparison.

    PYTHONPATH=. tools/venv/bin/python test/bench/bench_llm_refine.py --n-utts 64 --batch-size 16
"""

import argparse
import json
import logging
import os
import platform
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTS = ["今天天气很好", "我们明天去北京", "他喜欢喝绿茶", "这个问题很难回答", "请你帮我买一本书", "我的朋友在学校学习汉语",
         "外面下雨了", "你吃饭了吗", "图书馆里有很多人", "我们一起去公园散步吧", "这件衣服太贵了", "火车站怎么走"]
CONFUSE = {"天": "田", "京": "经", "茶": "查", "答": "达", "书": "树", "语": "雨", "饭": "反", "好": "号", "人": "仁"}


def make_entries(n):
    from vallr_pin.llm.nbest import NbestEntry
    from vallr_pin.text.pinyin import pinyin_string

    out = []
    for i in range(n):
        s = SENTS[i % len(SENTS)] * (1 + (i // len(SENTS)) % 2)  # some longer prompts too
        bad = "".join(CONFUSE.get(c, c) if (j + i) % 3 == 0 else c for j, c in enumerate(s))
        out.append(NbestEntry(f"spk00-u{i:04d}", [bad, s, bad[::-1]], [0.0, -1.0, -2.0], pinyin_string(s), s))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model dir (default: make a tiny random Qwen3 in a temp dir)")
    p.add_argument("--adapter", default=None, help="optional LoRA adapter")
    p.add_argument("--n-utts", type=int, default=64, help="utterances to refine per run")
    p.add_argument("--batch-size", type=int, default=16, help="batch size of the batched run")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    from vallr_pin.llm.guard import OutputGuard
    from vallr_pin.llm.refine import Refiner, make_engine

    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model is None:
        from vallr_pin.bin.make_tiny_llm import make_tiny_llm

        text = os.path.join(tmp.name, "text")
        with open(text, "w", encoding="utf-8") as f:
            f.write("\n".join(SENTS) + "\n")
        model = os.path.join(tmp.name, "tiny")
        make_tiny_llm([text], model, steps=0, max_phrases=2000)
    entries = make_entries(args.n_utts)
    engine = make_engine(model, args.adapter, "transformers", batch_size=args.batch_size)
    Refiner(engine, OutputGuard(), batch_size=args.batch_size).refine(entries[: args.batch_size], False)  # warm-up
    rates = {}
    for bs in (1, args.batch_size):
        refiner = Refiner(engine, OutputGuard(), batch_size=bs)
        t0 = time.perf_counter()
        refiner.refine(entries, progress=False)
        rates[bs] = args.n_utts / (time.perf_counter() - t0)
    print(json.dumps({
        "bench": "llm_refine", "model": "tiny-random-qwen3" if args.model is None else model,
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "threads": args.threads, "n_utts": args.n_utts, "cpu": platform.processor() or platform.machine(),
        "utt_per_s_bs1": round(rates[1], 2), f"utt_per_s_bs{args.batch_size}": round(rates[args.batch_size], 2),
        "speedup": round(rates[args.batch_size] / rates[1], 2)}))


if __name__ == "__main__":
    main()

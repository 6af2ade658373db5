#!/usr/bin/env python3
"""Make a tiny Qwen3-architecture causal LM locally (the embedded recipe's stand-in for Qwen3-4B-Instruct-2507).

No LLM can be downloaded here, so egs/mini_cnvsrc builds its own: a byte-level BPE tokenizer trained with the
``tokenizers`` package on the given text, a Qwen chat template (``<|im_start|>``/``<|im_end|>``, non-thinking), a
small random-init ``Qwen3ForCausalLM`` briefly pre-trained as a causal LM, saved with ``save_pretrained`` as a
normal model directory that ``swift sft --model <dir> --model_type qwen3 --template qwen3_nothinking`` loads.

Text it learns from: only the ``--text`` files given (any text that holds no dev/test sentence: egs/mini_cnvsrc
passes the package sentences its corpus never speaks, ``render_corpus --lm-text``, and leaves out the training
transcripts so that LoRA on their N-best teaches correction, not recall of memorised sentences), plus pypinyin's phrase dictionary words with their pinyin, the toneless pinyin syllables, and the
words of the prompt template. Each sentence is shown both as Hanzi and as "pinyin -> Hanzi" so that the model
starts with some pinyin-to-character knowledge for LoRA to build on.

Example:
    python -m vallr_pin.bin.make_tiny_llm --text downloads/mini_cnvsrc/lm_text.txt --out exp/tiny_llm
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import List, Optional, Sequence

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.datadir import atomic_open
from vallr_pin.llm.prompt import template_words
from vallr_pin.text.normalize import normalize_text, read_sentences
from vallr_pin.text.pinyin import pinyin_string, syllable_inventory

# Qwen's special tokens; <|im_end|> ends a turn (eos for chat), <|endoftext|> pads.
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, "<think>", "</think>"]
# Non-thinking Qwen chat template (the Qwen3-Instruct-2507 form without tools): used by transformers'
# apply_chat_template; ms-swift uses its own registered `qwen3_nothinking` template, which renders the same text.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def read_text(paths: Sequence[str]) -> List[str]:
    """Hanzi sentences from Kaldi ``text`` files (``<utt> <sentence>``) or plain one-sentence-a-line files
    (``read_sentences`` tells them apart per line), with the errors of this tool's ``--text``."""
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: --text file not found; give text files (Kaldi text or one sentence "
                                    "a line) that hold no dev/test sentence")
    out = read_sentences(paths)
    if not out:
        raise ValueError(f"no Chinese sentences found in {', '.join(map(str, paths))}; pass text in Hanzi (e.g. "
                         "the corpus's lm_text.txt or training transcripts) with --text")
    return out


def toneless_pinyin(text: str) -> str:
    """The recipe's toneless pinyin (stage 2's ``pinyin_string``) of the Hanzi in ``text``."""
    return pinyin_string(normalize_text(text))


def build_corpus(sentences: Sequence[str], max_phrases: int, seed: int) -> List[str]:
    """Documents to train the tokenizer and pre-train on: sentences, "pinyin：sentence" pairs, dictionary words
    with pinyin, the syllable inventory, and the prompt template words."""
    from pypinyin.constants import PHRASES_DICT

    rng = random.Random(seed)
    docs = list(sentences)
    docs += [f"{toneless_pinyin(s)}：{s}" for s in sentences]
    phrases = sorted(PHRASES_DICT)
    if max_phrases and len(phrases) > max_phrases:
        phrases = rng.sample(phrases, max_phrases)
    docs += [f"{w} {toneless_pinyin(w)}" for w in phrases]
    # every toneless syllable, so that any predicted pinyin tokenises into known pieces
    syllables = list(syllable_inventory())
    docs += [" ".join(syllables[i:i + 32]) for i in range(0, len(syllables), 32)]
    for lang in ("zh", "en"):
        docs += template_words(lang=lang)
    rng.shuffle(docs)
    return docs


def train_tokenizer(docs: Sequence[str], vocab_size: int):
    """Byte-level BPE (as Qwen uses) trained on ``docs``; Qwen special tokens added; wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:],
    )
    hf_tok.chat_template = CHAT_TEMPLATE
    hf_tok.padding_side = "left"
    return hf_tok


def make_model(tokenizer, hidden: int, layers: int, heads: int, kv_heads: int, max_pos: int, seed: int):
    """Random-init Qwen3ForCausalLM sized for the tokenizer; eos = <|im_end|>, pad = <|endoftext|>."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    pad_id = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_pos,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        torch_dtype="float32",
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=pad_id, eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    return model


def pretrain(model, tokenizer, docs: Sequence[str], steps: int, batch_size: int, block_size: int, lr: float,
             max_minutes: float, seed: int) -> List[float]:
    """Causal-LM pre-training on ``docs`` packed into ``block_size``-token blocks; returns the loss per step.

    Documents end with <|endoftext|> (Qwen pre-training convention). Stops early after ``max_minutes`` (0: runs
    every step, so that the model does not depend on the host's speed)."""
    import torch
    from tqdm import tqdm

    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    ids: List[int] = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [eot]
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ValueError(f"corpus of {len(ids)} tokens is shorter than one block ({block_size})")
    data = torch.tensor(ids[: n_blocks * block_size]).view(n_blocks, block_size)
    logging.info("pre-training on %d tokens (%d blocks of %d)", len(ids), n_blocks, block_size)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    losses = []
    t0 = time.time()
    for step in tqdm(range(steps), desc="pretrain", mininterval=5):
        batch = data[torch.randint(0, n_blocks, (batch_size,), generator=g)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0:
            logging.info("step %d loss %.3f", step, losses[-1])
        if max_minutes and time.time() - t0 > 60 * max_minutes:
            logging.warning("stopping pre-training at step %d: --max-minutes %.1f reached", step, max_minutes)
            break
    model.eval()
    return losses


def make_tiny_llm(text: Sequence[str], out: str, vocab_size: int = 3000, hidden: int = 128, layers: int = 2,
                  heads: int = 4, kv_heads: int = 2, max_pos: int = 2048, steps: int = 600, batch_size: int = 16,
                  block_size: int = 128, lr: float = 3e-3, max_phrases: int = 20000, max_minutes: float = 0.0,
                  seed: int = 0) -> dict:
    """Build, pre-train and save the tiny LM to ``out``; returns a summary (also written to out/tiny_llm.json)."""
    import torch

    torch.manual_seed(seed)
    sentences = read_text(text)
    docs = build_corpus(sentences, max_phrases, seed)
    tokenizer = train_tokenizer(docs, vocab_size)
    model = make_model(tokenizer, hidden, layers, heads, kv_heads, max_pos, seed)
    n_params = sum(p.numel() for p in model.parameters())
    logging.info("tiny Qwen3: %d params, vocab %d, %d layers, hidden %d", n_params, len(tokenizer), layers, hidden)
    losses = pretrain(model, tokenizer, docs, steps, batch_size, block_size, lr, max_minutes, seed) if steps else []
    # Save into a temp dir and rename: a crash never leaves a half-written model dir that stage 8 would load.
    out_path = Path(out)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    summary = {
        "architecture": "Qwen3ForCausalLM", "params": n_params, "vocab_size": len(tokenizer), "layers": layers,
        "hidden": hidden, "n_sentences": len(sentences), "n_docs": len(docs), "steps": len(losses),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "text": [str(t) for t in text], "swift_args": "--model_type qwen3 --template qwen3_nothinking",
    }
    with atomic_open(tmp / "tiny_llm.json") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
    shutil.rmtree(out_path, ignore_errors=True)
    tmp.rename(out_path)
    logging.info("wrote %s (loss %s -> %s)", out_path, summary["first_loss"], summary["last_loss"])
    return summary


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", nargs="+", required=True,
                   help="training text files (Kaldi `text` or one sentence a line); never dev/test text")
    p.add_argument("--out", required=True, help="output model directory (replaced atomically)")
    p.add_argument("--vocab-size", type=int, default=3000, help="BPE vocabulary size incl. 256 bytes + specials")
    p.add_argument("--hidden", type=int, default=128, help="hidden size")
    p.add_argument("--layers", type=int, default=2, help="number of decoder layers")
    p.add_argument("--heads", type=int, default=4, help="attention heads (head_dim = hidden / heads)")
    p.add_argument("--kv-heads", type=int, default=2, help="key/value heads (grouped-query attention)")
    p.add_argument("--max-positions", type=int, default=2048, help="max_position_embeddings")
    p.add_argument("--steps", type=int, default=600, help="pre-training steps (0: random init only)")
    p.add_argument("--batch-size", type=int, default=16, help="pre-training blocks per step")
    p.add_argument("--block-size", type=int, default=128, help="tokens per pre-training block")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (warm-up then cosine)")
    p.add_argument("--max-phrases", type=int, default=20000,
                   help="pypinyin phrase-dictionary words to include (0: all ~47k)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop pre-training after this many minutes (default 0: never). A cap makes the LLM, and "
                        "every Stage II CER, depend on the host's speed and load: two stage-0 runs sharing 2 "
                        "cores stopped at steps 448 and 472 of 600 under the former 5-minute default")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        make_tiny_llm(args.text, args.out, vocab_size=args.vocab_size, hidden=args.hidden, layers=args.layers,
                      heads=args.heads, kv_heads=args.kv_heads, max_pos=args.max_positions, steps=args.steps,
                      batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
                      max_phrases=args.max_phrases, max_minutes=args.max_minutes, seed=args.seed)


if __name__ == "__main__":
    main()

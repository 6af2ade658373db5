"""Shared data of the Stage II tests that need an LLM but none of its knowledge: six everyday sentences, the
homophone / look-alike substitutions a lip reader makes in them, and a random-init tiny Qwen3 whose tokenizer
was trained on them (``conftest.tiny_llm`` builds it once a session for test_llm_grpo.py and test_llm_beyond.py).
"""

from __future__ import annotations

from pathlib import Path

SENTS = ["今天天气很好", "我们明天去北京", "他喜欢喝绿茶", "外面下雨了", "你吃饭了吗", "请你帮我买一本书"]
CONFUSE = {"天": "田", "京": "经", "茶": "查", "雨": "语", "饭": "反", "书": "树", "好": "号"}


def build_tiny_llm(out_dir: Path) -> Path:
    """``out_dir/tiny``: a 1-layer, 32-wide Qwen3 with a 600-token BPE tokenizer over SENTS, not pre-trained
    (steps=0), as make_tiny_llm writes it for stage 0."""
    import torch

    from vallr_pin.bin.make_tiny_llm import make_tiny_llm

    torch.set_num_threads(1)
    text = out_dir / "text"
    text.write_text("".join(f"spk1_{i:03d} {s}\n" for i, s in enumerate(SENTS)), encoding="utf-8")
    make_tiny_llm([str(text)], str(out_dir / "tiny"), vocab_size=600, hidden=32, layers=1, heads=2, kv_heads=1,
                  max_pos=1024, steps=0, max_phrases=100, seed=0)
    return out_dir / "tiny"

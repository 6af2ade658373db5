"""Tiny learnable ROI data for the VSR train/decode tests: 8 utterances over 8 characters, 32x32 frames.

Each character is shown for a few frames as a pattern that identifies it (brightness, stripe period and
orientation, robust to a 4 px crop), so a tiny model overfits it in a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import yaml

CONF = Path(__file__).resolve().parents[1] / "egs" / "TEMPLATE" / "vsr1" / "conf"
CHARS = "你好世界中国人民"
PINYIN = ["ni", "hao", "shi", "jie", "zhong", "guo", "ren", "min"]


def _frame(k: int, rng, side: int = 32) -> np.ndarray:
    """A frame that identifies token k: its brightness and stripe period/orientation (robust to a 4 px crop)."""
    yy, xx = np.mgrid[0:side, 0:side]
    img = 20.0 + 28 * k + 25 * np.sign(np.sin(2 * np.pi * (yy if k % 2 else xx) / (3 + k)))
    img = img + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8).reshape(-1)


def make_roi_data(d: Path, n_utt: int = 8, frames_per_char: int = 3) -> None:
    """Write ``d/{feats.ark,feats.scp,text,text_pinyin,char_tokens.txt,pinyin_tokens.txt}``; ROIs uint8 (T, 32*32)."""
    rng = np.random.default_rng(0)
    videos, text, pinyin = {}, {}, {}
    for i in range(n_utt):
        ks = rng.choice(len(CHARS), size=3 + i % 3, replace=True)
        utt = f"spk{i % 2}-spk{i % 2}_{i:04d}"
        videos[utt] = np.stack([_frame(k, rng) for k in ks for _ in range(frames_per_char)])  # (T, 32*32) uint8
        text[utt] = "".join(CHARS[k] for k in ks)
        pinyin[utt] = " ".join(PINYIN[k] for k in ks)
    d.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp", write_function="numpy") as w:
        for utt in sorted(videos):
            w(utt, videos[utt])
    for name, table in (("text", text), ("text_pinyin", pinyin)):
        (d / name).write_text("".join(f"{u} {table[u]}\n" for u in sorted(table)), encoding="utf-8")
    (d / "char_tokens.txt").write_text("\n".join(["<blank>", "<unk>", *CHARS, "<sos/eos>"]) + "\n", encoding="utf-8")
    (d / "pinyin_tokens.txt").write_text("\n".join(["<blank>", "<unk>", *PINYIN, "<sos/eos>"]) + "\n",
                                         encoding="utf-8")


def write_tiny_train_config(path: Path, **overrides) -> None:
    """``conf/train_vsr_dual_tiny.yaml`` for 32x32 ROIs (28 px crop, no augmentation) plus ``overrides``
    (a dict value updates the ``*_conf`` dict of that name)."""
    cfg = yaml.safe_load((CONF / "train_vsr_dual_tiny.yaml").read_text(encoding="utf-8"))
    cfg["preprocessor_conf"].update(crop_size=28, flip_prob=0.0, time_mask_num=0)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")

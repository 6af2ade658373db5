"""ESPnet preprocessor of the VSR task: ROI crop/augment/normalise and text tokenisation, per utterance.

ESPnet's dataset calls ``preprocessor(uid, data)`` on every loaded example and then refuses any array that is not
float or int (``dtype.kind`` 'u' raises), so the uint8 ROI from ``dump/roi/<set>/feats.scp`` must leave here as
float32.

* ``video``: uint8 ``(T, H*W)`` (H == W, 96 by default) -> float32 ``(T, c*c)``, ``c = crop_size``:
  training: one random ``c x c`` crop per utterance (same for all frames), horizontal flip with ``flip_prob``,
  ``time_mask_num`` masks of up to ``time_mask_max_frames`` frames replaced by the utterance's mean frame;
  evaluation: centre crop only. Then ``(x / 255 - mean) / std``.
* ``text`` (Hanzi) -> int64 ids with ESPnet's char tokenizer and ``TokenIDConverter`` (unknown -> ``<unk>``).
* ``text_pinyin`` (space-separated toneless syllables) -> int64 ids against the pinyin token list.

Augmentation draws from ``numpy.random``, which ESPnet's data loader reseeds per epoch and per worker.

ESPnet's own ``AbsPreprocessor`` lives in ``espnet2.train.preprocessor``, which imports ``g2p_en`` (an
``nltk.download`` network attempt at import) and ~6 s of audio/TTS modules; ``AbsTask`` only needs a callable
``preprocess(uid, data) -> data``, so the task checks its preprocessor choices against :class:`AbsVSRPreprocessor`
(the same contract) and the tokenizers are ESPnet's char/word classes imported directly.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Union

import numpy as np

from espnet2.text.char_tokenizer import CharTokenizer
from espnet2.text.token_id_converter import TokenIDConverter
from espnet2.text.word_tokenizer import WordTokenizer

TokenList = Union[Path, str, Iterable[str]]


class AbsVSRPreprocessor(ABC):
    """What ESPnet's data loader calls on every example (the contract of ESPnet's ``AbsPreprocessor``)."""

    def __init__(self, train: bool):
        self.train = train

    @abstractmethod
    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        raise NotImplementedError


class VSRPreprocessor(AbsVSRPreprocessor):
    """Video ROI crop/augment/normalise + char and pinyin tokenisation.

    Args:
        train: training mode (random crop, flip, time masks) vs evaluation (centre crop).
        token_list: character token list (path or list).
        pinyin_token_list: pinyin token list; None for a char-only model (``text_pinyin`` then passes through
            untouched if present, and the model ignores it).
        crop_size: side of the square crop in pixels (88 from 96 is the lip-reading convention).
        flip_prob: probability of a horizontal flip in training.
        time_mask_num: number of time masks per utterance in training (0 disables).
        time_mask_max_frames: longest time mask, frames (10 = 0.4 s at 25 fps).
        mean, std: normalisation of pixel values after ``/ 255``.
    """

    def __init__(
        self,
        train: bool,
        token_list: Optional[TokenList] = None,
        pinyin_token_list: Optional[TokenList] = None,
        crop_size: int = 88,
        flip_prob: float = 0.5,
        time_mask_num: int = 1,
        time_mask_max_frames: int = 10,
        mean: float = 0.421,
        std: float = 0.165,
        video_name: str = "video",
        text_name: str = "text",
        pinyin_name: str = "text_pinyin",
        unk_symbol: str = "<unk>",
    ):
        super().__init__(train)
        if crop_size < 1 or std <= 0:
            raise ValueError(f"preprocessor_conf: crop_size must be >= 1 and std > 0 (got {crop_size}, {std})")
        self.crop_size = crop_size
        self.flip_prob = flip_prob
        self.time_mask_num = time_mask_num
        self.time_mask_max_frames = time_mask_max_frames
        self.mean = mean
        self.std = std
        self.video_name = video_name
        self.text_name = text_name
        self.pinyin_name = pinyin_name
        self.char_tokenizer = CharTokenizer()  # = ESPnet's build_tokenizer(token_type="char")
        self.char_converter = TokenIDConverter(token_list, unk_symbol=unk_symbol) if token_list else None
        self.word_tokenizer = WordTokenizer()  # = build_tokenizer(token_type="word")
        self.pinyin_converter = (
            TokenIDConverter(pinyin_token_list, unk_symbol=unk_symbol) if pinyin_token_list else None
        )

    def video(self, uid: str, roi: np.ndarray) -> np.ndarray:
        """uint8 (T, H*W) -> float32 (T, crop_size**2), augmented when ``self.train``."""
        if roi.ndim != 2:
            raise ValueError(f"utterance {uid}: video ROI must be (T, H*W), got shape {roi.shape}; "
                             "re-run stage 1 (lip_roi) for it")
        t, d = roi.shape
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(f"utterance {uid}: ROI frames have {d} values, not a square H*W; re-run stage 1")
        c = self.crop_size
        if side < c:
            raise ValueError(f"utterance {uid}: ROI is {side}x{side}, smaller than preprocessor_conf.crop_size={c}; "
                             "lower crop_size or extract larger ROIs")
        frames = roi.reshape(t, side, side)
        if self.train:
            y0 = np.random.randint(0, side - c + 1)
            x0 = np.random.randint(0, side - c + 1)
        else:
            y0 = x0 = (side - c) // 2
        frames = frames[:, y0:y0 + c, x0:x0 + c].astype(np.float32)
        if self.train:
            if np.random.rand() < self.flip_prob:
                frames = frames[:, :, ::-1]
            if self.time_mask_num > 0 and self.time_mask_max_frames > 0 and t > 1:
                frames = np.array(frames)  # writable copy after the flip view
                fill = frames.mean(axis=0)
                for _ in range(self.time_mask_num):
                    width = np.random.randint(0, min(self.time_mask_max_frames, t - 1) + 1)
                    start = np.random.randint(0, t - width + 1)
                    frames[start:start + width] = fill
        frames = (frames / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(frames.reshape(t, c * c), dtype=np.float32)

    def __call__(self, uid: str, data: Dict[str, Union[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        if self.video_name in data:
            data[self.video_name] = self.video(uid, data[self.video_name])
        if self.text_name in data and self.char_converter is not None and isinstance(data[self.text_name], str):
            tokens = self.char_tokenizer.text2tokens(data[self.text_name])
            data[self.text_name] = np.array(self.char_converter.tokens2ids(tokens), dtype=np.int64)
        if self.pinyin_name in data and isinstance(data[self.pinyin_name], str):
            if self.pinyin_converter is None:
                del data[self.pinyin_name]  # char-only model: the pinyin transcript is not used
            else:
                tokens = self.word_tokenizer.text2tokens(data[self.pinyin_name])
                data[self.pinyin_name] = np.array(self.pinyin_converter.tokens2ids(tokens), dtype=np.int64)
        return data

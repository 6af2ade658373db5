"""Batching of VSR examples for ESPnet's data loader: pad each named array along time and add its lengths.

The same batch ESPnet's ``espnet2.train.collate_fn.CommonCollateFn`` makes, without importing that module: it
imports ``espnet2.train.preprocessor``, whose tokenizer table imports ``g2p_en``, which calls ``nltk.download``
at import time (a network attempt in every process) and costs ~6 s of start-up on a 2-core host. Padding itself
is ESPnet's ``pad_list``.

Training batches may also be *spliced* (``splice_prob`` > 0, the task's ``--splice_prob``): two utterances of
the batch are cut at a character boundary and their tails swapped, ``A[:i] + B[j:]`` and ``B[:j] + A[i:]``, video
frames, per-frame data and token sequences alike. Each epoch then shows sentences the model has never seen, so a
small corpus cannot be memorised sentence by sentence and the model has to read the syllables. The cut needs to
know which frames speak which character: a ``frame_align`` array per utterance, ``(T,)`` int, the index of the
transcript character spoken in each frame (-1 between characters), from a renderer's timing (the mini corpus'
``align.scp``) or a forced alignment. ``frame_align`` only drives the cut and never reaches the model.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Optional, Tuple

import numpy as np
import torch

from espnet.nets.pytorch_backend.nets_utils import pad_list

# Data cut along with the video: per-frame arrays (first axis = the video's frames) and per-token sequences.
FRAME_NAMES = ("video", "frame_targets", "frame_labels", "frame_align")
TOKEN_NAMES = ("text", "text_pinyin")
ALIGN_NAME = "frame_align"


class VSRCollateFn:
    """``[(uid, {name: (T_i, ...) array})] -> ([uid], {name: (B, T_max, ...) tensor, name_lengths: (B,) int64})``.

    Integer arrays (token ids) are padded with ``int_pad_value`` (-1 = ignore_id; 0 is the CTC blank), others
    (float32 video) with ``float_pad_value``. ``splice_prob``: chance that each pair of the batch's utterances
    is spliced (module docstring); 0 (the default, and always for validation) leaves them as they are.
    Randomness comes from ``numpy.random``, which ESPnet reseeds every epoch, so a run is reproducible.
    """

    def __init__(self, float_pad_value: float = 0.0, int_pad_value: int = -1, splice_prob: float = 0.0):
        if not 0.0 <= splice_prob <= 1.0:
            raise ValueError(f"splice_prob must be in [0, 1], got {splice_prob}")
        self.float_pad_value = float_pad_value
        self.int_pad_value = int_pad_value
        self.splice_prob = splice_prob

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(float_pad_value={self.float_pad_value}, "
                f"int_pad_value={self.int_pad_value}, splice_prob={self.splice_prob})")

    def __call__(
        self, data: Collection[Tuple[str, Dict[str, np.ndarray]]]
    ) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        uids = [uid for uid, _ in data]
        examples = [example for _, example in data]
        names = set(examples[0])
        for uid, example in zip(uids, examples):
            if set(example) != names:
                raise ValueError(f"utterance {uid} has data {sorted(example)} but {uids[0]} has {sorted(names)}; "
                                 "every --*_data_path_and_name_and_type file must list the same utterances")
        reserved = [name for name in names if name.endswith("_lengths")]
        if reserved:
            raise ValueError(f"data names ending in _lengths are reserved for the lengths: {reserved}")
        if self.splice_prob > 0:
            if ALIGN_NAME not in names:
                raise ValueError("splice_prob > 0 needs each training utterance's character alignment as "
                                 "'frame_align' (vsr.sh --frame_align align.scp); set splice_prob: 0 otherwise")
            unknown = names - set(FRAME_NAMES) - set(TOKEN_NAMES)
            if unknown:
                raise ValueError(f"splice_prob > 0: do not know how to cut data {sorted(unknown)} "
                                 f"(per-frame: {FRAME_NAMES}, per-token: {TOKEN_NAMES})")
            examples = splice_batch(examples, self.splice_prob)
        batch = {}
        for name in examples[0]:
            if name == ALIGN_NAME:  # drives the cut only; the model never sees it
                continue
            arrays = [example[name] for example in examples]
            pad = self.int_pad_value if arrays[0].dtype.kind == "i" else self.float_pad_value
            batch[name] = pad_list([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays], pad)
            batch[name + "_lengths"] = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
        return uids, batch


def cut_points(example: Dict[str, np.ndarray]) -> Optional[np.ndarray]:
    """Frame where each character 1..N-1 starts (N = transcript length), or None when the utterance cannot be
    cut: fewer than 2 characters, or an alignment that does not cover every character of its token sequences
    in order (e.g. a transcript whose normalisation added characters the video does not speak)."""
    align = np.asarray(example[ALIGN_NAME])
    n = len(example["text"])
    if n < 2 or any(len(example[k]) != n for k in TOKEN_NAMES if k in example):
        return None
    if len(align) != len(example["video"]):
        return None
    spoken = align[align >= 0]
    if len(spoken) == 0 or spoken.max() != n - 1 or np.any(np.diff(spoken) < 0) \
            or len(np.unique(spoken)) != n:
        return None
    return np.array([int(np.argmax(align == k)) for k in range(1, n)])  # first frame of each character


def splice_batch(examples: List[Dict[str, np.ndarray]], prob: float) -> List[Dict[str, np.ndarray]]:
    """Pair the batch's utterances at random and, with probability ``prob`` per pair, swap their tails after a
    random character boundary of each (module docstring). Utterances that cannot be cut stay as they are."""
    out = list(examples)
    order = np.random.permutation(len(examples))
    for a, b in zip(order[0::2], order[1::2]):
        if np.random.rand() >= prob:
            continue
        ca, cb = cut_points(examples[a]), cut_points(examples[b])
        if ca is None or cb is None:
            continue
        i = np.random.randint(1, len(ca) + 1)  # characters kept from A's head (1..N_A-1)
        j = np.random.randint(1, len(cb) + 1)
        fa, fb = int(ca[i - 1]), int(cb[j - 1])
        ea, eb = examples[a], examples[b]
        new_a, new_b = {}, {}
        for name in ea:
            if name in TOKEN_NAMES:
                ka, kb = i, j
            else:
                ka, kb = fa, fb
            new_a[name] = np.concatenate([ea[name][:ka], eb[name][kb:]])
            new_b[name] = np.concatenate([eb[name][:kb], ea[name][ka:]])
        out[a], out[b] = new_a, new_b
    return out

"""Batching of VSR examples for ESPnet's data loader: pad each named array along time and add its lengths.

The same batch ESPnet's ``espnet2.train.collate_fn.CommonCollateFn`` makes, without importing that module: it
imports ``espnet2.train.preprocessor``, whose tokenizer table imports ``g2p_en``, which calls ``nltk.download``
at import time (a network attempt in every process) and costs ~6 s of start-up on a 2-core host. Padding itself
is ESPnet's ``pad_list``.
"""

from __future__ import annotations

from typing import Collection, Dict, List, Tuple

import numpy as np
import torch

from espnet.nets.pytorch_backend.nets_utils import pad_list


class VSRCollateFn:
    """``[(uid, {name: (T_i, ...) array})] -> ([uid], {name: (B, T_max, ...) tensor, name_lengths: (B,) int64})``.

    Integer arrays (token ids) are padded with ``int_pad_value`` (-1 = ignore_id; 0 is the CTC blank), others
    (float32 video) with ``float_pad_value``.
    """

    def __init__(self, float_pad_value: float = 0.0, int_pad_value: int = -1):
        self.float_pad_value = float_pad_value
        self.int_pad_value = int_pad_value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(float_pad_value={self.float_pad_value}, int_pad_value={self.int_pad_value})"

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
        batch = {}
        for name in examples[0]:
            arrays = [example[name] for example in examples]
            pad = self.int_pad_value if arrays[0].dtype.kind == "i" else self.float_pad_value
            batch[name] = pad_list([torch.from_numpy(a) for a in arrays], pad)
            batch[name + "_lengths"] = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
        return uids, batch

"""The VSR task's batches: what ESPnet's CommonCollateFn would make (padding values, lengths), and clear errors."""

import numpy as np
import pytest
import torch

from vallr_pin.tasks.vsr import VSRTask


def test_collate_pads_video_with_zero_and_tokens_with_ignore_id():
    collate = VSRTask.build_collate_fn(None, train=True)
    batch = [("u2", {"video": np.ones((3, 4), np.float32), "text": np.array([5, 6], np.int64)}),
             ("u1", {"video": np.full((5, 4), 2, np.float32), "text": np.array([7, 8, 9], np.int64)})]
    uids, out = collate(batch)
    assert uids == ["u2", "u1"]
    assert out["video"].shape == (2, 5, 4) and out["video"].dtype == torch.float32
    assert out["video"][0, 3:].eq(0).all() and out["video"][1].eq(2).all()
    assert out["text"].tolist() == [[5, 6, -1], [7, 8, 9]] and out["text"].dtype == torch.int64
    assert out["video_lengths"].tolist() == [3, 5] and out["text_lengths"].tolist() == [2, 3]
    with pytest.raises(ValueError, match="utterance u1 has data"):
        collate([("u2", {"video": np.ones((3, 4), np.float32)}), ("u1", {"text": np.array([1])})])

"""The VSR task's batches: what ESPnet's CommonCollateFn would make (padding values, lengths), and clear errors."""

import argparse

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


def _aligned_utt(utt: int, n_chars: int, frames_per_char: int = 3, lead: int = 2):
    """An utterance whose every frame and token says what it is: value 100*utt + character index (-1 = pause)."""
    align = np.full(lead + n_chars * frames_per_char + lead, -1, np.int64)
    for k in range(n_chars):
        align[lead + k * frames_per_char: lead + (k + 1) * frames_per_char] = k
    who = np.where(align >= 0, 100 * utt + align, -1)
    return {"video": np.repeat(who[:, None], 4, axis=1).astype(np.float32),
            "frame_labels": who.copy(), "frame_align": align,
            "text": 100 * utt + np.arange(n_chars, dtype=np.int64),
            "text_pinyin": 1000 + 100 * utt + np.arange(n_chars, dtype=np.int64)}


def _spoken_tokens(video_row: np.ndarray, length: int):
    """The token sequence a spliced video speaks: its frames' values, pauses and repeats removed."""
    vals = [int(v) for v in video_row[:length, 0] if v >= 0]
    return [v for k, v in enumerate(vals) if k == 0 or v != vals[k - 1]]


def test_splice_cuts_video_frame_data_and_tokens_at_the_same_character_boundary():
    collate = VSRTask.build_collate_fn(argparse.Namespace(splice_prob=1.0), train=True)
    batch = [(f"u{k}", _aligned_utt(k, n)) for k, n in enumerate([4, 5, 6, 3, 7, 5])]
    np.random.seed(0)
    uids, out = collate(batch)
    assert "frame_align" not in out and "frame_align_lengths" not in out  # drives the cut only
    assert out["video_lengths"].sum().item() == sum(len(e["video"]) for _, e in batch)  # no frame lost or added
    spliced = 0
    for b in range(len(uids)):
        n_tok = out["text_lengths"][b].item()
        tokens = out["text"][b, :n_tok].tolist()
        assert _spoken_tokens(out["video"][b].numpy(), out["video_lengths"][b].item()) == tokens
        assert out["text_pinyin"][b, :n_tok].tolist() == [1000 + t for t in tokens]
        frames = out["frame_labels"][b, :out["frame_labels_lengths"][b]].numpy()
        assert np.array_equal(frames, out["video"][b, :len(frames), 0].numpy().astype(np.int64))
        spliced += len({t // 100 for t in tokens}) == 2
    assert spliced == len(uids)  # every pair spliced at prob 1: each utterance now speaks two sources


def test_splice_is_reproducible_off_for_validation_and_leaves_uncuttable_utterances():
    batch = [(f"u{k}", _aligned_utt(k, n)) for k, n in enumerate([4, 5, 6, 3])]
    train = VSRTask.build_collate_fn(argparse.Namespace(splice_prob=1.0), train=True)
    np.random.seed(3)
    a = train(batch)[1]
    np.random.seed(3)
    b = train(batch)[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    valid = VSRTask.build_collate_fn(argparse.Namespace(splice_prob=1.0), train=False)
    _, v = valid(batch)
    assert v["text"][0, :4].tolist() == [0, 1, 2, 3] and "frame_align" not in v
    bad = _aligned_utt(0, 4)
    bad["text"] = np.arange(5, dtype=np.int64)  # normalisation added a character the video does not speak
    one = [("bad", bad), ("ok", _aligned_utt(1, 4))]
    np.random.seed(0)
    _, out = train(one)
    assert out["text"][0].tolist() == list(range(5)) and out["text"][1, :4].tolist() == [100, 101, 102, 103]


def test_splice_needs_the_alignment_and_known_data():
    collate = VSRTask.build_collate_fn(argparse.Namespace(splice_prob=0.5), train=True)
    plain = {"video": np.ones((3, 4), np.float32), "text": np.array([5, 6], np.int64)}
    with pytest.raises(ValueError, match="--frame_align align.scp"):
        collate([("u1", plain), ("u2", dict(plain))])
    odd = dict(_aligned_utt(0, 3), speed=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="speed"):
        collate([("u1", odd), ("u2", dict(odd))])
    with pytest.raises(ValueError, match="splice_prob"):
        VSRTask.build_collate_fn(argparse.Namespace(splice_prob=1.5), train=True)

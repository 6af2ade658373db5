"""test/bench/bench_stage2_beyond.py's own logic: what it feeds stage 7 and how it chooses on dev (the bench
itself needs a finished recipe and is not run here)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

from bench_stage2_beyond import on_dev, stage7_inputs  # noqa: E402


def test_on_dev_takes_the_lowest_dev_cer_and_the_first_listed_on_a_tie():
    assert on_dev({0.5: 48.3, 1.0: 47.9, 2.0: 48.1}) == 1.0
    assert on_dev({2.0: 47.9, 0.5: 47.9, 1.0: 48.0}) == 2.0
    with pytest.raises(ValueError):
        on_dev({})


def make_decodes(vsr: Path, ckpts, sets):
    for c in ckpts:
        (vsr / "ckpt_keep").mkdir(parents=True, exist_ok=True)
        (vsr / "ckpt_keep" / f"{c}.pth").write_bytes(b"")
        for s in sets:
            (vsr / f"decode_vsr_{c}" / s).mkdir(parents=True, exist_ok=True)
            (vsr / f"decode_vsr_{c}" / s / "nbest.jsonl").write_text("{}\n")


def test_stage7_reads_every_kept_checkpoint_in_epoch_order_and_the_training_subset(tmp_path):
    vsr = tmp_path / "vsr_dual"
    make_decodes(vsr, ["12epoch", "3epoch", "6epoch"], ["train_sub1200", "dev"])
    (vsr / "decode_vsr_valid.acc_char.ave" / "test").mkdir(parents=True)  # stage 5's: not a kept checkpoint
    train, dev = stage7_inputs(vsr, "vsr", "dev")
    assert train == [f"{c}={vsr}/decode_vsr_{c}/train_sub1200/nbest.jsonl" for c in ("3epoch", "6epoch", "12epoch")]
    assert dev == [f"{c}={vsr}/decode_vsr_{c}/dev/nbest.jsonl" for c in ("3epoch", "6epoch", "12epoch")]


def test_stage7_training_set_must_be_unambiguous_or_given(tmp_path):
    vsr = tmp_path / "vsr_dual"
    make_decodes(vsr, ["3epoch", "6epoch"], ["train", "train_sub100", "dev"])
    with pytest.raises(SystemExit, match="--nbest-train"):
        stage7_inputs(vsr, "vsr", "dev")
    train, _ = stage7_inputs(vsr, "vsr", "dev", train="train_sub100")
    assert train[0].endswith("decode_vsr_3epoch/train_sub100/nbest.jsonl")
    (vsr / "decode_vsr_6epoch" / "dev" / "nbest.jsonl").unlink()
    with pytest.raises(SystemExit, match="stage 6"):
        stage7_inputs(vsr, "vsr", "dev", train="train")

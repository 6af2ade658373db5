"""make_tiny_llm: the tiny LLM of the mini recipe must not depend on the host's speed (stage 0 builds it while
the videos render, so a slow or busy host is the usual case)."""

from __future__ import annotations

import itertools

from llm_testdata import SENTS


def _build(tmp_path, monkeypatch, name: str, **kw):
    import torch

    from vallr_pin.bin import make_tiny_llm as m

    clock = itertools.count(0, 600)  # every look at the clock is ten minutes later: a very slow host
    monkeypatch.setattr(m.time, "time", lambda: float(next(clock)))
    torch.set_num_threads(1)
    text = tmp_path / "text"
    text.write_text("".join(f"{s}\n" for s in SENTS), encoding="utf-8")
    return m.make_tiny_llm([str(text)], str(tmp_path / name), vocab_size=400, hidden=32, layers=1, heads=2,
                           kv_heads=1, max_pos=256, steps=6, batch_size=2, block_size=16, max_phrases=50, seed=0,
                           **kw)


def test_pretraining_runs_every_step_by_default_however_slow_the_host(tmp_path, monkeypatch):
    from vallr_pin.bin.make_tiny_llm import get_parser

    assert get_parser().parse_args(["--text", "t", "--out", "o"]).max_minutes == 0
    summary = _build(tmp_path, monkeypatch, "default")
    assert summary["steps"] == 6
    # an explicit cap still stops it (the option stays for people who want it), after the first step
    assert _build(tmp_path, monkeypatch, "capped", max_minutes=5.0)["steps"] == 1

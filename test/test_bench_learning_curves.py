"""test/bench/bench_learning_curves.py reads ESPnet's train.log as ESPnet writes it: humanfriendly epoch times,
an epoch logged again by a resumed run, and a clear error for a directory that is not an experiment."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))

from bench_learning_curves import main, parse_train_log  # noqa: E402

_LINE = ("[vm] 2026-12-07 19:51:29,913 (trainer:394) INFO: {e}epoch results: [train] iter_time=0.010, "
         "acc_char=0.5, optim0_lr0=3.000e-03, train_time=0.210, time={t}, total_count={n}, [valid] loss_char=16.9, "
         "acc_char={acc}, cer_ctc_char=0.7, cer_ctc_pinyin={cer}, loss=20.7, time=0.9 seconds, total_count=162\n")


def _log(tmp_path: Path, name: str, rows) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "train.log").write_text("".join(_LINE.format(e=e, t=t, n=e * 266, acc=a, cer=c) for e, t, a, c in rows)
                                 + "[vm] INFO: some other line, time=3 seconds\n", encoding="utf-8")
    return d


def test_parse_train_log_reads_espnet_times_and_keeps_an_epochs_last_line(tmp_path):
    d = _log(tmp_path, "a", [(1, "55.78 seconds", 0.2, 0.99), (2, "1 minute and 0.87 seconds", 0.3, 0.6),
                             (2, "1 minute and 2.5 seconds", 0.31, 0.58),  # epoch 2 again, after a resume
                             (3, "1 hour, 2 minutes and 3 seconds", 0.4, 0.5)])
    rows = parse_train_log(d / "train.log")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["train_seconds"] for r in rows] == pytest.approx([55.78, 62.5, 3723.0])
    assert rows[1]["valid.acc_char"] == 0.31 and rows[1]["valid.cer_ctc_pinyin"] == 0.58
    assert rows[0]["train.acc_char"] == 0.5 and rows[0]["train.optim0_lr0"] == pytest.approx(3e-3)
    assert "train.time" not in rows[0]


def test_main_prints_both_runs_side_by_side_and_draws(tmp_path, capsys):
    a = _log(tmp_path, "a", [(1, "60 seconds", 0.2, 0.9), (2, "60 seconds", 0.3, 0.5)])
    b = _log(tmp_path, "b", [(1, "30 seconds", 0.25, 0.8)])
    png = tmp_path / "c.png"
    assert main(["--exp", f"long={a}", "--exp", f"short={b}", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "0.500 (  2.0)" in out and "0.800 (  0.5)" in out  # cumulative minutes per run
    assert png.stat().st_size > 0


def test_main_says_what_is_wrong(tmp_path, capsys):
    assert main(["--exp", str(tmp_path)]) == 2
    assert "train.log not found" in capsys.readouterr().err
    a = _log(tmp_path, "a", [(1, "60 seconds", 0.2, 0.9)])
    assert main(["--exp", str(a), "--metric", "valid.acc_pinyin"]) == 2
    assert "has no valid.acc_pinyin" in capsys.readouterr().err


def test_without_arguments_it_skips_when_the_demo_has_not_trained(tmp_path, monkeypatch, capsys):
    # `make bench` runs every bench without arguments and stops at the first non-zero exit
    import bench_learning_curves

    fake = tmp_path / "test" / "bench" / "bench_learning_curves.py"
    monkeypatch.setattr(bench_learning_curves, "__file__", str(fake))
    assert main([]) == 0
    assert "skipped" in capsys.readouterr().out
    exp = tmp_path / "egs" / "mini_cnvsrc" / "vsr1" / "exp"
    exp.mkdir(parents=True)
    _log(exp, "vsr_dual", [(1, "60 seconds", 0.2, 0.9)])
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "valid.acc_char" in out and "dual" in out and "0.200 (  1.0)" in out


def test_a_log_without_results_or_a_bare_directory_argument(tmp_path, capsys):
    d = tmp_path / "vsr_x"
    d.mkdir()
    (d / "train.log").write_text("[vm] INFO: starting\n", encoding="utf-8")
    assert main(["--exp", str(d)]) == 2
    assert "no 'Nepoch results' line" in capsys.readouterr().err
    a = _log(tmp_path, "vsr_y", [(1, "60 seconds", 0.2, 0.9)])
    assert main(["--exp", str(a)]) == 0
    assert "vsr_y" in capsys.readouterr().out  # the directory's name labels it

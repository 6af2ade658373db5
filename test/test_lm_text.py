"""The character LM's text (stage 2 with --use_lm true): what reaches it and what must not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, lines) -> Path:
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return path


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vallr_pin.bin.prepare_lm_text", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_transcripts_whole_clauses_cut_held_out_and_unknown_characters_dropped(tmp_path):
    train = _write(tmp_path / "train_text", ["u1 我们今天去学校", "u2 他开车的速度太快了吗"])
    dev = _write(tmp_path / "dev_text", ["d1 他开车的速度太快了"])
    test = _write(tmp_path / "test_text", ["t1 今天好"])
    extra = _write(tmp_path / "extra.txt", [
        "我们去学校，他开车。",        # two clauses, both kept
        "今天好！我们好",              # the first is a test sentence: dropped; the second kept
        "他开车的速度太快了，我们好",   # a dev sentence: dropped; the clause after it is a duplicate
        "１９９８年我们去！Hi",        # digits are read by the normaliser, Latin dropped
        "我们今天去学校",              # a training sentence again: duplicate
    ])
    out = tmp_path / "lm"
    r = _run("--out-dir", out, "--transcripts", train, "--valid", dev,
             "--held-out", dev, test, "--text", extra)
    assert r.returncode == 0, r.stderr
    lines = out.joinpath("train.txt").read_text(encoding="utf-8").splitlines()
    # u2 is a near copy of the dev sentence (it contains it): it never reaches the LM either
    assert [ln.split(" ", 1)[1] for ln in lines] == ["我们今天去学校", "我们去学校", "他开车", "我们好",
                                                          "一九九八年我们去"]
    assert len({ln.split(" ", 1)[0] for ln in lines}) == len(lines)  # unique ids
    assert out.joinpath("valid.txt").read_text(encoding="utf-8") == "d1 他开车的速度太快了\n"
    stats = json.loads(out.joinpath("lm_text_stats.json").read_text(encoding="utf-8"))
    assert stats[str(train)] == {"kept": 1}
    s = stats[str(extra)]
    assert (s["kept"], s["held_out"], s["duplicate"]) == (4, 2, 2), s
    assert s["clauses"] == s["kept"] + s["held_out"] + s["duplicate"]


def test_missing_file_is_one_line_and_nothing_is_written(tmp_path):
    train = _write(tmp_path / "text", ["u1 我"])
    r = _run("--out-dir", tmp_path / "lm", "--transcripts", train,
             "--valid", tmp_path / "no_dev_text")
    assert r.returncode != 0
    assert "no_dev_text: no such file" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "lm" / "train.txt").exists()


def test_text_that_is_not_utf8_is_named(tmp_path):
    train = _write(tmp_path / "text", ["u1 我们"])
    bad = tmp_path / "gbk.txt"
    bad.write_bytes("我们去学校\n".encode("gb18030"))
    r = _run("--out-dir", tmp_path / "lm", "--transcripts", train, "--valid", train, "--text", bad)
    assert r.returncode != 0 and "gbk.txt: not UTF-8" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "lm" / "train.txt").exists()

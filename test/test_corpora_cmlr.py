"""Stage 0 for CMLR: a fake tree in the released layout -> data/{train,dev,test} per the official lists."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vallr_pin.bin import prepare_corpus
from vallr_pin.datadir import read_kv

REPO = Path(__file__).resolve().parents[1]


def make_mp4(path: Path, frames: int = 3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (32, 32))
    for i in range(frames):
        w.write(np.full((32, 32, 3), 40 * i, np.uint8))
    w.release()
    assert path.stat().st_size > 0


# entry -> (sentence, encoding, split list)
ENTRIES = {
    "s1/20170121/section_1_000.80_002.91": ("于是我们就陷入了这样一个情景", "utf-8", "train.csv"),
    "s1/20170121/section_2_003.10_005.00": ("今天是星期六", "gbk", "train.csv"),
    "s2/20170830/section_3_006.72_009.22": ("新闻联播节目", "utf-8-sig", "train.csv"),
    "s10/20180102/section_1_000.20_001.50": ("开发集句子", "utf-8", "val.csv"),
    "s3/20171111/section_5_010.00_012.40": ("测试集句子", "gbk", "test.csv"),
}


def utt_id(entry: str) -> str:
    spk, date, section = entry.split("/")
    return f"{spk}-{date}-{section}"


@pytest.fixture()
def cmlr(tmp_path):
    root = tmp_path / "CMLR"
    lists = {"train.csv": [], "val.csv": [], "test.csv": []}
    for entry, (text, enc, lst) in ENTRIES.items():
        make_mp4(root / "video" / f"{entry}.mp4")
        t = root / "text" / f"{entry}.txt"
        t.parent.mkdir(parents=True, exist_ok=True)
        # first line the sentence, then a pinyin line the reader must ignore
        t.write_bytes(f"{text}\nyu shi wo men\n".encode(enc))
        lists[lst].append(entry)
    for name, entries in lists.items():
        (root / name).write_text("".join(e + "\n" for e in entries), encoding="utf-8")
    return root


def check_data_dir(d: Path):
    files = {}
    for name in ("video.scp", "text", "utt2spk", "spk2utt"):
        keys = [ln.split(maxsplit=1)[0] for ln in (d / name).read_text(encoding="utf-8").splitlines()]
        assert keys == sorted(keys, key=lambda k: k.encode("utf-8")), f"{d/name} not in C order"
        files[name] = read_kv(d / name)
    assert files["video.scp"].keys() == files["text"].keys() == files["utt2spk"].keys()
    spks = [files["utt2spk"][u] for u in files["utt2spk"]]  # Kaldi: utt order also sorts speakers
    assert spks == sorted(spks, key=lambda k: k.encode("utf-8"))
    for utt, spk in files["utt2spk"].items():
        assert utt.startswith(spk + "-") and " " not in utt
    assert sorted(u for us in files["spk2utt"].values() for u in us.split()) == sorted(files["utt2spk"])
    for path in files["video.scp"].values():
        assert os.path.isabs(path) and os.path.isfile(path)
    return files


def run(root: Path, out: Path, *extra: str) -> None:
    prepare_corpus.main(["--corpus", "cmlr", "--cmlr-root", str(root), "--data-dir", str(out), *extra])


def test_splits_ids_and_texts(cmlr, tmp_path):
    out = tmp_path / "data"
    run(cmlr, out)
    for split, lst in (("train", "train.csv"), ("dev", "val.csv"), ("test", "test.csv")):
        files = check_data_dir(out / split)
        expected = {utt_id(e): t for e, (t, _, l) in ENTRIES.items() if l == lst}
        assert files["text"] == expected  # UTF-8, GBK and BOM transcripts; pinyin line ignored
        assert {u: s for u, s in files["utt2spk"].items()} == {u: u.split("-")[0] for u in expected}
    video = read_kv(out / "train" / "video.scp")
    e = "s1/20170121/section_1_000.80_002.91"
    assert video[utt_id(e)] == str((cmlr / "video" / f"{e}.mp4").resolve())
    assert read_kv(out / "train" / "spk2utt")["s1"].split() == sorted(
        utt_id(e) for e in ENTRIES if e.startswith("s1/"))


def test_header_and_separate_lists_dir(cmlr, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("train.csv", "val.csv", "test.csv"):
        body = (cmlr / name).read_text(encoding="utf-8")
        (lists / name).write_text("path\n" + body.replace("\n", ",extra\n"), encoding="utf-8")
        (cmlr / name).unlink()
    out = tmp_path / "data"
    run(cmlr, out, "--cmlr-lists-dir", str(lists))
    assert len(read_kv(out / "train" / "text")) == 3


def test_missing_transcript_is_named(cmlr, tmp_path):
    missing = cmlr / "text" / "s2/20170830/section_3_006.72_009.22.txt"
    missing.unlink()
    r = subprocess.run([sys.executable, "-m", "vallr_pin.bin.prepare_corpus", "--corpus", "cmlr", "--cmlr-root",
                        str(cmlr), "--data-dir", str(tmp_path / "d")], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1 and str(missing) in r.stderr
    assert not (tmp_path / "d" / "train").exists()


def test_missing_video_is_named(cmlr, tmp_path, caplog):
    missing = cmlr / "video" / "s1/20170121/section_2_003.10_005.00.mp4"
    missing.unlink()
    with pytest.raises(SystemExit):
        run(cmlr, tmp_path / "d")
    assert str(missing) in caplog.text
    run(cmlr, tmp_path / "d", "--allow-missing")  # skipped with a warning instead
    assert len(read_kv(tmp_path / "d" / "train" / "text")) == 2


def test_overlapping_lists_rejected(cmlr, tmp_path, caplog):
    with open(cmlr / "test.csv", "a", encoding="utf-8") as f:
        f.write("s1/20170121/section_1_000.80_002.91\n")
    with pytest.raises(SystemExit):
        run(cmlr, tmp_path / "d")
    assert "also in the train list" in caplog.text


NEEDED_UTILS = ("parse_options.sh", "fix_data_dir.sh", "validate_data_dir.sh")


@pytest.mark.skipif(not all((REPO / "utils" / u).exists() for u in NEEDED_UTILS),
                    reason="utils/{fix,validate}_data_dir.sh not written yet")
def test_local_data_sh(cmlr, tmp_path):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "local").symlink_to(REPO / "egs/cmlr/vsr1/local")
    (recipe / "utils").symlink_to(REPO / "utils")
    shutil.copy(REPO / "egs/cmlr/vsr1/db.sh", recipe / "db.sh")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C.UTF-8", "CMLR": str(cmlr),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "local/data.sh", "--python", sys.executable], cwd=recipe, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for split, n in (("train", 3), ("dev", 1), ("test", 1)):
        assert len(check_data_dir(recipe / "data" / split)["text"]) == n

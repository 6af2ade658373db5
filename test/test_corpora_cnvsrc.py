"""Stage 0 for CNVSRC: fake trees in the released layouts -> data/{train,dev,test}.

The trees copy the layouts documented in vallr_pin/corpora/cnvsrc.py (tiny real mp4 files, UTF-8 / GBK /
UTF-8-with-BOM transcripts, a baseline-style list file with token ids)."""

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


def make_utt(video: Path, text: str, encoding: str = "utf-8") -> None:
    """video at .../video/<id>.mp4, transcript at .../text/<id>.txt (assumed layout)."""
    make_mp4(video)
    t = video.parent.parent / "text" / f"{video.stem}.txt"
    t.parent.mkdir(parents=True, exist_ok=True)
    t.write_bytes((text + "\n").encode(encoding))


# id -> (video relative to the tree root, transcript, encoding)
UTTS = {
    "n001_00001_001": ("cncvs/news/n001/video/n001_00001_001.mp4", "新闻联播现在开始", "utf-8"),
    "s00001_001_00001": ("cncvs/speech/s00001/video/s00001_001_00001.mp4", "大家好我是演讲者", "gbk"),
    "s00001_001_00002": ("cncvs/speech/s00001/video/s00001_001_00002.mp4", "今天天气很好", "utf-8-sig"),
    # same speaker folder name in another corpus: must stay a different speaker
    "s00001_000_00001": ("cncvs2_p1/s00001/video/s00001_000_00001.mp4", "第二部分的句子", "utf-8"),
    "c3_0001": ("cncvs3/speech/s00009/video/c3_0001.mp4", "第三部分的句子", "utf-8"),
    "80100001": ("CNVSRC/cnvsrc-multi/dev/video/80100001.mp4", "多人开发集一", "utf-8"),
    "80100002": ("CNVSRC/cnvsrc-multi/dev/video/80100002.mp4", "多人开发集二", "utf-8"),
    "80130001": ("CNVSRC/cnvsrc-multi/dev/video/80130001.mp4", "多人开发集三", "gbk"),
    "00023065": ("CNVSRC/cnvsrc-single/dev/video/00023065.mp4", "单人开发集", "utf-8"),
    "80200001": ("CNVSRC/cnvsrc-multi/eval/video/80200001.mp4", "多人评测集", "utf-8"),
}
EXPECTED_UTT = {
    "n001_00001_001": "cncvs_n001-n001_00001_001",
    "s00001_001_00001": "cncvs_s00001-s00001_001_00001",
    "s00001_001_00002": "cncvs_s00001-s00001_001_00002",
    "s00001_000_00001": "cncvs2p1_s00001-s00001_000_00001",
    "c3_0001": "cncvs3_s00009-c3_0001",
    "80100001": "multi_80100-80100001",
    "80100002": "multi_80100-80100002",
    "80130001": "multi_80130-80130001",
    "00023065": "single-00023065",
    "80200001": "multi_80200-80200001",
}


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "corpora"
    for rel, text, enc in UTTS.values():
        make_utt(root / rel, text, enc)
    # CNVSRC baseline list: the held-out part of CNVSRC-Multi.Dev
    (root / "valid.csv").write_text("cnvsrc-multi,dev/video/80100002.mp4,74,5 7 9\n", encoding="utf-8")
    return root


def base_args(root: Path, out: Path, composition: str = "S3"):
    return [
        "--corpus", "cnvsrc", "--data-dir", str(out), "--train-set-composition", composition,
        "--cncvs-root", str(root / "cncvs"), "--cncvs2-p1-root", str(root / "cncvs2_p1"),
        "--cncvs3-root", str(root / "cncvs3"), "--cnvsrc-root", str(root / "CNVSRC"),
        "--dev-list", str(root / "valid.csv"),
    ]


def check_data_dir(d: Path):
    """Sorted (C order), consistent keys, speaker-prefixed ids, existing absolute videos; returns files."""
    files = {}
    for name in ("video.scp", "text", "utt2spk", "spk2utt"):
        lines = (d / name).read_text(encoding="utf-8").splitlines()
        keys = [ln.split(maxsplit=1)[0] for ln in lines]
        assert keys == sorted(keys, key=lambda k: k.encode("utf-8")), f"{d/name} not in C order"
        files[name] = read_kv(d / name)
    assert files["video.scp"].keys() == files["text"].keys() == files["utt2spk"].keys()
    spks = [files["utt2spk"][u] for u in files["utt2spk"]]  # Kaldi: utt order also sorts speakers
    assert spks == sorted(spks, key=lambda k: k.encode("utf-8"))
    for utt, spk in files["utt2spk"].items():
        assert utt.startswith(spk + "-")
        assert " " not in utt
    spk2utt = {s: u.split() for s, u in files["spk2utt"].items()}
    assert sorted(u for us in spk2utt.values() for u in us) == sorted(files["utt2spk"])
    for path in files["video.scp"].values():
        assert os.path.isabs(path) and os.path.isfile(path)
    return files


def ids(files):
    return set(files["text"])


@pytest.mark.parametrize(
    "composition,extra",
    [("S1", set()), ("S2", {"s00001_000_00001"}), ("S3", {"s00001_000_00001", "c3_0001"})],
)
def test_compositions_and_splits(tree, tmp_path, composition, extra):
    out = tmp_path / "data"
    prepare_corpus.main(base_args(tree, out, composition))
    train, dev, test = (check_data_dir(out / s) for s in ("train", "dev", "test"))
    s1 = {"n001_00001_001", "s00001_001_00001", "s00001_001_00002", "80100001", "80130001", "00023065"}
    assert ids(train) == {EXPECTED_UTT[k] for k in s1 | extra}
    assert ids(dev) == {EXPECTED_UTT["80100002"]}  # the held-out list, removed from training
    assert ids(test) == {EXPECTED_UTT["80200001"]}
    assert not ids(train) & ids(dev)


def test_texts_speakers_and_encodings(tree, tmp_path):
    out = tmp_path / "data"
    prepare_corpus.main(base_args(tree, out))
    got = {}
    for s in ("train", "dev", "test"):
        got.update(read_kv(out / s / "text"))
    assert got == {EXPECTED_UTT[k]: v[1] for k, v in UTTS.items()}  # GBK and BOM files read correctly
    utt2spk = read_kv(out / "train" / "utt2spk")
    assert utt2spk[EXPECTED_UTT["s00001_001_00001"]] != utt2spk[EXPECTED_UTT["s00001_000_00001"]]
    video = read_kv(out / "train" / "video.scp")
    assert video[EXPECTED_UTT["n001_00001_001"]] == str((tree / UTTS["n001_00001_001"][0]).resolve())


def test_label_csv_with_token_ids(tree, tmp_path):
    """Baseline list rows with char_units token ids give the transcripts; no text/ file is read."""
    units = tmp_path / "char_units.txt"
    units.write_text("<unk> 1\n多 2\n人 3\n列 4\n表 5\n", encoding="utf-8")
    lst = tmp_path / "multi_dev.csv"
    lst.write_text("cnvsrc-multi,dev/video/80100001.mp4,70,2 3 4 5\n"
                   "cnvsrc-multi,dev/video/80100002.mp4,74,4 5\n", encoding="utf-8")
    shutil.rmtree(tree / "CNVSRC/cnvsrc-multi/dev/text")
    out = tmp_path / "data"
    prepare_corpus.main(base_args(tree, out, "S1") + [
        "--label-csv", f"multi_dev={lst}", "--char-units", str(units)])
    train = read_kv(out / "train" / "text")
    assert train[EXPECTED_UTT["80100001"]] == "多人列表"
    assert EXPECTED_UTT["80130001"] not in train  # not listed -> not used
    assert read_kv(out / "dev" / "text") == {EXPECTED_UTT["80100002"]: "列表"}


def test_dev_overlap_needs_heldout_list(tree, tmp_path, caplog):
    args = [a for a in base_args(tree, tmp_path / "data") if a not in ("--dev-list", str(tree / "valid.csv"))]
    with pytest.raises(SystemExit):
        prepare_corpus.main(args)
    assert "--dev-list" in caplog.text
    assert not (tmp_path / "data" / "train").exists()


def test_missing_transcript_is_named(tree, tmp_path):
    missing = tree / "cncvs/speech/s00001/text/s00001_001_00002.txt"
    missing.unlink()
    r = subprocess.run([sys.executable, "-m", "vallr_pin.bin.prepare_corpus"] + base_args(tree, tmp_path / "d"),
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1
    assert str(missing) in r.stderr and "--allow-missing" in r.stderr
    assert not (tmp_path / "d" / "train").exists()  # nothing half-written
    prepare_corpus.main(base_args(tree, tmp_path / "d") + ["--allow-missing"])
    assert EXPECTED_UTT["s00001_001_00002"] not in read_kv(tmp_path / "d" / "train" / "text")


def test_missing_video_in_list_is_named(tree, tmp_path, caplog):
    lst = tmp_path / "l.csv"
    lst.write_text("cnvsrc-multi,dev/video/80100001.mp4,70,多人\ncnvsrc-multi,dev/video/80100002.mp4,70,列表\n"
                   "cnvsrc-multi,dev/video/89999999.mp4,70,没有\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        prepare_corpus.main(base_args(tree, tmp_path / "d", "S1") + ["--label-csv", f"multi_dev={lst}"])
    assert "89999999.mp4" in caplog.text


def test_help():
    r = subprocess.run([sys.executable, "-m", "vallr_pin.bin.prepare_corpus", "--help"], capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "--train-set-composition" in r.stdout


NEEDED_UTILS = ("parse_options.sh", "fix_data_dir.sh", "validate_data_dir.sh")


@pytest.mark.skipif(not all((REPO / "utils" / u).exists() for u in NEEDED_UTILS),
                    reason="utils/{fix,validate}_data_dir.sh not written yet")
def test_local_data_sh(tree, tmp_path):
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "local").symlink_to(REPO / "egs/cnvsrc/vsr1/local")
    (recipe / "utils").symlink_to(REPO / "utils")
    shutil.copy(REPO / "egs/cnvsrc/vsr1/db.sh", recipe / "db.sh")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LC_ALL": "C.UTF-8", "CNVSRC": str(tree / "CNVSRC"),
           "CNCVS": str(tree / "cncvs"), "CNCVS2_P1": str(tree / "cncvs2_p1"), "CNCVS3": str(tree / "cncvs3"),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "local/data.sh", "--python", sys.executable, "--train-set-composition", "S2",
                        "--dev-list", str(tree / "valid.csv")], cwd=recipe, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    train = check_data_dir(recipe / "data" / "train")
    assert EXPECTED_UTT["s00001_000_00001"] in ids(train) and EXPECTED_UTT["c3_0001"] not in ids(train)
    assert ids(check_data_dir(recipe / "data" / "dev")) == {EXPECTED_UTT["80100002"]}


VALID_LIST = REPO / "egs/cnvsrc/vsr1/conf/cnvsrc-multi_valid.list"


def release_tree(top: Path) -> Path:
    """downloads/CNVSRC as the CNVSRC 2024 packages untar (preparation/README.md of the 2024 baseline): cncvs/
    {news,speech}/<spk>/video, cnvsrc-{multi,single}/{*-infos.json, README.TXT, dev/{audio,video}, eval/video};
    plus cncvs2_p1/ and cncvs3/ where db.sh looks, and the assumed text/ folders beside video/. Multi.Dev holds
    every utterance of the shipped valid list (links to one tiny mp4) and two more for training."""
    root = top / "downloads" / "CNVSRC"
    one = top / "one.mp4"
    make_mp4(one)

    def utt(video: Path, text: str):
        video.parent.mkdir(parents=True, exist_ok=True)
        video.symlink_to(one)
        t = video.parent.parent / "text" / f"{video.stem}.txt"
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text(text + "\n", encoding="utf-8")

    utt(root / "cncvs/news/n001/video/n001_00001_001.mp4", "新闻联播")
    utt(root / "cncvs/speech/s00001/video/s00001_001_00001.mp4", "大家好")
    utt(root / "cncvs2_p1/s00001/video/s00001_000_00001.mp4", "第二部分")
    utt(root / "cncvs3/s00009/video/c3_0001.mp4", "第三部分")
    valid = read_id_list_file(VALID_LIST)
    for name in ("cnvsrc-multi", "cnvsrc-single"):
        for split in ("dev", "eval"):
            (root / name / f"{name}-{split}-infos.json").parent.mkdir(parents=True, exist_ok=True)
            (root / name / f"{name}-{split}-infos.json").write_text("{}", encoding="utf-8")
        (root / name / "README.TXT").write_text("CNVSRC\n", encoding="utf-8")
        (root / name / "dev" / "audio").mkdir(parents=True)
    for vid in valid + ["80100001", "80130001"]:
        utt(root / f"cnvsrc-multi/dev/video/{vid}.mp4", "多人开发集")
    utt(root / "cnvsrc-single/dev/video/00023065.mp4", "单人开发集")
    for vid in ("80200001", "80200002"):
        utt(root / f"cnvsrc-multi/eval/video/{vid}.mp4", "多人评测集")
    utt(root / "cnvsrc-single/eval/video/00030001.mp4", "单人评测集")
    return root


def read_id_list_file(path: Path):
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and ln[0] != "#"]


def test_stage_0_with_default_options_on_the_release_layout(tmp_path):
    """`local/data.sh` with no options (db.sh's default roots, S3): dev is the baselines' 5,097 held-out
    Multi.Dev utterances, the rest of Multi.Dev is training data, test is all of Multi.Eval."""
    assert len(read_id_list_file(VALID_LIST)) == 5097
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    for name in ("local", "conf", "utils", "db.sh"):
        (recipe / name).symlink_to(REPO / "egs/cnvsrc/vsr1" / name)
    release_tree(recipe)
    env = {k: v for k, v in os.environ.items() if k not in ("CNVSRC", "CNCVS", "CNCVS2_P1", "CNCVS3")}
    env.update(PYTHONPATH=str(REPO), LC_ALL="C.UTF-8", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(["bash", "local/data.sh", "--python", sys.executable], cwd=recipe, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    train, dev, test = (ids(check_data_dir(recipe / "data" / s)) for s in ("train", "dev", "test"))
    assert len(dev) == 5097 and all(u.startswith("multi_") for u in dev)
    assert {"multi_80100-80100001", "multi_80130-80130001", "single-00023065", "cncvs3_s00009-c3_0001",
            "cncvs2p1_s00001-s00001_000_00001"} <= train and not train & dev
    assert len(train) == 7
    assert test == {"multi_80200-80200001", "multi_80200-80200002"}


def test_test_list_naming_an_utterance_without_video_is_an_error_naming_it(tree, tmp_path):
    lst = tmp_path / "eval.list"
    lst.write_text("# the eval utterances to score\n80200001\n80299999\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "vallr_pin.bin.prepare_corpus", *base_args(tree, tmp_path / "d"),
           "--test-list", str(lst), "--allow-missing"]  # --allow-missing never drops a test utterance
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1
    assert "80299999" in r.stderr and "--test-list" in r.stderr
    assert not (tmp_path / "d" / "test").exists()
    lst.write_text("80200001\n", encoding="utf-8")
    prepare_corpus.main(base_args(tree, tmp_path / "d") + ["--test-list", str(lst)])
    assert ids(check_data_dir(tmp_path / "d" / "test")) == {EXPECTED_UTT["80200001"]}

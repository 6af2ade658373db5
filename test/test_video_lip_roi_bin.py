"""Stage 1 entry point `python -m vallr_pin.bin.lip_roi`: failures per utterance, merge, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from video_testdata import write_astronaut_video, write_frames_video

from vallr_pin.bin import lip_roi
from vallr_pin.video.roi_dump import merge_jobs
from vallr_pin.datadir import read_kv, write_kv
from vallr_pin.video.decode import VideoClip, read_video
from vallr_pin.video.landmarks import get_detector

REPO = Path(__file__).resolve().parents[1]
D = 96 * 96


def _load(scp):
    return {k: np.asarray(v) for k, v in kaldiio.load_scp(str(scp)).items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A data dir with 2 good clips, 2 corrupt files, 2 face-less clips, 1 clip too short for its text and a
    good clip whose transcript has nothing to read."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    write_astronaut_video(root / "good1.mp4", num_frames=12, size=256)
    write_astronaut_video(root / "good2.mp4", num_frames=18, fps=30.0, size=256, rot_deg=-6)
    write_astronaut_video(root / "short.mp4", num_frames=3, size=256)
    data = (root / "good1.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "garbage.mp4").write_bytes(rng.bytes(6000))
    write_frames_video(root / "noise.mp4", rng.integers(0, 256, (8, 128, 128, 3), dtype=np.uint8))
    write_frames_video(root / "flat.mp4", np.full((8, 128, 128, 3), 128, np.uint8))
    names = ["good1", "good2", "short", "truncated", "garbage", "noise", "flat"]
    video = {f"spk1-{n}": str(root / f"{n}.mp4") for n in names}
    video["spk1-silent"] = str(root / "good1.mp4")  # a readable face: only the empty text can fail it
    text = {utt: "你好" for utt in video}
    text["spk1-short"] = "今天天气很好，我们去公园。"  # 11 characters + punctuation > 3 frames
    text["spk1-silent"] = "，。！"
    write_kv(root / "video.scp", video)
    write_kv(root / "text", text)
    return root, video


def test_failures_go_to_failed_and_merge(corpus, tmp_path):
    root, video = corpus
    utts = sorted(video)
    out = tmp_path / "roi"
    for job, part in ((1, utts[:4]), (2, utts[4:])):  # two jobs, as the launcher would split them
        write_kv(tmp_path / f"video.{job}.scp", {u: video[u] for u in part})
        lip_roi.main(["--video-scp", str(tmp_path / f"video.{job}.scp"), "--text", str(root / "text"),
                      "--out-dir", str(out), "--job-id", str(job)])
    with pytest.raises(ValueError, match=r"jobs \[3\]"):
        merge_jobs(str(out), 3)
    lip_roi.main(["--merge", "--out-dir", str(out), "--nj", "2"])

    failed = read_kv(out / "failed")
    assert sorted(failed) == ["spk1-flat", "spk1-garbage", "spk1-noise", "spk1-short", "spk1-silent",
                              "spk1-truncated"]
    assert failed["spk1-silent"].startswith("empty_text: ")
    assert failed["spk1-truncated"].startswith("unreadable_video: cannot open")
    assert failed["spk1-garbage"].startswith("unreadable_video:")
    assert failed["spk1-noise"].startswith("no_face:") and failed["spk1-flat"].startswith("no_face:")
    assert failed["spk1-short"].startswith("too_few_frames: 3 frames < 11 characters")

    feats = _load(out / "feats.scp")
    assert sorted(feats) == ["spk1-good1", "spk1-good2"]
    assert feats["spk1-good1"].shape == (12, D) and feats["spk1-good1"].dtype == np.uint8
    assert feats["spk1-good2"].shape == (15, D)  # 18 frames at 30 fps -> 15 at 25 fps
    assert read_kv(out / "utt2num_frames") == {"spk1-good1": "12", "spk1-good2": "15"}
    assert read_kv(out / "feats_shape") == {"spk1-good1": f"12,{D}", "spk1-good2": f"15,{D}"}
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    # the crop settings a packed model needs (vallr_pin.bin.pack_model reads them from here)
    roi_conf = json.loads((out / "roi_conf.json").read_text())
    assert (roi_conf["roi_size"], roi_conf["mouth_width_frac"], roi_conf["detector"]) == (96, 0.45, "mediapipe")

    # Re-running a finished job skips it (the ark is not rewritten); a changed option redoes it.
    ark = out / "feats.1.ark"
    mtime = ark.stat().st_mtime_ns
    args = ["--video-scp", str(tmp_path / "video.1.scp"), "--text", str(root / "text"), "--out-dir", str(out), "--job-id", "1"]
    lip_roi.main(args)
    assert ark.stat().st_mtime_ns == mtime and (out / "feats.scp").exists()
    lip_roi.main(args + ["--roi-size", "64"])
    assert ark.stat().st_mtime_ns != mtime
    assert not (out / "feats.scp").exists()  # the stale merged list is gone until the next merge
    assert next(iter(_load(out / "feats.1.scp").values())).shape[1] == 64 * 64


def test_precomputed_landmarks_match_detector(corpus, tmp_path):
    """landmarks.scp at the *source* rate (30 fps, with a missing frame) gives the detector path's crops."""
    root, video = corpus
    utt = "spk1-good2"
    clip = VideoClip(video[utt], target_fps=30.0)  # no resampling: source frames
    frames = np.concatenate(list(clip.iter_chunks()))
    det = get_detector("mediapipe")
    lm_src = det.detect(frames)
    lm_25 = det.detect(read_video(video[utt]))
    np.save(tmp_path / "lm.npy", lm_src)
    write_kv(tmp_path / "video.scp", {utt: video[utt]})
    write_kv(tmp_path / "landmarks.scp", {utt: str(tmp_path / "lm.npy")})
    lip_roi.main(["--video-scp", str(tmp_path / "video.scp"), "--landmarks-scp", str(tmp_path / "landmarks.scp"),
                  "--out-dir", str(tmp_path / "pre")])
    pre = _load(tmp_path / "pre" / "feats.scp")[utt]
    assert pre.shape == (15, D)
    # Landmarks found on source frames vs on resampled frames differ only by tracking noise.
    lip_roi.main(["--video-scp", str(tmp_path / "video.scp"), "--out-dir", str(tmp_path / "det")])
    det_feats = _load(tmp_path / "det" / "feats.scp")[utt]
    assert np.abs(pre.astype(int) - det_feats.astype(int)).mean() < 6
    # Decoding at half size (ffmpeg scaling) maps the full-resolution landmarks onto the smaller frames.
    lip_roi.main(["--video-scp", str(tmp_path / "video.scp"), "--landmarks-scp", str(tmp_path / "landmarks.scp"),
                  "--out-dir", str(tmp_path / "half"), "--decode-max-side", "128"])
    half = _load(tmp_path / "half" / "feats.scp")[utt]
    assert half.shape == pre.shape and np.abs(half.astype(int) - pre.astype(int)).mean() < 6
    assert np.abs(half.astype(int) - np.roll(pre, 8, axis=1).astype(int)).mean() > np.abs(half.astype(int) - pre.astype(int)).mean()
    # A landmarks file whose length fits neither rate fails the utterance, naming the cause.
    # (the set's only utterance: the run fails, and the reason is in the set's failed file)
    np.save(tmp_path / "lm.npy", lm_25[:7])
    with pytest.raises(SystemExit, match="1"):
        lip_roi.main(["--video-scp", str(tmp_path / "video.scp"), "--landmarks-scp", str(tmp_path / "landmarks.scp"),
                      "--out-dir", str(tmp_path / "bad")])
    assert read_kv(tmp_path / "bad" / "failed")[utt].startswith("bad_landmarks: 7 landmark frames")


def _cmd(scp, out):
    return [sys.executable, "-m", "vallr_pin.bin.lip_roi", "--video-scp", str(scp), "--out-dir", str(out), "--job-id", "1"]


def test_kill_9_then_rerun_equals_clean_run(tmp_path):
    n_utts, n_frames = 8, 40
    video = {}
    for i in range(n_utts):
        path = tmp_path / f"u{i}.mp4"
        write_astronaut_video(path, num_frames=n_frames, size=384, rot_deg=4 + i)
        video[f"spk1-u{i}"] = str(path)
    write_kv(tmp_path / "video.scp", video)
    env = dict(os.environ, PYTHONPATH=str(REPO))

    subprocess.run(_cmd(tmp_path / "video.scp", tmp_path / "clean"), env=env, check=True, capture_output=True)
    clean = _load(tmp_path / "clean" / "feats.1.scp")

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(tmp_path / "video.scp", out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out / "feats.1.ark.tmp"
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size >= n_frames * D:  # first utterance is in the ark
            break
        time.sleep(0.01)
    assert proc.poll() is None, "job finished before it could be killed; make the test clips longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Nothing claims the partial ark is valid.
    assert not (out / "feats.1.scp").exists() and not (out / "feats.1.done").exists()
    assert not (out / "feats.1.ark").exists()

    subprocess.run(_cmd(tmp_path / "video.scp", out), env=env, check=True, capture_output=True)
    resumed = _load(out / "feats.1.scp")
    assert sorted(resumed) == sorted(clean) == sorted(video)
    for utt in clean:
        assert np.array_equal(resumed[utt], clean[utt]), utt
    assert not list(out.glob("*.tmp"))
    scp_lines = (out / "feats.1.scp").read_text().splitlines()
    assert all(line.split()[1].startswith(str(out / "feats.1.ark:")) for line in scp_lines)


def test_help_describes_flags():
    res = subprocess.run([sys.executable, "-m", "vallr_pin.bin.lip_roi", "--help"], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, check=True)
    for flag in ("--video-scp", "--landmarks-scp", "--detector", "--text", "--out-dir", "--job-id", "--roi-size", "--merge", "--nj"):
        assert flag in res.stdout

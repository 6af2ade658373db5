"""Stage 1 on the faults a new user meets: a re-copied video, a cut-short download, an upside-down face, digits
in the transcript, spaces in paths, a set where nothing works; and the streaming crop equal to the whole-clip
crop."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from video_testdata import faststart_mp4, set_mp4_rotation, write_astronaut_video, write_frames_video

import vallr_pin.video.decode as decode
from vallr_pin.bin import lip_roi
from vallr_pin.datadir import read_kv, write_kv
from vallr_pin.video.decode import TruncatedVideoError, VideoClip, read_video, rgb_to_grey
from vallr_pin.video.landmarks import get_detector
from vallr_pin.video.lip_roi import ImplausibleFaceError, check_face_plausible, crop_mouth_rois
from vallr_pin.video.pipeline import RoiConfig, count_characters, extract_utterance

REPO = Path(__file__).resolve().parents[1]
D = 96 * 96


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A readable 12-frame real-face clip (256x256, 25 fps)."""
    path = tmp_path_factory.mktemp("clips") / "good.mp4"
    write_astronaut_video(path, num_frames=12, size=256)
    return path


def _run(video_scp, out, *extra):
    lip_roi.main(["--video-scp", str(video_scp), "--out-dir", str(out), "--job-id", "1", *extra])


def test_recopied_video_is_redone_unchanged_job_skipped(good, tmp_path):
    """A video that failed as an empty file and was re-copied is processed on the next run (the done marker
    holds the files' size and mtime); a job whose files did not change is still skipped."""
    (tmp_path / "a.mp4").write_bytes(b"")
    shutil.copy(good, tmp_path / "b.mp4")
    write_kv(tmp_path / "video.scp", {"s-a": str(tmp_path / "a.mp4"), "s-b": str(tmp_path / "b.mp4")})
    out = tmp_path / "roi"
    _run(tmp_path / "video.scp", out)
    assert read_kv(out / "failed.1")["s-a"].startswith("unreadable_video: empty file (0 bytes); re-copy it")
    ark = out / "feats.1.ark"
    mtime = ark.stat().st_mtime_ns
    _run(tmp_path / "video.scp", out)  # nothing changed: skipped, the ark not rewritten
    assert ark.stat().st_mtime_ns == mtime

    shutil.copy(good, tmp_path / "a.mp4")  # the user's fix
    _run(tmp_path / "video.scp", out)
    assert read_kv(out / "failed.1") == {}
    assert sorted(kaldiio.load_scp(str(out / "feats.1.scp"))) == ["s-a", "s-b"]


def test_truncated_download_fails_as_truncated_video(good, tmp_path):
    """An mp4 with its index in front, cut after half its frames, opens and decodes 6 of 12 frames: it fails
    as truncated_video instead of being kept with its whole transcript against half the video."""
    full = tmp_path / "full.mp4"
    shutil.copy(good, full)
    offsets = faststart_mp4(str(full))
    data = full.read_bytes()
    half, almost = tmp_path / "half.mp4", tmp_path / "almost.mp4"
    half.write_bytes(data[:offsets[6]])
    almost.write_bytes(data[:offsets[11]])  # one frame short: within the tolerance (max(3, 5%) frames)
    assert VideoClip(str(full)).num_source_frames == 12
    assert VideoClip(str(almost)).num_source_frames == 11
    with pytest.raises(TruncatedVideoError, match="only 6 of the 12 frames"):
        VideoClip(str(half))

    write_kv(tmp_path / "video.scp", {"s-full": str(full), "s-half": str(half)})
    _run(tmp_path / "video.scp", tmp_path / "roi")
    failed = read_kv(tmp_path / "roi" / "failed.1")
    assert list(failed) == ["s-half"] and failed["s-half"].startswith("truncated_video: only 6 of the 12 frames")


def test_upside_down_face_fails_as_implausible_face(good, tmp_path):
    """An upside-down face, in the pixels or through rotation metadata, gave a crop of the forehead; now it
    fails as implausible_face. The upright clip still passes."""
    frames = read_video(good)
    write_frames_video(tmp_path / "flipped.mp4", np.ascontiguousarray(frames[:, ::-1, ::-1]))
    shutil.copy(good, tmp_path / "rotated.mp4")
    set_mp4_rotation(str(tmp_path / "rotated.mp4"), 180)
    assert read_video(tmp_path / "rotated.mp4")[0].mean(axis=2)[:40].mean() != pytest.approx(
        frames[0].mean(axis=2)[:40].mean(), abs=1)  # decord applies the rotation
    write_kv(tmp_path / "video.scp", {"s-flipped": str(tmp_path / "flipped.mp4"), "s-good": str(good),
                                      "s-rotated": str(tmp_path / "rotated.mp4")})
    _run(tmp_path / "video.scp", tmp_path / "roi")
    failed = read_kv(tmp_path / "roi" / "failed.1")
    assert sorted(failed) == ["s-flipped", "s-rotated"]
    assert all(r.startswith("implausible_face: the eyes are below the mouth") for r in failed.values()), failed


def test_plausibility_rules_on_landmarks():
    face = np.array([[100, 100], [140, 100], [120, 125], [104, 145], [136, 145]], dtype=np.float32)
    clip = np.stack([face] * 10)
    check_face_plausible(clip, 320)  # upright: fine
    check_face_plausible(clip @ np.array([[0, -1], [1, 0]], np.float32), 320)  # lying on its side (90 deg): fine
    with pytest.raises(ImplausibleFaceError, match="eyes are below the mouth in 10 of 10"):
        check_face_plausible(320 - clip, 320)
    mostly = clip.copy()
    mostly[:4] = 320 - clip[:4]
    check_face_plausible(mostly, 320)  # 4 of 10 frames upside down: not the majority
    with pytest.raises(ImplausibleFaceError, match="apart in 10 of 10 frames"):
        check_face_plausible(face[None].repeat(10, 0) * 0.05, 320)  # eyes 2 px apart
    with pytest.raises(ImplausibleFaceError, match="of the 40 px frame width"):
        check_face_plausible(clip, 40)


def test_digits_counted_as_stage_2_writes_them(good, tmp_path):
    """'12345' is 一万二千三百四十五 after stage 2: 9 characters, so an 8-frame clip is too short for it."""
    assert count_characters("12345") == 9 and count_characters("我用iPhone，好！") == 3
    write_astronaut_video(tmp_path / "eight.mp4", num_frames=8, size=256)
    write_kv(tmp_path / "video.scp", {"s-digits": str(tmp_path / "eight.mp4"), "s-good": str(good)})
    write_kv(tmp_path / "text", {"s-digits": "12345", "s-good": "12345"})
    _run(tmp_path / "video.scp", tmp_path / "roi", "--text", str(tmp_path / "text"))
    failed = read_kv(tmp_path / "roi" / "failed.1")
    assert failed == {"s-digits": "too_few_frames: 8 frames < 9 characters of text (CTC needs T >= L)"}


def test_spaces_in_video_paths_through_split_jobs_and_merge(good, tmp_path):
    """video.scp's value is the rest of the line: paths with spaces go through split_scp.pl, the jobs and the
    merge."""
    clips = tmp_path / "my clips"
    clips.mkdir()
    video = {}
    for name in ("take 1", "take  2"):
        shutil.copy(good, clips / f"{name}.mp4")
        video[f"s-{name.split()[-1]}"] = str(clips / f"{name}.mp4")
    write_kv(tmp_path / "video.scp", video)
    parts = [tmp_path / "split2" / str(j) / "video.scp" for j in (1, 2)]
    subprocess.run([str(REPO / "utils" / "split_scp.pl"), str(tmp_path / "video.scp"), *map(str, parts)], check=True)
    out = tmp_path / "roi"
    for j, part in enumerate(parts, 1):
        lip_roi.main(["--video-scp", str(part), "--out-dir", str(out), "--job-id", str(j)])
    lip_roi.main(["--merge", "--out-dir", str(out), "--nj", "2"])
    assert read_kv(out / "failed") == {}
    assert sorted(kaldiio.load_scp(str(out / "feats.scp"))) == ["s-1", "s-2"]


def test_set_where_every_utterance_fails_stops_the_stage(tmp_path):
    """Every utterance of the set fails: the merge exits 1 with one line naming the set and its failed file,
    and writes no feats.scp (which stage 2 would read as an empty set); a single-job run does the same."""
    rng = np.random.default_rng(0)
    write_frames_video(tmp_path / "noise.mp4", rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8))
    (tmp_path / "empty.mp4").write_bytes(b"")
    write_kv(tmp_path / "video.scp", {"s-empty": str(tmp_path / "empty.mp4"), "s-noise": str(tmp_path / "noise.mp4")})
    out = tmp_path / "dump" / "roi" / "dev"
    _run(tmp_path / "video.scp", out)  # one job of the set failing all of its utterances is not an error by itself
    out.joinpath("feats.scp").write_text("stale 0\n")  # a merged list from an earlier run
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "vallr_pin.bin.lip_roi", "--merge", "--out-dir", str(out), "--nj", "1"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"set 'dev' failed, no feats.scp written; the reasons are in {out}/failed" in errors[0]
    assert not (out / "feats.scp").exists()
    assert sorted(read_kv(out / "failed")) == ["s-empty", "s-noise"]

    single = tmp_path / "single"
    with pytest.raises(SystemExit, match="1"):
        lip_roi.main(["--video-scp", str(tmp_path / "video.scp"), "--out-dir", str(single)])
    assert not (single / "feats.scp").exists() and sorted(read_kv(single / "failed")) == ["s-empty", "s-noise"]


def test_streaming_crop_equals_whole_clip_crop(tmp_path, monkeypatch):
    """Stage 1 decodes, detects and crops in chunks, the grey frames spilled to a temporary file; the crop is
    the one the whole clip in memory gives, to the byte (30 fps source, chunks of 5 frames)."""
    path = tmp_path / "clip.mp4"
    write_astronaut_video(path, num_frames=36, fps=30.0, size=256)
    monkeypatch.setattr(decode, "SPOOL_MEMORY_BYTES", 1)  # every chunk goes to the temporary file
    cfg = RoiConfig(chunk_size=5, detect_every=3)
    det = get_detector("mediapipe", detect_every=3)
    streamed = extract_utterance("u", str(path), cfg, det)
    frames = read_video(path)
    whole = crop_mouth_rois(rgb_to_grey(frames), det.detect(frames)).reshape(len(frames), -1)
    assert streamed.shape == (30, D) and np.array_equal(streamed, whole)

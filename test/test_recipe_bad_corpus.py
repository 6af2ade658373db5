"""Issue 21: the CI mini recipe on a corpus with bad clips and bad transcripts runs stages 0-9 to the end.

A fresh copy of egs/mini_cnvsrc/vsr1 takes the session run's rendered corpus (so stage 0 renders nothing) and
runs stage 0; then the rendered corpus is damaged the ways a new user's corpus is, in 9 of its 20 clips:

- clips stage 1 must fail, each with its reason in dump/roi/<set>/failed: an empty file, a download cut at half
  its frames (index in front, so it still opens), an upside-down face (pixels and landmarks turned), a clip
  with no face (a grey picture, its landmarks NaN: what a corpus's landmark file holds then);
- transcripts and paths that must simply work: a GBK transcript file, a UTF-8 one with a byte-order mark, one
  in traditional characters, one with a digit, a video in a folder and file name with spaces, and a BOM at the
  head of data/dev/text (a user's editor).

Stage 0's reading step (prepare_corpus, fix/validate_data_dir, as local/data.sh runs it after rendering) reads
the damaged corpus again, and stages 1-9 run. Every set keeps good utterances. The failed clips are checked
right after stage 1; at the end every scored system counts each failed dev/test utterance as all deletions,
and RESULTS.md says per set "4 utterances scored, 1 failed in stage 1 (<reason> 1; ...)".

Costs about one CI recipe run (stages 1-9; 152 s against 159 s for the session's clean run on a 2-core host).
Marked ``faults``: ``pytest -m faults``.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mini_recipe import make_recipe_copy, recipe_env, run_recipe
from video_testdata import faststart_mp4, write_frames_video

from vallr_pin.datadir import BOM, read_kv
from vallr_pin.text.normalize import normalize_text
from vallr_pin.video.decode import read_video

pytestmark = pytest.mark.faults

# utt -> (set, reason code stage 1 must give it)
FAILING = {
    "spk001_0001": ("train", "unreadable_video"),  # empty file
    "spk002_0003": ("train", "no_face"),
    "spk004_0003": ("dev", "truncated_video"),
    "spk005_0003": ("test", "implausible_face"),
}
# utt -> (set, what is wrong with it); stage 1 must read them, stage 2 normalise them as the clean corpus
HANDLED = {
    "spk001_0000": ("train", "traditional characters"),
    "spk003_0001": ("train", "GBK transcript"),
    "spk002_0001": ("train", "spaces in the video path"),
    "spk004_0000": ("dev", "a digit; data/dev/text starts with a BOM"),
    "spk005_0000": ("test", "transcript with a UTF-8 BOM"),
}
SYSTEMS = {"char-only (stage I)": "exp/vsr_char/decode_vsr_valid.acc_char.ave",
           "dual decoder (stage I)": "exp/vsr_dual/decode_vsr_valid.acc_char.ave",
           "dual + zero-shot LLM": "exp/llm_lora/refine_zeroshot",
           "dual + fine-tuned LLM": "exp/llm_lora/refine_finetuned"}


def _files(corpus: Path, split: str, utt: str) -> dict:
    d = corpus / split / utt.split("_")[0]
    return {"video": d / f"{utt}.mp4", "text": d / f"{utt}.txt", "landmarks": d / f"{utt}.landmarks.npy"}


def damage_corpus(corpus: Path) -> None:
    """The faults of the module docstring, applied to the rendered corpus in place."""
    import opencc

    f = {u: _files(corpus, s, u) for u, (s, _) in {**FAILING, **HANDLED}.items()}
    f["spk001_0001"]["video"].write_bytes(b"")

    grey = np.full_like(read_video(str(f["spk002_0003"]["video"])), 128)
    write_frames_video(str(f["spk002_0003"]["video"]), grey)
    lm = np.load(f["spk002_0003"]["landmarks"])
    np.save(f["spk002_0003"]["landmarks"], np.full_like(lm, np.nan))

    video = str(f["spk004_0003"]["video"])
    offsets = faststart_mp4(video)  # a streaming site's mp4: index in front, so a cut-short download opens
    data = Path(video).read_bytes()
    Path(video).write_bytes(data[:offsets[len(offsets) // 2]])

    frames = read_video(str(f["spk005_0003"]["video"]))
    write_frames_video(str(f["spk005_0003"]["video"]), np.ascontiguousarray(frames[:, ::-1, ::-1]))
    lm = np.load(f["spk005_0003"]["landmarks"])  # the corpus's landmarks turned with the picture
    h, w = frames.shape[1:3]
    np.save(f["spk005_0003"]["landmarks"], np.stack([w - 1 - lm[..., 0], h - 1 - lm[..., 1]], axis=-1))

    txt = f["spk001_0000"]["text"]
    txt.write_text(opencc.OpenCC("s2t").convert(txt.read_text(encoding="utf-8")), encoding="utf-8")
    txt = f["spk003_0001"]["text"]
    txt.write_bytes(txt.read_text(encoding="utf-8").encode("gbk"))
    txt = f["spk004_0000"]["text"]
    assert "二层" in txt.read_text(encoding="utf-8")
    txt.write_text(txt.read_text(encoding="utf-8").replace("二层", "2层"), encoding="utf-8")
    txt = f["spk005_0000"]["text"]
    txt.write_bytes(b"\xef\xbb\xbf" + txt.read_bytes())

    # a video (and its transcript beside it) moved to a folder and a name with spaces, the list updated
    old, new_dir = f["spk002_0001"]["video"], f["spk002_0001"]["video"].parent / "my clips"
    new_dir.mkdir()
    for src in (old, old.with_suffix(".txt")):
        src.rename(new_dir / f"{old.stem} take 1{src.suffix}")
    listing = corpus / "train.csv"
    rel = old.relative_to(corpus).as_posix()
    assert rel in listing.read_text(encoding="utf-8")
    listing.write_text(listing.read_text(encoding="utf-8").replace(
        rel, (new_dir / f"{old.stem} take 1.mp4").relative_to(corpus).as_posix()), encoding="utf-8")


def test_bad_clips_and_transcripts_run_to_the_end_failed_clips_named_and_scored_as_deletions(recipe, tmp_path):
    work = make_recipe_copy(tmp_path)
    shutil.copytree(recipe / "downloads", work / "downloads", symlinks=True)  # stage 0 then renders nothing
    run_recipe(work, "--stage", "0", "--stop-stage", "0")
    damage_corpus(work / "downloads" / "mini_cnvsrc")
    reread = ("python3 -m vallr_pin.bin.prepare_corpus --corpus mini_cnvsrc --mini-root downloads/mini_cnvsrc "
              "--data-dir data && for x in train dev test; do utils/fix_data_dir.sh data/$x && "
              "utils/validate_data_dir.sh data/$x; done")
    proc = subprocess.run(["bash", "-c", f"set -euo pipefail; . ./path.sh; {reread}"], cwd=work, env=recipe_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    n_utts = {s: len(read_kv(work / "data" / s / "text")) for s in ("train", "dev", "test")}
    assert n_utts == {"train": 12, "dev": 4, "test": 4}  # nothing dropped by stage 0 (spaces in the path kept)
    assert " take 1.mp4" in read_kv(work / "data" / "train" / "video.scp")["spk002_0001"]
    dev_text = work / "data" / "dev" / "text"
    dev_text.write_bytes(b"\xef\xbb\xbf" + dev_text.read_bytes())

    run_recipe(work, "--stage", "1", "--stop-stage", "1")
    for dset in ("train", "dev", "test"):
        roi = work / "dump" / "roi" / dset
        failed = read_kv(roi / "failed")
        want = {u: code for u, (s, code) in FAILING.items() if s == dset}
        assert {u: r.split(":")[0] for u, r in failed.items()} == want, (dset, failed)
        feats = read_kv(roi / "feats.scp")
        assert len(feats) == n_utts[dset] - len(want) > 0
        assert {u for u, (s, _) in HANDLED.items() if s == dset} <= set(feats), (dset, sorted(feats))
    assert failed_reason(work, "train", "spk001_0001").startswith("unreadable_video: empty file")

    run_recipe(work, "--stage", "2", "--stop-stage", "9")
    # the transcripts came out as the clean corpus's: GBK decoded, BOMs dropped, 2 read out, traditional converted
    for utt, (dset, what) in HANDLED.items():
        assert read_kv(work / "data" / dset / "text")[utt] == read_kv(recipe / "data" / dset / "text")[utt], what
    for dset in ("train", "dev", "test"):
        assert BOM not in (work / "data" / dset / "text").read_text(encoding="utf-8")
        assert BOM not in (work / "dump" / "roi" / dset / "text").read_text(encoding="utf-8")

    results = (work / "RESULTS.md").read_text(encoding="utf-8")
    for dset, utt in (("dev", "spk004_0003"), ("test", "spk005_0003")):
        code = FAILING[utt][1]
        section = results.split(f"### {dset}\n", 1)[1].split("###", 1)[0]
        assert f"4 utterances scored, 1 failed in stage 1 ({code} 1; scored as all deletions)." in section
        ref = normalize_text(read_kv(work / "data" / dset / "text")[utt])
        for system, path in SYSTEMS.items():
            rows = [ln for ln in section.splitlines() if ln.startswith(f"|{system}|")]
            assert len(rows) == 1 and "n/a" not in rows[0], (system, rows)
            score = work / path / dset / "score_cer"
            summary = json.loads((score / "summary.json").read_text())
            assert summary["n_sent"] == 4 and summary["del"] >= len(ref), (system, summary)
            csid = [ln.split()[2:] for ln in (score / "utt_errors.txt").read_text(encoding="utf-8").splitlines()
                    if ln.startswith(f"{utt} #csid")]
            assert csid == [["0", "0", str(len(ref)), "0"]], (system, dset, csid)  # all deletions
    # stage 6 drew its training subset from the utterances that have features
    sub = read_kv(work / "dump" / "roi" / "train_sub6" / "feats.scp")
    assert len(sub) == 6 and not set(sub) & set(FAILING)


def failed_reason(work: Path, dset: str, utt: str) -> str:
    return read_kv(work / "dump" / "roi" / dset / "failed")[utt]

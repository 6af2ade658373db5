"""The command lines vsr.sh forms for stages 5, 6 and 9, without running a model.

A throw-away recipe directory links the real vsr.sh, path.sh and utils/, and replaces the job launchers (cmd.sh)
and ``--python`` with stand-ins that record every call (then run the job through utils/run.pl, which runs the
stand-in python, which records and exits 0). So the test sees exactly what a user's cluster would be asked to
run, in a second, with no ESPnet import. Each test reads the record as a list of argument lists.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "egs" / "TEMPLATE" / "vsr1"

CMD_SH = """\
export decode_cmd="{rec}/cmd_rec decode_cmd" cuda_cmd="{rec}/cmd_rec cuda_cmd" train_cmd="{rec}/cmd_rec train_cmd"
"""
# A job launcher that records how it was called, then runs the job as run.pl does.
CMD_REC = """\
#!/usr/bin/env bash
name=$1; shift
line=$(printf '%s' "$name"; printf ' %q' "$@")  # one write per call: parallel jobs append to one file
echo "$line" >> "{rec}/calls"
exec "{utils}/run.pl" "$@"
"""
# A python that records its arguments; `-c` (vsr.sh's CUDA probe) says yes under FAKE_CUDA=1, else runs for real.
PY_REC = """\
#!/usr/bin/env bash
line=$(printf 'python'; printf ' %q' "$@")
echo "$line" >> "{rec}/calls"
if [ "$1" = -c ]; then
  [ "${{FAKE_CUDA:-0}}" = 1 ] && exit 0
  exec "{python}" "$@"
fi
exit 0
"""


@pytest.fixture
def recipe(tmp_path):
    d = tmp_path / "egs" / "fake" / "vsr1"
    rec = tmp_path / "rec"
    d.mkdir(parents=True)
    rec.mkdir()
    for name in ("vsr.sh", "path.sh"):
        (d / name).symlink_to(TEMPLATE / name)
    (d / "utils").symlink_to(ROOT / "utils")
    (d / "cmd.sh").write_text(CMD_SH.format(rec=rec))
    for name, body in (("cmd_rec", CMD_REC), ("py_rec", PY_REC)):
        (rec / name).write_text(body.format(rec=rec, utils=ROOT / "utils", python=sys.executable))
        (rec / name).chmod(0o755)
    for dset, n in (("train", 6), ("dev", 3), ("test", 3)):
        for top in (d / "data" / dset, d / "dump" / "roi" / dset):
            top.mkdir(parents=True)
        utts = [f"spk{dset}_{i}" for i in range(n)]
        (d / "data" / dset / "text").write_text("".join(f"{u} 你好\n" for u in utts))
        # stage 1 dropped the last utterance of each set: the dump dir lacks it
        (d / "dump" / "roi" / dset / "feats.scp").write_text("".join(f"{u} x.ark:1\n" for u in utts[:-1]))
        (d / "dump" / "roi" / dset / "text").write_text("".join(f"{u} 你好\n" for u in utts[:-1]))
        (d / "dump" / "roi" / dset / "failed").write_text(f"{utts[-1]} no_face: no face found in any of 9 frames\n")
        (d / "dump" / "roi" / dset / "text_pinyin").write_text("".join(f"{u} ni hao\n" for u in utts[:-1]))
    # what the earlier stages leave, so that each stage's input checks (vsr.sh's `need`) pass
    for model in ("vsr_dual", "vsr_char"):
        (d / "exp" / model).mkdir(parents=True)
        for name in ("config.yaml", "valid.acc_char.ave.pth"):
            (d / "exp" / model / name).write_text("")
    # ... and what stages 5-8 would have written (the stand-in python writes nothing)
    for sub in ("decode_vsr_1epoch/train", "decode_vsr_1epoch/train_sub2", "decode_vsr_1epoch/dev",
                "decode_vsr_valid.acc_char.ave/dev", "decode_vsr_valid.acc_char.ave/test"):
        (d / "exp" / "vsr_dual" / sub).mkdir(parents=True)
        (d / "exp" / "vsr_dual" / sub / "nbest.jsonl").write_text("")
    (d / "exp" / "llm_data").mkdir(parents=True)
    (d / "exp" / "llm_data" / "train.jsonl").write_text("")
    (d / "exp" / "llm_lora" / "adapter").mkdir(parents=True)
    (d / "exp" / "vsr_dual" / "ckpt_keep").mkdir(parents=True)
    (d / "exp" / "vsr_dual" / "ckpt_keep" / "1epoch.pth").write_text("")
    (d / "RESULTS.md").write_text("")
    return d


def run_vsr(recipe: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    cmd = ["./vsr.sh", "--python", str(recipe.parents[2] / "rec" / "py_rec"), "--nj", "2", "--llm_model", "llm",
           "--nbest_ckpts", "1epoch", *args]
    return subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, **(env or {})))


def calls(recipe: Path):
    path = recipe.parents[2] / "rec" / "calls"
    # parallel jobs append to one file; a line may come out empty when two writes interleave
    return [shlex.split(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def module_calls(recipe: Path, module: str):
    """The argument lists (after ``-m vallr_pin.bin.<module>``) of every python call of that entry point."""
    out = []
    for c in calls(recipe):
        if c[0] == "python" and c[1:3] == ["-m", f"vallr_pin.bin.{module}"]:
            out.append(c[3:])
    return out


def opt(args, name):
    """Values of every ``name VALUE`` in an argument list."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]


def test_stages_5_and_9_score_every_utterance_of_the_data_dir(recipe):
    p = run_vsr(recipe, "--stage", "5", "--stop-stage", "5")
    assert p.returncode == 0, p.stderr
    # stage 6's training subset has no data dir (subset_data_dir writes dump/roi/train_sub2): its dump text
    sub = recipe / "dump" / "roi" / "train_sub2"
    sub.mkdir()
    (sub / "feats.scp").write_text("spktrain_0 x.ark:1\nspktrain_1 x.ark:1\n")
    p = run_vsr(recipe, "--stage", "6", "--stop-stage", "6", "--nbest_train_subset", "2")
    assert p.returncode == 0, p.stderr
    stage6 = {Path(opt(a, "--hyp")[0]).parent.name: opt(a, "--ref") for a in module_calls(recipe, "score")[4:]}
    assert stage6 == {"train_sub2": ["dump/roi/train_sub2/text"], "dev": ["data/dev/text"]}
    p = run_vsr(recipe, "--stage", "9", "--stop-stage", "9", "--llm_tune_fusion", "true",
                "--llm_refine_opts", "--mode rescore")
    assert p.returncode == 0, p.stderr
    scored = module_calls(recipe, "score")
    # stage 5: 2 models x 2 sets; stage 6: 2 sets; stage 9: 2 modes x 2 sets
    assert len(scored) == 10
    for args in scored[:4] + scored[6:]:
        dset = Path(opt(args, "--hyp")[0]).parent.name
        assert opt(args, "--ref") == [f"data/{dset}/text"], args
    for args in module_calls(recipe, "error_analysis"):
        assert opt(args, "--ref")[0].startswith("data/") or "train_sub2" in opt(args, "--ref")[0], args
    tuned = module_calls(recipe, "tune_fusion")
    assert len(tuned) == 2 and all(opt(a, "--ref") == ["data/dev/text"] for a in tuned)
    # RESULTS.md: per set the count of stage-1 failures, and the validation set marked as such
    (results,) = module_calls(recipe, "show_results")
    assert opt(results, "--failed") == ["dump/roi/{set}/failed"]
    (note,) = opt(results, "--set-note")
    assert note.startswith("dev=validation set: model selection") and "fusion tuning" in note


def inference_jobs(recipe: Path):
    """(launcher name, its options before JOB=, the vsr_inference arguments) of every decode job array."""
    out = []
    for c in calls(recipe):
        if c[0] in ("decode_cmd", "cuda_cmd") and "vallr_pin.bin.vsr_inference" in c:
            j = next(i for i, a in enumerate(c) if a.startswith("JOB="))
            out.append((c[0], c[1:j], c[c.index("vallr_pin.bin.vsr_inference") + 1:], c[j]))
    return out


def refine_jobs(recipe: Path):
    return [c for c in calls(recipe) if c[0] in ("decode_cmd", "cuda_cmd") and "vallr_pin.bin.llm_refine" in c]


@pytest.mark.parametrize("gpu", [False, True])
def test_decode_and_refine_jobs_on_cpu_or_gpu(recipe, gpu):
    """CPU: decode_cmd --gpu 0, nj jobs, --device cpu. GPU (--gpu_inference true): one CUDA probe job, then
    cuda_cmd --gpu 1, inference_ngpu jobs, --device cuda; stage 9 the same launcher, --backend as asked."""
    opts = ["--gpu_inference", "true", "--inference_ngpu", "1"] if gpu else []
    p = run_vsr(recipe, "--stage", "5", "--stop-stage", "9", *opts, "--llm_backend", "auto",
                env={"FAKE_CUDA": "1"})
    # stages 7-8 are recorded as python calls too; only 5, 6, 9 form inference jobs
    assert p.returncode == 0, p.stderr
    launcher, device, ngpu, jobs = ("cuda_cmd", "cuda", "1", "JOB=1:1") if gpu else ("decode_cmd", "cpu", "0",
                                                                                        "JOB=1:2")
    decodes = inference_jobs(recipe)
    assert len(decodes) == 2  # one job array for stage 5, one for stage 6
    for name, launcher_opts, args, job_range in decodes:
        assert (name, launcher_opts, job_range) == (launcher, ["--gpu", ngpu], jobs)
        assert opt(args, "--device") == [device]
    refines = refine_jobs(recipe)
    assert len(refines) == 4  # (fine-tuned, zero-shot) x (dev, test)
    for c in refines:
        assert c[:3] == [launcher, "--gpu", ngpu] and opt(c, "--backend") == ["auto"]
    probes = [c for c in calls(recipe) if c[0] == "python" and c[1] == "-c"]
    assert len(probes) == (1 if gpu else 0)
    if gpu:  # the probe ran first, through the GPU launcher
        first = calls(recipe)[0]
        assert first[:3] == ["cuda_cmd", "--gpu", "1"] and "-c" in first


def test_gpu_inference_without_cuda_stops_before_any_job(recipe):
    p = run_vsr(recipe, "--stage", "5", "--stop-stage", "5", "--gpu_inference", "true",
                env={"CUDA_VISIBLE_DEVICES": ""})  # no CUDA for torch, on a GPU host too
    assert p.returncode != 0
    assert "--gpu_inference true, but a job of" in p.stderr and "sees no CUDA device" in p.stderr
    assert not inference_jobs(recipe) and not module_calls(recipe, "score")


def test_stage_1_runs_the_detector_on_every_third_frame_unless_told(recipe):
    for dset in ("train", "dev", "test"):
        utts = [ln.split()[0] for ln in (recipe / "data" / dset / "text").read_text().splitlines()]
        (recipe / "data" / dset / "video.scp").write_text("".join(f"{u} /v/{u}.mp4\n" for u in utts))
        (recipe / "data" / dset / "utt2spk").write_text("".join(f"{u} spk{dset}\n" for u in utts))
    assert run_vsr(recipe, "--stage", "1", "--stop-stage", "1").returncode == 0
    assert run_vsr(recipe, "--stage", "1", "--stop-stage", "1", "--detect_every", "1").returncode == 0
    jobs = [c for c in calls(recipe) if c[0] == "decode_cmd" and "vallr_pin.bin.lip_roi" in c]
    assert len(jobs) == 6  # one job array per set, twice
    assert [opt(c, "--detect-every") for c in jobs] == [["3"]] * 3 + [["1"]] * 3


def test_stages_7_to_9_with_noise_augmentation_and_grpo(recipe):
    """--llm_noise_text: stage 7 gets the text and every evaluation set's transcripts to keep out of it;
    --llm_grpo true: stage 8 runs GRPO from the SFT adapter, stage 9 refines with it too and RESULTS.md has its row."""
    (recipe / "lm_text.txt").write_text("你们好\n")
    (recipe / "exp" / "llm_lora" / "grpo" / "adapter").mkdir(parents=True)
    p = run_vsr(recipe, "--stage", "7", "--stop-stage", "9", "--llm_noise_text", "lm_text.txt",
                "--llm_noise_ratio", "0.5", "--llm_grpo", "true")
    assert p.returncode == 0, p.stderr
    (data,) = module_calls(recipe, "build_llm_data")
    assert opt(data, "--noise-text") == ["lm_text.txt"] and opt(data, "--noise-ratio") == ["0.5"]
    i = data.index("--noise-exclude")
    assert data[i + 1:i + 3] == ["data/dev/text", "data/test/text"]
    sft, grpo = module_calls(recipe, "llm_sft")
    assert "--rlhf" not in sft and opt(sft, "--output-dir") == ["exp/llm_lora"]
    assert (opt(grpo, "--rlhf"), opt(grpo, "--config"), opt(grpo, "--init-adapter"), opt(grpo, "--output-dir")) == (
        ["grpo"], ["conf/llm_grpo.yaml"], ["exp/llm_lora/adapter"], ["exp/llm_lora/grpo"])
    adapters = sorted((opt(c, "--adapter") or ["none"])[0] for c in refine_jobs(recipe))
    assert adapters == ["exp/llm_lora/adapter"] * 2 + ["exp/llm_lora/grpo/adapter"] * 2 + ["none"] * 2
    (results,) = module_calls(recipe, "show_results")
    assert "dual + fine-tuned LLM + GRPO=exp/llm_lora/refine_grpo/{set}/score_cer" in opt(results, "--system")
    assert "dual + fine-tuned LLM > dual + fine-tuned LLM + GRPO" in opt(results, "--ordering")
    p = run_vsr(recipe, "--stage", "8", "--stop-stage", "8", "--llm_grpo", "yes")
    assert p.returncode != 0 and "--llm_grpo takes true or false" in p.stderr  # utils/parse_options.sh


def test_use_lm_trains_a_character_lm_and_every_decode_fuses_it(recipe):
    """--use_lm true: stage 2 writes the LM's text (held out: the valid and test sets), stage 3 its shapes,
    stage 4 trains it after the char-only baseline with the VSR model's tokens, stages 5 and 6 pass it to every
    decode; without it every decode gets --lm_weight 0, whatever the decode config says."""
    for d in ("data/train", "data/dev", "data/test"):  # what stage 2's prepare_text (recorded, not run) writes
        utts = [ln.split()[0] for ln in (recipe / d / "text").read_text().splitlines()]
        (recipe / d / "utt2spk").write_text("".join(f"{u} s\n" for u in utts))
        (recipe / d / "text_pinyin").write_text("".join(f"{u} ni hao\n" for u in utts))
    (recipe / "conf").mkdir()
    (recipe / "conf" / "decode_vsr.yaml").write_text("lm_weight: 0.3\n")
    (recipe / "extra.txt").write_text("我们去学校\n")
    for name in ("vsr_stats/train/video_shape", "vsr_stats/valid/video_shape", "lm_stats/train/text_shape"):
        (recipe / "exp" / name).parent.mkdir(parents=True, exist_ok=True)
        (recipe / "exp" / name).write_text("")
    (recipe / "data" / "token_list" / "char").mkdir(parents=True)
    (recipe / "data" / "token_list" / "pinyin").mkdir(parents=True)
    for t in ("char", "pinyin"):
        (recipe / "data" / "token_list" / t / "tokens.txt").write_text("")
    (recipe / "dump" / "lm").mkdir(parents=True)
    for name in ("train.txt", "valid.txt"):
        (recipe / "dump" / "lm" / name).write_text("")
    (recipe / "exp" / "lm_char").mkdir(parents=True)
    for name in ("config.yaml", "valid.loss.best.pth"):
        (recipe / "exp" / "lm_char" / name).write_text("")
    lm = ["--use_lm", "true", "--lm_train_text", "extra.txt", "--lm_args", "--max_epoch 1"]
    p = run_vsr(recipe, "--stage", "2", "--stop-stage", "6", "--train_in_parallel", "true", *lm)
    assert p.returncode == 0, p.stderr
    (text,) = module_calls(recipe, "prepare_lm_text")
    assert opt(text, "--transcripts") == ["data/train/text"] and opt(text, "--valid") == ["data/dev/text"]
    held = text[text.index("--held-out") + 1:text.index("--text")]
    assert sorted(held) == ["data/dev/text", "data/test/text"] and opt(text, "--text") == ["extra.txt"]
    lm_calls = [c for c in calls(recipe) if c[0] == "python" and c[1:3] == ["-m", "vallr_pin.bin.lm_train"]]
    assert len(lm_calls) == 2  # stage 3's collect-stats, stage 4's training
    stats, train = lm_calls
    assert opt(stats, "--collect_stats") == ["true"] and opt(train, "--max_epoch") == ["1"]
    for c in lm_calls:
        assert opt(c, "--token_list") == ["data/token_list/char/tokens.txt"] and opt(c, "--token_type") == ["char"]
    assert opt(train, "--output_dir") == ["exp/lm_char"]
    flat = [" ".join(c) for c in calls(recipe)]
    order = [i for i, c in enumerate(flat) if "train_vsr_char" in c or "vallr_pin.bin.lm_train --config" in c]
    assert len(order) >= 2 and "vallr_pin.bin.lm_train" in flat[order[-1]]  # the LM after the char-only model
    decodes = inference_jobs(recipe)
    assert len(decodes) == 2
    for _, _, args, _ in decodes:
        assert opt(args, "--lm_train_config") == ["exp/lm_char/config.yaml"]
        assert opt(args, "--lm_file") == ["exp/lm_char/valid.loss.best.pth"]
    (recipe.parents[2] / "rec" / "calls").unlink()
    p = run_vsr(recipe, "--stage", "5", "--stop-stage", "5")
    assert p.returncode == 0, p.stderr
    ((_, _, args, _),) = inference_jobs(recipe)
    assert opt(args, "--lm_weight") == ["0"] and not opt(args, "--lm_file")

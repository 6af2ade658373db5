"""Stage 4 in ESPnet's distributed (DDP) mode: `vsr.sh --ngpu 0 --train_launcher torchrun --train_nproc 2`, two CPU
processes talking gloo, on the session's CI-sized mini recipe (test/conftest.py's ``recipe``, copied).

DDP is right when a step on a global batch split over the processes is the step one process takes on that
batch: ESPnet shards each batch (``batch[rank::world_size]``), weights each process's loss by its share of
utterances and DDP averages the gradients. The tiny model's frontend has BatchNorm, whose statistics are per
process, so a half batch is the whole batch only when the halves hold the same utterances: the comparison
trains on the training set with every utterance twice (``<utt>`` and ``<utt>-dup`` adjacent in the shape file,
batches of 4 sorted by length, so each process sees one copy of each pair), without dropout and augmentation.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from mini_recipe import copy_recipe, recipe_env

pytestmark = pytest.mark.distributed
LOSS_LINE = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch:.*?\bloss=([-+.\deE]+)")


def doubled(src: Path, dst: Path) -> None:
    """Every line ``<key> <rest>`` of ``src`` as itself and as ``<key>-dup <rest>``, next to each other."""
    out = []
    for line in src.read_text(encoding="utf-8").splitlines():
        key, rest = line.split(" ", 1)
        out += [f"{key} {rest}", f"{key}-dup {rest}"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def ddp_recipe(recipe, tmp_path_factory):
    work = copy_recipe(recipe, tmp_path_factory.mktemp("ddp"))
    for dset, mode in (("train", "train"), ("dev", "valid")):
        for name in ("feats.scp", "text", "text_pinyin"):
            doubled(work / "dump" / "roi" / dset / name, work / "dump" / "roi" / f"{dset}2x" / name)
        doubled(work / "exp" / "vsr_stats" / mode / "video_shape", work / "exp_ddp" / "vsr_stats" / mode / "video_shape")
    conf = yaml.safe_load((work / "conf" / "train_vsr_dual.yaml").read_text())
    for part in ("encoder_conf", "decoder_conf", "pinyin_decoder_conf"):
        conf[part].update(dropout_rate=0.0, positional_dropout_rate=0.0)
    conf["model_conf"].update(frame_target_weight=0.0, frame_label_weight=0.0)
    conf["model_conf"].pop("frame_target_dim"), conf["model_conf"].pop("frame_label_classes")
    conf["preprocessor_conf"].update(flip_prob=0.0, time_mask_num=0)
    conf.pop("batch_bins")
    # plain SGD at a constant rate: a step is the gradient itself (Adam would hide a wrongly scaled gradient)
    conf.update(optim="sgd", optim_conf={"lr": 0.05}, scheduler=None)
    conf.pop("scheduler_conf")
    conf.update(batch_type="sorted", batch_size=4, use_matplotlib=False, keep_nbest_models=1, keep_epochs=[],
                log_interval=1)
    (work / "conf" / "train_ddp_check.yaml").write_text(yaml.safe_dump(conf))
    return work


def stage4(work: Path, tag: str, max_epoch: int, *launcher: str) -> list:
    return ["./run.sh", "--stage", "4", "--stop-stage", "4", "--expdir", "exp_ddp", "--vsr_tag", tag,
            "--char_tag", "", "--use_lm", "false", "--train_set", "train2x", "--valid_set", "dev2x", "--test_sets", "dev2x",
            "--frame_targets", "", "--frame_labels", "", "--vsr_config", "conf/train_ddp_check.yaml",
            "--train_args", f"--max_epoch {max_epoch} --seed 3", *launcher]


TORCHRUN = ("--ngpu", "0", "--train_launcher", "torchrun", "--train_nproc", "2")


def losses(train_log: Path) -> dict:
    """{(epoch, iteration): loss} of ESPnet's per-iteration lines (log_interval 1) in a train.log."""
    return {(int(m[1]), int(m[2])): float(m[4]) for m in LOSS_LINE.finditer(train_log.read_text())}


def test_two_process_steps_equal_one_process_on_the_same_global_batch(ddp_recipe):
    env = recipe_env()
    for tag, launcher in (("single", ()), ("ddp", TORCHRUN)):
        p = subprocess.run(stage4(ddp_recipe, tag, 1, *launcher), cwd=ddp_recipe, env=env, capture_output=True,
                           text=True, timeout=900)
        assert p.returncode == 0, p.stderr[-4000:]
    single, ddp = (losses(ddp_recipe / "exp_ddp" / f"vsr_{t}" / "train.log") for t in ("single", "ddp"))
    ddp_log = (ddp_recipe / "exp_ddp" / "vsr_ddp" / "train.log").read_text()
    assert "torchrun processes" in p.stderr and ":0/2]" in ddp_log  # ESPnet's rank-0 prefix of a world of 2
    assert len(single) == 6 and sorted(single) == sorted(ddp)  # 24 utterances, batches of 4
    for step in sorted(single):
        assert ddp[step] == pytest.approx(single[step], rel=1e-3), (step, single, ddp)
    # the steps moved the model (SGD, lr 0.05: the loss falls by a third in 6 steps), so steps 2-6 check DDP's
    # averaged gradients and not only the first forward pass
    assert single[(1, 6)] < 0.8 * single[(1, 1)], single


def workers(exp_dir: str) -> dict:
    """{RANK: pid} of the vsr_train processes torchrun started for ``exp_dir``."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            environ = dict(e.split(b"=", 1) for e in (d / "environ").read_bytes().split(b"\0") if b"=" in e)
        except OSError:
            continue
        if b"vallr_pin.bin.vsr_train" in cmd and exp_dir.encode() in cmd and b"RANK" in environ:
            out[int(environ[b"RANK"])] = int(d.name)
    return out


def test_killed_worker_fails_the_stage_and_a_rerun_resumes_from_checkpoint(ddp_recipe):
    env = recipe_env()
    exp = ddp_recipe / "exp_ddp" / "vsr_resume"
    cmd = stage4(ddp_recipe, "resume", 6, *TORCHRUN)
    proc = subprocess.Popen(cmd, cwd=ddp_recipe, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (exp / "checkpoint.pth").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint.pth after epoch 1"
            time.sleep(0.2)
        ranks = workers(str(exp.relative_to(ddp_recipe)))
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGKILL)
        t = time.monotonic()
        _, err = proc.communicate(timeout=120)  # torchrun stops the other worker: no hang on the dead peer
        assert time.monotonic() - t < 120
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "failed, log(s): exp_ddp/vsr_resume/train.log" in err, err[-3000:]
    assert not workers(str(exp.relative_to(ddp_recipe)))
    first_run = (exp / "train.log").read_text()
    assert "exitcode  : -9" in first_run or "Signals.SIGKILL" in first_run, first_run[-3000:]
    resumed_at = torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"]["epoch"]
    assert 1 <= resumed_at < 6
    p = subprocess.run(cmd, cwd=ddp_recipe, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    log = (exp / "train.log").read_text()
    assert f"The training was resumed using {exp.relative_to(ddp_recipe)}/checkpoint.pth" in log
    epochs = sorted({e for e, _ in losses(exp / "train.log")})
    assert epochs == list(range(resumed_at + 1, 7)), epochs
    assert (exp / "6epoch.pth").exists() and (exp / "valid.acc_char.best.pth").exists()

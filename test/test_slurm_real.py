"""cmd_backend=slurm against a real Slurm: a single-node cluster (munged, slurmctld, slurmd from Debian's
slurm-wlm and munge packages) started by tools/slurm_cluster.sh for this module, and stopped after it.

Skipped, with the reason, when the packages are missing (install them with `tools/slurm_cluster.sh install`,
root, apt-get; .ci/run does that when it can) or the daemons do not start. test_utils_slurm_pl.py checks
slurm.pl's command line against a stand-in sbatch; this file checks what the real scheduler does with it.
"""

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mini_recipe import ROOT, copy_recipe, recipe_env, run_recipe, snapshot

pytestmark = pytest.mark.slurm
CLUSTER = ROOT / "tools" / "slurm_cluster.sh"
SLURM_PL = str(ROOT / "utils" / "slurm.pl")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch")


def start_cluster(dirpath: Path) -> dict:
    """Start a cluster in ``dirpath``; the environment that submits to it. Skips the test when it cannot."""
    missing = [d for d in DAEMONS if not (shutil.which(d) or Path("/usr/sbin", d).exists())]
    if missing:
        pytest.skip(f"Slurm/munge not installed ({', '.join(missing)} missing): run `tools/slurm_cluster.sh install` "
                    "(apt-get install slurm-wlm munge, as root) to run these tests")
    p = subprocess.run([str(CLUSTER), "start", str(dirpath)], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        subprocess.run([str(CLUSTER), "stop", str(dirpath)], capture_output=True, timeout=60)
        pytest.skip(f"a single-node Slurm cluster did not start here: {p.stderr.strip().splitlines()[-1:]}")
    return recipe_env(SLURM_CONF=str(dirpath / "slurm.conf"))


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("slurm")
    env = start_cluster(d)
    yield env
    subprocess.run([str(CLUSTER), "stop", str(d)], capture_output=True, timeout=60)


def slurm_pl(*args, cwd, env):
    return subprocess.run([SLURM_PL, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_failing_task_fails_names_its_log_and_a_rerun_resubmits(slurm_env, tmp_path):
    # task 3 fails until the flag file exists; task 2 kills its own job script (no exit code written)
    cmd = '[ JOB != 3 ] || [ -f ok ] || { echo "task JOB: no ok file" >&2; exit 3; }; [ JOB != 2 ] || [ -f ok ] || kill -9 $PPID'
    p = slurm_pl("JOB=1:3", "exp/log/t.JOB.log", cmd, cwd=tmp_path, env=slurm_env)
    assert p.returncode == 1, p.stderr
    assert "2 / 3 failed, log(s): exp/log/t.2.log exp/log/t.3.log" in p.stderr
    assert "task(s) 2 never reported an exit code" in p.stderr
    assert "Slurm job " in p.stderr
    log3 = (tmp_path / "exp/log/t.3.log").read_text()
    assert "task 3: no ok file" in log3 and "# Ended (code 3)" in log3
    assert "# Ended (code 0)" in (tmp_path / "exp/log/t.1.log").read_text()
    # the resubmission runs every task again and stale exit codes do not count
    (tmp_path / "ok").write_text("")
    p = slurm_pl("JOB=1:3", "exp/log/t.JOB.log", cmd, cwd=tmp_path, env=slurm_env)
    assert p.returncode == 0, p.stderr
    for n in (1, 2, 3):
        assert "# Ended (code 0)" in (tmp_path / f"exp/log/t.{n}.log").read_text()
        assert (tmp_path / f"exp/log/q/t.{n}.rc").read_text().strip() == "0"


def test_refused_submission_fails_at_once_with_the_schedulers_message(slurm_env, tmp_path):
    t = time.monotonic()
    p = slurm_pl("--partition", "nosuch", "JOB=1:2", "log/x.JOB.log", "true", cwd=tmp_path, env=slurm_env)
    assert p.returncode == 1 and time.monotonic() - t < 30
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("slurm.pl: submission failed (sbatch exit code 1: Batch job submission failed: "
                           "Invalid partition name specified)"), p.stderr


def test_stages_1_5_6_through_sbatch_arrays_match_the_local_backend(recipe, slurm_env, tmp_path):
    """The session's recipe ran with run.pl; a copy re-runs stages 1 (and 2, which only rewrites the text files
    stage 1's clean dump lacks), 5 and 6 from scratch with cmd_backend=slurm: every result file is the same."""
    work = copy_recipe(recipe, tmp_path)
    shutil.rmtree(work / "dump" / "roi")
    shutil.rmtree(work / "exp" / "decode_logs")
    for d in list((work / "exp").glob("vsr_*/decode_*")):
        shutil.rmtree(d)
    # one CPU a task (conf/slurm.conf asks 2), so the node runs the 2 tasks of an array at once, as run.pl does
    conf = work / "conf" / "slurm.conf"
    conf.write_text(conf.read_text().replace("default num_threads=2", "default num_threads=1"))
    env = dict(slurm_env, cmd_backend="slurm")
    for first, last in (("1", "2"), ("5", "6")):
        p = run_recipe(work, "--stage", first, "--stop-stage", last, env=env)
        assert "Slurm job " in p.stderr
    # the jobs went through slurm.pl's array scripts, each task with its own Slurm output file
    for d in ("exp/decode_logs/stage5", "exp/decode_logs/stage6", "dump/roi/train/log"):
        q = work / d / "q"
        assert any(q.glob("*.sh")) and any(q.glob("*.1.out")), d
    dirs = ["dump"] + [str(p.relative_to(recipe)) for p in sorted((recipe / "exp").glob("vsr_*/decode_*"))]
    local, slurm = snapshot(recipe, *dirs), snapshot(work, *dirs)
    assert local and {k: v[0] for k, v in slurm.items()} == {k: v[0] for k, v in local.items()}
    stage5_lists = sorted(p.name for p in (recipe / "exp/decode_logs/stage5").glob("decode_list.*"))
    for name in stage5_lists:
        assert (work / "exp/decode_logs/stage5" / name).read_bytes() == \
            (recipe / "exp/decode_logs/stage5" / name).read_bytes()


def test_stage_fails_at_once_when_sbatch_refuses_or_slurmctld_is_down(recipe, slurm_env, tmp_path):
    """Stage 1 with a conf/slurm.conf naming a partition the cluster lacks, then with a cluster of its own
    whose controller is stopped: the stage stops at the first submission with the scheduler's message."""
    work = copy_recipe(recipe, tmp_path)
    conf = work / "conf" / "slurm.conf"
    conf.write_text(conf.read_text().replace("option gpu=0 --partition=cpu", "option gpu=0 --partition=nosuch"))
    p = run_recipe(work, "--stage", "1", "--stop-stage", "1", env=dict(slurm_env, cmd_backend="slurm"),
                   check=False, timeout=300)
    assert p.returncode != 0 and "Stage 1 done" not in p.stderr
    assert "slurm.pl: submission failed (sbatch exit code 1: Batch job submission failed: Invalid partition name " \
           "specified)" in p.stderr, p.stderr[-2000:]
    conf.write_text(conf.read_text().replace("--partition=nosuch", "--partition=cpu"))
    d = tmp_path / "slurm_down"
    env = dict(start_cluster(d), cmd_backend="slurm")
    try:
        subprocess.run([str(CLUSTER), "stop-ctld", str(d)], check=True, timeout=60)
        t = time.monotonic()
        p = run_recipe(work, "--stage", "1", "--stop-stage", "1", env=env, check=False, timeout=300)
        took = time.monotonic() - t
        assert p.returncode != 0 and "Stage 1 done" not in p.stderr
        assert "slurm.pl: submission failed (sbatch exit code 1: Batch job submission failed: Unable to contact " \
               "slurm controller" in p.stderr, p.stderr[-2000:]
        assert took < 120, f"stage 1 took {took:.0f} s to give up on a stopped slurmctld"
    finally:
        subprocess.run([str(CLUSTER), "stop", str(d)], capture_output=True, timeout=60)

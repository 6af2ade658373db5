"""utils/slurm.pl end to end with a stand-in `sbatch` that runs the array tasks on this machine."""

import os
import subprocess
from pathlib import Path

SLURM_PL = str(Path(__file__).resolve().parent.parent / "utils" / "slurm.pl")

# Runs each task of --array=A-B[%M] with SLURM_ARRAY_TASK_ID set, as Slurm would, and records its arguments.
FAKE_SBATCH = """#!/usr/bin/env bash
array= script=
for a in "$@"; do case $a in --array=*) array=${a#--array=};; esac; script=$a; done
printf '%s\\n' "$*" >> "$FAKE_SBATCH_CALLS"
echo "Submitted batch job 4242"
range=${array%%\\%*}
for ((i=${range%-*}; i<=${range#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash "$script"; done
"""


def setup(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    work = tmp_path / "recipe"
    work.mkdir()
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_SBATCH_CALLS=str(tmp_path / "calls"))
    env.pop("SLURM_PL_DRY_RUN", None)
    return work, env


def slurm(*args, cwd, env):
    return subprocess.run([SLURM_PL, *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_array_runs_and_logs_like_run_pl(tmp_path):
    work, env = setup(tmp_path)
    # path.sh is sourced by every task, as in Kaldi/ESPnet recipes.
    (work / "path.sh").write_text("export FROM_PATH_SH=yes\n")
    p = slurm("--mem", "8G", "--gpu", "1", "--num-threads", "2", "JOB=1:3", "exp/log/dec.JOB.log",
              "echo task JOB $FROM_PATH_SH | tr a-z A-Z", cwd=work, env=env)
    assert p.returncode == 0, p.stderr
    for n in (1, 2, 3):
        log = (work / f"exp/log/dec.{n}.log").read_text()
        assert f"TASK {n} YES\n" in log
        assert "threads=2" in log and "# Ended (code 0)" in log
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1
    args = calls[0].split()
    assert "--array=1-3" in args and "--mem=8G" in args and "--gres=gpu:1" in args
    assert "--cpus-per-task=2" in args and "--wait" in args
    assert args[-1] == "exp/log/q/dec.sh"
    script = (work / "exp/log/q/dec.sh").read_text()
    assert "SLURM_ARRAY_TASK_ID" in script and "--array=1-3" in script


def test_failing_task_fails_the_run_and_is_named(tmp_path):
    work, env = setup(tmp_path)
    p = slurm("--max-jobs-run", "2", "JOB=1:3", "exp/log/t.JOB.log", "test", "JOB", "-ne", "3",
              cwd=work, env=env)
    assert p.returncode != 0
    assert "1 / 3 failed" in p.stderr and "exp/log/t.3.log" in p.stderr
    assert "# Ended (code 1)" in (work / "exp/log/t.3.log").read_text()
    assert "--array=1-3%2" in (tmp_path / "calls").read_text()


def test_task_that_never_ran_counts_as_failed(tmp_path):
    work, env = setup(tmp_path)
    # An sbatch whose tasks die before writing an exit code (e.g. killed by the time limit).
    (tmp_path / "bin/sbatch").write_text("#!/bin/sh\necho Submitted batch job 1\n")
    p = slurm("JOB=1:2", "log/x.JOB.log", "true", cwd=work, env=env)
    assert p.returncode != 0
    assert "2 / 2 failed" in p.stderr and "never reported an exit code" in p.stderr


def test_config_file_and_dry_run(tmp_path):
    work, env = setup(tmp_path)
    conf = work / "slurm.conf"
    conf.write_text(
        "# Kaldi-style rules\n"
        "command sbatch --export=PATH --ntasks-per-node=1\n"
        "option mem=* --mem-per-cpu=$0\n"
        "option gpu=0 -p cpu\n"
        "option gpu=* -p gpu --gres=gpu:$0\n"
        "default gpu=0\n"
    )
    p = slurm("--config", str(conf), "--mem", "2G", "--dry-run", "JOB=1:4", "log/a.JOB.log", "true",
              cwd=work, env=env)
    assert p.returncode == 0, p.stderr
    line = p.stdout.strip()
    assert line.startswith("sbatch --export=PATH --ntasks-per-node=1 ")
    assert "--mem-per-cpu=2G" in line and "-p cpu" in line and "--array=1-4" in line
    assert not (tmp_path / "calls").exists()  # nothing submitted
    assert (work / "log/q/a.sh").exists()
    env["SLURM_PL_DRY_RUN"] = "1"
    p = slurm("--config", str(conf), "--gpu", "2", "log/b.log", "true", cwd=work, env=env)
    assert p.returncode == 0 and "-p gpu --gres=gpu:2" in p.stdout and "--array=1-1" in p.stdout
    p = slurm("--config", str(conf), "--account", "x", "log/c.log", "true", cwd=work, env=env)
    assert p.returncode != 0 and "no rule for option --account" in p.stderr

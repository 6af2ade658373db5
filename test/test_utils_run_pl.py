"""utils/run.pl: Kaldi's local job runner, as the recipe stages call it through ${cmd}."""

import re
import subprocess
import time
from pathlib import Path

RUN_PL = str(Path(__file__).resolve().parent.parent / "utils" / "run.pl")


def run(*args, cwd):
    return subprocess.run([RUN_PL, *args], capture_output=True, text=True, cwd=cwd)


def test_job_substitution_in_command_and_log(tmp_path):
    p = run("JOB=1:3", "exp/log/echo.JOB.log", "echo", "part", "JOB", "of", "data/split3/JOB", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for n in (1, 2, 3):
        log = (tmp_path / f"exp/log/echo.{n}.log").read_text()
        lines = log.splitlines()
        assert lines[0] == f"# echo part {n} of data/split3/{n} "
        assert lines[1].startswith("# Started at ")
        assert f"part {n} of data/split3/{n}" in lines
        assert re.search(r"^# Accounting: time=\d+ threads=1$", log, re.M)
        assert re.search(r"^# Ended \(code 0\) at .*", log, re.M)


def test_any_job_variable_name_and_quoted_pipe(tmp_path):
    p = run("SPLIT=2:3", "log/x.SPLIT.log", "echo a SPLIT | tr a-z A-Z > out.SPLIT.txt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out.2.txt").read_text() == "A 2\n"
    assert (tmp_path / "out.3.txt").read_text() == "A 3\n"
    assert not (tmp_path / "log/x.1.log").exists()


def test_args_with_spaces_stay_one_word(tmp_path):
    # Words without whitespace go to bash as they are (so "|" and ">" work); "a  b" keeps its two spaces.
    p = run("log/x.log", "echo", "a  b", "c", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "\na  b c\n" in (tmp_path / "log/x.log").read_text()


def test_jobs_run_in_parallel_and_max_jobs_run_bounds_them(tmp_path):
    start = time.time()
    p = run("JOB=1:4", "log/s.JOB.log", "sleep", "1", cwd=tmp_path)
    parallel = time.time() - start
    assert p.returncode == 0, p.stderr
    assert parallel < 2.5
    start = time.time()
    p = run("--max-jobs-run", "1", "JOB=1:3", "log/s.JOB.log", "sleep", "0.5", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert time.time() - start >= 1.5


def test_one_failing_job_fails_the_run_and_is_named(tmp_path):
    p = run("--mem", "4G", "--gpu", "1", "JOB=1:3", "exp/log/t.JOB.log", "test JOB -ne 2", cwd=tmp_path)
    assert p.returncode != 0
    assert "1 / 3 failed" in p.stderr
    assert "exp/log/t.2.log" in p.stderr
    assert "exp/log/t.1.log" not in p.stderr
    assert "# Ended (code 1)" in (tmp_path / "exp/log/t.2.log").read_text()
    assert "# Ended (code 0)" in (tmp_path / "exp/log/t.3.log").read_text()


def test_no_job_form(tmp_path):
    p = run("--num-threads", "4", "exp/one.log", "echo hello; exit 3", cwd=tmp_path)
    assert p.returncode != 0
    log = (tmp_path / "exp/one.log").read_text()
    assert "hello\n" in log and "threads=4" in log and "# Ended (code 3)" in log
    assert run("exp/two.log", "true", cwd=tmp_path).returncode == 0


def test_bad_arguments(tmp_path):
    # Several jobs into one log would overwrite each other.
    p = run("JOB=1:2", "same.log", "true", cwd=tmp_path)
    assert p.returncode != 0 and "one log" in p.stderr
    assert run("--no-such-option", "1", "x.log", "true", cwd=tmp_path).returncode != 0
    p = run(cwd=tmp_path)
    assert p.returncode != 0 and "Usage: run.pl" in p.stderr
    p = run("--help", cwd=tmp_path)
    assert p.returncode == 0 and "Usage: run.pl" in p.stdout

"""vsr.sh run one stage at a time with nothing before it: every stage checks its inputs first and stops with one
line naming the missing file and the stage to run (issue 21: exit 1 with no message, a cascade of shell errors,
a bare argparse error). Only bash runs: no stage gets as far as its Python step."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mini_cnvsrc" / "vsr1"


@pytest.fixture(scope="module")
def empty_recipe(tmp_path_factory):
    dst = tmp_path_factory.mktemp("egs_checks") / "egs" / "mini_cnvsrc" / "vsr1"
    dst.mkdir(parents=True)
    for name in ("run.sh", "db.sh", "cmd.sh", "conf", "local"):
        src = RECIPE / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    for name in ("vsr.sh", "path.sh", "utils"):
        (dst / name).symlink_to((RECIPE / name).resolve())
    return dst


def run_alone(recipe, *args):
    env = dict(os.environ, PATH=f"{ROOT / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}")
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=120)


def error_line(proc):
    """The one error line; nothing else on stderr but vsr.sh's own stage log lines."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    errors = [ln for ln in lines if "Error" in ln or "error" in ln or "No such file" in ln or "usage" in ln.lower()]
    assert len(errors) == 1, proc.stderr
    assert all("(vsr.sh:" in ln for ln in lines), proc.stderr
    return errors[0]


@pytest.mark.parametrize("stage,needs", [(1, 0), (2, 0), (3, 2), (4, 3), (5, 4), (6, 4), (7, 4), (8, 7), (9, 8)])
def test_stage_alone_names_the_stage_to_run(empty_recipe, stage, needs):
    line = error_line(run_alone(empty_recipe, "--stage", str(stage), "--stop-stage", str(stage)))
    assert f"run stage {needs} first" in line, line


def test_stage_7_with_checkpoints_but_no_nbest_asks_for_stage_6(empty_recipe):
    keep = empty_recipe / "exp" / "vsr_dual" / "ckpt_keep"
    keep.mkdir(parents=True)
    (keep / "1epoch.pth").write_bytes(b"")
    try:
        line = error_line(run_alone(empty_recipe, "--stage", "7", "--stop-stage", "7"))
    finally:
        shutil.rmtree(empty_recipe / "exp" / "vsr_dual")
    assert "decode_vsr_1epoch/train_sub1200/nbest.jsonl is missing: run stage 6 first" in line, line


@pytest.mark.parametrize("nj", ["0", "two"])
def test_bad_nj_is_one_line(empty_recipe, nj):
    line = error_line(run_alone(empty_recipe, "--stage", "1", "--stop-stage", "1", "--nj", nj))
    assert f"--nj {nj}: the number of parallel jobs must be" in line

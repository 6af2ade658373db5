"""The embedded default recipe, egs/mini_cnvsrc/vsr1, run once per test session in its CI configuration.

:func:`build_mini_recipe` copies the recipe into a temporary egs/ tree (vsr.sh, path.sh and utils linked to
this checkout) and runs stages 0-9 there, so the tests never touch a user's demo outputs; ``conftest.py`` makes
it the session fixture ``mini_recipe`` that test_recipe_mini.py and test_recognize.py share.
"""

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mini_cnvsrc" / "vsr1"
CI_OPTS = [
    "--local_data_opts", "--config conf/data_ci.conf",
    "--train_args", "--max_epoch 2 --keep_epochs 1 2",
    "--inference_args", "--beam_size 4 --nbest 4 --maxlenratio 0.5",
    "--llm_sft_args", "--max_steps 4 --save_steps 2 --eval_steps 2",
    "--nbest_train_subset", "6",  # stage 6 on half of the 12 training utterances, 2 per speaker
]


def run_recipe(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{ROOT / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}")
    proc = subprocess.run(["./run.sh", *args, *CI_OPTS], cwd=recipe, env=env, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc



def build_mini_recipe(top: Path) -> Path:
    dst = top / "egs" / "mini_cnvsrc" / "vsr1"
    dst.mkdir(parents=True)
    for name in ("run.sh", "db.sh", "cmd.sh", "conf", "local"):
        src = RECIPE / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    for name in ("vsr.sh", "path.sh", "utils"):
        (dst / name).symlink_to((RECIPE / name).resolve())
    run_recipe(dst, "--stage", "0", "--stop-stage", "9")
    return dst

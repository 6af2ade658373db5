"""The CI-sized run of egs/mini_cnvsrc/vsr1 that several test files share (see conftest.py's ``recipe``).

The recipe is copied into a temporary egs/ tree (vsr.sh, path.sh and utils linked to this checkout) so the
tests never touch a user's demo outputs; it runs once per test session (stages 0-9, a few minutes on 2 cores).
Tests that change what is in it work on ``copy_recipe(recipe, dst)`` instead.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "mini_cnvsrc" / "vsr1"
CI_OPTS = [
    "--local_data_opts", "--config conf/data_ci.conf",
    "--train_args", "--max_epoch 2 --keep_epochs 1 2",
    "--lm_args", "--max_epoch 1",
    # no length bonus and no LM fusion in decoding (the LM is still trained, stage 4): with the mini recipe's
    # (chosen on dev for its trained model) the 2-epoch CI model writes <unk> loops to the maximum length, and
    # ms-swift drops every training sample that long. Fusion itself: test_model_train_decode.py. ESPnet's
    # pre-beam (1.5) too: the 2-epoch model's 1-best is noise, and with the recipe's 3 it flipped between a clip
    # and its 60 fps re-encode (test_recognize compares them); the wider pre-beam is tested by itself in
    # test_model_train_decode.py. The pinyin CTC in the search stays on.
    "--inference_args", "--beam_size 4 --nbest 4 --maxlenratio 0.5 --penalty 0 --lm_weight 0 --pre_beam_ratio 1.5",
    "--llm_sft_args", "--max_steps 4 --save_steps 2 --eval_steps 2 --logging_steps 1",
    "--nbest_train_subset", "6",  # stage 6 on half of the 12 training utterances, 2 per speaker
]


def recipe_env(**extra: str) -> dict:
    return dict(os.environ, PATH=f"{ROOT / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}", **extra)


def run_recipe(recipe: Path, *args: str, env: dict = None, check: bool = True, ci_opts: bool = True,
               timeout: float = 1800) -> subprocess.CompletedProcess:
    """``./run.sh <args> <CI_OPTS>`` in ``recipe`` (later options win, so ``args`` cannot override CI_OPTS;
    ``ci_opts=False`` leaves them out for a test that sets those options itself)."""
    argv = ["./run.sh", *args, *(CI_OPTS if ci_opts else [])]
    proc = subprocess.run(argv, cwd=recipe, env=env or recipe_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def make_recipe_copy(top: Path) -> Path:
    """A fresh egs/mini_cnvsrc/vsr1 under ``top`` (no outputs yet)."""
    dst = top / "egs" / "mini_cnvsrc" / "vsr1"
    dst.mkdir(parents=True)
    for name in ("run.sh", "db.sh", "cmd.sh", "conf", "local"):
        src = RECIPE / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst / name)
    for name in ("vsr.sh", "path.sh", "utils"):
        (dst / name).symlink_to((RECIPE / name).resolve())
    return dst


def copy_recipe(recipe: Path, top: Path) -> Path:
    """A copy of the session's recipe directory with all its outputs, for a test that changes them."""
    dst = top / "egs" / "mini_cnvsrc" / "vsr1"
    shutil.copytree(recipe, dst, symlinks=True)
    return dst


def _result_files(recipe: Path, dirs):
    """(relative path, bytes) of every result file under ``dirs`` (see :func:`snapshot`), the bytes with the
    parts that differ between runs by design taken out."""
    for d in dirs:
        top = recipe / d
        paths = sorted(top.rglob("*")) if top.is_dir() else [top]
        # the adapter stage 9 loads, through its link (ms-swift's other checkpoint files name their own
        # timestamped run directory, so they differ between two runs by design)
        paths += [p / q.relative_to(p.resolve()) for p in paths if p.is_symlink() and p.is_dir()
                  for q in sorted(p.resolve().glob("adapter_*"))]
        for p in paths:
            if (p.is_file() and "log" not in p.relative_to(recipe).parts[:-1] and not p.name.endswith(".log")
                    and p.name != "stage_times.txt"):
                data = p.read_bytes()
                if p.name == "adapter_config.json":  # peft writes target_modules from a set: any order
                    conf = json.loads(data)
                    conf["target_modules"] = sorted(conf.get("target_modules") or [])
                    data = json.dumps(conf, sort_keys=True).encode()
                if p.name == "guard_stats.json":  # holds the measured speed of that run
                    data = json.dumps({k: v for k, v in json.loads(data).items() if k != "utts_per_second"}).encode()
                if p.name == "RESULTS.md":  # its time-per-stage line changes with every run by design
                    data = b"\n".join(ln for ln in data.split(b"\n") if b"time per stage" not in ln)
                yield p, str(p.relative_to(recipe)), data


def snapshot(recipe: Path, *dirs: str) -> dict:
    """{relative path: (sha1, mtime_ns)} of every result file under ``dirs`` (logs and stage timings excluded:
    they differ from run to run by design), and the adapter_* files behind exp/llm_lora/adapter."""
    return {rel: (hashlib.sha1(data).hexdigest(), p.stat().st_mtime_ns) for p, rel, data in _result_files(recipe, dirs)}


MS_SWIFT_RUN_DIR = re.compile(r"v\d+-\d")  # exp/llm_<tag>/v<N>-<timestamp>/
LIP_ROI_DONE = re.compile(r"feats(\.\d+)?\.done")


def portable_snapshot(recipe: Path, *dirs: str) -> dict:
    """{relative path: sha1} of the files :func:`snapshot` covers, comparable between two copies of the recipe:
    the copy's own absolute path inside a file (data/<set>/video.scp, ...) reads as ``<recipe>``, and ms-swift's
    timestamped run directories are left out (their adapter is compared through exp/llm_<tag>/adapter), and so
    are what holds a run's own clock: stage 1's job done markers (dump/roi/<set>/feats.J.done: a hash of the
    input videos' mtimes), ESPnet's plots of measured times (exp/vsr_<tag>/images/*_time.png) and its
    checkpoint.pth (the reporter with those times; its weights are the last {N}epoch.pth's, compared)."""
    roots = sorted({str(recipe), str(recipe.resolve())}, key=len, reverse=True)
    out = {}
    for _, rel, data in _result_files(recipe, dirs):
        name = Path(rel).name
        if (any(MS_SWIFT_RUN_DIR.match(part) for part in Path(rel).parts) or LIP_ROI_DONE.fullmatch(name)
                or name == "checkpoint.pth" or (name.endswith("_time.png") and Path(rel).parent.name == "images")):
            continue
        for root in roots:
            data = data.replace(root.encode(), b"<recipe>")
        out[rel] = hashlib.sha1(data).hexdigest()
    return out


def owner_stage(rel: str) -> int:
    """The recipe stage that last writes the result file ``rel`` (a path relative to the recipe directory)."""
    parts = rel.split("/")
    if parts[0] == "downloads":
        return 0
    if parts[0] == "data":
        if parts[1] == "token_list" or parts[-1] in ("text", "text_pinyin", "text.orig", "text.sha1", "empty_text"):
            return 2  # stage 2 normalises data/<set>/text in place (stage 0's transcript kept as text.orig)
        return 0
    if parts[0] == "dump":
        if parts[2].startswith("train_sub"):
            return 6  # stage 6's subset of the training set (--nbest_train_subset)
        if parts[1] == "lm":
            return 2  # the character LM's text (--use_lm true)
        return 2 if parts[-1] in ("text", "text_pinyin", "utt2spk", "spk2utt") else 1
    if parts[0] == "RESULTS.md":
        return 9
    if parts[1] == "decode_logs":  # the decode lists stages 5 and 6 give their jobs
        return {"stage5": 5, "stage6": 6}[parts[2]]
    if parts[1] in ("vsr_stats", "lm_stats"):
        return 3
    if parts[1] == "lm_char":
        return 4
    if parts[1] in ("vsr_dual", "vsr_char"):
        if parts[2].startswith("decode_"):
            return 5 if parts[2].endswith("_valid.acc_char.ave") else 6
        return 4
    if parts[1] == "llm_data":
        return 7
    if parts[1] == "llm_lora":
        return 9 if parts[2].startswith("refine_") else 8
    raise AssertionError(f"no stage owns {rel}")


def build_mini_recipe(top: Path) -> Path:
    """A fresh copy under ``top`` run through stages 0-9 (the session fixture of conftest.py)."""
    dst = make_recipe_copy(top)
    run_recipe(dst, "--stage", "0", "--stop-stage", "9")
    return dst

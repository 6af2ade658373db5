"""Issue 21: the CI mini recipe killed with SIGKILL inside each of its long stages (1, 4, 5, 6, 8, 9), then the
same command run again, ends with exactly the results of a clean run.

One fresh copy of egs/mini_cnvsrc/vsr1 (its rendered corpus and tiny LLM copied from the session's clean run,
so stage 0 renders nothing) runs stages 0-9 one at a time with the CI options. Each stage of FAULT_STAGES is
first started alone in its own process group; once its first partial output shows it is at work, a seeded
random delay within its measured duration passes (cut short if the stage starts writing its last outputs), and
the whole group is killed with SIGKILL: run.sh, run.pl, the jobs, ms-swift's trainer, every child. The kill
must land while the stage runs (it has not logged "Stage N done" nor recorded its time). Then the same
``run.sh --stage N --stop-stage N`` runs to the end, and every result file the stage owns (and those of the
stages before) must equal the clean run's byte for byte (mini_recipe.portable_snapshot: the recipe's own path
and ms-swift's timestamped run directories aside). So a half-written file taken as valid, a stale done marker,
a half-made checkpoint or run directory resumed from, all show up as a difference, named with its stage.

Cost: the re-runs are about one CI recipe run (stage 0 reuses the rendered corpus), the killed starts ~60%
more: 216 s against 159 s for the session's clean run on a 2-core host. Marked ``faults``: ``pytest -m faults``.
When this run is much faster than the clean one was (another load on the host then), the kill comes at the
stage's last outputs rather than at the drawn point: still inside the stage, but late in it.
"""

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mini_recipe import CI_OPTS, make_recipe_copy, owner_stage, portable_snapshot, recipe_env, run_recipe

pytestmark = pytest.mark.faults

SEED = 21
FAULT_STAGES = (1, 4, 5, 6, 8, 9)
RESULT_DIRS = ("data", "dump", "exp", "RESULTS.md")
# Per stage: globs (under the recipe) of (its first partial output: it is past start-up, at work; the first of
# its last outputs: kill now at the latest, so that the kill never lands after the stage finished).
PROBES = {
    1: (["dump/roi/*/feats.*.ark.tmp"], ["dump/roi/test/feats.scp"]),
    # epoch 1 saved: the kill lands in epoch 2 or the averaging, so the re-run resumes from checkpoint.pth
    4: (["exp/vsr_*/checkpoint.pth"], ["exp/vsr_*/valid.acc_char.ave.pth"]),
    5: (["exp/vsr_*/decode_*_valid.acc_char.ave/*/logdir/output.*/.done"],
        ["exp/vsr_*/decode_*_valid.acc_char.ave/*/score_cer/summary.json"]),
    6: (["exp/vsr_dual/decode_*_*epoch/*/logdir/output.*/.done"],
        ["exp/vsr_dual/decode_*_*epoch/*/score_cer/summary.json"]),
    8: (["exp/llm_lora/v*-*"], ["exp/llm_lora/adapter"]),  # ms-swift's run directory: training has begun
    9: (["exp/llm_lora/refine_*/*/raw.jsonl"], ["exp/llm_lora/refine_*/*/score_cer/summary.json"]),
}


def _exists(recipe: Path, globs) -> bool:
    return any(next(recipe.glob(g), None) is not None for g in globs)


def _live_members(pgid: int) -> list:
    """Processes of group ``pgid`` that are still running (zombies waiting for a reaper do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            live.append(int(stat.parent.name))
    return live


def _stage_recorded(recipe: Path, stage: int) -> bool:
    times = recipe / "exp" / "stage_times.txt"
    return times.is_file() and any(ln.split()[:2] == ["stage", str(stage)] for ln in times.read_text().splitlines())


def kill_inside_stage(recipe: Path, stage: int, expected_s: float, rng: random.Random, log: Path) -> dict:
    """Start ``run.sh --stage N --stop-stage N`` in its own session, SIGKILL its whole process group at a seeded
    random point inside the stage's work; returns what the kill hit."""
    start, last = PROBES[stage]
    with open(log, "w") as out:
        proc = subprocess.Popen(["./run.sh", "--stage", str(stage), "--stop-stage", str(stage), *CI_OPTS],
                                cwd=recipe, env=recipe_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        t0 = time.monotonic()
        while not _exists(recipe, start):
            if proc.poll() is not None:
                pytest.fail(f"stage {stage} ended (exit {proc.returncode}) before any of {start} appeared:\n"
                            + log.read_text()[-3000:])
            if time.monotonic() - t0 > 1800:
                pytest.fail(f"stage {stage}: none of {start} after 30 min")
            time.sleep(0.02)
        at_work = time.monotonic() - t0
        # a point drawn within what the stage still had to do in the clean run
        delay = rng.uniform(0.0, 0.8) * max(expected_s - at_work, 2.0)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not _exists(recipe, last) and proc.poll() is None:
            time.sleep(0.02)
        running = proc.poll() is None
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is empty if the stage had ended
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = log.read_text()
    assert running and f"Stage {stage} done" not in text and not _stage_recorded(recipe, stage), (
        f"the kill in stage {stage} came after the stage had finished; it tests nothing:\n{text[-3000:]}")
    for _ in range(100):  # every child of run.sh dies with it (they share its process group)
        if not _live_members(proc.pid):
            break
        time.sleep(0.1)
    assert not _live_members(proc.pid), f"stage {stage}: processes {_live_members(proc.pid)} survived the kill"
    return {"stage": stage, "at_work_s": round(at_work, 1), "killed_at_s": round(time.monotonic() - t0, 1),
            "last_outputs_begun": _exists(recipe, last)}


def test_kill_9_inside_each_stage_then_rerun_gives_the_clean_runs_results(recipe, tmp_path):
    times = (recipe / "exp" / "stage_times.txt").read_text().split("\n")
    expected = {int(f[1]): float(f[2]) for f in (ln.split() for ln in times) if len(f) == 3}
    clean = portable_snapshot(recipe, *RESULT_DIRS)
    assert {owner_stage(k) for k in clean} >= set(range(1, 10))
    work = make_recipe_copy(tmp_path)
    shutil.copytree(recipe / "downloads", work / "downloads", symlinks=True)  # stage 0 then renders nothing
    rng = random.Random(SEED)
    kills = []
    for stage in range(10):
        if stage in FAULT_STAGES:
            kills.append(kill_inside_stage(work, stage, expected.get(stage, 60.0), rng,
                                           tmp_path / f"stage{stage}.killed.log"))
        run_recipe(work, "--stage", str(stage), "--stop-stage", str(stage))
        # everything the stages up to this one own is final now: it must be the clean run's, file for file
        # (a killed writer's hidden temporary file, never read by anything, is not a result)
        faulty = {k: v for k, v in portable_snapshot(work, *RESULT_DIRS).items()
                  if owner_stage(k) <= stage and not (Path(k).name.startswith(".") and k.endswith(".tmp"))}
        want = {k: v for k, v in clean.items() if owner_stage(k) <= stage}
        differ = sorted(k for k in want if faulty.get(k) != want[k])
        extra = sorted(set(faulty) - set(want))
        assert not differ and not extra, (
            f"after stage {stage} (kills so far: {kills}): {len(differ)} file(s) differ from the clean run "
            f"(or are missing): {differ[:12]}; {len(extra)} extra: {extra[:12]}")
    assert [k["stage"] for k in kills] == list(FAULT_STAGES)
    print("kills:", kills)

"""Every training process tears down its torch.distributed process group before the interpreter exits: a gloo
group left alive can abort a worker that finished its work ("terminate called without an active exception",
exit -6; vallr_pin.distributed). ESPnet's trainers (vsr_train, lm_train) return to our code; ms-swift's workers
do not, and load a plugin that does it at exit."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def no_group_left_behind():
    """A failed assertion must not leave this pytest process in a process group for the tests after it."""
    yield
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _fake_training(store):
    import torch.distributed as dist

    def fake(cmd=None):  # what ESPnet's main_worker leaves behind under torchrun
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)

    return staticmethod(fake)


def test_vsr_train_destroys_the_process_group_after_training_returns(tmp_path, monkeypatch):
    import torch.distributed as dist

    from vallr_pin.bin import vsr_train

    monkeypatch.setattr(vsr_train.VSRTask, "main", _fake_training(tmp_path / "store"))
    vsr_train.main([])
    assert not dist.is_initialized()
    vsr_train.destroy_process_group()  # nothing to tear down: a no-op, as on a single-process run


def test_lm_train_destroys_the_process_group_after_training_returns(tmp_path, monkeypatch):
    import torch.distributed as dist

    from vallr_pin.bin import lm_train

    monkeypatch.setattr(lm_train.LMTask, "main", _fake_training(tmp_path / "store"))
    lm_train.main([])
    assert not dist.is_initialized()


def test_swift_plugin_destroys_the_process_group_at_exit(tmp_path):
    """Loaded as ``--external_plugins`` loads it (swift's import_external_file) in a process that then leaves its
    group alive, as a transformers Trainer does: the group is gone by the time the atexit handlers registered
    before the plugin run (atexit runs them last-in, first-out)."""
    pytest.importorskip("swift")
    from vallr_pin.llm.swift_plugin import DIST_TEARDOWN

    script = textwrap.dedent(f"""
        import atexit
        import torch.distributed as dist
        atexit.register(lambda: print("initialized at exit:", dist.is_initialized(), flush=True))
        from swift.utils import import_external_file
        import_external_file({str(DIST_TEARDOWN)!r})
        import_external_file({str(DIST_TEARDOWN)!r})  # every worker may load it twice (dataloader replays)
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
        print("initialized:", dist.is_initialized(), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "initialized: True" in out.stdout
    assert "initialized at exit: False" in out.stdout, out.stdout


def test_the_exit_teardown_is_skipped_after_an_uncaught_exception(tmp_path):
    """A crashed worker exits without the teardown, which could wait on ranks that are gone."""
    script = textwrap.dedent(f"""
        import atexit
        import torch.distributed as dist
        atexit.register(lambda: print("initialized at exit:", dist.is_initialized(), flush=True))
        from vallr_pin.distributed import destroy_process_group_at_exit
        destroy_process_group_at_exit()
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
        raise RuntimeError("a training step failed")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "a training step failed" in out.stderr
    assert "initialized at exit: True" in out.stdout, out.stdout


def _args(tmp_path, rlhf=None):
    return argparse.Namespace(rlhf=rlhf, model=str(tmp_path / "llm"), swift_args=[], init_adapter=None,
                              train=str(tmp_path / "train.jsonl"), dev=None, output_dir=str(tmp_path / "out"))


def _plugins(cmd):
    assert cmd.count("--external_plugins") <= 1, "a second flag would replace the first"
    if "--external_plugins" not in cmd:
        return []
    i = cmd.index("--external_plugins") + 1
    j = next((k for k in range(i, len(cmd)) if cmd[k].startswith("--")), len(cmd))
    return cmd[i:j]


def test_several_cpu_processes_load_the_teardown_plugin_with_any_other(tmp_path):
    pytest.importorskip("swift")
    from vallr_pin.bin.llm_sft import add_cpu_distributed_options, build_command
    from vallr_pin.llm.grpo import PLUGIN
    from vallr_pin.llm.swift_plugin import DIST_TEARDOWN

    two = add_cpu_distributed_options({"lora_rank": 8}, "cpu", 2)
    assert _plugins(build_command(_args(tmp_path), two)) == [DIST_TEARDOWN]
    assert _plugins(build_command(_args(tmp_path, rlhf="grpo"), two)) == [PLUGIN, DIST_TEARDOWN]
    own = add_cpu_distributed_options({"external_plugins": "/my/plugin.py"}, "cpu", 2)
    assert _plugins(build_command(_args(tmp_path, rlhf="grpo"), own)) == [PLUGIN, "/my/plugin.py", DIST_TEARDOWN]
    # plugins after `--` join the list instead of replacing it (ms-swift keeps the last flag only)
    args = _args(tmp_path, rlhf="grpo")
    args.swift_args = ["--beta", "0", "--external_plugins", "/a.py", "/b.py", "--external_plugins=/c.py", "--seed", "1"]
    cmd = build_command(args, two)
    assert _plugins(cmd) == [PLUGIN, DIST_TEARDOWN, "/a.py", "/b.py", "/c.py"]
    assert cmd[-4:] == ["--beta", "0", "--seed", "1"]
    # one process, or GPUs (NCCL, not measured to need it): the command the recipes' results were made with
    for device, n in (("cpu", 1), ("gpu", 2)):
        opts = add_cpu_distributed_options({"lora_rank": 8}, device, n)
        assert _plugins(build_command(_args(tmp_path), opts)) == []
        assert _plugins(build_command(_args(tmp_path, rlhf="grpo"), opts)) == [PLUGIN]

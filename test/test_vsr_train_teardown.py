"""vsr_train tears down the process group it trained in (a gloo group left alive can abort the worker at exit)."""

from __future__ import annotations


def test_main_destroys_the_process_group_after_training_returns(tmp_path, monkeypatch):
    import torch.distributed as dist

    from vallr_pin.bin import vsr_train

    def fake_training(cmd=None):  # what ESPnet's main_worker leaves behind under torchrun
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    monkeypatch.setattr(vsr_train.VSRTask, "main", staticmethod(fake_training))
    vsr_train.main([])
    assert not dist.is_initialized()
    vsr_train.destroy_process_group()  # nothing to tear down: a no-op, as on a single-process run

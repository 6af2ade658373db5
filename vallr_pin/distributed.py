"""Tearing down a torch.distributed process group before the interpreter exits.

ESPnet's trainer and ms-swift's (transformers') leave the process group of a torchrun worker alive when training
returns. With gloo, its C++ threads can then outlive the interpreter and abort a worker that finished every
step: "terminate called without an active exception", exit code -6 (pytorch/pytorch#190489). Seen in .ci/run
once in each path: a resumed 2-process VSR training (test_train_ddp) and a 2-process ``swift sft``
(test_llm_sft_2proc), both after every checkpoint was written.
"""

from __future__ import annotations

import atexit
import sys

_registered = False


def destroy_process_group() -> None:
    """Destroy the default process group if this process has one; a no-op otherwise (one process, no torchrun).
    Call it once training has returned normally: with a collective still in flight (a rank that crashed in the
    middle of one), gloo's teardown waits for the other ranks."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _destroy_unless_crashed() -> None:
    # An uncaught exception leaves sys.last_value set by the time atexit runs: that process exits as it would
    # have, without a teardown that could wait on ranks that are gone (ms-swift's ddp_timeout is ~200 days).
    if getattr(sys, "last_value", None) is None:
        destroy_process_group()


def destroy_process_group_at_exit() -> None:
    """Register a teardown with ``atexit`` (once per process), for workers whose training loop is someone else's
    program (``swift sft``): atexit runs while the interpreter is still whole, before the C++ destructors that
    abort. This is what pytorch/pytorch PR 179291 proposes for torch itself. Skipped after an uncaught
    exception."""
    global _registered
    if not _registered:
        atexit.register(_destroy_unless_crashed)
        _registered = True

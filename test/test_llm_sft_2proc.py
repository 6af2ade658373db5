"""Stage 8 (ms-swift LoRA SFT) on two CPU processes: NPROC_PER_NODE=2, which ms-swift turns into torchrun
(llm_sft adds use_cpu and the gloo backend, without which the processes do not train as one), on a copy of
the session's CI-sized mini recipe (test/conftest.py's ``recipe``).

The session's own stage 8 ran on one process with batches of 8; two processes with 4 each make the same global
batch size, and the Trainer averages the loss over the tokens of both, so the loss curves match step by step
up to which examples a step draws (the distributed sampler orders them its own way): 0.2 % apart on the
first step here, within 2 % on every step.
"""

import json
from pathlib import Path

import pytest

from mini_recipe import copy_recipe, recipe_env, run_recipe

pytestmark = pytest.mark.distributed
SFT_ARGS = "--max_steps 4 --save_steps 2 --eval_steps 2 --logging_steps 1"  # mini_recipe.CI_OPTS's


def train_losses(llm_exp: Path) -> list:
    """The per-step training losses of the newest ms-swift run in ``llm_exp``."""
    run = max(llm_exp.glob("v*-*"), key=lambda p: int(p.name[1:].split("-")[0]))
    rows = [json.loads(ln) for ln in (run / "logging.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_stage8_on_two_processes_makes_an_adapter_with_the_single_process_loss_curve(recipe, tmp_path):
    work = copy_recipe(recipe, tmp_path)
    run_recipe(work, "--stage", "8", "--stop-stage", "8", "--llm_tag", "lora2p", "--llm_sft_args",
               f"{SFT_ARGS} --per_device_train_batch_size 4", ci_opts=False, env=recipe_env(NPROC_PER_NODE="2"))
    log = (work / "exp" / "llm_lora2p" / "sft.log").read_text()
    assert "torch.distributed.run --nproc_per_node 2" in log and "world_size: 2" in log
    # Real data parallelism (llm_sft.add_cpu_distributed_options): one process writes each checkpoint (two
    # processes that both took themselves for rank 0 wrote each twice and raced on ms-swift's symlink), and
    # the model is inside DistributedDataParallel (gloo without use_cpu left it out, gradients unsynchronised,
    # with this warning of transformers')
    assert "--use_cpu true" in log and "--ddp_backend gloo" in log
    assert log.count("Saving model checkpoint to") == 2, "checkpoints 2 and 4, each written by rank 0 only"
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in log
    # the workers are given the plugin that destroys the gloo group at exit (a rank once aborted there, exit -6):
    # ms-swift's own line, which names the file (each worker parses the same arguments and imports it)
    assert any("Successfully imported external_plugins" in ln and "dist_teardown.py" in ln
               for ln in log.splitlines()), "swift sft did not load the teardown plugin"
    adapter = work / "exp" / "llm_lora2p" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    conf = json.loads((adapter / "adapter_config.json").read_text())
    assert (conf["r"], conf["lora_alpha"]) == (8, 32)
    single, two = train_losses(recipe / "exp" / "llm_lora"), train_losses(work / "exp" / "llm_lora2p")
    assert len(single) == len(two) == 4
    assert two == pytest.approx(single, rel=2e-2), (single, two)
    assert two[-1] < two[0] and single[-1] < single[0]

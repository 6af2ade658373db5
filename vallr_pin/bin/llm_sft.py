#!/usr/bin/env python3
"""Stage 8: LoRA fine-tuning of the refinement LLM with ms-swift (``swift sft``), DeepSpeed ZeRO-2 on GPU.

Reads ``conf/llm_sft.yaml``: a ``swift:`` section of ``swift sft`` arguments (paper: LoRA rank 8, alpha 32,
lr 1e-4, all linear layers) and ``gpu:``/``cpu:`` sections added on top depending on where it runs (DeepSpeed
ZeRO-2 and bf16 on GPU; on CPU, where DeepSpeed does not apply, only ``use_cpu`` and ``ddp_backend: gloo`` when
several processes are asked for, see ``add_cpu_distributed_options``). Flags after ``--`` are passed to
``swift sft`` last and so override the config (``-- --max_steps 10``).

Runs ms-swift's own CLI (``python -m swift.cli.main sft ...``) in a subprocess, so that multi-GPU / multi-node
training works exactly as ms-swift documents it: set ``NPROC_PER_NODE=<gpus per node>`` (and for several nodes
``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) in the environment and ms-swift launches torchrun.

Before anything starts (``--dry-run`` included), every key of the config and every ``--flag`` after ``--`` is
checked against the fields of ms-swift's own ``swift sft`` argument dataclass (``swift.arguments.SftArguments``
of the installed ms-swift), so a mistyped key (``lora_rnak``) stops at once with one line naming the key and the
closest valid one, instead of ms-swift failing half a minute into the run. A config that is not YAML, or not a
mapping of sections, is named in one line too. When ``swift sft`` fails, the ``v<N>-*`` run directory it made
is removed unless it holds a checkpoint (resumable work is kept); one that a killed run left without a
checkpoint is removed when the next run starts.

ms-swift writes ``<output-dir>/v<N>-<timestamp>/checkpoint-<step>/``; afterwards this wrapper resolves the
checkpoint to use (the best by validation loss when a dev set is given, by mean reward with --rlhf grpo,
ms-swift's metric_for_best_model there, else the last), points the symlink
``<output-dir>/adapter`` at it, and prints its path. Stage 9 loads ``<output-dir>/adapter``.

RL with a verifiable reward after SFT (``--rlhf grpo``, issue 19): the same wrapper runs ms-swift's
``swift rlhf --rlhf_type grpo`` instead, with the config's arguments checked against ms-swift's
``RLHFArguments``, ``--external_plugins vallr_pin/llm/swift_plugin/grpo_rewards.py`` (the rewards ``vsr_cer_gain`` =
CER(1-best) - CER(answer) and ``vsr_format``, ``vallr_pin.llm.grpo``) and the stage-7 rows turned into GRPO
rows under ``<output-dir>/grpo_data/`` (prompt, ``solution`` = reference, ``onebest``). ``--init-adapter`` is
the SFT adapter to go on from (ms-swift's ``--adapters``; also ``--ref_adapters`` when the KL weight ``beta``
is not 0, so that the reference policy is the SFT model). Rollouts use transformers generation unless the
config sets ``use_vllm`` (GPU). The adapter it writes applies to the base model like the SFT one.

Example:
    python -m vallr_pin.bin.llm_sft --config conf/llm_sft.yaml --model /models/Qwen3-4B-Instruct-2507 \\
        --train exp/llm_data/train.jsonl --dev exp/llm_data/dev.jsonl --output-dir exp/llm_lora
    python -m vallr_pin.bin.llm_sft --rlhf grpo --config conf/llm_grpo.yaml --init-adapter exp/llm_lora/adapter \\
        --model /models/Qwen3-4B-Instruct-2507 --train exp/llm_data/train.jsonl --output-dir exp/llm_lora/grpo
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import yaml

from vallr_pin.cli import add_log_level, user_errors
from vallr_pin.llm.swift_plugin import DIST_TEARDOWN as TEARDOWN_PLUGIN

ADAPTER_LINK = "adapter"


def check_model_dir(model: str) -> Path:
    """The model directory must exist locally (nothing is downloaded in a recipe run)."""
    path = Path(model)
    if not path.is_dir():
        raise FileNotFoundError(
            f"LLM model directory '{model}' does not exist. Set llm_model=<dir> in run.sh (or pass "
            "--llm_model <dir>) to a local copy of Qwen3-4B-Instruct-2507 (e.g. from `modelscope download "
            "--model Qwen/Qwen3-4B-Instruct-2507 --local_dir <dir>`), or to a tiny model made by "
            "`python -m vallr_pin.bin.make_tiny_llm`.")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"LLM model directory '{model}' has no config.json; it is not a transformers "
                                "model directory (set llm_model= in run.sh to the directory holding config.json)")
    return path


def to_cli(options: Dict[str, object]) -> List[str]:
    """``{"lora_rank": 8, "target_modules": ["q_proj", "v_proj"]}`` -> ``--lora_rank 8 --target_modules q_proj
    v_proj`` (the same conversion ms-swift applies to its own yaml configs; None drops the option)."""
    argv: List[str] = []
    for key, value in options.items():
        if value is None:
            continue
        argv.append(f"--{key}")
        if isinstance(value, (list, tuple)):
            argv += [str(v) for v in value]
        elif isinstance(value, bool):
            argv.append("true" if value else "false")
        elif isinstance(value, dict):
            argv.append(json.dumps(value, ensure_ascii=False))
        else:
            argv.append(str(value))
    return argv


def load_config(conf_path: Path) -> dict:
    """The ``swift:``/``gpu:``/``cpu:`` yaml as a dict; a file that is not such a YAML mapping is a ValueError
    naming it."""
    if not conf_path.is_file():
        raise FileNotFoundError(f"{conf_path}: config not found (llm_sft_config= in run.sh, e.g. conf/llm_sft.yaml)")
    try:
        conf = yaml.safe_load(conf_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        where = f" at line {e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{conf_path}: not valid YAML{where} ({problem}); it must hold swift:, gpu: and cpu: "
                         "sections of `swift sft` arguments, as in conf/llm_sft.yaml") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{conf_path}: not a UTF-8 text file; give the YAML config (conf/llm_sft.yaml)") from e
    conf = conf or {}
    if not isinstance(conf, dict) or not all(isinstance(v, dict) or v is None for v in conf.values()):
        raise ValueError(f"{conf_path}: not a YAML mapping of sections (swift:, gpu:, cpu:) of `swift sft` "
                         "arguments, as in conf/llm_sft.yaml")
    return conf


def swift_sft_argument_names(rlhf: Optional[str] = None) -> Set[str]:
    """Every spelling ``swift sft`` (``swift rlhf`` with ``rlhf``) accepts for an argument: the fields of
    ms-swift's ``SftArguments`` (``RLHFArguments``) dataclass (what its ``HfArgumentParser`` builds the parser
    from), with ``-`` for ``_`` and the fields' aliases."""
    import dataclasses

    from swift.arguments import RLHFArguments, SftArguments

    names: Set[str] = set()
    for field in dataclasses.fields(RLHFArguments if rlhf else SftArguments):
        names |= {field.name, field.name.replace("_", "-")}
        aliases = field.metadata.get("aliases") or []
        names |= {a.lstrip("-") for a in ([aliases] if isinstance(aliases, str) else aliases)}
    return names


def check_swift_keys(keys: Iterable[str], where: str, valid: Set[str], command: str = "swift sft") -> None:
    """A ValueError naming the first key in ``keys`` that ``swift sft`` does not know, and its closest match.
    ``no_<name>`` is accepted for a known ``<name>`` (HfArgumentParser's complement of a boolean field)."""
    for key in keys:
        if key in valid or (key[:3] in ("no_", "no-") and key[3:] in valid):
            continue
        import swift

        close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"see `{command} --help` for the valid ones"
        raise ValueError(f"{where}: '{key}' is not a `{command}` argument of ms-swift {swift.__version__}; {hint}")


def check_swift_arguments(conf: dict, conf_path: Path, swift_args: Sequence[str], rlhf: Optional[str] = None
                          ) -> None:
    """Every config key and every ``--flag`` of ``swift_args`` must be a ``swift sft`` (``swift rlhf``)
    argument."""
    valid = swift_sft_argument_names(rlhf)
    command = "swift rlhf" if rlhf else "swift sft"
    for section in ("swift", "gpu", "cpu"):
        check_swift_keys(conf.get(section) or {}, f"{conf_path} (section {section}:)", valid, command)
    check_swift_keys([a[2:].split("=", 1)[0] for a in swift_args if a.startswith("--")],
                     f"the `{command}` flags after --", valid, command)


def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def resolve_options(conf: dict, device: str, conf_path: Path) -> Dict[str, object]:
    """Merge ``swift:`` with the ``gpu:``/``cpu:`` section; a relative deepspeed json path is taken relative to
    the config file, and DeepSpeed is dropped with a warning when the package is not installed."""
    unknown = set(conf) - {"swift", "gpu", "cpu"}
    if unknown:
        raise ValueError(f"{conf_path}: unknown top-level keys {sorted(unknown)}; expected swift, gpu, cpu")
    options = dict(conf.get("swift") or {})
    options.update(conf.get(device) or {})
    ds = options.get("deepspeed")
    if ds:
        if str(ds).endswith(".json") and not Path(str(ds)).is_absolute():
            cand = conf_path.parent / str(ds)
            options["deepspeed"] = str(cand if cand.exists() else ds)
        if importlib.util.find_spec("deepspeed") is None:
            logging.warning("%s asks for deepspeed=%s but the deepspeed package is not installed; training "
                            "without it (install with `DS_BUILD_OPS=0 pip install deepspeed==0.19.8`)", conf_path, ds)
            options.pop("deepspeed")
    return options


def world_size_from_env(env: Optional[Dict[str, str]] = None) -> int:
    """The number of training processes ms-swift will start: ``NPROC_PER_NODE`` x ``NNODES`` (its torchrun
    launch variables; 1 when unset). ``env`` defaults to ``os.environ`` as it is at the call, not a default
    argument bound at import: ``datasets``' ``Dataset.map(num_proc=...)`` rebinds ``os.environ`` to a copy, and
    a mapping bound before that no longer sees the variables set after it (a test failed on it in CI)."""
    env = os.environ if env is None else env
    try:
        return int(env.get("NPROC_PER_NODE") or 1) * int(env.get("NNODES") or 1)
    except ValueError:
        raise ValueError(f"NPROC_PER_NODE={env.get('NPROC_PER_NODE')!r} / NNODES={env.get('NNODES')!r}: both must be "
                         "whole numbers (processes per node, nodes)") from None


def add_cpu_distributed_options(options: Dict[str, object], device: str, world_size: int) -> Dict[str, object]:
    """Several CPU processes need ``use_cpu: true`` and ``ddp_backend: gloo`` (measured with transformers 5.19,
    accelerate 1.15, ms-swift 4.6 under torchrun, no GPU):

    - neither: transformers sees no distributed run; every process takes itself for rank 0, trains alone on all
      the data and writes the checkpoints, and ms-swift's last-checkpoint symlink swap races between them
      (FileNotFoundError on one rank, once in .ci/run);
    - gloo alone: the process group exists but accelerate keeps the model out of DistributedDataParallel
      ("parallel_mode != ParallelMode.DISTRIBUTED"): each rank steps on its own half of the batch with its own
      gradients (different gradient norms per rank), and the token-averaged loss is counted per rank but scaled
      by the world size (training and eval loss logged 2x);
    - both: DistributedDataParallel, one gradient norm on every rank, the loss of the single-process run.

    On one process both stay unset, as the recipes' results were made (``use_cpu`` there changes only the last
    float digits). A config or ``--`` flag that sets either wins.

    Each worker also loads the plugin ``swift_plugin/dist_teardown.py``, which destroys the gloo group at exit:
    transformers leaves it alive, and a rank that had saved its checkpoint then aborted at exit (exit -6,
    once in .ci/run; :mod:`vallr_pin.distributed`). It joins the config's ``external_plugins`` and any given
    after ``--`` (:func:`take_plugins`)."""
    if device == "cpu" and world_size > 1:
        options = {"use_cpu": True, "ddp_backend": "gloo", **options}
        options["external_plugins"] = plugin_list(options.get("external_plugins")) + [TEARDOWN_PLUGIN]
    return options


def plugin_list(value) -> List[str]:
    """A config's ``external_plugins`` (one path, a list, or none) as a list: ms-swift takes several after one
    ``--external_plugins``, and a second such flag would replace the first."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _version_dirs(output_dir: Path) -> List[Path]:
    """ms-swift's ``v<N>-<timestamp>`` run directories, oldest first (by N)."""
    runs = [p for p in output_dir.glob("v*-*") if p.is_dir() and re.match(r"v\d+-", p.name)]
    return sorted(runs, key=lambda p: int(re.match(r"v(\d+)-", p.name).group(1)))


def remove_runs_without_checkpoint(runs: Iterable[Path]) -> None:
    """Delete the ``v<N>-*`` run directories among ``runs`` that hold no ``checkpoint-*``: nothing to resume from,
    and an empty run would only look like one."""
    for run in runs:
        if not any(run.glob("checkpoint-*")):
            shutil.rmtree(run, ignore_errors=True)


def resolve_checkpoint(output_dir: Path, select: str = "best") -> Path:
    """The checkpoint of the newest run: ``best_model_checkpoint`` (or ``last_model_checkpoint``) from the run's
    ``logging.jsonl`` summary, else its highest ``checkpoint-N``."""
    runs = _version_dirs(output_dir)
    if not runs:
        raise FileNotFoundError(f"{output_dir}: no ms-swift run directory v<N>-<time>/; did `swift sft` run?")
    run = runs[-1]
    log = run / "logging.jsonl"
    if log.exists():
        for line in reversed(log.read_text(encoding="utf-8").splitlines()):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            key = f"{select}_model_checkpoint"
            ckpt = row.get(key) or row.get("last_model_checkpoint")
            if ckpt and Path(ckpt).is_dir():
                return Path(ckpt).resolve()
    ckpts = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if
                   p.name.split("-")[-1].isdigit() else -1)
    if not ckpts:
        raise FileNotFoundError(f"{run}: no checkpoint-N directory; training ended before the first save "
                                "(lower save_steps or check the log)")
    return ckpts[-1].resolve()


def link_adapter(output_dir: Path, ckpt: Path) -> Path:
    """Atomically point ``<output_dir>/adapter`` at ``ckpt`` (relative link, so the exp dir can move)."""
    link = output_dir / ADAPTER_LINK
    tmp = output_dir / f".{ADAPTER_LINK}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(ckpt, output_dir), tmp)
    os.replace(tmp, link)
    return link


def grpo_data_paths(args, options: Dict[str, object]) -> Dict[str, Optional[Path]]:
    """Where ``--rlhf grpo`` writes its GRPO rows (``<output-dir>/grpo_data/{train,dev}.jsonl``); no dev rows when
    the config does not evaluate (``eval_strategy: "no"``: every evaluation samples answers, costly on a CPU)."""
    d = Path(args.output_dir) / "grpo_data"
    has_dev = (bool(args.dev) and Path(args.dev).exists() and Path(args.dev).stat().st_size > 0
               and str(options.get("eval_strategy", "steps")).lower() != "no")
    return {"train": d / "train.jsonl", "dev": d / "dev.jsonl" if has_dev else None}


def check_grpo_dependencies() -> None:
    """ms-swift 4.6's GRPO trainer imports msgspec (swift/rlhf_trainers/utils.py), which its package metadata
    does not declare: without it `swift rlhf` dies on a ModuleNotFoundError after loading everything."""
    if importlib.util.find_spec("msgspec") is None:
        raise OSError("ms-swift's GRPO trainer needs the package msgspec, which ms-swift does not "
                                  "install: `pip install msgspec==0.22.0` (tools/requirements.txt has it; "
                                  "re-run `make -C tools`)")


def take_plugins(swift_args: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``(plugins, rest)``: the values of every ``--external_plugins a b`` / ``--external_plugins=a`` among the
    ``--`` flags, and the flags without them. ms-swift keeps the last such flag only, so one given after ``--``
    would replace the plugins llm_sft passes (the teardown of a multi-process CPU run, GRPO's rewards)."""
    plugins: List[str] = []
    rest: List[str] = []
    i = 0
    while i < len(swift_args):
        a = swift_args[i]
        if a == "--external_plugins":
            i += 1
            while i < len(swift_args) and not swift_args[i].startswith("--"):
                plugins.append(swift_args[i])
                i += 1
            continue
        if a.startswith("--external_plugins="):
            plugins.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    return plugins, rest


def build_command(args, options: Dict[str, object]) -> List[str]:
    train, dev = args.train, args.dev
    # one --external_plugins list (a second flag would replace the first): GRPO's rewards, the config's (with
    # the teardown of add_cpu_distributed_options), the ones after `--`
    user_plugins, swift_args = take_plugins(args.swift_args)
    plugins = plugin_list(options.get("external_plugins")) + user_plugins
    if args.rlhf:
        from vallr_pin.llm.grpo import PLUGIN

        paths = grpo_data_paths(args, options)
        train, dev = paths["train"], paths["dev"]
        cmd = [sys.executable, "-m", "swift.cli.main", "rlhf", "--rlhf_type", args.rlhf, "--model", str(args.model)]
        plugins = [PLUGIN] + plugins
    else:
        cmd = [sys.executable, "-m", "swift.cli.main", "sft", "--model", str(args.model)]
    cmd += to_cli({**options, "external_plugins": plugins or None})  # None: no flag
    if args.init_adapter:
        cmd += ["--adapters", str(args.init_adapter)]
        if args.rlhf and grpo_beta(options, args.swift_args) != 0:  # the KL term's reference: the SFT policy
            cmd += ["--ref_adapters", str(args.init_adapter)]
    cmd += ["--dataset", str(train), "--output_dir", str(args.output_dir)]
    has_dev = dev is not None if args.rlhf else (
        bool(dev) and Path(dev).exists() and Path(dev).stat().st_size > 0)
    if has_dev:
        cmd += ["--val_dataset", str(dev)]
    return cmd + swift_args


def effective_option(options: Dict[str, object], swift_args: Sequence[str], name: str) -> object:
    """What ``swift sft`` will use for ``--name``: the last ``--name`` after ``--`` (they come last), else the
    config's value, else None."""
    value = options.get(name)
    for i, a in enumerate(swift_args):
        if a == f"--{name}" and i + 1 < len(swift_args):
            value = swift_args[i + 1]
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def grpo_beta(options: Dict[str, object], swift_args: Sequence[str]) -> float:
    """The KL weight GRPO will use: the last ``--beta`` after ``--``, else the config's, else ms-swift's 0.04."""
    beta = effective_option(options, swift_args, "beta")
    return 0.04 if beta is None or str(beta).lower() == "none" else float(beta)


def swift_template(model: str, options: Dict[str, object]):
    """ms-swift's own training template for this model (the config's ``model_type`` and ``template``)."""
    from swift import get_processor, get_template

    proc = get_processor(str(model), model_type=options.get("model_type"))
    template = get_template(proc, template_type=options.get("template"))
    template.set_mode("train")
    return template


def sample_lengths(path: Path, model: str, options: Dict[str, object], template=None) -> List[tuple]:
    """``(utt, tokens)`` of every row of a stage-7 JSONL, encoded by ms-swift's own template for this model (the
    ``model_type`` and ``template`` of the config), i.e. the length ``swift sft`` compares with max_length."""
    template = template or swift_template(model, options)
    lengths = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                messages = row["messages"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}: line {n} is not a stage-7 row with 'messages' ({e}); re-run stage 7 "
                                 "(build_llm_data)") from e
            lengths.append((row.get("utt", f"line {n}"), len(template.encode({"messages": messages})["input_ids"])))
    return lengths


def check_samples_fit(paths: Sequence[Path], model: str, options: Dict[str, object], swift_args: Sequence[str]
                      ) -> None:
    """ms-swift's default ``truncation_strategy: delete`` silently drops every sample longer than max_length;
    when that is all of them it stops with ``TypeError: 'NoneType' object is not iterable``. Say so first, in
    one line (a decoder that loops writes N-best lists that long), and warn when only some are dropped."""
    max_length = effective_option(options, swift_args, "max_length")
    strategy = effective_option(options, swift_args, "truncation_strategy")
    if max_length in (None, "None") or str(strategy or "delete") != "delete":
        return
    max_length = int(max_length)
    template = swift_template(model, options)  # loaded once for train and dev
    for path in paths:
        _check_fit(path, sample_lengths(path, model, options, template), max_length)


def _check_fit(path: Path, lengths: List[tuple], max_length: int) -> None:
    if not lengths:
        raise ValueError(f"{path}: no samples; re-run stage 7 (build_llm_data) and check its N-best input")
    fit = sum(n <= max_length for _, n in lengths)
    longest = max(lengths, key=lambda x: x[1])
    if fit == 0:
        raise ValueError(f"{path}: none of its {len(lengths)} samples fits max_length {max_length} tokens (shortest "
                         f"{min(n for _, n in lengths)}, longest {longest[1]} in {longest[0]}), and ms-swift drops "
                         "longer ones: raise max_length in the config (or `-- --max_length N`), or look at the "
                         "N-best of stage 6 for hypotheses that repeat a character to the decoder's maximum length")
    if fit < len(lengths):
        logging.warning("%s: %d of %d samples are longer than max_length %d tokens (longest %d, %s); ms-swift "
                        "drops them", path, len(lengths) - fit, len(lengths), max_length, longest[1], longest[0])


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="yaml with swift:/gpu:/cpu: sections (conf/llm_sft.yaml)")
    p.add_argument("--model", required=True, help="local LLM directory (run.sh variable llm_model=)")
    p.add_argument("--train", required=True, help="training JSONL from stage 7 (exp/llm_data/train.jsonl)")
    p.add_argument("--dev", "--val", dest="dev", default=None, help="validation JSONL (exp/llm_data/dev.jsonl); skipped if empty")
    p.add_argument("--output-dir", required=True, help="ms-swift output dir; <dir>/adapter links the result")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"],
                   help="which config section to add; auto: gpu if torch sees a CUDA device")
    p.add_argument("--select", default="best", choices=["best", "last"],
                   help="checkpoint to link: best validation loss (needs --dev) or last")
    p.add_argument("--rlhf", default=None, choices=["grpo"],
                   help="run `swift rlhf --rlhf_type grpo` with the CER-gain reward instead of `swift sft` "
                        "(module docstring; config: conf/llm_grpo.yaml)")
    p.add_argument("--init-adapter", default=None,
                   help="LoRA adapter to continue training from (the SFT adapter, exp/llm_lora/adapter, for GRPO)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the config and flags against ms-swift's arguments, print the swift command and exit")
    add_log_level(p)
    p.add_argument("swift_args", nargs=argparse.REMAINDER,
                   help="after `--`: extra `swift sft` flags, appended last (they override the config)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args = get_parser().parse_args(argv)
    if args.swift_args and args.swift_args[0] == "--":
        args.swift_args = args.swift_args[1:]
    with user_errors(args.log_level):
        return run(args)


def run(args: argparse.Namespace) -> Path:
    conf_path = Path(args.config)
    conf = load_config(conf_path)
    check_model_dir(args.model)
    if not Path(args.train).is_file():
        raise FileNotFoundError(f"training data '{args.train}' not found; run stage 7 (build_llm_data) first")
    device = args.device if args.device != "auto" else ("gpu" if gpu_available() else "cpu")
    options = add_cpu_distributed_options(resolve_options(conf, device, conf_path), device, world_size_from_env())
    check_swift_arguments(conf, conf_path, args.swift_args, args.rlhf)
    if args.init_adapter and not (Path(args.init_adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"--init-adapter {args.init_adapter}: no adapter_config.json there; run the SFT "
                                "first (stage 8 without --llm_grpo, or llm_sft without --rlhf)")
    if args.rlhf and options.get("rlhf_type") not in (None, args.rlhf):
        raise ValueError(f"{conf_path}: rlhf_type '{options['rlhf_type']}' contradicts --rlhf {args.rlhf}; drop "
                         "it from the config")
    options.pop("rlhf_type", None)
    if args.rlhf:
        check_grpo_dependencies()
    output_dir = Path(args.output_dir)
    cmd = build_command(args, options)
    logging.info("device %s; running: %s", device, " ".join(cmd))
    if args.dry_run:
        print(" ".join(cmd))
        return output_dir
    if not args.rlhf:
        has_dev = args.dev and Path(args.dev).is_file() and Path(args.dev).stat().st_size > 0
        check_samples_fit([Path(args.train)] + ([Path(args.dev)] if has_dev else []), args.model, options,
                          args.swift_args)
    output_dir.mkdir(parents=True, exist_ok=True)
    # A run killed before its first save (SIGKILL: the clean-up after a failure below never ran) left its
    # v<N>-* behind: remove it now, as a failed run's is (test/test_recipe_faults.py kills stage 8).
    remove_runs_without_checkpoint(_version_dirs(output_dir))
    if args.rlhf:
        from vallr_pin.llm.grpo import write_grpo_data

        paths = grpo_data_paths(args, options)
        paths["train"].parent.mkdir(parents=True, exist_ok=True)
        n = write_grpo_data(args.train, paths["train"])
        if paths["dev"]:
            write_grpo_data(args.dev, paths["dev"])
        logging.info("%s: %d GRPO prompts from %s", paths["train"], n, args.train)
    runs_before = set(_version_dirs(output_dir))
    env = dict(os.environ)
    # A local model dir needs no hub; without this ms-swift (check_model) spends ~7 s retrying a network call.
    env.setdefault("HF_HUB_OFFLINE", "1")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    ret = subprocess.run(cmd, env=env)
    if ret.returncode != 0:
        new_runs = sorted(set(_version_dirs(output_dir)) - runs_before)
        remove_runs_without_checkpoint(new_runs)  # nothing to resume from: an empty v<N>-* would only look like a run
        logs = [str(p) for run in new_runs if run.is_dir() for p in run.glob("logging.jsonl")]
        raise SystemExit(f"`swift {'rlhf' if args.rlhf else 'sft'}` failed with exit code {ret.returncode}; its error "
                         "is in the messages above "
                         f"(in the recipe: {output_dir}/{'grpo.log' if args.rlhf else 'sft.log'})"
                         f"{'; training log: ' + logs[0] if logs else ''}")
    ckpt = resolve_checkpoint(output_dir, args.select)
    link = link_adapter(output_dir, ckpt)
    logging.info("adapter: %s -> %s", link, ckpt)
    print(ckpt)
    return ckpt


if __name__ == "__main__":
    main()

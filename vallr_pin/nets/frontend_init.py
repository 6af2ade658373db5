"""Map the CNVSRC baselines' Conv3d + ResNet-18 visual frontend weights onto :class:`Conv3dResNetFrontend`.

The CNVSRC 2023/2024/2025 baselines (auto-AVSR code: ``espnet/nets/pytorch_backend/backbones/
conv3d_extractor.py`` and ``modules/resnet.py``) build ``encoder.frontend`` as ``Conv3dResNet``:

  frontend3D.0        Conv3d(1, 64, (5, 7, 7), stride (1, 2, 2), padding (2, 3, 3), bias=False)
  frontend3D.1        BatchNorm3d(64)
  frontend3D.2/3      Swish, MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))            (no tensors)
  trunk.layer{1-4}.{0,1}.{conv1,bn1,conv2,bn2}   BasicBlock, widths 64/128/256/512, Swish (no tensors)
  trunk.layer{2-4}.0.downsample.{0,1}            1x1 Conv2d stride 2 + BatchNorm2d
  trunk.avgpool                                  (no tensors; output 512 per frame, no projection)

Our frontend has the same layers as ``stem.{0,1}`` and ``trunk.{0-3}.{0,1}.{conv1,bn1,conv2,bn2,downsample}``
(torchvision's BasicBlock names) when built with ``trunk: resnet18``, ``stem_channels: 64``,
``stage_channels: [64, 128, 256, 512]``, ``stem_kernel: [5, 7, 7]``, ``temporal_stride: 1`` and
``activation: swish``; then the mapped weights compute the baselines' 512-d frame features exactly, and only
our projection ``proj`` (512 -> ``output_size``) starts from its random initialisation.

Checkpoints read: the averaged ``model_avg_*.pth`` the baselines publish (a plain state dict of the whole model,
keys ``encoder.frontend.*``), their Lightning ``*.ckpt`` (``state_dict`` with ``model.encoder.frontend.*``), and a
bare frontend dict (``trunk.*`` / ``frontend3D.*``, optionally under ``model_state_dict``, the LRW frontend that
their ``transfer_frontend`` option loads). Anything of the frontend that does not map to a tensor of the same
shape is an error, as is a tensor of ours other than ``proj`` that the checkpoint does not fill.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

# Where the frontend sits in the baselines' checkpoints, most specific first.
BASELINE_PREFIXES = ("model.encoder.frontend.", "encoder.frontend.", "module.encoder.frontend.")
# Our tensors a baseline checkpoint has no counterpart for: the projection to the encoder's width.
NOT_IN_BASELINE = ("proj.",)
_TRUNK_KEY = re.compile(r"^trunk\.layer([1-4])\.(\d+)\.((?:conv[12]|bn[12])\.\w+|downsample\.[01]\.\w+)$")
_STEM_KEY = re.compile(r"^frontend3D\.([01])\.(\w+)$")


class FrontendInitError(ValueError):
    """A checkpoint that cannot initialise the frontend (what and why in the message)."""


def baseline_frontend_state(ckpt: Mapping[str, object]) -> Tuple[Dict[str, torch.Tensor], str]:
    """The frontend tensors of a baseline checkpoint with their ``frontend3D.*`` / ``trunk.*`` names, and the
    prefix they were found under ('' for a bare frontend dict)."""
    state = ckpt
    for wrapper in ("state_dict", "model_state_dict", "model"):
        inner = state.get(wrapper) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            state = inner
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in BASELINE_PREFIXES:
        found = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if found:
            return found, prefix
    bare = {k: v for k, v in tensors.items() if k.startswith(("trunk.", "frontend3D."))}
    if bare:
        return bare, ""
    some = ", ".join(list(tensors)[:5]) or "no tensors at all"
    raise FrontendInitError(
        f"no visual frontend found: expected keys under {' or '.join(BASELINE_PREFIXES)} (a CNVSRC baseline "
        f"model_avg_*.pth or Lightning .ckpt) or bare trunk.*/frontend3D.* keys; the checkpoint has {some}")


def map_baseline_key(key: str) -> Optional[str]:
    """``frontend3D.0.weight`` -> ``stem.0.weight``; ``trunk.layer2.0.downsample.1.bias`` ->
    ``trunk.1.0.downsample.1.bias``; None for a name with no counterpart here (e.g. a PReLU's weight)."""
    m = _STEM_KEY.match(key)
    if m:
        return f"stem.{m.group(1)}.{m.group(2)}"
    m = _TRUNK_KEY.match(key)
    if m:
        return f"trunk.{int(m.group(1)) - 1}.{m.group(2)}.{m.group(3)}"
    return None


def convert_baseline_frontend(ckpt: Mapping[str, object], frontend: nn.Module,
                              prefix: str = "frontend.") -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """The state dict to load with ESPnet's ``--init_param`` (keys ``<prefix><our name>``), and our tensors it
    leaves at their initialisation (``proj.*``). Raises :class:`FrontendInitError` listing every unmapped,
    missing or shape-mismatched tensor."""
    if getattr(frontend, "activation", "swish") != "swish":
        raise FrontendInitError(
            f"the baselines' frontend uses Swish after every convolution, this config's frontend_conf.activation "
            f"is '{frontend.activation}': set it to swish, or the weights would compute another function")
    src, where = baseline_frontend_state(ckpt)
    ours = frontend.state_dict()
    out: Dict[str, torch.Tensor] = {}
    unmapped, mismatched = [], []
    for key, value in src.items():
        name = map_baseline_key(key)
        if name is None or name not in ours:
            unmapped.append(f"{where}{key} {tuple(value.shape)}" + (f" (-> {name}, not in this frontend)"
                                                                   if name else ""))
        elif tuple(ours[name].shape) != tuple(value.shape):
            mismatched.append(f"{where}{key} {tuple(value.shape)} -> {name} {tuple(ours[name].shape)}")
        else:
            out[prefix + name] = value.detach().clone().to(ours[name].dtype)
    unfilled = [k for k in ours if prefix + k not in out and not k.startswith(NOT_IN_BASELINE)]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched[:6]))
    if unmapped:
        problems.append(f"{len(unmapped)} checkpoint tensor(s) with no counterpart: " + "; ".join(unmapped[:6]))
    if unfilled:
        problems.append(f"{len(unfilled)} frontend tensor(s) the checkpoint does not fill: "
                        + ", ".join(unfilled[:6]))
    if problems:
        raise FrontendInitError(
            " | ".join(problems) + " | the baselines' frontend is trunk resnet18, stem_channels 64, stage_channels "
            "[64, 128, 256, 512], stem_kernel [5, 7, 7], temporal_stride 1, activation swish (conf/"
            "train_vsr_dual_resnet18.yaml)")
    left = [k for k in ours if prefix + k not in out]
    return out, left

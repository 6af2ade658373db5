"""Visual frontend: a 3D-convolution stem followed by a per-frame 2D ResNet trunk (the paper's eq. (6)).

Input is the mouth ROI as ESPnet hands it to a frontend: float video ``(B, T, H*W)`` (grey, already cropped and
normalised by :class:`vallr_pin.tasks.vsr_preprocess.VSRPreprocessor`), with ``H == W``. Output is
``(B, T', output_size)`` frame features, ``T' == T`` unless ``temporal_stride > 1``.

This is the usual lip-reading frontend (Stafylakis & Tzimiropoulos 2017; Ma et al. auto-AVSR): Conv3d 1->C
kernel (5, 7, 7) stride (1, 2, 2), BN, PReLU/ReLU, MaxPool3d (1, 3, 3)/(1, 2, 2), then ResNet stages applied to
every frame independently, global average pooling per frame and a linear projection. The ResNet blocks are
torchvision's ``BasicBlock`` / ``Bottleneck``; only the stage wiring lives here.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from espnet2.asr.frontend.abs_frontend import AbsFrontend

_TRUNKS = {
    # name: (block class, default blocks per stage)
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


ACTIVATIONS = ("prelu", "relu", "swish")


def _activation(name: str, channels: int) -> nn.Module:
    if name == "prelu":
        return nn.PReLU(num_parameters=channels)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "swish":
        return nn.SiLU()
    raise ValueError(f"frontend_conf.activation must be one of {', '.join(ACTIVATIONS)}, got '{name}'")


class Conv3dResNetFrontend(AbsFrontend):
    """Conv3d stem + 2D ResNet trunk per frame + global average pool + linear.

    Args:
        output_size: feature dimension per frame handed to the encoder.
        trunk: ``resnet18`` | ``resnet34`` (BasicBlock) or ``resnet50`` (Bottleneck, expansion 4).
        stem_channels: Conv3d output channels (64 in the standard frontend).
        stage_channels: base width of each ResNet stage (64, 128, 256, 512 standard; smaller for tiny models).
        blocks_per_stage: blocks in each stage; default from ``trunk``.
        activation: of the stem: ``prelu`` (lip-reading convention) or ``relu``, the ResNet blocks keeping
            torchvision's ReLU; or ``swish`` (x * sigmoid(x)) in the stem *and* the blocks, as the CNVSRC
            baselines' (auto-AVSR) frontend has it, so their weights compute the same function here
            (``vallr_pin.nets.frontend_init``).
        temporal_stride: frame subsampling of the Conv3d stem (1 = none; 2 halves the frame rate).
        dropout: dropout on the per-frame feature before the projection.
        stem_kernel: Conv3d kernel (time, height, width), odd sizes; (5, 7, 7) is the standard frontend. A tiny
            CPU model on small ROIs may take (3, 5, 5): its stem then costs ~2x less per frame (measured with
            forward + backward on one core: 0.079 -> 0.036 s for 16 x 62 frames of 32x32).
    """

    def __init__(
        self,
        output_size: int = 512,
        trunk: str = "resnet18",
        stem_channels: int = 64,
        stage_channels: Sequence[int] = (64, 128, 256, 512),
        blocks_per_stage: Sequence[int] | None = None,
        activation: str = "prelu",
        temporal_stride: int = 1,
        dropout: float = 0.0,
        stem_kernel: Sequence[int] = (5, 7, 7),
    ):
        super().__init__()
        stem_kernel = tuple(int(k) for k in stem_kernel)
        if len(stem_kernel) != 3 or any(k < 1 or k % 2 == 0 for k in stem_kernel):
            raise ValueError(f"frontend_conf.stem_kernel must be three odd sizes (time, height, width), got "
                             f"{list(stem_kernel)}")
        if trunk not in _TRUNKS:
            raise ValueError(f"frontend_conf.trunk must be one of {sorted(_TRUNKS)}, got '{trunk}'")
        block, default_blocks = _TRUNKS[trunk]
        blocks = tuple(blocks_per_stage) if blocks_per_stage is not None else default_blocks
        if len(blocks) != len(stage_channels):
            raise ValueError(
                f"frontend_conf.blocks_per_stage has {len(blocks)} entries but frontend_conf.stage_channels "
                f"has {len(stage_channels)}: give one block count per stage"
            )
        if temporal_stride < 1:
            raise ValueError(f"frontend_conf.temporal_stride must be >= 1, got {temporal_stride}")
        self._output_size = output_size
        self.temporal_stride = temporal_stride
        self.activation = activation

        self.stem = nn.Sequential(
            nn.Conv3d(1, stem_channels, kernel_size=stem_kernel, stride=(temporal_stride, 2, 2),
                      padding=tuple(k // 2 for k in stem_kernel), bias=False),
            nn.BatchNorm3d(stem_channels),
            _activation(activation, stem_channels),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        stages = []
        in_ch = stem_channels
        for i, (width, n_blocks) in enumerate(zip(stage_channels, blocks)):
            stride = 1 if i == 0 else 2
            out_ch = width * block.expansion
            downsample = None
            if stride != 1 or in_ch != out_ch:
                downsample = nn.Sequential(
                    nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
                )
            layers = [block(in_ch, width, stride=stride, downsample=downsample)]
            layers += [block(out_ch, width) for _ in range(1, n_blocks)]
            if activation == "swish":
                for layer in layers:  # torchvision's blocks apply their one `relu` module after each conv
                    layer.relu = nn.SiLU()
            stages.append(nn.Sequential(*layers))
            in_ch = out_ch
        self.trunk = nn.Sequential(*stages)
        self.trunk_channels = in_ch
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_ch, output_size)

    def output_size(self) -> int:
        return self._output_size

    def output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Frames after the stem: ``floor((T + 2*(k//2) - k) / s) + 1`` (= T when ``temporal_stride == 1``)."""
        return torch.div(input_lengths - 1, self.temporal_stride, rounding_mode="floor") + 1

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T, H*W) float video, (B,) frames -> (B, T', output_size) features, (B,) frames."""
        b, t, d = input.shape
        side = int(math.isqrt(d))
        if side * side != d:
            raise ValueError(f"frontend input has {d} values per frame, not a square image (H*W with H == W)")
        x = input.view(b, 1, t, side, side)
        x = self.stem(x)  # (B, C, T', H', W')
        t_out = x.size(2)
        x = x.transpose(1, 2).reshape(b * t_out, x.size(1), x.size(3), x.size(4))
        x = self.trunk(x)
        x = self.pool(x).flatten(1)  # (B*T', C)
        x = self.proj(self.dropout(x)).view(b, t_out, -1)
        return x, self.output_lengths(input_lengths)

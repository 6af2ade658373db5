"""FunASR's SAN-M encoder (the Paraformer encoder, the paper's eq. (7)) as an ESPnet ``AbsEncoder``.

The class *is* ``funasr.models.sanm.encoder.SANMEncoder`` (multiple inheritance, no re-implementation), so its
parameter names are FunASR's and a FunASR/Paraformer encoder checkpoint can be loaded with ESPnet's
``--init_param <ckpt>:encoder:encoder``. Only the specific FunASR module is imported, through
:func:`vallr_pin.lean_imports.import_funasr`: FunASR's package ``__init__`` would import every FunASR model.

Input is frame features from the visual frontend, so the input layer is ``pe`` (scale by sqrt(d) + sinusoidal
positions, Paraformer's choice for feature input; the first SAN-M block maps ``input_size -> output_size``) or
``linear`` (Linear + LayerNorm + ReLU + positions). Convolutional subsampling layers are refused: the video is
already at 25 fps and lip-reading encoders keep that rate.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from espnet2.asr.encoder.abs_encoder import AbsEncoder

from vallr_pin.lean_imports import import_funasr

SANMEncoder = import_funasr("funasr.models.sanm.encoder").SANMEncoder

_FEATURE_INPUT_LAYERS = ("pe", "linear", None)


class SANMVideoEncoder(SANMEncoder, AbsEncoder):
    """SAN-M encoder over frontend features: (B, T, input_size) -> (B, T, output_size), lengths unchanged.

    Arguments are FunASR's (note its spelling ``sanm_shfit``); see ``SANMEncoder``. ``kernel_size`` is the FSMN
    memory width in frames (11 frames = 0.44 s at 25 fps); ``sanm_shfit=0`` centres it (non-causal).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 12,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: Optional[str] = "pe",
        normalize_before: bool = True,
        concat_after: bool = False,
        kernel_size: int = 11,
        sanm_shfit: int = 0,
        selfattention_layer_type: str = "sanm",
    ):
        if input_layer not in _FEATURE_INPUT_LAYERS:
            raise ValueError(
                f"encoder_conf.input_layer must be one of {_FEATURE_INPUT_LAYERS} for frame features, "
                f"got '{input_layer}'"
            )
        if output_size % attention_heads != 0:
            raise ValueError(
                f"encoder_conf.output_size ({output_size}) must be divisible by "
                f"encoder_conf.attention_heads ({attention_heads})"
            )
        super().__init__(
            input_size=input_size,
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            input_layer=input_layer,
            normalize_before=normalize_before,
            concat_after=concat_after,
            kernel_size=kernel_size,
            sanm_shfit=sanm_shfit,
            selfattention_layer_type=selfattention_layer_type,
        )

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, xs_pad: torch.Tensor, ilens: torch.Tensor, prev_states: torch.Tensor = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(B, T, input_size), (B,) -> (B, T, output_size), (B,), None."""
        # FunASR builds its mask with maxlen = ilens.max(); trim padding beyond it so shapes agree.
        xs_pad = xs_pad[:, : int(ilens.max())]
        return super().forward(xs_pad, ilens)

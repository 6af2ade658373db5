"""FunASR's autoregressive SAN-M decoder (``FsmnDecoder``, the paper's "SanmDecoder", eq. (8)) under ESPnet.

``funasr.models.sanm.decoder.FsmnDecoder`` has ``score``/``batch_score``, but it subclasses FunASR's *copy* of the
scorer interfaces, not ESPnet's, so ESPnet's ``BeamSearch`` would fall back to the slow non-batch path and its
``BatchBeamSearch`` cannot be selected. Worse, the inherited ``batch_score`` stacks only ``len(self.decoders)``
cache entries, which drops the caches of ``decoders2`` when ``num_blocks > att_layer_num``. This adapter *is* the
FunASR module (same parameters, same names) and adds:

* ESPnet's ``AbsDecoder`` + ``BatchScorerInterface`` so ``BatchBeamSearch`` treats it as a batch scorer;
* a ``batch_score`` whose state is one tensor per FSMN layer per hypothesis: the last ``kernel_size`` inputs of
  that layer's FSMN memory block, shape ``(attention_dim, kernel_size)``;
* a check that the FSMN memory is causal. In training the decoder sees the whole target prefix at once and its
  FSMN pads ``left = (kernel_size-1)//2 + sanm_shfit``, ``right = kernel_size-1-left`` frames; only ``right == 0``
  matches step-by-step decoding (FunASR's default ``sanm_shfit=None`` gives that for odd ``kernel_size``).

The decoder's self-"attention" is an FSMN memory over the last ``kernel_size`` tokens (no position encoding);
cross-attention over the encoder output is ordinary multi-head attention.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from espnet.nets.scorer_interface import BatchScorerInterface
from espnet2.asr.decoder.abs_decoder import AbsDecoder

from vallr_pin.lean_imports import import_funasr

FsmnDecoder = import_funasr("funasr.models.sanm.decoder").FsmnDecoder


class SANMDecoder(FsmnDecoder, AbsDecoder, BatchScorerInterface):
    """Autoregressive SAN-M decoder: (B, T, D_enc) memory + (B, L) token ids -> (B, L, vocab) logits.

    Args (FunASR's names): ``attention_heads`` (cross-attention), ``linear_units`` (FFN), ``num_blocks`` (layers),
    ``att_layer_num`` (how many of them have cross-attention; the rest are FSMN + FFN only), ``kernel_size``
    (FSMN memory in tokens, odd), ``sanm_shfit`` (None = causal), ``attention_dim`` (None = encoder size).
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        att_layer_num: Optional[int] = None,
        kernel_size: int = 11,
        sanm_shfit: Optional[int] = None,
        attention_dim: Optional[int] = None,
        normalize_before: bool = True,
    ):
        att_layer_num = num_blocks if att_layer_num is None else att_layer_num
        if not 1 <= att_layer_num <= num_blocks:
            raise ValueError(
                f"decoder_conf.att_layer_num ({att_layer_num}) must be between 1 and "
                f"decoder_conf.num_blocks ({num_blocks})"
            )
        left = (kernel_size - 1) // 2 + (sanm_shfit if sanm_shfit is not None else (kernel_size - 1) // 2)
        if kernel_size - 1 - left != 0:
            raise ValueError(
                f"decoder_conf.kernel_size={kernel_size}, decoder_conf.sanm_shfit={sanm_shfit} give the decoder's "
                f"FSMN memory {kernel_size - 1 - left} frames of look-ahead; an autoregressive decoder must be "
                "causal: use an odd kernel_size and leave sanm_shfit unset"
            )
        dim = encoder_output_size if attention_dim is None else attention_dim
        if dim % attention_heads != 0:
            raise ValueError(
                f"decoder attention dim ({dim}, decoder_conf.attention_dim or the encoder output size) must be "
                f"divisible by decoder_conf.attention_heads ({attention_heads})"
            )
        super().__init__(
            vocab_size=vocab_size,
            encoder_output_size=encoder_output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            self_attention_dropout_rate=self_attention_dropout_rate,
            src_attention_dropout_rate=src_attention_dropout_rate,
            input_layer="embed",
            use_output_layer=True,
            normalize_before=normalize_before,
            att_layer_num=att_layer_num,
            kernel_size=kernel_size,
            sanm_shfit=sanm_shfit,
            attention_dim=attention_dim,
        )

    def forward(
        self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_in_pad: torch.Tensor, ys_in_lens: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: (B, T, D) memory, (B,), (B, L) ids with <sos>, (B,) -> (B, L, V) logits, (B,)."""
        # FunASR's memory mask has maxlen = hlens.max(): drop padding beyond it.
        hs_pad = hs_pad[:, : int(hlens.max())]
        logits, olens = super().forward(hs_pad, hlens, ys_in_pad, ys_in_lens)
        return logits, olens.view(-1)

    @property
    def _num_cached_layers(self) -> int:
        return self.att_layer_num + (len(self.decoders2) if self.decoders2 is not None else 0)

    def score(self, ys: torch.Tensor, state: Any, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        """One hypothesis: (L,) prefix ids, state, (T, D) memory -> (V,) log-probs of the next token, state."""
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp.squeeze(0), states[0]

    def batch_score(
        self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor
    ) -> Tuple[torch.Tensor, List[Any]]:
        """(N, L) prefix ids, N states (None at the first step), (N, T, D) memory -> (N, V) log-probs, N states.

        A state is a list with one ``(attention_dim, kernel_size)`` FSMN buffer per cached layer; only the last
        token of ``ys`` is fed, the buffers carry the history (FunASR's ``forward_one_step``).
        """
        n_batch = ys.size(0)
        n_layers = self._num_cached_layers
        if states[0] is None:
            cache = None
        else:
            cache = [torch.stack([states[b][i] for b in range(n_batch)]) for i in range(n_layers)]
        logp, new_cache = self.forward_one_step(ys, None, xs, cache=cache)
        return logp, [[new_cache[i][b] for i in range(n_layers)] for b in range(n_batch)]

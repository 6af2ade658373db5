"""Dual-decoder VSR model (VALLR-Pin stage I, paper section II.B, eqs. (6)-(12)).

    video --frontend--> F --encoder--> H --+--> character decoder (SAN-M) + character CTC  -> L_char
                                           +--> pinyin decoder (Transformer) + pinyin CTC   -> L_py
    L_char = l_ctc * CTC_char + (1 - l_ctc) * CE_char                     (10)
    L_py   = l_ctc * CTC_py   + (1 - l_ctc) * CE_py                       (11)
    L      = a * L_char + (1 - a) * L_py                                  (12)

``a`` is ``char_weight`` (0.5 in the paper); ``char_weight=1`` is the character-only baseline: the same code path,
with no pinyin decoder or pinyin CTC built at all (the task passes ``None``). CE is ESPnet's label-smoothed
``LabelSmoothingLoss``, CTC is ESPnet's ``CTC``; both are summed over tokens and averaged over utterances, as in
``espnet2.asr.espnet_model.ESPnetASRModel``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from espnet.nets.e2e_asr_common import ErrorCalculator
from espnet.nets.pytorch_backend.nets_utils import th_accuracy
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos
from espnet.nets.pytorch_backend.transformer.label_smoothing_loss import LabelSmoothingLoss
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel


class _Branch:
    """One output branch: attention decoder + CTC over a token list, with its own <sos/eos> (last token).

    A plain object, not a Module: the decoder and CTC are registered on the model under ESPnet's names
    (``decoder``, ``ctc``, ``pinyin_decoder``, ``pinyin_ctc``), so each parameter is saved exactly once."""

    def __init__(self, token_list: List[str], decoder: AbsDecoder, ctc: CTC, lsm_weight: float,
                 length_normalized_loss: bool, ignore_id: int, report_cer: bool):
        self.vocab_size = len(token_list)
        self.sos = self.eos = self.vocab_size - 1
        self.ignore_id = ignore_id
        self.decoder = decoder
        self.ctc = ctc
        self.criterion_att = LabelSmoothingLoss(
            size=self.vocab_size, padding_idx=ignore_id, smoothing=lsm_weight,
            normalize_length=length_normalized_loss,
        )
        # Validation-only CER of CTC greedy output; " " never occurs in our token lists.
        self.error_calculator = (
            ErrorCalculator(token_list, "<space>", "<blank>", report_cer=True, report_wer=False)
            if report_cer else None
        )

    def losses(self, enc: torch.Tensor, enc_lens: torch.Tensor, ys: torch.Tensor, ys_lens: torch.Tensor,
               training: bool):
        """Return (CTC loss, CE loss, token accuracy, CTC CER or None) for (B, T, D) encoder output and (B, L) ids."""
        loss_ctc = self.ctc(enc, enc_lens, ys, ys_lens)
        ys_in, ys_out = add_sos_eos(ys, self.sos, self.eos, self.ignore_id)
        dec_out, _ = self.decoder(enc, enc_lens, ys_in, ys_lens + 1)
        loss_att = self.criterion_att(dec_out, ys_out)
        acc = th_accuracy(dec_out.view(-1, self.vocab_size), ys_out, ignore_label=self.ignore_id)
        cer = None
        if not training and self.error_calculator is not None:
            cer = self.error_calculator(self.ctc.argmax(enc).data.cpu(), ys.cpu(), is_ctc=True)
        return loss_ctc, loss_att, acc, cer


class DualDecoderVSRModel(AbsESPnetModel):
    """Frontend + encoder shared by a character branch and an optional pinyin branch.

    Args:
        vocab_size, token_list: character token list (``<blank>`` first, ``<sos/eos>`` last).
        frontend, encoder: video -> frame features -> H.
        decoder, ctc: character branch.
        pinyin_token_list, pinyin_decoder, pinyin_ctc: pinyin branch; all None for the char-only model.
        ctc_weight: lambda_ctc of eqs. (10)-(11), shared by both branches.
        char_weight: a of eq. (12); 1.0 means char-only (then the pinyin branch must be None).
        lsm_weight: label smoothing of the CE losses.
        length_normalized_loss: CE normalised per token instead of per utterance.
        report_cer: add CTC-greedy CER of each branch to validation stats.
    """

    def __init__(
        self,
        vocab_size: int,
        token_list: List[str],
        frontend: AbsFrontend,
        encoder: AbsEncoder,
        decoder: AbsDecoder,
        ctc: CTC,
        pinyin_token_list: Optional[List[str]] = None,
        pinyin_decoder: Optional[AbsDecoder] = None,
        pinyin_ctc: Optional[CTC] = None,
        ctc_weight: float = 0.3,
        char_weight: float = 0.5,
        lsm_weight: float = 0.1,
        length_normalized_loss: bool = False,
        report_cer: bool = True,
        ignore_id: int = -1,
        extract_feats_in_collect_stats: bool = True,
    ):
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"model_conf.ctc_weight must be in [0, 1], got {ctc_weight}")
        if not 0.0 < char_weight <= 1.0:
            raise ValueError(f"model_conf.char_weight must be in (0, 1], got {char_weight}")
        has_pinyin = pinyin_decoder is not None
        if has_pinyin != (char_weight < 1.0) or has_pinyin != (pinyin_ctc is not None):
            raise ValueError(
                f"model_conf.char_weight={char_weight} needs "
                + ("a pinyin decoder and pinyin CTC (pinyin_decoder: transformer)" if char_weight < 1.0
                   else "no pinyin branch (it would get zero weight)")
            )
        assert len(token_list) == vocab_size, (len(token_list), vocab_size)
        self.vocab_size = vocab_size
        self.token_list = list(token_list)
        self.pinyin_token_list = list(pinyin_token_list) if pinyin_token_list is not None else None
        self.ctc_weight = ctc_weight
        self.char_weight = char_weight
        self.ignore_id = ignore_id
        self.sos = self.eos = vocab_size - 1
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats

        self.frontend = frontend
        self.encoder = encoder
        # Attribute names follow ESPnetASRModel (decoder, ctc) so ESPnet tooling and --init_param keys carry over.
        self.decoder = decoder
        self.ctc = ctc
        self.pinyin_decoder = pinyin_decoder
        self.pinyin_ctc = pinyin_ctc
        self._char = _Branch(token_list, decoder, ctc, lsm_weight, length_normalized_loss, ignore_id, report_cer)
        self._pinyin = (
            _Branch(self.pinyin_token_list, pinyin_decoder, pinyin_ctc, lsm_weight, length_normalized_loss,
                    ignore_id, report_cer)
            if has_pinyin else None
        )

    @property
    def has_pinyin_branch(self) -> bool:
        return self._pinyin is not None

    def encode(self, video: torch.Tensor, video_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T, h*w) normalised float video, (B,) frames -> H (B, T', D), (B,) lengths. Used by inference."""
        video = video[:, : int(video_lengths.max())]
        feats, feats_lengths = self.frontend(video, video_lengths)
        enc, enc_lens, _ = self.encoder(feats, feats_lengths)
        return enc, enc_lens

    def forward(
        self,
        video: torch.Tensor,
        video_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        text_pinyin: Optional[torch.Tensor] = None,
        text_pinyin_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Loss of eq. (12) for a batch: video (B, T, h*w) float, text (B, L) char ids, text_pinyin (B, M) ids."""
        batch_size = video.size(0)
        text = text[:, : int(text_lengths.max())]
        enc, enc_lens = self.encode(video, video_lengths)

        loss_ctc_c, loss_att_c, acc_c, cer_c = self._char.losses(enc, enc_lens, text, text_lengths, self.training)
        loss_char = self.ctc_weight * loss_ctc_c + (1.0 - self.ctc_weight) * loss_att_c
        stats = dict(loss_char=loss_char.detach(), loss_ctc_char=loss_ctc_c.detach(),
                     loss_att_char=loss_att_c.detach(), acc_char=acc_c, cer_ctc_char=cer_c)

        if self._pinyin is not None:
            if text_pinyin is None:
                raise ValueError(
                    f"model_conf.char_weight={self.char_weight} trains a pinyin decoder but the batch has no "
                    "'text_pinyin': add 'data/<set>/text_pinyin,text_pinyin,text' to "
                    "--train_data_path_and_name_and_type and --valid_data_path_and_name_and_type"
                )
            text_pinyin = text_pinyin[:, : int(text_pinyin_lengths.max())]
            loss_ctc_p, loss_att_p, acc_p, cer_p = self._pinyin.losses(
                enc, enc_lens, text_pinyin, text_pinyin_lengths, self.training
            )
            loss_pinyin = self.ctc_weight * loss_ctc_p + (1.0 - self.ctc_weight) * loss_att_p
            loss = self.char_weight * loss_char + (1.0 - self.char_weight) * loss_pinyin
            stats.update(loss_pinyin=loss_pinyin.detach(), loss_ctc_pinyin=loss_ctc_p.detach(),
                         loss_att_pinyin=loss_att_p.detach(), acc_pinyin=acc_p, cer_ctc_pinyin=cer_p)
        else:
            loss = loss_char
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def collect_feats(self, video: torch.Tensor, video_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        """For ESPnet's collect-stats: the normalised pixels themselves (the frontend is learned)."""
        return {"feats": video[:, : int(video_lengths.max())], "feats_lengths": video_lengths}

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

Optional, and off unless ``frame_target_weight > 0`` (the paper's model has no such term): an auxiliary per-frame
regression of the *frontend* features onto known frame targets, ``L += w * ||Linear(F) - y||^2`` summed over the
valid frames (per utterance, like CTC). The synthetic mini corpus uses the renderer's mouth pose per frame (open, spread, round, ...), which
tells the frontend what to look at from the first step; with a real corpus the same option could take, e.g.,
per-frame lip landmarks. Inference never needs the targets (the head is unused there).

Also optional, off unless ``frame_label_weight > 0``: per-frame classification of the *encoder* output into
known frame labels, ``L += w * CE(Linear(H), z)`` summed over labelled frames (per utterance). The mini corpus'
labels are the renderer's alignment (the viseme key of the syllable each frame belongs to, 0 = silence), what a
forced alignment of the audio would give on a real audio-visual corpus. It shows the encoder where each
syllable is from the first step, instead of leaving that to CTC's slow escape from its blank-only plateau.
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
        frame_target_weight: weight of the auxiliary frame-target regression (0 = off, the paper's model).
        frame_target_dim: values per frame of the ``frame_targets`` data (e.g. 7 renderer pose fields); the head
            exists only when the weight is > 0 (no unused parameters under DDP). Needs ``frame_targets`` (B, T, D) float in the training batches when the weight is > 0.
        frame_label_weight: weight of the auxiliary per-frame classification of the encoder output (0 = off).
        frame_label_classes: number of frame label classes (labels 0..classes-1; -1 = padding).
            Needs ``frame_labels`` (B, T) int in the training batches when the weight is > 0.
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
        frame_target_weight: float = 0.0,
        frame_target_dim: int = 0,
        frame_label_weight: float = 0.0,
        frame_label_classes: int = 0,
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
        if frame_target_weight < 0 or (frame_target_weight > 0 and frame_target_dim < 1):
            raise ValueError(
                f"model_conf.frame_target_weight={frame_target_weight} needs frame_target_dim >= 1 (values per "
                f"frame of the frame_targets data), got {frame_target_dim}"
            )
        self.frame_target_weight = frame_target_weight
        if frame_label_weight < 0 or (frame_label_weight > 0 and frame_label_classes < 2):
            raise ValueError(
                f"model_conf.frame_label_weight={frame_label_weight} needs frame_label_classes >= 2 (the number "
                f"of frame label classes), got {frame_label_classes}"
            )
        self.frame_label_weight = frame_label_weight

        self.frontend = frontend
        self.encoder = encoder
        # Attribute names follow ESPnetASRModel (decoder, ctc) so ESPnet tooling and --init_param keys carry over.
        self.decoder = decoder
        self.ctc = ctc
        self.pinyin_decoder = pinyin_decoder
        self.pinyin_ctc = pinyin_ctc
        # After the frontend, before the encoder: the auxiliary target is about what one frame shows.
        self.frame_target_head = (
            torch.nn.Linear(frontend.output_size(), frame_target_dim) if frame_target_weight > 0 else None
        )
        self.frame_label_head = (
            torch.nn.Linear(encoder.output_size(), frame_label_classes) if frame_label_weight > 0 else None
        )
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
        video = video[:, : int(video_lengths.max())]
        feats, feats_lengths = self.frontend(video, video_lengths)
        enc, enc_lens, _ = self.encoder(feats, feats_lengths)

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
        if self.frame_target_weight > 0:
            targets, target_lens = self._frame_data(kwargs, "frame_targets", "frame_target_weight", "pose.scp",
                                                    feats_lengths)
            loss_frame = self._frame_target_loss(feats, feats_lengths, targets, target_lens)
            loss = loss + self.frame_target_weight * loss_frame
            stats["loss_frame"] = loss_frame.detach()
        if self.frame_label_weight > 0:
            labels, _ = self._frame_data(kwargs, "frame_labels", "frame_label_weight", "visemes.scp", enc_lens)
            loss_lab, acc_lab = self._frame_label_loss(enc, enc_lens, labels)
            loss = loss + self.frame_label_weight * loss_lab
            stats.update(loss_frame_label=loss_lab.detach(), acc_frame_label=acc_lab)
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def _frame_target_loss(self, feats: torch.Tensor, feats_lengths: torch.Tensor, targets: torch.Tensor,
                           target_lengths: torch.Tensor) -> torch.Tensor:
        """Squared error summed over the valid frames and values, averaged over utterances (the scale of the
        token-summed CTC/CE losses, so that a weight of 1 is comparable to them): feats (B, T, F), targets (B, T', D)."""
        t = min(feats.size(1), targets.size(1))
        pred = self.frame_target_head(feats[:, :t])
        lens = torch.minimum(feats_lengths, target_lengths.to(feats_lengths.device)).clamp(max=t)
        mask = (torch.arange(t, device=feats.device)[None, :] < lens[:, None]).unsqueeze(-1)
        err = ((pred - targets[:, :t].to(pred.dtype)) ** 2) * mask
        return err.sum() / feats.size(0)

    def _frame_data(self, batch: Dict[str, torch.Tensor], name: str, weight_key: str, example: str,
                    model_lengths: torch.Tensor, tolerance: int = 2) -> Tuple[torch.Tensor, torch.Tensor]:
        """``batch[name]`` and its lengths, which must be there and at the model's frame rate: a frontend with
        temporal_stride > 1 (or a subsampling encoder) would silently pair frame i with target i instead of 2i."""
        if batch.get(name) is None:
            flag = "--" + name
            raise ValueError(
                f"model_conf.{weight_key}={getattr(self, weight_key)} needs '{name}' in every batch: add "
                f"'<data>/{example},{name},npy' to the data options (vsr.sh {flag} {example})"
            )
        data_lengths = batch[name + "_lengths"]
        diff = (model_lengths.cpu() - data_lengths.cpu()).abs()
        if int(diff.max()) > tolerance:
            raise ValueError(
                f"{name} has {data_lengths.tolist()} frames but the model gives {model_lengths.tolist()}: per-frame "
                "data must be at the model's frame rate (no temporal_stride / subsampling with frame losses)"
            )
        return batch[name], data_lengths

    def _frame_label_loss(self, enc: torch.Tensor, enc_lens: torch.Tensor, labels: torch.Tensor
                          ) -> Tuple[torch.Tensor, Optional[float]]:
        """Cross-entropy summed over labelled frames, averaged over utterances, and frame accuracy (None when no
        frame is labelled): enc (B, T, D), labels (B, T') int with -1 for padding; frames past an utterance's
        encoder length are not scored."""
        t = min(enc.size(1), labels.size(1))
        logits = self.frame_label_head(enc[:, :t])
        lab = labels[:, :t].to(enc.device).long()
        beyond = torch.arange(t, device=enc.device)[None, :] >= enc_lens.to(enc.device)[:, None]
        lab = lab.masked_fill(beyond, -1)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), lab.reshape(-1),
                                                 ignore_index=-1, reduction="sum") / enc.size(0)
        valid = lab >= 0
        acc = float((logits.argmax(-1)[valid] == lab[valid]).float().mean()) if valid.any() else None
        return loss, acc

    def collect_feats(self, video: torch.Tensor, video_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        """For ESPnet's collect-stats: the normalised pixels themselves (the frontend is learned)."""
        return {"feats": video[:, : int(video_lengths.max())], "feats_lengths": video_lengths}

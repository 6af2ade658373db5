"""ESPnet task plugin for Mandarin visual speech recognition with a character and a pinyin branch.

``python -m vallr_pin.bin.vsr_train --config conf/train_vsr_dual.yaml ...`` runs ESPnet's ``AbsTask.main`` with
this task: ESPnet's argument parser (a wrong key in the YAML is refused at start, naming the key), data loaders,
batch samplers, Trainer (``--resume true`` continues from ``checkpoint.pth``), collect-stats mode and model
averaging are used unchanged. What this task adds:

* ``ClassChoices``: ``--frontend`` (conv3d_resnet), ``--encoder`` (sanm | transformer | conformer),
  ``--decoder`` (character branch: sanm | transformer), ``--pinyin_decoder`` (transformer | sanm | none),
  ``--model`` (dual), ``--preprocessor`` (vsr), each with its ``*_conf`` dict;
* ``--token_list`` / ``--pinyin_token_list``; both are stored as lists in ``config.yaml`` (ESPnet's portable
  convention) so a model directory decodes without the data directory;
* data names: ``video`` and ``text`` required for training, ``text_pinyin`` optional (needed when
  ``model_conf.char_weight < 1``); ``video`` only for inference;
* build-time checks that name the offending key (unknown ``*_conf`` keys, size mismatches, a pinyin branch
  without a pinyin token list ...);
* ``--keep_epochs 2 5 10``: these epoch checkpoints are hard-linked to ``<output_dir>/ckpt_keep/{N}epoch.pth``
  before ESPnet's ``keep_nbest_models`` clean-up can delete them (see :class:`VSRTrainer`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.abs_decoder import AbsDecoder
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.torch_utils.initialize import initialize
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none

from vallr_pin.lean_imports import ESPNET_TASK_UNUSED, hidden_modules

with hidden_modules(ESPNET_TASK_UNUSED):  # ESPnet's optional wav2vec2 adapter import: 5 s, unused (see there)
    from espnet2.tasks.abs_task import AbsTask

from vallr_pin.model import DualDecoderVSRModel
from vallr_pin.nets.frontend import Conv3dResNetFrontend
from vallr_pin.nets.sanm_decoder import SANMDecoder
from vallr_pin.nets.sanm_encoder import SANMVideoEncoder
from vallr_pin.tasks.vsr_collate import VSRCollateFn
from vallr_pin.tasks.vsr_preprocess import AbsVSRPreprocessor, VSRPreprocessor

frontend_choices = ClassChoices(
    name="frontend", classes=dict(conv3d_resnet=Conv3dResNetFrontend), type_check=AbsFrontend,
    default="conv3d_resnet",
)
encoder_choices = ClassChoices(
    name="encoder",
    classes=dict(sanm=SANMVideoEncoder, transformer=TransformerEncoder, conformer=ConformerEncoder),
    type_check=AbsEncoder, default="sanm",
)
decoder_choices = ClassChoices(
    name="decoder", classes=dict(sanm=SANMDecoder, transformer=TransformerDecoder), type_check=AbsDecoder,
    default="sanm",
)
pinyin_decoder_choices = ClassChoices(
    name="pinyin_decoder", classes=dict(transformer=TransformerDecoder, sanm=SANMDecoder), type_check=AbsDecoder,
    default="transformer", optional=True,
)
model_choices = ClassChoices(
    name="model", classes=dict(dual=DualDecoderVSRModel), type_check=AbsESPnetModel, default="dual",
)
preprocessor_choices = ClassChoices(
    name="preprocessor", classes=dict(vsr=VSRPreprocessor), type_check=AbsVSRPreprocessor,
    default="vsr",
)


def _build(conf_name: str, cls, conf: Dict, **fixed):
    """``cls(**fixed, **conf)``, refusing unknown or clashing ``conf`` keys with a message naming them."""
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    valid = [k for k in params if k not in ("self", "args", "kwargs") and k not in fixed]
    unknown = [k for k in conf if k not in params and not takes_kwargs]
    if unknown:
        raise ValueError(
            f"{conf_name}: unknown key(s) {unknown} for {cls.__name__}; valid keys are {valid}"
        )
    for k in conf:
        if k in fixed and conf[k] != fixed[k]:
            raise ValueError(
                f"{conf_name}.{k}={conf[k]} does not match the value {fixed[k]} the task derives for it "
                f"(from the previous module or the token list); remove {conf_name}.{k} or fix the sizes"
            )
    merged = {**conf, **fixed}
    return cls(**merged)


def _read_token_list(value, option: str) -> List[str]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        path = Path(value)
        if not path.exists():
            raise FileNotFoundError(f"{option} {value}: no such file; run stage 2 (token lists) first")
        with path.open(encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.rstrip("\n")]
    raise ValueError(f"{option} must be a file or a list, got {type(value)}")


def _char_weight(args: argparse.Namespace) -> float:
    default = inspect.signature(DualDecoderVSRModel.__init__).parameters["char_weight"].default
    return float(args.model_conf.get("char_weight", default))


def uses_pinyin(args: argparse.Namespace) -> bool:
    """The pinyin branch is built iff ``char_weight < 1`` (and then ``--pinyin_decoder`` must not be none)."""
    return _char_weight(args) < 1.0


@dataclasses.dataclass
class VSRTrainerOptions(TrainerOptions):
    keep_epochs: Sequence[int] = ()


class VSRTrainer(Trainer):
    """ESPnet's Trainer plus ``--keep_epochs``.

    ``Trainer.run`` saves ``{N}epoch.pth`` at the end of epoch N and, in the same step, unlinks every earlier
    ``{e}epoch.pth`` not among the ``keep_nbest_models`` best. So epoch N's file is guaranteed to exist only until
    epoch N+1 ends. We hard-link the wanted files into ``ckpt_keep/`` at the start of each epoch (the previous
    epoch's file is still there) and once more after the last epoch; a hard link keeps the data when ESPnet
    unlinks its name, costs no space, and needs no change to ESPnet. If a resume happens to land where the epoch
    file was never written (killed between ``checkpoint.pth`` and ``{N}epoch.pth``), the model weights are taken
    from ``checkpoint.pth`` instead.
    """

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group("VSR trainer")
        group.add_argument(
            "--keep_epochs", type=int, nargs="*", default=[],
            help="Epochs whose checkpoints are kept in <output_dir>/ckpt_keep/{N}epoch.pth regardless of "
                 "--keep_nbest_models (e.g. early/mid/late epochs for N-best dumping: --keep_epochs 2 5 10)",
        )

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> VSRTrainerOptions:
        return build_dataclass(VSRTrainerOptions, args)

    @staticmethod
    def keep_checkpoints(options, last_finished_epoch: int) -> None:
        """Hard-link ``{e}epoch.pth`` for every kept epoch ``e <= last_finished_epoch`` into ``ckpt_keep/``."""
        output_dir = Path(options.output_dir)
        keep_dir = output_dir / "ckpt_keep"
        for epoch in sorted(set(options.keep_epochs)):
            if epoch > last_finished_epoch:
                continue
            dst = keep_dir / f"{epoch}epoch.pth"
            if dst.exists():
                continue
            keep_dir.mkdir(parents=True, exist_ok=True)
            src = output_dir / f"{epoch}epoch.pth"
            tmp = keep_dir / f".{epoch}epoch.pth.tmp"
            if tmp.exists():
                tmp.unlink()
            if src.exists():
                try:
                    os.link(src, tmp)
                except OSError:  # e.g. a file system without hard links
                    shutil.copyfile(src, tmp)
            else:
                ckpt = output_dir / "checkpoint.pth"
                states = torch.load(ckpt, map_location="cpu", weights_only=False) if ckpt.exists() else None
                if states is None or states["reporter"]["epoch"] != epoch:
                    logging.warning(f"--keep_epochs {epoch}: {src} no longer exists; cannot keep it")
                    continue
                torch.save(states["model"], tmp)
            os.replace(tmp, dst)
            logging.info(f"Kept the epoch-{epoch} checkpoint as {dst}")

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter, summary_writer, options,
                        distributed_option) -> bool:
        if not distributed_option.distributed or distributed_option.dist_rank == 0:
            cls.keep_checkpoints(options, reporter.get_epoch() - 1)
        return super().train_one_epoch(
            model=model, iterator=iterator, optimizers=optimizers, schedulers=schedulers, scaler=scaler,
            reporter=reporter, summary_writer=summary_writer, options=options,
            distributed_option=distributed_option,
        )

    @classmethod
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        late = [e for e in trainer_options.keep_epochs if e > trainer_options.max_epoch]
        if late:
            logging.warning(f"--keep_epochs {late} are beyond --max_epoch {trainer_options.max_epoch}")
        super().run(
            model=model, optimizers=optimizers, schedulers=schedulers, train_iter_factory=train_iter_factory,
            valid_iter_factory=valid_iter_factory, plot_attention_iter_factory=plot_attention_iter_factory,
            trainer_options=trainer_options, distributed_option=distributed_option,
        )
        if not distributed_option.distributed or distributed_option.dist_rank == 0:
            ckpt = Path(trainer_options.output_dir) / "checkpoint.pth"
            if ckpt.exists():
                last = torch.load(ckpt, map_location="cpu", weights_only=False)["reporter"]["epoch"]
                cls.keep_checkpoints(trainer_options, last)


class VSRTask(AbsTask):
    """Dual-decoder (character + pinyin) visual speech recognition on ESPnet."""

    num_optimizers: int = 1
    class_choices_list = [
        frontend_choices,
        encoder_choices,
        decoder_choices,
        pinyin_decoder_choices,
        model_choices,
        preprocessor_choices,
    ]
    trainer = VSRTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        required = parser.get_default("required")
        required += ["token_list"]
        group.add_argument("--token_list", type=str_or_none, default=None,
                           help="Character token list (data/token_list/char/tokens.txt), one token a line")
        group.add_argument("--pinyin_token_list", type=str_or_none, default=None,
                           help="Pinyin token list (data/token_list/pinyin/tokens.txt); required when "
                                "model_conf.char_weight < 1")
        group.add_argument("--init", type=lambda x: str_or_none(x.lower()), default=None,
                           choices=["chainer", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                    "kaiming_normal", None],
                           help="Parameter initialisation (None = PyTorch defaults)")
        group.add_argument("--ctc_conf", action=NestedDictAction, default=get_default_kwargs(CTC),
                           help="Keyword arguments of ESPnet's CTC, used for both the character and pinyin CTC")
        group = parser.add_argument_group(description="Preprocess related")
        group.add_argument("--use_preprocessor", type=str2bool, default=True,
                           help="Apply the VSR preprocessor (crop/normalise video, tokenise text); keep true")
        group.add_argument("--splice_prob", type=float, default=0.0,
                           help="Training augmentation: chance that a pair of a batch's utterances is cut at a "
                                "character boundary and their tails swapped (vallr_pin.tasks.vsr_collate), so "
                                "each epoch shows unseen sentences; needs 'frame_align' training data "
                                "(vsr.sh --frame_align). 0 = off (the paper's recipe)")
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]], Tuple[List[str], Dict[str, torch.Tensor]]
    ]:
        # int padding -1 = ignore_id; 0 is the CTC blank. Splicing is a training augmentation only.
        return VSRCollateFn(float_pad_value=0.0, int_pad_value=-1,
                            splice_prob=getattr(args, "splice_prob", 0.0) if train else 0.0)

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        if not args.use_preprocessor:
            return None
        preprocessor_class = preprocessor_choices.get_class(getattr(args, "preprocessor", "vsr"))
        return _build(
            "preprocessor_conf", preprocessor_class, getattr(args, "preprocessor_conf", {}) or {},
            train=train,
            token_list=args.token_list,
            pinyin_token_list=args.pinyin_token_list if uses_pinyin(args) else None,
        )

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("video",) if inference else ("video", "text")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        # frame_targets / frame_labels: per-frame regression targets / class labels of the auxiliary losses
        # (model_conf.frame_target_weight / frame_label_weight; training only)
        # frame_align: the character alignment that drives --splice_prob (training only; never reaches the model)
        return ("text_pinyin", "frame_targets", "frame_labels", "frame_align") if not inference \
            else ("text", "text_pinyin")

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> DualDecoderVSRModel:
        token_list = _read_token_list(args.token_list, "--token_list")
        args.token_list = token_list  # portable config.yaml (ESPnet convention)
        vocab_size = len(token_list)
        logging.info(f"Character vocabulary size: {vocab_size}")

        frontend_class = frontend_choices.get_class(args.frontend)
        frontend = _build("frontend_conf", frontend_class, args.frontend_conf)
        feat_size = frontend.output_size()

        encoder_class = encoder_choices.get_class(args.encoder)
        encoder = _build("encoder_conf", encoder_class, args.encoder_conf, input_size=feat_size)
        enc_size = encoder.output_size()

        decoder_class = decoder_choices.get_class(args.decoder)
        decoder = _build("decoder_conf", decoder_class, args.decoder_conf,
                         vocab_size=vocab_size, encoder_output_size=enc_size)
        ctc = _build("ctc_conf", CTC, args.ctc_conf, odim=vocab_size, encoder_output_size=enc_size)

        pinyin_token_list = pinyin_decoder = pinyin_ctc = None
        if uses_pinyin(args):
            if args.pinyin_decoder is None:
                raise ValueError(
                    f"model_conf.char_weight={_char_weight(args)} < 1 trains a pinyin branch but pinyin_decoder "
                    "is none: set pinyin_decoder: transformer, or char_weight: 1.0 for the char-only model"
                )
            if args.pinyin_token_list is None:
                raise ValueError(
                    f"model_conf.char_weight={_char_weight(args)} < 1 needs --pinyin_token_list "
                    "(data/token_list/pinyin/tokens.txt)"
                )
            pinyin_token_list = _read_token_list(args.pinyin_token_list, "--pinyin_token_list")
            args.pinyin_token_list = pinyin_token_list
            logging.info(f"Pinyin vocabulary size: {len(pinyin_token_list)}")
            pinyin_decoder_class = pinyin_decoder_choices.get_class(args.pinyin_decoder)
            pinyin_decoder = _build("pinyin_decoder_conf", pinyin_decoder_class, args.pinyin_decoder_conf,
                                    vocab_size=len(pinyin_token_list), encoder_output_size=enc_size)
            pinyin_ctc = _build("ctc_conf", CTC, args.ctc_conf, odim=len(pinyin_token_list),
                                encoder_output_size=enc_size)
        else:
            if args.pinyin_decoder is not None:
                logging.info("model_conf.char_weight=1: char-only model, no pinyin branch is built")
            args.pinyin_decoder = None
            args.pinyin_decoder_conf = {}
            args.pinyin_token_list = None

        model_class = model_choices.get_class(args.model)
        model = _build(
            "model_conf", model_class, args.model_conf,
            vocab_size=vocab_size, token_list=token_list, frontend=frontend, encoder=encoder, decoder=decoder,
            ctc=ctc, pinyin_token_list=pinyin_token_list, pinyin_decoder=pinyin_decoder, pinyin_ctc=pinyin_ctc,
        )
        if args.init is not None:
            initialize(model, args.init)
        return model

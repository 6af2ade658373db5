#!/usr/bin/env python3
"""Turn a CNVSRC baseline checkpoint's Conv3d + ResNet-18 frontend into an ``--init_param`` file for stage 4.

Reads the baseline checkpoint (``model_avg_cncvs_4s_30s.pth`` and the like, their Lightning ``.ckpt``, or a bare
``trunk.*``/``frontend3D.*`` frontend), renames its frontend tensors to this toolkit's (``frontend.stem.*``,
``frontend.trunk.*``; the mapping and the layouts: ``vallr_pin.nets.frontend_init``), checks each against the
frontend that ``--train-config`` builds, and writes them to ``--out`` (atomically). Any frontend tensor that has
no counterpart, or a different shape, is an error listing them all, and so is a tensor of ours other than the
final projection that the checkpoint does not fill. Then train with it::

    python -m vallr_pin.bin.convert_baseline_frontend --src pretrained/model_avg_cncvs_4s_30s.pth \\
        --train-config conf/train_vsr_dual_resnet18.yaml --out exp/init/frontend_cncvs.pth
    ./run.sh --vsr_config conf/train_vsr_dual_resnet18.yaml --train_args "--init_param exp/init/frontend_cncvs.pth"
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vallr_pin.cli import add_log_level, load_yaml, user_errors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="the baseline checkpoint (.pth or .ckpt)")
    p.add_argument("--train-config", type=Path, required=True,
                   help="stage 4's training config (its frontend / frontend_conf build the target frontend)")
    p.add_argument("--out", type=Path, required=True, help="the --init_param file to write (keys frontend.*)")
    add_log_level(p)
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        import torch

        from vallr_pin.datadir import atomic_open
        from vallr_pin.nets.frontend import Conv3dResNetFrontend
        from vallr_pin.nets.frontend_init import FrontendInitError, convert_baseline_frontend

        conf = load_yaml(args.train_config, "training config", hint="give stage 4's conf/train_*.yaml")
        if conf.get("frontend", "conv3d_resnet") != "conv3d_resnet":
            raise FrontendInitError(f"{args.train_config}: frontend is '{conf['frontend']}', not conv3d_resnet")
        try:
            frontend = Conv3dResNetFrontend(**(conf.get("frontend_conf") or {}))
        except TypeError as e:  # an option the frontend does not have
            raise FrontendInitError(f"{args.train_config}: frontend_conf does not fit conv3d_resnet ({e})") from None
        if not args.src.is_file():
            raise FileNotFoundError(f"{args.src}: no such checkpoint")
        try:
            ckpt = torch.load(args.src, map_location="cpu", weights_only=False)
        except Exception as e:  # pickle, zip or torch errors: whatever it is, it is not a checkpoint torch reads
            raise FrontendInitError(f"{args.src}: not a PyTorch checkpoint ({type(e).__name__}: {e}); give the "
                                    "baseline's .pth (or its Lightning .ckpt)") from None
        if not isinstance(ckpt, dict):
            raise FrontendInitError(f"{args.src}: holds a {type(ckpt).__name__}, not a checkpoint's dict of tensors")
        try:
            state, left = convert_baseline_frontend(ckpt, frontend)
        except FrontendInitError as e:
            raise FrontendInitError(f"{args.src} -> {args.train_config}: {e}") from None
        with atomic_open(args.out, "wb") as f:
            torch.save(state, f)
    logging.info("wrote %s: %d frontend tensors; left at their initialisation: %s; train with "
                 "--init_param %s", args.out, len(state), ", ".join(left) or "none", args.out)


if __name__ == "__main__":
    main()

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
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="the baseline checkpoint (.pth or .ckpt)")
    p.add_argument("--train-config", type=Path, required=True,
                   help="stage 4's training config (its frontend / frontend_conf build the target frontend)")
    p.add_argument("--out", type=Path, required=True, help="the --init_param file to write (keys frontend.*)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    try:
        import torch
        import yaml

        from vallr_pin.datadir import atomic_open
        from vallr_pin.nets.frontend import Conv3dResNetFrontend
        from vallr_pin.nets.frontend_init import FrontendInitError, convert_baseline_frontend

        conf = yaml.safe_load(args.train_config.read_text(encoding="utf-8")) or {}
        if conf.get("frontend", "conv3d_resnet") != "conv3d_resnet":
            raise FrontendInitError(f"{args.train_config}: frontend is '{conf['frontend']}', not conv3d_resnet")
        frontend = Conv3dResNetFrontend(**(conf.get("frontend_conf") or {}))
        if not args.src.is_file():
            raise FileNotFoundError(f"{args.src}: no such checkpoint")
        ckpt = torch.load(args.src, map_location="cpu", weights_only=False)
        try:
            state, left = convert_baseline_frontend(ckpt, frontend)
        except FrontendInitError as e:
            raise FrontendInitError(f"{args.src} -> {args.train_config}: {e}") from None
        with atomic_open(args.out, "wb") as f:
            torch.save(state, f)
    except (FrontendInitError, FileNotFoundError, TypeError) as e:
        if args.log_level == "DEBUG":
            raise
        logging.error("%s", e)
        sys.exit(1)
    logging.info("wrote %s: %d frontend tensors; left at their initialisation: %s; train with "
                 "--init_param %s", args.out, len(state), ", ".join(left) or "none", args.out)


if __name__ == "__main__":
    main()

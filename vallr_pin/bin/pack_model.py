#!/usr/bin/env python3
"""Pack a trained model into a self-contained directory that ``vallr_pin.bin.recognize`` and
``vallr_pin.Recognizer`` load (layout: :mod:`vallr_pin.packing`).

Run it from the recipe directory after stage 5 (and stage 9 for the LLM part)::

    python -m vallr_pin.bin.pack_model --exp exp/vsr_dual --llm-exp exp/llm_lora --out packed/vsr_dual

It takes the checkpoint stage 5 decoded (``--model-file``, default valid.acc_char.ave.pth), the decoding options
that stage 5 used for it (from its decode jobs' .done markers, or ``--decode-config``), stage 1's crop settings
(roi_conf.json beside the training set's feats.scp, or ``--roi-conf``), and with ``--llm-exp`` the LoRA adapter
plus the base LLM's name and config hash (not its weights), the prompt, the output guard and the fusion weights
of stage 9's fine-tuned refinement. It writes a model card (README.md) with the training data and CER.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Optional, Sequence

from vallr_pin.cli import add_log_level, load_yaml, user_errors


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--exp", required=True, help="trained model directory (exp/vsr_<tag>, holds config.yaml)")
    p.add_argument("--out", required=True, help="model directory to write (replaced if it exists)")
    p.add_argument("--model-file", default=None,
                   help="checkpoint to pack, a path or a name under --exp (default: valid.acc_char.ave.pth)")
    p.add_argument("--decode-config", default=None,
                   help="yaml of vsr_inference options (conf/decode_vsr.yaml); default: the options stage 5 "
                        "decoded this checkpoint with")
    p.add_argument("--roi-conf", default=None,
                   help="stage 1's roi_conf.json (default: beside the training set's feats.scp)")
    p.add_argument("--llm-exp", default=None, help="stage 8's exp/llm_<tag> (its adapter); omit for VSR only")
    p.add_argument("--llm-model", default=None,
                   help="the base LLM directory (default: the one stage 9 used); only its name and config hash "
                        "are packed")
    p.add_argument("--refine-dir", default=None,
                   help="stage 9 output whose prompt/guard/fusion settings are packed (default: "
                        "<llm-exp>/refine_finetuned/<set> the fusion weights were tuned on)")
    p.add_argument("--results", default="RESULTS.md", help="the recipe's RESULTS.md to include")
    p.add_argument("--archive", default=None,
                   help="also write this .zip/.tar.gz of the directory (ESPnet's pack); recognize --model "
                        "accepts it")
    add_log_level(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    with user_errors(args.log_level):
        from vallr_pin.packing import pack_model_dir

        decode = None
        if args.decode_config:
            decode = load_yaml(args.decode_config, "decoding config",
                               hint="give vsr_inference options as in conf/decode_vsr.yaml")
        roi = _load_roi_conf(args.roi_conf) if args.roi_conf else None
        out = pack_model_dir(args.out, args.exp, args.model_file, decode, roi, args.llm_exp, args.llm_model,
                             args.refine_dir, args.results, args.archive)
    logging.info(f"packed {args.exp} into {out}" + (f" and {args.archive}" if args.archive else ""))


def _load_roi_conf(path: str) -> dict:
    """Stage 1's roi_conf.json, a user error naming the file when it is missing or not such a JSON object."""
    try:
        with open(path, encoding="utf-8") as f:
            roi = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: --roi-conf not found; stage 1 writes it as dump/roi/<train set>/"
                                "roi_conf.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: --roi-conf is not JSON ({e}); give stage 1's roi_conf.json") from None
    if not isinstance(roi, dict):
        raise ValueError(f"{path}: --roi-conf must be a JSON object (stage 1's roi_conf.json)")
    return roi


if __name__ == "__main__":
    main()

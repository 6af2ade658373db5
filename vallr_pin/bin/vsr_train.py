#!/usr/bin/env python3
"""Train (or collect stats for) the dual-decoder VSR model with ESPnet's Trainer.

All flags are ESPnet's ``AbsTask`` flags plus :class:`vallr_pin.tasks.vsr.VSRTask`'s; run with ``--help`` for the
full list, ``--print_config`` for the defaults. Typical use (recipe stage 4)::

    python -m vallr_pin.bin.vsr_train --config conf/train_vsr_dual.yaml --output_dir exp/vsr_dual \\
        --token_list data/token_list/char/tokens.txt --pinyin_token_list data/token_list/pinyin/tokens.txt \\
        --train_data_path_and_name_and_type dump/roi/train/feats.scp,video,kaldi_ark \\
        --train_data_path_and_name_and_type data/train/text,text,text \\
        --train_data_path_and_name_and_type data/train/text_pinyin,text_pinyin,text \\
        --train_shape_file exp/vsr_stats/train/video_shape ... --resume true
"""

from __future__ import annotations

from typing import Optional, Sequence

from vallr_pin.distributed import destroy_process_group
from vallr_pin.tasks.vsr import VSRTask


def get_parser():
    return VSRTask.get_parser()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse ``argv`` (default: sys.argv) and run ESPnet's training / collect-stats main."""
    VSRTask.main(cmd=argv)
    # ESPnet leaves a torchrun worker's process group alive, and gloo can then abort the worker at exit
    # (vallr_pin.distributed). Only after a normal return: an exception goes out as it came.
    destroy_process_group()


if __name__ == "__main__":
    main()

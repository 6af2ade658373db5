#!/usr/bin/env python3
"""Train (or collect stats for) the character LM with ESPnet's ``lm_train``, as an air-gapped node can.

The same program as ``python -m espnet2.bin.lm_train`` (ESPnet's ``LMTask.main``; every flag is ESPnet's, see
``--help``), except that it never tries the network: ESPnet's LM task imports ``g2p_en``, which calls
``nltk.download`` at import (:func:`vallr_pin.lean_imports.import_lm_task`). vsr.sh stages 3-4 run it with
``--use_lm true``::

    python -m vallr_pin.bin.lm_train --config conf/train_lm.yaml --token_type char \\
        --token_list data/token_list/char/tokens.txt --g2p none --cleaner none \\
        --train_data_path_and_name_and_type dump/lm/train.txt,text,text ... --output_dir exp/lm_char
"""

from __future__ import annotations

from typing import Optional, Sequence

from vallr_pin.distributed import destroy_process_group
from vallr_pin.lean_imports import import_lm_task

# At import, not in main(): with --ngpu > 1 ESPnet spawns its workers, and each one re-imports this module
# (as __mp_main__) before it unpickles anything of espnet2.tasks.lm.
LMTask = import_lm_task()


def get_parser():
    return LMTask.get_parser()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Parse ``argv`` (default: sys.argv) and run ESPnet's LM training / collect-stats main."""
    LMTask.main(cmd=argv)
    destroy_process_group()  # under torchrun, as vsr_train (vallr_pin.distributed)


if __name__ == "__main__":
    main()

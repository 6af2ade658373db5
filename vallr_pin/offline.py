"""Offline defaults for every ``python -m vallr_pin.bin.*`` process (air-gapped compute nodes, issue 22).

Models, tokenizers and corpora come from local paths only, so the hubs' libraries are told not to look online:
``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` and ``HF_DATASETS_OFFLINE`` are set to 1 unless the caller set them
(``setdefault``: a user who does want hub downloads exports ``HF_HUB_OFFLINE=0``). They must be set before
``huggingface_hub`` is imported, which reads them once, so :mod:`vallr_pin.bin` applies them when it is imported,
before any entry point's own imports; child processes (ms-swift, run.pl jobs) inherit them. ``path.sh`` and the
Makefile export the same values for shell tools.

NLTK has no setting that keeps ``nltk.download`` off the network (``NLTK_DOWNLOAD_URL`` only changes its command
line), and ``g2p_en`` calls it at import time. No entry point imports the real ``g2p_en`` or NLTK: the VSR task
keeps out of ESPnet's module chain that does (:mod:`vallr_pin.tasks.vsr_collate`), and the character LM's task,
which cannot, is imported with a placeholder ``g2p_en`` (:func:`vallr_pin.lean_imports.import_lm_task`);
``test/test_offline.py`` runs the recipe's entry points with the network cut and fails on any attempt.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def set_offline_defaults() -> None:
    """Set each :data:`OFFLINE_ENV` variable the environment does not already set."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)

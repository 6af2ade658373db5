"""How vallr_pin imports FunASR's SAN-M modules and ESPnet's ``AbsTask`` without the parts a run never uses.

The one place where vallr_pin steps into third-party import machinery (issue 22). Both steps cut work done by
*importing*; the modules and classes used are FunASR's and ESPnet's own, unchanged. On a 2-core host they cut the
import of ``vallr_pin.tasks.vsr`` from ~20 s to ~8 s (``test/bench/bench_import_time.py`` measures it), and every
recipe stage starts several such processes.

* :func:`import_funasr` -- ``funasr/__init__.py`` imports *every* FunASR submodule (``pkgutil.walk_packages``:
  all models, HF transformers, scikit-learn ...), and ``from funasr.models.sanm.encoder import X`` runs it
  first, like any package ``__init__``: 4-13 s per process. The SAN-M encoder and decoder only need FunASR's own
  building blocks (0.15 s). So the ``funasr`` package object is registered without running its ``__init__``;
  the first access to any attribute it would have defined (``funasr.AutoModel``, ``funasr.__version__`` ...)
  runs that ``__init__`` then, so code that wants the whole of FunASR in the same process still gets it.
  (The walk also imported ``funasr.bin.realtime_ws``, whose import-time ``logging.basicConfig`` used to set the
  log format of every vallr_pin process; ESPnet's own format now applies in train.log.)
* :data:`ESPNET_TASK_UNUSED` -- ESPnet's ``abs_task`` imports ``espnet2.layers.create_adapter``, which tries
  ``transformers.models.wav2vec2`` (~5 s with HF transformers, scikit-learn and torch._dynamo) for Houlsby
  adapters on wav2vec2/s3prl layers. That adapter also needs s3prl, which this stack does not install, and a
  VSR model has no such layers; :func:`hidden_modules` makes that optional import fail while ``abs_task`` loads
  (ESPnet then records it as unavailable), and afterwards the module imports normally again. ``--use_adapter``
  with LoRA is unaffected.

The ESPnet module chain that calls ``nltk.download`` at import is not imported at all by the VSR task (see
:mod:`vallr_pin.tasks.vsr_collate`). ESPnet's ``LMTask`` (the character LM of ``vsr.sh --use_lm true``: trained by
stage 4, fused by stages 5-6) cannot avoid it: ``espnet2.tasks.lm`` imports ``espnet2.train.preprocessor``, whose
``espnet2.text.phoneme_tokenizer`` does ``import g2p_en``, and ``g2p_en`` calls ``nltk.download`` at import: a
network attempt from every LM process. :func:`import_lm_task` imports ``LMTask`` with a placeholder ``g2p_en``
that refuses to be *used* (a character LM never uses it: ``--g2p none``), then takes the placeholder out of
``sys.modules`` again. ``espnet2.text.phoneme_tokenizer`` stays bound to the placeholder, so ESPnet's g2p_en
tokenizers cannot be used in that process (a later ``import g2p_en`` of one's own gets the real package).
``test/test_offline.py`` covers all three.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
from types import ModuleType
from typing import Iterator, Sequence

ESPNET_TASK_UNUSED = ("transformers.models.wav2vec2.modeling_wav2vec2",)


def import_funasr(name: str) -> ModuleType:
    """``importlib.import_module(name)`` for a ``funasr.*`` module, without FunASR's import-everything start-up."""
    if "funasr" not in sys.modules:
        spec = importlib.util.find_spec("funasr")
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError(f"cannot import {name}: FunASR is not installed (make install)", name="funasr")
        package = importlib.util.module_from_spec(spec)

        def complete(attr: str):
            if attr.startswith("__") and attr not in ("__version__", "__all__"):
                raise AttributeError(attr)  # a probe (pickle, inspect ...), not a use of FunASR
            # FunASR's real __init__, run in this module, replaces this hook with its own __getattr__.
            del package.__getattr__
            spec.loader.exec_module(package)
            return getattr(package, attr)

        package.__getattr__ = complete
        sys.modules["funasr"] = package
    return importlib.import_module(name)


@contextlib.contextmanager
def hidden_modules(names: Sequence[str]) -> Iterator[None]:
    """Inside the block, ``import`` of each not-yet-imported module in ``names`` raises ImportError."""
    hidden = [n for n in names if n not in sys.modules]
    for n in hidden:
        sys.modules[n] = None  # the import system's "known missing" marker
    try:
        yield
    finally:
        for n in hidden:
            if n in sys.modules and sys.modules[n] is None:
                del sys.modules[n]


def _g2p_en_placeholder() -> ModuleType:
    """A ``g2p_en`` module whose ``G2p`` says why it is not there (importing the real one downloads NLTK data)."""
    module = ModuleType("g2p_en")
    # a spec, as every imported module has: transformers' tokenizer table probes g2p_en with find_spec
    module.__spec__ = importlib.machinery.ModuleSpec("g2p_en", None)

    class G2p:  # noqa: D401 - the one name ESPnet's phoneme tokenizer uses
        def __init__(self, *args, **kwargs):
            raise RuntimeError("g2p_en is not loaded in this vallr_pin process (its import downloads NLTK data, "
                               "which an air-gapped node cannot); the character LM uses --g2p none")

    module.G2p = G2p
    return module


def import_lm_task() -> type:
    """ESPnet's ``espnet2.tasks.lm.LMTask``, imported without ``g2p_en``'s ``nltk.download`` (module docstring) and
    without the unused wav2vec2 adapter import (:data:`ESPNET_TASK_UNUSED`)."""
    placeholder = None
    if "g2p_en" not in sys.modules:
        placeholder = sys.modules["g2p_en"] = _g2p_en_placeholder()
    try:
        with hidden_modules(ESPNET_TASK_UNUSED):
            from espnet2.tasks.lm import LMTask
    finally:
        if placeholder is not None and sys.modules.get("g2p_en") is placeholder:
            del sys.modules["g2p_en"]  # a later explicit import of g2p_en gets the real package
    return LMTask

"""Files ms-swift imports by path (``--external_plugins``). ms-swift puts a plugin's directory at the front of
``sys.path``, so they live alone here: in ``vallr_pin/llm/`` they would make its modules (``prompt``, ``guard``,
...) importable as top-level names in the training process."""

import os

# destroys the process group at exit in each worker of a multi-process CPU run (vallr_pin.bin.llm_sft)
DIST_TEARDOWN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_teardown.py")

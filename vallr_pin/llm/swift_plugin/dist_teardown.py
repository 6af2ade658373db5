"""ms-swift plugin (``swift sft --external_plugins <this file>``): destroys the process group at exit.

``llm_sft`` passes it when several CPU processes train (``add_cpu_distributed_options``): each torchrun worker
imports it while it parses its arguments, and at exit the gloo group is torn down before the interpreter's C++
destructors could abort the worker (:mod:`vallr_pin.distributed`).
"""

from vallr_pin.distributed import destroy_process_group_at_exit

destroy_process_group_at_exit()

"""Entry points (``python -m vallr_pin.bin.<name>``). Importing this package sets the offline defaults first."""

from vallr_pin.offline import set_offline_defaults

set_offline_defaults()

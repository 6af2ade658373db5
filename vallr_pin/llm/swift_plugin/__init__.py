"""Files ms-swift imports by path (``--external_plugins``). ms-swift puts a plugin's directory at the front of
``sys.path``, so they live alone here: in ``vallr_pin/llm/`` they would make its modules (``prompt``, ``guard``,
...) importable as top-level names in the training process."""

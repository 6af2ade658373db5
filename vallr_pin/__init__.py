"""vallr-pin: Mandarin visual speech recognition with Pinyin-guided LLM refinement (ESPnet-style recipes).

``from vallr_pin import Recognizer; Recognizer.from_pretrained(DIR)("clip.mp4")`` runs a packed model
(:mod:`vallr_pin.recognizer`); importing the package alone loads neither torch nor ESPnet.
"""

__version__ = "0.1.0"


def __getattr__(name):
    if name in ("Recognizer", "RecognitionResult"):
        from vallr_pin import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'vallr_pin' has no attribute {name!r}")

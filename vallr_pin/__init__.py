"""vallr-pin: Mandarin visual speech recognition with Pinyin-guided LLM refinement (ESPnet-style recipes)."""

__version__ = "0.1.0"

"""Transcripts: normalisation to Hanzi (normalize), toneless pinyin (pinyin), ESPnet token lists (token_list)."""

"""Decoding trained VSR models: beam search and pinyin rescoring (search), stage 5/6 jobs (jobs)."""

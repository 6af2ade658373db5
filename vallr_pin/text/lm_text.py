"""Training text of the character language model (vsr.sh ``--use_lm true``, stage 2).

A lip reader sees a syllable's shape, not which of its homophones was said: 是/事/市 and, for the lips, 八/妈
draw the same frames. What decides between them is language, and the training transcripts of a VSR corpus are
far too little of it (the mini corpus: 4,800 sentences; CNVSRC-Multi's train set: 20,000 or so). ESPnet's answer,
which this follows, is a character LM trained on the transcripts plus any other text (``asr.sh --lm_train_text``)
and fused into the beam search (``--lm_weight``).

The text is normalised like the transcripts (:func:`vallr_pin.text.normalize.normalize_text`), cut into clauses
at anything that is not Hanzi (punctuation, digits left unread, Latin), and every clause that is an evaluation
sentence or a near copy of one is dropped (:class:`vallr_pin.text.held_out.HeldOutSentences`), so nothing of
dev/test reaches the LM. Characters outside the VSR model's token list stay: ESPnet reads them as ``<unk>``, and
the rest of the clause still teaches the LM what follows what.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

# where a clause ends: whitespace, general and CJK punctuation, full-width and ASCII punctuation (split before
# the normaliser, which drops punctuation and would join the clauses)
_CLAUSE_END = re.compile(r"[\s\u2000-\u206f\u3000-\u303f\uff01-\uff0f\uff1a-\uff20,.!?;:()\[\]\"'/\\-]+")


def lm_clauses(lines: Iterable[str], held_out: "HeldOutSentences", min_chars: int = 2, max_chars: int = 30,
               seen: Optional[set] = None, stats: Optional[Dict[str, int]] = None) -> Iterator[str]:
    """Unique clauses of ``lines`` for the LM: normalised, cut at punctuation, not held out.

    ``seen`` carries uniqueness across calls; ``stats`` counts ``clauses``, ``held_out``, ``duplicate`` and
    ``kept``.
    """
    from vallr_pin.text.normalize import normalize_text

    seen = set() if seen is None else seen
    stats = {} if stats is None else stats
    for key in ("clauses", "held_out", "duplicate", "kept"):
        stats.setdefault(key, 0)
    for line in lines:
        for part in _CLAUSE_END.split(line):
            c = normalize_text(part) if part else ""  # Hanzi only
            if min_chars <= len(c) <= max_chars:
                stats["clauses"] += 1
                if c in seen:
                    stats["duplicate"] += 1
                elif held_out.leaks(c):
                    stats["held_out"] += 1
                else:
                    seen.add(c)
                    stats["kept"] += 1
                    yield c


def held_out_from(texts: Sequence[Path]) -> List[str]:
    """The sentences of Kaldi ``text`` files (``utt text``), to keep out of the LM's text."""
    from vallr_pin.datadir import iter_kv

    return [t for p in texts for _, t in iter_kv(p)]

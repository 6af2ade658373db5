"""ESPnet-style ``ref.trn``/``hyp.trn`` files and the NIST sclite scorer (SCTK) that ESPnet recipes run.

trn lines are written the way ESPnet's ``egs2/TEMPLATE/asr1/asr.sh`` writes them for CER:
``paste <(tokenize_text --token_type char) <(awk '{print "(" $2 "-" $1 ")"}' utt2spk)``, i.e. the characters
separated by single spaces, a TAB, then ``(<spk>-<utt>)``. sclite is then run as ``sclite -r ref.trn trn
-h hyp.trn trn -i rm -o all stdout > result.txt``.

sclite gives a few ASCII characters a meaning (``(x)`` optionally deletable, ``@`` null, ``{a/b}``
alternatives, ``-`` fragments) and folds ASCII case by default. Scoring is on normalised Hanzi, but so that a
stray Latin letter or symbol in a hypothesis cannot make sclite and our counts disagree, every ASCII character
except digits is written as ``U+XXXX`` in both files (the same code on both sides, so counts are unchanged).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

from vallr_pin.datadir import atomic_open

# Debian's sctk package installs sclite here without putting it on PATH.
DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"


def find_sclite(explicit: Optional[str] = None) -> Optional[str]:
    """Path of the sclite binary: ``explicit`` if given, else ``sclite`` on PATH, else Debian's location.

    Returns None when none is found (scoring then runs without the sclite cross-check)."""
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise FileNotFoundError(f"sclite binary '{explicit}' does not exist or is not executable")
        return explicit
    on_path = shutil.which("sclite")
    if on_path:
        return on_path
    if os.path.isfile(DEBIAN_SCLITE) and os.access(DEBIAN_SCLITE, os.X_OK):
        return DEBIAN_SCLITE
    return None


def trn_token(char: str) -> str:
    """One character as a trn token: itself, or ``U+XXXX`` for ASCII characters sclite would interpret."""
    if char.isascii() and not char.isdigit():
        return f"U+{ord(char):04X}"
    return char


def trn_id(utt: str, spk: str) -> str:
    """ESPnet's trn utterance id: ``<spk>-<utt>`` (inside the parentheses)."""
    return f"{spk}-{utt}"


def write_trn(
    path: os.PathLike | str,
    texts: Mapping[str, str],
    utt2spk: Mapping[str, str],
    utts: Sequence[str],
) -> None:
    """Write a trn file for ``utts`` (in that order) atomically; an utt missing from ``texts`` gets no tokens.

    ``texts`` hold already-normalised strings (whitespace removed); each character becomes one token."""
    with atomic_open(path) as f:
        for utt in utts:
            tokens = " ".join(trn_token(c) for c in texts.get(utt, ""))
            f.write(f"{tokens}\t({trn_id(utt, utt2spk[utt])})\n")


@dataclasses.dataclass(frozen=True)
class ScliteResult:
    """Counts parsed from sclite's report: the ``Sum`` row of the raw-count table and per-utterance scores.

    ``per_utt`` maps the trn id (``spk-utt``) to (correct, sub, del, ins)."""

    n_sent: int
    n_ref: int
    correct: int
    sub: int
    dele: int
    ins: int
    errors: int
    n_sent_err: int
    per_utt: Dict[str, Tuple[int, int, int, int]]

    @property
    def cer(self) -> float:
        return 100.0 * self.errors / self.n_ref if self.n_ref else 0.0


# "| Sum  |    3     10 |    5      2      3      1      6      3 |" (the rsum table: raw counts)
_SUM_RAW = re.compile(
    r"^\s*\|\s*Sum\s*\|\s*(\d+)\s+(\d+)\s*\|\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\|\s*$"
)
_ID = re.compile(r"^id:\s*\((.*)\)\s*$")
_SCORES = re.compile(r"^Scores:\s*\(#C #S #D #I\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def parse_sclite_report(text: str) -> ScliteResult:
    """Parse the output of ``sclite ... -o all stdout`` (needs its rsum table and its pralign section)."""
    total = None
    per_utt: Dict[str, Tuple[int, int, int, int]] = {}
    current_id = None
    for line in text.splitlines():
        m = _SUM_RAW.match(line)
        if m:
            total = tuple(int(x) for x in m.groups())
            continue
        m = _ID.match(line)
        if m:
            current_id = m.group(1)
            continue
        m = _SCORES.match(line)
        if m and current_id is not None:
            per_utt[current_id] = tuple(int(x) for x in m.groups())  # type: ignore[assignment]
            current_id = None
    if total is None:
        raise ValueError("no 'Sum' row of raw counts found in the sclite report (was it run with -o all?)")
    n_sent, n_ref, corr, sub, dele, ins, err, serr = total
    return ScliteResult(n_sent, n_ref, corr, sub, dele, ins, err, serr, per_utt)


def run_sclite(
    ref_trn: os.PathLike | str,
    hyp_trn: os.PathLike | str,
    result_txt: os.PathLike | str,
    sclite: Optional[str] = None,
) -> ScliteResult:
    """Run ``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout``, write its report to ``result_txt``
    atomically and return the parsed counts. ``sclite`` is the binary (default: :func:`find_sclite`)."""
    binary = sclite or find_sclite()
    if binary is None:
        raise FileNotFoundError(
            "sclite not found on PATH nor at /usr/lib/sctk/bin/sclite; install SCTK (apt-get install sctk)"
        )
    cmd = [binary, "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-o", "all", "stdout"]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(
            f"sclite failed (exit {proc.returncode}) on {ref_trn} / {hyp_trn}: {proc.stderr.strip()[-2000:]}"
        )
    with atomic_open(result_txt) as f:
        f.write(proc.stdout)
    return parse_sclite_report(proc.stdout)


def compare_with_sclite(ours: Iterable[Tuple[str, int, int, int, int]], theirs: ScliteResult) -> Sequence[str]:
    """Differences between our per-utterance (trn id, C, S, D, I) counts and sclite's; empty when they agree."""
    problems = []
    seen = set()
    for trn_key, c, s, d, i in ours:
        seen.add(trn_key)
        got = theirs.per_utt.get(trn_key)
        if got is None:
            problems.append(f"{trn_key}: not in the sclite report")
        elif got != (c, s, d, i):
            problems.append(f"{trn_key}: ours C/S/D/I={c}/{s}/{d}/{i}, sclite {got[0]}/{got[1]}/{got[2]}/{got[3]}")
    for key in theirs.per_utt:
        if key not in seen:
            problems.append(f"{key}: in the sclite report but not scored by us")
    return problems

"""Kaldi data-directory files: ``<key> <value>`` lines, UTF-8, sorted by key in C (byte) order.

UTF-8 byte order equals Unicode code-point order, so Python's ``sorted`` on ``str`` keys gives exactly what
``LC_ALL=C sort`` gives; every writer here sorts that way so ``utils/validate_data_dir.sh`` accepts the output.
Writers are atomic (temp file + rename): a crash never leaves a half-written ``text`` or ``feats.scp`` that a
later stage would take as complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, Mapping, Tuple, Union

PathLike = Union[str, os.PathLike]


class NotUtf8Error(ValueError):
    """A data-dir file that is not UTF-8 (a GBK transcript, typically): the message names the file and line and
    gives the ``iconv`` command that converts it."""


BOM = "\ufeff"


def _not_utf8(path: PathLike, lineno: int, raw: bytes) -> NotUtf8Error:
    try:
        raw.decode("gb18030")
        guess, enc = "it reads as GBK/GB18030", "GB18030"
    except UnicodeDecodeError:
        guess, enc = "its encoding is unknown (try -f BIG5 for a Traditional Chinese file)", "GB18030"
    q, qtmp = shlex.quote(str(path)), shlex.quote(f"{path}.utf8")
    return NotUtf8Error(
        f"{path}: line {lineno} is not UTF-8 ({guess}); Kaldi data files must be UTF-8: convert it with "
        f"`iconv -f {enc} -t UTF-8 {q} > {qtmp} && mv {qtmp} {q}` and re-run")


def iter_kv(path: PathLike) -> Iterator[Tuple[str, str]]:
    """Yield ``(key, value)`` per non-empty line; value is the rest of the line after the first whitespace
    ("" when the line has only a key, e.g. an utterance whose text is empty).

    A line that is not UTF-8 raises :class:`NotUtf8Error` naming the file and line. A UTF-8 byte-order mark at
    the start of the file (Windows editors write one) is dropped with a warning, so that the first key is the
    utterance id and not ``\ufeff<id>``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _not_utf8(path, lineno, raw) from None
            if lineno == 1 and line.startswith(BOM):
                logging.warning(f"{path}: starts with a UTF-8 byte-order mark; ignoring it (utils/fix_data_dir.sh "
                                "removes it from the file)")
                line = line[1:]
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            yield parts[0], (parts[1].strip() if len(parts) > 1 else "")


def read_kv(path: PathLike) -> Dict[str, str]:
    """Read a Kaldi ``<key> <value>`` file into an ordered dict; a repeated key is an error naming the file."""
    out: Dict[str, str] = {}
    for key, value in iter_kv(path):
        if key in out:
            raise ValueError(f"{path}: duplicate key '{key}'; run utils/fix_data_dir.sh on its directory")
        out[key] = value
    return out


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temp file beside ``path``; on clean exit rename it over ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the final file the mode a plain open() would (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_kv(path: PathLike, items: Union[Mapping[str, str], Iterable[Tuple[str, str]]]) -> None:
    """Write ``<key> <value>`` lines sorted by key (C order), atomically. A value of "" writes the key alone."""
    pairs = items.items() if isinstance(items, Mapping) else items
    rows = sorted(((str(k), str(v)) for k, v in pairs), key=lambda kv: kv[0])
    with atomic_open(path) as f:
        for key, value in rows:
            f.write(f"{key} {value}\n" if value != "" else f"{key}\n")


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """``{utt: spk}`` -> ``{spk: "utt1 utt2 ..."}`` with utterances in sorted order."""
    spk2utts: Dict[str, list] = {}
    for utt in sorted(utt2spk):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utts.items()}


def write_data_dir(
    data_dir: PathLike,
    video: Mapping[str, str],
    text: Mapping[str, str],
    utt2spk: Mapping[str, str],
    extra: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Write a Kaldi data dir (video.scp, text, utt2spk, spk2utt and any ``extra`` files, e.g. landmarks.scp).

    Utterance ids must be speaker-prefixed so that sorting by utterance also groups speakers (Kaldi rule)."""
    data_dir = Path(data_dir)
    for utt, spk in utt2spk.items():
        if not utt.startswith(spk):
            raise ValueError(f"{data_dir}: utterance id '{utt}' is not prefixed by its speaker id '{spk}'")
    write_kv(data_dir / "video.scp", video)
    write_kv(data_dir / "text", text)
    write_kv(data_dir / "utt2spk", utt2spk)
    write_kv(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    for name, items in (extra or {}).items():
        write_kv(data_dir / name, items)


def speaker_stratified_subset(utt2spk: Mapping[str, str], size: Union[int, float]) -> list:
    """A deterministic subset of the utterances, spread over speakers in proportion to their utterances.

    ``size``: a count (int >= 1) or a fraction (0 < float <= 1) of all utterances. Each speaker gets its share
    (largest remainder, ties to the speaker listed first), taken evenly spaced through its sorted utterances,
    so a subset is the same on every run and does not favour the first recordings of a speaker. Returns the
    chosen utterance ids, sorted."""
    utts = sorted(utt2spk)
    total = len(utts)
    if isinstance(size, float) and not isinstance(size, bool):
        if not 0.0 < size <= 1.0:
            raise ValueError(f"subset fraction must be in (0, 1], got {size}")
        k = max(1, int(round(size * total)))
    else:
        k = int(size)
        if k < 1:
            raise ValueError(f"subset size must be >= 1, got {size}")
    if k >= total:
        return utts
    by_spk: Dict[str, list] = {}
    for utt in utts:
        by_spk.setdefault(utt2spk[utt], []).append(utt)
    spks = sorted(by_spk)
    exact = {s: k * len(by_spk[s]) / total for s in spks}
    share = {s: int(exact[s]) for s in spks}
    for s in sorted(spks, key=lambda s: -(exact[s] - share[s]))[: k - sum(share.values())]:
        share[s] += 1
    chosen = []
    for s in spks:
        n, members = share[s], by_spk[s]
        if n:
            # evenly spaced indices 0 .. len-1 (the centre of each of n equal bins)
            chosen += [members[int((i + 0.5) * len(members) / n)] for i in range(n)]
    return sorted(chosen)

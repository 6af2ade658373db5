"""How a ``python -m vallr_pin.bin.*`` entry point reports a user's mistake: one line, exit status 1.

A missing file, a transcript that is not UTF-8 or a mistyped config key is the user's to fix, and the message
(which file, which utterance, what to do) is all they need; a Python traceback above it only hides it. So an
entry point runs its work inside :func:`user_errors`, which logs the exception's message as one ``ERROR`` line
and exits 1. With ``--log-level DEBUG`` the exception propagates with its traceback, for bug reports.

Only exceptions that carry a message written for the user are caught: ``ValueError`` (bad content, including
``UnicodeDecodeError``) and ``OSError`` (missing or unreadable files) by default; anything else is a bug and
keeps its traceback. :func:`load_yaml` reads a config file the same way: a missing or malformed one is a
message naming the file. Example::

    def main(argv=None):
        args = get_parser().parse_args(argv)
        with user_errors(args.log_level):
            ...
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Any, Iterator, Optional, Tuple, Type

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]
USER_ERRORS: Tuple[Type[BaseException], ...] = (ValueError, OSError)


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` (INFO by default); DEBUG also shows the traceback of an error."""
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS,
                        help="Logging level; DEBUG also prints the Python traceback of an error.")


@contextlib.contextmanager
def user_errors(log_level: str = "INFO", catch: Tuple[Type[BaseException], ...] = USER_ERRORS) -> Iterator[None]:
    """Configure logging at ``log_level``; turn a ``catch`` exception raised inside into one ERROR line and
    ``SystemExit(1)``, unless ``log_level`` is DEBUG (then it propagates with its traceback)."""
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    try:
        yield
    except catch as e:
        if str(log_level).upper() == "DEBUG":
            raise
        message = " ".join(str(e).split("\n")) or type(e).__name__
        logging.error("%s", message)
        sys.exit(1)


def load_yaml(path: "os.PathLike | str", what: str = "config", expected: Optional[type] = dict, hint: str = "") -> Any:
    """The content of a YAML (or JSON: JSON is YAML) file an entry point was given, or a user error naming it.

    Missing: ``FileNotFoundError`` "<path>: <what> not found"; not UTF-8, not YAML, or (``expected``) not of that
    type at the top level (an empty file reads as ``expected()``): ``ValueError`` "<path>: not valid YAML at
    line N (<problem>)". ``hint`` (what to do, e.g. "give conf/decode_vsr.yaml") ends each message."""
    import yaml

    tail = f"; {hint}" if hint else ""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found{tail}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: {what} is not a UTF-8 text file{tail}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [""])[0]
        raise ValueError(f"{path}: {what} is not valid YAML{where} ({problem}){tail}") from None
    if data is None and expected is not None:
        return expected()
    if expected is not None and not isinstance(data, expected):
        raise ValueError(f"{path}: {what} must hold a {'mapping' if expected is dict else expected.__name__} at "
                         f"the top level, not a {type(data).__name__}{tail}")
    return data

"""User-facing errors: one line that names the file, row or option and what to do (``error: ...``, exit status 2,
no traceback, in every command); library users get a ``ValueError`` subclass."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Iterator


class QAInputError(ValueError):
    """Bad input or configuration from the user (a missing file, a malformed row, an impossible option)."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """The one error wrapper of the commands: a :class:`QAInputError` -> ``error: ...`` on stderr, exit status 2."""
    try:
        yield
    except QAInputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose usage mistakes are a :class:`QAInputError` (one line), not a usage block (ask, export, demo)."""

    def error(self, message: str) -> None:
        raise QAInputError(f"{message} (see `{self.prog} --help`)")

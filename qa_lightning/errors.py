"""User-facing errors: one line that names the file, row or option and what to do.

The CLI (``python -m qa_lightning``) prints a :class:`QAInputError` as ``error: <message>`` and exits with status 2
instead of a traceback; library users get a normal ``ValueError`` subclass.
"""

from __future__ import annotations

__all__ = ["QAInputError"]


class QAInputError(ValueError):
    """Bad input or configuration from the user (a missing file, a malformed row, an impossible option)."""

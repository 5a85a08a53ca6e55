"""The one error type for bad input data, shared by every reader, the builder and the engine."""
from __future__ import annotations

from typing import Optional


class FundusDataError(ValueError):
    """Bad input data: the message names the file, the line or record, and the field.

    Args:
        message: one line, ``'<file>:<line>: <field> = <value>: <what is wrong>'``.
        reason: short key under which a lenient run counts the skip (``'box_outside_image'``,
            ``'unknown_label'``, ...); ``None`` for errors that are never skipped.

    The command line prints the message as one line and exits 2 (``-v`` adds the traceback).
    """

    def __init__(self, message: str = '', reason: Optional[str] = None):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keeps ``reason`` across processes (pickling)
        return type(self), (str(self), self.reason)

"""Errors that the REST layer turns into answers: `FilterError` (400, in filters.py) and `NotFoundError` (404)."""

from __future__ import annotations


class NotFoundError(LookupError):
    """Something named in a request does not exist; the message says what."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"

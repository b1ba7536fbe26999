"""Stage `evaluate` (issue 4)."""

from __future__ import annotations

from hqgnn.errors import NotYetAvailableError


def evaluate(*args: object, **kwargs: object) -> object:
    """Not yet implemented: fails with a clear message instead of a broken import."""
    raise NotYetAvailableError("evaluate", 4)

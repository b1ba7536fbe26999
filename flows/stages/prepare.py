"""Stage `prepare` (issue 2)."""

from __future__ import annotations

from hqgnn.errors import NotYetAvailableError


def prepare(*args: object, **kwargs: object) -> object:
    """Not yet implemented: fails with a clear message instead of a broken import."""
    raise NotYetAvailableError("prepare", 2)

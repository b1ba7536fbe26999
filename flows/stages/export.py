"""Stage `export` (issue 4)."""

from __future__ import annotations

from hqgnn.errors import NotYetAvailableError


def export(*args: object, **kwargs: object) -> object:
    """Not yet implemented: fails with a clear message instead of a broken import."""
    raise NotYetAvailableError("export", 4)

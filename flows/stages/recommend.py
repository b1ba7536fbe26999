"""Stage `recommend` (issue 4)."""

from __future__ import annotations

from hqgnn.errors import NotYetAvailableError


def recommend(*args: object, **kwargs: object) -> object:
    """Not yet implemented: fails with a clear message instead of a broken import."""
    raise NotYetAvailableError("recommend", 4)

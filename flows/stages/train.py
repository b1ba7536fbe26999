"""Stage `train` (issue 3)."""

from __future__ import annotations

from hqgnn.errors import NotYetAvailableError


def train(*args: object, **kwargs: object) -> object:
    """Not yet implemented: fails with a clear message instead of a broken import."""
    raise NotYetAvailableError("train", 3)

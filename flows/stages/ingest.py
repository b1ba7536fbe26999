"""Stage `ingest` (issue 2)."""

from __future__ import annotations

from hqgnn.errors import NotYetAvailableError


def ingest(*args: object, **kwargs: object) -> object:
    """Not yet implemented: fails with a clear message instead of a broken import."""
    raise NotYetAvailableError("ingest", 2)

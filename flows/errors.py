"""Errors raised at the boundaries of the hqgnn application: each names the file, row or column and what was got.

The CLI prints ``str(error)`` as one line on standard error (no traceback unless ``--debug``).
"""

from __future__ import annotations


class HqgnnError(Exception):
    """Base of every error the CLI reports as a clear one-line message."""


class InputError(HqgnnError, ValueError):
    """Bad user input: a file that is empty, malformed, of the wrong format or encoding."""


class DataContractError(HqgnnError):
    """A stage output violated its data contract. ``failures`` lists each failed expectation."""

    def __init__(self, contract: str, failures: list[str]) -> None:
        self.contract = contract
        self.failures = failures
        lines = "\n".join(f"  - {f}" for f in failures)
        super().__init__(f"data contract {contract!r} failed ({len(failures)} expectation(s)):\n{lines}")


class PublishGateError(HqgnnError):
    """New codes were not published: a contract failed or the metric regressed."""

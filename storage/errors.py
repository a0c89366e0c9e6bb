"""Storage errors: the message says what to fix (a URL, a server that is down)."""

from __future__ import annotations


class StorageError(Exception):
    """Root of storage errors; messages are meant for the operator."""


class ClaimLost(StorageError):
    """Another owner took the run (its epoch moved on): this process must stop driving it."""


class DatabaseUnavailable(StorageError):
    pass

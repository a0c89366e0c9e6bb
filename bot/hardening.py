"""This process, kept to itself: what Baton does to its own process before it runs steps.
Imports nothing heavy (``baton --help`` and ``--dry-run`` stay fast)."""

from __future__ import annotations

import sys


def hide_environment() -> bool:
    """Make this process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``), so that steps
    running as the same user cannot read its ``/proc/<pid>/environ`` (its credentials)
    or attach to it; it also writes no core dumps. Steps themselves are dumpable again
    (``execve`` resets the flag). False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


_PR_SET_DUMPABLE = 4

"""Schedules: runs that come back on a cron or once at a time (``service`` arms and fires
them; ``rows`` and ``ops`` are their rows and the operations on them)."""

"""Alerts arriving from monitoring: webhook bodies and chat messages turned into
``engine.alerts.model.Alert`` records.

``bot.alerts.parsers`` holds one pure function per source (no I/O, no settings): the
webhook handlers call it with the decoded body and hand the result to the engine's
router, so everything a source's format means is decided in one module.
"""

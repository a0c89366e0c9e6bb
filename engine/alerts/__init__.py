"""Alerts: what monitoring sends, normalized (``model``), the matchers of triggers, and the
router that turns alerts into runs (dedup, rate limits, resolution)."""

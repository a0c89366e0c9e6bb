"""Playbooks: the format and its loading with lines, validation, params, templates,
durations, dry runs and the library of playbooks in one folder."""

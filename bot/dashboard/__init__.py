"""The dashboard: HTML pages of runs, playbooks, approvals, schedules, alerts and the
audit, served by ``baton serve``; ``auth`` decides who is looking."""

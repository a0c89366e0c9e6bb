"""The playbooks whose runs fill tests/schema3/rows.json (the rows name them, and the
engine that resumes those runs after an upgrade loads them)."""

from __future__ import annotations

PLAYBOOKS = {
    "quick": """
        name: quick
        steps:
          - id: hello
            action: log
            with: {message: hello}
    """,
    "broken": """
        name: broken
        steps:
          - id: fail
            action: shell
            with: {argv: ["false"]}
    """,
    "flaky": """
        name: flaky
        steps:
          - id: try
            action: shell
            with: {argv: ["false"]}
            retry: {attempts: 3, delay: 1h}
    """,
    "hold": """
        name: hold
        concurrency: {key: hold, limit: 1, on_limit: queue}
        steps:
          - id: nap
            action: wait
            with: {for: 1h}
    """,
    "nap": """
        name: nap
        steps:
          - id: nap
            action: wait
            with: {for: 1h}
    """,
    "slow": """
        name: slow
        timeout: 1m
        steps:
          - id: nap
            action: wait
            with: {for: 1h}
    """,
    "busy": """
        name: busy
        steps:
          - id: work
            action: shell
            with: {argv: [sleep, "30"]}
    """,
    "gate": """
        name: gate
        steps:
          - id: ask
            action: approval
            with: {approvers: {users: [bob, carol]}, min_approvals: 2, message: "go?", timeout: 1d}
          - id: after
            action: log
            needs: [ask]
            with: {message: approved}
    """,
}

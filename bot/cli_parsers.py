"""The parser of ``baton``: its commands, their options and their help. It imports only
the standard library and the other ``cli_*`` parsers, so that ``baton --help`` answers at
once."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot import cli_db, cli_hosts, cli_logs, cli_options, cli_worker

EPILOG = """\
settings come from the environment (BATON_DATABASE_URL, BATON_PLAYBOOKS, BATON_HOST,
BATON_PORT, BATON_API_TOKEN, ...); see the README for the full list.

examples:
  baton serve
  baton console --as alice
  baton run nightly-backup source=/etc keep=3
  baton run disaster-recovery --dry-run
  baton validate playbooks/
  baton runs --status failed
  baton db upgrade
  baton worker --labels dc1
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton",
        description="Baton: chat-ops in front of an orchestration engine. Playbooks of steps "
        "with dependencies, retries, timeouts, approvals; runs kept in a database.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser(
        "serve",
        help="run the engine and the HTTP API until stopped (SIGINT/SIGTERM; SIGHUP reloads "
        "playbooks)",
        description="Run the engine and the HTTP API (GET /healthz, /api/runs, /metrics) on "
        "BATON_HOST:BATON_PORT. An older database schema is upgraded first (unless "
        "BATON_AUTO_UPGRADE is false). Runs left active by a previous process resume. SIGHUP "
        "reloads the playbook folder; SIGINT/SIGTERM let running steps finish "
        "(BATON_DRAIN_TIMEOUT) and stop.",
    )

    console = sub.add_parser(
        "console",
        help="chat with Baton in the terminal (the chat grammar; `help` inside lists it)",
        description="Chat with Baton in this terminal, with the grammar of Slack and DMs: "
        "help, playbooks, describe P, run P [k=v ...] [--dry-run], status [RUN], cancel RUN, "
        "retry RUN [--from-failed], approve ID [comment], reject ID [reason], "
        'schedule P "CRON" | in 30m | at 18:00 [k=v ...], schedules, unschedule ID, '
        "history [P], alerts [OUTCOME], hosts [PATTERN], stats [P]. Runs "
        "started here show "
        "their progress live, approval prompts included; runs started by alerts and schedules, "
        "and failed runs, are announced in one line each (`quiet` toggles that). The "
        "console drives only the runs "
        "it starts; cancel, retry and decisions reach runs driven elsewhere through their "
        "inbox. Commands are read from standard input, so a script can pipe them in; at the "
        "end of input (or `quit`), the console waits until its runs have finished or wait "
        "for a person, then exits 0, leaving those still in progress to `baton serve`.",
    )
    cli_options.add_as_option(console, "who is chatting")

    run = sub.add_parser(
        "run",
        help="run a playbook here, with live progress",
        description="Run a playbook in this process with live progress. The run is stored "
        "like any other (see `baton runs`). Exit status: 0 succeeded, 1 failed, cancelled or "
        "timed out, 2 bad input.",
    )
    run.add_argument("playbook", help="playbook name (see `baton playbooks`)")
    run.add_argument("params", nargs="*", metavar="KEY=VALUE", help="parameters, e.g. env=prod")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (resolved params, step order, parallel groups); run nothing",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="start the run and return at once, printing its id; a `baton serve` carries it "
        "out (the next one to start, if none runs now)",
    )
    cli_options.add_as_option(run, "who is asking")

    val = sub.add_parser(
        "validate",
        help="check playbook files; exit 1 on any problem",
        description="Check playbook files: YAML syntax, schema, actions and their inputs, "
        "needs (unknown, cyclic), duplicate ids, templates and the names they use; and the "
        "inventory BATON_CONFIG names. Every problem is printed with file and line.",
    )
    val.add_argument(
        "paths", nargs="*", type=Path, help="files or folders (default: BATON_PLAYBOOKS)"
    )

    sub.add_parser(
        "playbooks",
        help="list the playbooks with their descriptions",
        description="List the playbooks in BATON_PLAYBOOKS.",
    )

    runs = sub.add_parser(
        "runs", help="show recent runs", description="Show recent runs, newest first."
    )
    runs.add_argument(
        "--limit", type=cli_options.whole_number(1, 1000), default=20, help="how many (default 20)"
    )
    runs.add_argument("--playbook", help="only runs of this playbook")
    runs.add_argument(
        "--status",
        choices=("queued", "running", "waiting", "succeeded", "failed", "cancelled", "timed_out"),
        help="only runs with this status",
    )
    runs.add_argument("--cursor", help="the page after the one whose last line names it")

    sched = sub.add_parser(
        "schedule",
        help='schedule a playbook: "CRON", in 30m, or at 18:00',
        description='Schedule a playbook: on a cron (`baton schedule backup "0 2 * * *" '
        "keep=7`; 5 fields, or 6 with seconds first), once after a delay (`in 30m`), or once "
        "at a time of day (`at 18:00`, in --timezone) or an ISO time. Params are checked "
        "now. A running `baton serve` picks the schedule up within BATON_SCHEDULE_POLL "
        "seconds.",
    )
    sched.add_argument("playbook", help="playbook name")
    sched.add_argument(
        "when",
        nargs=argparse.REMAINDER,
        metavar='"CRON" | in DURATION | at TIME',
        help="when, then KEY=VALUE params (options may come anywhere)",
    )
    sched.add_argument(
        "--timezone",
        default=None,
        help="time zone of the cron or the time of day (default BATON_TIMEZONE)",
    )
    cli_options.add_as_option(sched, "who asks")

    sub.add_parser(
        "schedules",
        help="list schedules with their next and last fire",
        description="List schedules, the next due first.",
    )

    unsched = sub.add_parser(
        "unschedule",
        help="remove a schedule made at run time",
        description="Remove a schedule by id (see `baton schedules`). "
        "Schedules declared in a playbook go away with their trigger.",
    )
    unsched.add_argument("id", help="schedule id")
    cli_options.add_as_option(unsched, "who asks")

    add_retry_parser(sub)
    cli_db.add_parser(sub)
    cli_logs.add_parser(sub)
    cli_hosts.add_parser(sub)
    cli_worker.add_parser(sub)
    return parser


def add_retry_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = sub.add_parser(
        "retry",
        help="run a failed, cancelled or timed-out run again, here, with live progress",
        description="Start a new attempt of a finished run and drive it here with live "
        "progress: succeeded steps keep their outputs, the rest run again. --from-failed: "
        "only the failed steps and what depends on them run again. Exit status: 0 "
        "succeeded, 1 failed again, 2 refused (the run is active or succeeded).",
    )
    retry.add_argument("run_id", metavar="RUN")
    retry.add_argument(
        "--from-failed",
        action="store_true",
        help="restart at the failed steps (and their dependents); other steps keep results",
    )
    cli_options.add_as_option(retry, "who asks")

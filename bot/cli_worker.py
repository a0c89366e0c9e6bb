"""``baton worker --labels dc1[,dc2]``: a process that runs the steps playbooks send to
its labels (``runs_on``), from PostgreSQL's job queue (``engine.runs.worker``). Like
``bot.cli``, it imports the engine inside the command, so that ``baton --help`` stays
quick."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING

from bot import cli_options

if TYPE_CHECKING:
    from bot.settings import Settings
    from engine.secrets import SecretBox

log = logging.getLogger("baton.worker")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = sub.add_parser(
        "worker",
        help="run the steps sent to these labels (`runs_on:`), from PostgreSQL's job queue",
        description="Take the steps whose `runs_on` is one of LABELS from the job queue in "
        "BATON_DATABASE_URL (PostgreSQL only), run them here and report their ends to their "
        "runs. Needs the database and, for steps whose inputs hold secrets, the servers' key "
        "(BATON_SECRET_KEY or BATON_KEY_FILE); reads no playbook, but the inventory of "
        "BATON_CONFIG and BATON_SSH_KNOWN_HOSTS / BATON_SSH_KEY for its ssh steps. "
        "SIGINT/SIGTERM: no more "
        "steps taken, running ones get BATON_DRAIN_TIMEOUT seconds to finish.",
    )
    worker.add_argument(
        "--labels",
        required=True,
        type=_labels,
        help="comma-separated labels this worker serves, e.g. dc1 or dc1,gpu",
    )
    worker.add_argument(
        "--concurrency",
        type=cli_options.whole_number(1, 100),
        default=4,
        help="steps run at once (default 4)",
    )


def _labels(text: str) -> list[str]:
    """Labels as a step's ``runs_on`` names them, or argparse's own clear error."""
    import re

    from engine.playbooks.model import LABEL_RULE, WORKER_LABEL

    labels = [part.strip() for part in text.split(",") if part.strip()]
    if not labels:
        raise argparse.ArgumentTypeError("give at least one label, e.g. --labels dc1")
    bad = [label for label in labels if not re.fullmatch(WORKER_LABEL, label)]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, bad))}: {LABEL_RULE}")
    return list(dict.fromkeys(labels))


def run(settings: Settings, args: argparse.Namespace) -> int:
    from engine.playbooks.inputchecks import NEEDS_POSTGRES
    from storage.db import normalize_url

    if normalize_url(settings.database_url).get_backend_name() != "postgresql":
        print(
            f"baton: {NEEDS_POSTGRES}; BATON_DATABASE_URL is {settings.database_url}: point "
            "it at the PostgreSQL database of the Baton servers",
            file=sys.stderr,
        )
        return 2
    return asyncio.run(_work(settings, args.labels, args.concurrency))


async def _work(settings: Settings, labels: list[str], concurrency: int) -> int:
    from bot.app import masked_logs, step_environment
    from engine.actions.registry import Registry
    from engine.fleet import inventory
    from engine.runs.worker import StepWorker, WorkerOptions
    from engine.secrets import Masker
    from storage.store import Store

    fleet = inventory.from_config(settings.config)  # what an ssh step's `host:` names
    inventory.activate(fleet)
    log.info("%s", fleet.summary())
    registry = Registry.from_entry_points()
    registry.configure("ssh", known_hosts=settings.ssh_known_hosts, key_file=settings.ssh_key)
    box = _secret_box(settings)
    credentials = [*settings.credentials(), *([box.key] if box else [])]
    options = WorkerOptions(
        name=f"{socket.gethostname()}:{os.getpid()}",
        labels=labels,
        concurrency=concurrency,
        drain=settings.drain_timeout,
        heartbeat=settings.worker_heartbeat,
    )
    with masked_logs(Masker(credentials)):
        async with Store(settings.database_url, idle_limit=settings.idle_limit) as store:
            worker = StepWorker(
                database_url=settings.database_url,
                store=store,
                registry=registry,
                secret_box=box,
                env=step_environment(settings),
                options=options,
                hosts=inventory.host,
            )
            await worker.run()
    return 0


def _secret_box(settings: Settings) -> SecretBox | None:
    """The servers' key when this worker was given it (never a new key file: a key
    made here would open nothing)."""
    from engine.secrets import SecretBox

    if settings.secret_key is not None:
        return SecretBox.from_settings(settings.secret_key.get_secret_value(), settings.key_file)
    if settings.key_file.is_file():
        return SecretBox.from_settings(None, settings.key_file)
    log.info(
        "no BATON_SECRET_KEY nor key file (%s): steps whose inputs hold secrets will fail "
        "here, saying so",
        settings.key_file,
    )
    return None

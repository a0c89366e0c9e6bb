"""Opening SSH connections for the ``ssh`` action: strict host keys, one key source, and
errors that say what to fix.

**Host keys are checked strictly** against one known_hosts file (``BATON_SSH_KNOWN_HOSTS``,
default ``~/.ssh/known_hosts``). A host whose key is not in it, or whose key changed, is
refused with the key's fingerprint and the command that trusts it; Baton never adds a key
by itself (trust on first use would let a step run on an impostor).

**The client key** is ``BATON_SSH_KEY`` when set, else the host's
``ansible_ssh_private_key_file``, else what ``ssh`` itself would use: the agent
(``SSH_AUTH_SOCK``) and the default keys in ``~/.ssh``. ``~/.ssh/config`` is not read:
what a step does must not depend on the account Baton happens to run under.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from engine.errors import ActionError

DEFAULT_PORT = 22
CONNECT_TIMEOUT = 15.0  # seconds to reach the host and log in
KEEPALIVE = 30.0  # seconds between keepalives, so a dead peer is noticed


@dataclass(frozen=True)
class Target:
    """Where one step connects: a pool key (the same target shares a connection)."""

    name: str
    """What the step said (``web1``, ``10.0.0.5``): the name in messages."""
    address: str
    port: int
    user: str | None
    key_file: str | None

    def where(self) -> str:
        at = f"{self.user}@" if self.user else ""
        shown = f"{at}{self.address}:{self.port}"
        return shown if self.name == self.address else f"{self.name} ({shown})"


class _Client(asyncssh.SSHClient):
    """Keeps the key a host offered when known_hosts does not trust it (for the message),
    and refuses it: asyncssh then fails the connection."""

    def __init__(self) -> None:
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = key
        return False


def _known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """The known_hosts file as asyncssh reads it; a missing file trusts nobody."""
    try:
        return asyncssh.read_known_hosts(str(path))
    except FileNotFoundError:
        return asyncssh.import_known_hosts("")
    except (OSError, ValueError) as exc:
        raise ActionError(
            f"cannot read the ssh known_hosts file {path} (BATON_SSH_KNOWN_HOSTS): {exc}"
        ) from None


def _keys(target: Target) -> list[asyncssh.SSHKey] | tuple[()]:
    """The client key from ``target.key_file``, or ``()``: asyncssh's defaults (agent,
    then the default key files)."""
    if target.key_file is None:
        return ()
    path = Path(target.key_file).expanduser()
    try:
        return [asyncssh.read_private_key(str(path))]
    except asyncssh.KeyImportError as exc:
        if "passphrase" not in str(exc).lower():
            raise ActionError(_unreadable(path, exc)) from None
        raise ActionError(
            f"the ssh key {path} is protected by a passphrase, which Baton cannot type: "
            "load it into an ssh agent (SSH_AUTH_SOCK) and unset BATON_SSH_KEY, or use a "
            "key without a passphrase"
        ) from None
    except (OSError, asyncssh.KeyEncryptionError) as exc:
        raise ActionError(_unreadable(path, exc)) from None


def _unreadable(path: Path, exc: Exception) -> str:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return (
        f"cannot read the ssh key {path} (BATON_SSH_KEY or the host's "
        f"ansible_ssh_private_key_file): {reason}"
    )


async def connect(target: Target, known_hosts: Path) -> asyncssh.SSHClientConnection:
    """Log in to ``target``, checking its host key against ``known_hosts``; every failure
    is an ``ActionError`` that names the host and what to do."""
    trusted = _known_hosts(known_hosts)
    client = _Client()
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client,
            target.address,
            port=target.port,
            username=target.user or (),  # (): Baton's own user name, as ssh does
            known_hosts=trusted,
            client_keys=_keys(target),
            config=None,
            connect_timeout=CONNECT_TIMEOUT,
            keepalive_interval=KEEPALIVE,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise ActionError(_untrusted(target, known_hosts, trusted, client.offered)) from None
    except asyncssh.PermissionDenied:
        raise ActionError(_refused(target)) from None
    except (OSError, TimeoutError, asyncssh.Error) as exc:
        raise ActionError(f"cannot connect to ssh host {target.where()}: {_reason(exc)}") from None
    return conn


def _untrusted(
    target: Target,
    path: Path,
    trusted: asyncssh.SSHKnownHosts,
    offered: asyncssh.SSHKey | None,
) -> str:
    port = None if target.port == DEFAULT_PORT else target.port
    known = trusted.match(target.address, "", port)[0]
    key = offered.get_algorithm() if offered else "key"
    fingerprint = f" {key} {offered.get_fingerprint()}" if offered else ""
    scan = f"ssh-keyscan -p {target.port} {target.address} >> {path}"
    if known:
        return (
            f"the host key of ssh host {target.where()} CHANGED: it offered{fingerprint}, "
            f"which is not the key {path} holds for it. This is what an impostor looks like: "
            "ask whoever runs the host whether it was reinstalled, and only then remove the "
            f"old line (ssh-keygen -R {_entry(target)} -f {path}) and add the new one "
            f"({scan}), comparing the fingerprint"
        )
    return (
        f"ssh host {target.where()} is not in the known_hosts file {path} "
        f"(BATON_SSH_KNOWN_HOSTS); it offered{fingerprint}. To trust it, check that "
        f"fingerprint with whoever runs the host (ssh-keygen -lf on its host key), then run: "
        f"{scan}"
    )


def _entry(target: Target) -> str:
    """The host as known_hosts names it (``[addr]:port`` off port 22)."""
    if target.port == DEFAULT_PORT:
        return target.address
    return f"'[{target.address}]:{target.port}'"


def _refused(target: Target) -> str:
    if target.key_file:
        tried = f"the key {target.key_file}"
        fix = f"add {target.key_file}.pub to the user's ~/.ssh/authorized_keys on the host"
    else:
        tried = "the ssh agent's keys and the default keys in ~/.ssh"
        fix = "set BATON_SSH_KEY (or the host's ansible_ssh_private_key_file) to a key it accepts"
    user = target.user or "the default user"
    return (
        f"ssh host {target.where()} refused {tried} for {user}: {fix}, "
        "or set the right user (with: user, or the inventory's ansible_user)"
    )


def _reason(exc: BaseException) -> str:
    """A short cause for a failed connection, with what to check."""
    if isinstance(exc, socket.gaierror):
        return (
            f"unknown host name ({exc.strerror}): it is neither an inventory host nor a name "
            "DNS knows; check the spelling, the inventory (ansible_host) or with: host"
        )
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused; check the port (with: port, ansible_port) and that sshd runs"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s; check the address, the port and firewalls"
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}; check the address and the port"
    return str(exc) or type(exc).__name__

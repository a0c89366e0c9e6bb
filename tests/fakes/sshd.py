"""A real OpenSSH server for the ``ssh`` action's tests: Debian's ``/usr/sbin/sshd`` on
127.0.0.1, with host and client keys made by ``ssh-keygen`` in a temporary folder.

The server logs at VERBOSE to a file, so a test can count the connections it accepted
(``connections()``) rather than guess them from timing.
"""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PRIVSEP = Path("/run/sshd")  # compiled into Debian's sshd; the package's unit creates it
START_WITHIN = 10.0  # seconds sshd may take to accept connections
_ACCEPTED = "Accepted publickey for"


def keygen(path: Path, comment: str) -> Path:
    """A fresh ed25519 key pair at ``path`` (private) and ``path``.pub; returns ``path``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sshd:
    """A running sshd: where it listens, who may log in with which key."""

    folder: Path
    port: int
    user: str
    host_key: Path
    client_key: Path
    """Authorized: its public key is in the server's AuthorizedKeysFile."""
    stranger_key: Path
    """Not authorized: the server refuses it."""
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def host_key_line(self) -> str:
        """This server's line for a known_hosts file (what ``ssh-keyscan -p`` prints)."""
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def fingerprint(self) -> str:
        out = subprocess.run(
            ["ssh-keygen", "-l", "-f", str(self.host_key.with_suffix(".pub"))],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return out.split()[1]  # "256 SHA256:... comment (ED25519)"

    def connections(self) -> int:
        """How many logins the server accepted so far."""
        return self.log.read_text(errors="replace").count(_ACCEPTED)

    def sessions(self) -> list[int]:
        """The pids of the server's per-connection processes (children of the listener)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _config(
    folder: Path, port: int, host_key: Path, authorized: Path, extra: tuple[str, ...] = ()
) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {authorized}",
            f"PidFile {folder / 'sshd.pid'}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "LogLevel VERBOSE",
            "MaxSessions 20",
            *extra,
            "",
        ]
    )


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the port until sshd accepts a connection, failing after START_WITHIN seconds.

    A blocking connect with a short timeout is the wait itself: no fixed sleep."""
    deadline = time.monotonic() + START_WITHIN
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.settimeout(2)
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd not listening on {port}: {log.read_text()}") from None
            time.sleep(0.05)  # the poll interval between two connection attempts


def start_sshd(folder: Path, extra_config: tuple[str, ...] = ()) -> Sshd:
    """sshd on a free port of 127.0.0.1, listening when this returns; ``extra_config``:
    more sshd_config lines (the fleet bench's ``MaxStartups 100``)."""
    PRIVSEP.mkdir(mode=0o755, exist_ok=True)  # no systemd here to make it at boot
    folder.mkdir(parents=True, exist_ok=True)
    host_key = keygen(folder / "host_key", "baton-test-host")
    client_key = keygen(folder / "client_key", "baton-test-client")
    stranger_key = keygen(folder / "stranger_key", "baton-test-stranger")
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(_config(folder, port, host_key, authorized, extra_config))
    log = folder / "sshd.log"
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config), "-E", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, log)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Sshd(folder, port, getpass.getuser(), host_key, client_key, stranger_key, log, process)

"""The key file: where Baton keeps the Fernet key of secret params when
``BATON_SECRET_KEY`` is unset, created on first start.

A key file is whole or absent, never half-written: the key is written to a temporary
file in the same folder, synced to disk, and linked into place only then (a link, not a
rename, so that of two processes starting at once the second finds the first's key and
uses it instead of replacing it). A full disk or a folder Baton may not write stops the
start with the path and what to do, and leaves nothing behind. An empty key file, as
versions before this one left on a full disk, never held a key: it is replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

from engine.errors import BatonError

GENERATE = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)

NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})

log = logging.getLogger(__name__)


def read_or_create(path: Path) -> str:
    """The key's text from ``path``, created (0600) when missing or empty."""
    try:
        text = _read(path)
    except FileNotFoundError:
        return _create(path, replace=False)
    if text:
        return text
    return _replace_empty(path)


def _replace_empty(path: Path) -> str:
    """Replace an empty key file, once: under a lock on it, and only if it is still the
    empty file (a process that waited for the lock finds the new key and uses it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return read_or_create(path)
    except OSError as exc:
        raise _refused(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        mine, now = os.fstat(fd), os.stat(path)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino) or now.st_size:
            return _read(path)  # replaced meanwhile
        log.warning("secret key file %s is empty (an interrupted write): writing a new key", path)
        return _create(path, replace=True)
    except OSError as exc:
        raise _refused(path, exc) from None
    finally:
        os.close(fd)


def _read(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise BatonError(f"cannot read the secret key file {path}: {exc}") from None
    if mode & 0o077:
        log.warning("secret key file %s is readable by others; chmod 600 it", path)
    return text.strip()


def _refused(path: Path, exc: OSError) -> BatonError:
    what = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        fix = f"free some space on the disk of {path.parent}"
    else:
        fix = f"let Baton write in {path.parent}"
    return BatonError(
        f"cannot create the secret key file {path}: {what}. Either {fix}, or set "
        f"BATON_KEY_FILE to a file in a folder Baton may write, or set BATON_SECRET_KEY "
        f"(generate a key with: {GENERATE})"
    )


def _create(path: Path, *, replace: bool) -> str:
    key = Fernet.generate_key()
    temp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:  # mkstemp makes the file 0600
            os.write(fd, key + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:  # another process created it meanwhile: use theirs
                return _read(path)
            except OSError as exc:
                if exc.errno not in NO_LINKS:
                    raise
                if path.exists():  # a file system without hard links: as close as it gets
                    return _read(path)
                os.replace(temp, path)
        _sync_folder(path.parent)
    except OSError as exc:
        raise _refused(path, exc) from None
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    log.info("created secret key file %s; back it up, stored secret params need it", path)
    return key.decode("ascii")


def _sync_folder(folder: Path) -> None:
    """Make the new name durable (a crash right after must not lose the file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

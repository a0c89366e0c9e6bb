"""The key file: created whole or not at all, with a message that says what to do."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from engine import secrets
from engine.errors import BatonError


def valid(text: str) -> bool:
    Fernet(text.encode())  # raises on anything but a key
    return True


def test_a_full_disk_stops_the_start_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state" / "secret.key"

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(BatonError) as caught:
        secrets.SecretBox.from_settings(None, path)
    message = str(caught.value)
    assert f"cannot create the secret key file {path}: No space left on device" in message
    assert "free some space" in message and "BATON_SECRET_KEY" in message
    assert list(path.parent.iterdir()) == [], "no empty key, no temporary file"

    monkeypatch.undo()  # space again: the next start creates the key
    box = secrets.SecretBox.from_settings(None, path)
    assert box.key == path.read_text().strip() and valid(box.key)


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")
def test_a_folder_that_cannot_be_made_is_named() -> None:
    """The key file's folder is made at start: in a place nobody may write (here /sys,
    where even root may not), the message names the path and the ways out."""
    path = Path("/sys/baton-test/secret.key")
    with pytest.raises(BatonError) as caught:
        secrets.SecretBox.from_settings(None, path)
    message = str(caught.value)
    assert message.startswith(f"cannot create the secret key file {path}: ")
    assert "let Baton write in /sys/baton-test" in message
    assert "BATON_KEY_FILE" in message and "BATON_SECRET_KEY" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_read_only_folder_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(BatonError, match=r"Permission denied.*let Baton write in"):
            secrets.SecretBox.from_settings(None, folder / "secret.key")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_an_empty_key_file_left_by_an_interrupted_write_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    path.touch(mode=0o600)
    box = secrets.SecretBox.from_settings(None, path)
    assert valid(box.key) and path.read_text().strip() == box.key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.SecretBox.from_settings(None, path).key == box.key, "kept from then on"


def test_a_key_another_process_wrote_first_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is linked into place, never renamed over: of two processes starting at
    once, the second takes the first's key."""
    path = tmp_path / "secret.key"
    theirs = Fernet.generate_key().decode()
    link = os.link

    def first_wins(source: str, target: Path) -> None:
        Path(target).write_text(theirs + "\n")  # the other process, just before us
        link(source, target)

    monkeypatch.setattr(os, "link", first_wins)
    assert secrets.SecretBox.from_settings(None, path).key == theirs
    assert path.read_text().strip() == theirs
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from engine import secrets
from engine.errors import BatonError


@pytest.mark.parametrize(
    ("obj", "masked"),
    [
        pytest.param("token=hunter22!", "token=***!", id="text"),
        pytest.param(
            {"out": {"lines": ["a hunter22 b", ("hunter22", 3)], "rc": 0, "ok": True, "n": None}},
            {"out": {"lines": ["a *** b", ("***", 3)], "rc": 0, "ok": True, "n": None}},
            id="nested",
        ),
        pytest.param({"hunter22": "key"}, {"***": "key"}, id="dict-keys"),
        pytest.param(
            "Bearer s3cr3t-long-value and s3cr3t",
            "Bearer *** and ***",
            id="longest-first",
        ),
        pytest.param("hunter22hunter22", "******", id="adjacent"),
        pytest.param("a+b.c (x)", "***", id="regex-metacharacters-are-literal"),
        pytest.param("ab and ab", "ab and ab", id="too-short-to-mask"),
        pytest.param(42, 42, id="not-a-string"),
    ],
)
def test_masker_masks_every_occurrence(obj: Any, masked: Any) -> None:
    masker = secrets.Masker(["hunter22", "s3cr3t", "s3cr3t-long-value", "a+b.c (x)", "ab"])
    assert masker.mask(obj) == masked


def test_masker_copies_and_leaves_the_input_alone() -> None:
    original = {"out": ["hunter22"]}
    masked = secrets.Masker(["hunter22"]).mask(original)
    assert masked == {"out": ["***"]}
    assert original == {"out": ["hunter22"]}


def test_masker_without_secrets_returns_the_object_itself() -> None:
    obj = {"out": ["anything"]}
    masker = secrets.Masker([])
    assert not masker
    assert masker.mask(obj) is obj
    assert secrets.Masker(["", "ab"]).mask(obj) is obj  # nothing long enough to mask


def test_masker_with_values_extends() -> None:
    base = secrets.Masker(["hunter22"])
    more = base.with_values(["p4ssw0rd"])
    assert more.mask_text("hunter22 p4ssw0rd") == "*** ***"
    assert base.mask_text("hunter22 p4ssw0rd") == "*** p4ssw0rd"


def test_secret_box_roundtrip(tmp_path: Path) -> None:
    box = secrets.SecretBox.from_settings(Fernet.generate_key().decode(), tmp_path / "unused")
    values = {"db_password": "hunter22", "token": "ünïcode ✓"}
    token = box.encrypt(values)
    assert "hunter22" not in token
    assert box.decrypt(token) == values
    assert not (tmp_path / "unused").exists()


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "deeper" / "secret.key"
    box = secrets.SecretBox.from_settings(None, key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_text().strip().encode())  # a valid key
    token = box.encrypt({"a": "b"})

    again = secrets.SecretBox.from_settings(None, key_file)
    assert again.decrypt(token) == {"a": "b"}


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("not-a-key", id="garbage"),
        pytest.param("Zm9v", id="too-short"),
        pytest.param("ключ", id="not-ascii"),
    ],
)
def test_bad_key_says_how_to_make_one(tmp_path: Path, key: str) -> None:
    with pytest.raises(BatonError) as info:
        secrets.SecretBox.from_settings(key, tmp_path / "k")
    message = str(info.value)
    assert message.startswith("BATON_SECRET_KEY is not a valid Fernet key")
    assert (
        'python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())"' in message
    )


def test_bad_key_file_names_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text("garbage\n")
    with pytest.raises(BatonError, match=f"^key file {key_file} is not a valid Fernet key"):
        secrets.SecretBox.from_settings(None, key_file)


def test_decrypt_with_another_key_says_what_happened(tmp_path: Path) -> None:
    token = secrets.SecretBox.from_settings(None, tmp_path / "one").encrypt({"a": "b"})
    other = secrets.SecretBox.from_settings(None, tmp_path / "two")
    with pytest.raises(
        BatonError, match=r"^cannot decrypt stored secrets: BATON_SECRET_KEY changed\?"
    ):
        other.decrypt(token)


def test_load_secrets_from_env_and_directory(tmp_path: Path) -> None:
    (tmp_path / "db_password").write_text("hunter22\n")
    (tmp_path / "windows_style").write_text("crlf\r\n")
    (tmp_path / "no_newline").write_text("exact")
    (tmp_path / "shared").write_text("from-file")
    (tmp_path / ".hidden").write_text("skip me")
    (tmp_path / "..data").mkdir()  # how Kubernetes mounts secrets
    (tmp_path / "..data" / "inner").write_text("skip me too")
    (tmp_path / "subdir").mkdir()
    env = {
        "SECRET_PAGERDUTY_TOKEN": "pd-123",
        "SECRET_SHARED": "from-env",
        "SECRET_": "no name",
        "HOME": "/root",
        "MY_SECRET_X": "not a secret variable",
    }
    assert secrets.load_secrets(env, tmp_path) == {
        "db_password": "hunter22",
        "windows_style": "crlf",
        "no_newline": "exact",
        "shared": "from-env",
        "pagerduty_token": "pd-123",
    }


@pytest.mark.parametrize(
    "directory",
    [pytest.param(None, id="none"), pytest.param("missing", id="missing-dir")],
)
def test_load_secrets_without_directory(tmp_path: Path, directory: str | None) -> None:
    path = tmp_path / directory if directory else None
    assert secrets.load_secrets({"SECRET_A_B": "v-long"}, path) == {"a_b": "v-long"}


def test_load_secrets_refuses_values_too_short_to_mask(tmp_path: Path) -> None:
    """A secret of 1 to 3 characters could not be masked without masking ordinary text:
    each one is named (never its value), and an empty one hides nothing and passes."""
    (tmp_path / "pin").write_text("42\n")
    (tmp_path / "db_password").write_text("hunter22\n")
    env = {"SECRET_API_KEY": "k1x", "SECRET_EMPTY": "", "SECRET_TOKEN": "long-enough"}
    with pytest.raises(BatonError) as caught:
        secrets.load_secrets(env, tmp_path)
    message = str(caught.value)
    assert message == (
        "SECRET_API_KEY is 3 characters long; a secret needs at least 4 (a shorter one "
        "could not be masked in outputs and logs without masking ordinary text); "
        f"secret file {tmp_path / 'pin'} is 2 characters long; a secret needs at least 4 "
        "(a shorter one could not be masked in outputs and logs without masking ordinary "
        "text). Use longer values."
    )
    assert "k1x" not in message and "42" not in message
    del env["SECRET_API_KEY"]
    (tmp_path / "pin").write_text("4242")
    assert secrets.load_secrets(env, tmp_path)["empty"] == ""


def test_batons_log_lines_mask_its_credentials(caplog: pytest.LogCaptureFixture) -> None:
    from bot.app import masked_logs

    with masked_logs(secrets.Masker(["api-token-123"])):
        logging.getLogger("baton").warning("sent %s to %s", "api-token-123", "db")
    logging.getLogger("baton").warning("after: %s", "api-token-123")
    assert [r.getMessage() for r in caplog.records] == [
        "sent *** to db",
        "after: api-token-123",  # the filter is gone with the context
    ]

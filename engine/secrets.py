"""Secrets: where they come from, how they are kept out of sight, how they are stored.

- ``load_secrets`` gathers the secrets templates see as ``secrets.NAME``: environment
  variables ``SECRET_<NAME>`` (name lower-cased) and files in a secrets directory, one
  file per secret named after it, as Docker (``/run/secrets``) and Kubernetes mount them.
  An environment variable wins over a file of the same name (as in pydantic-settings).
- ``Masker`` replaces every secret value found in outputs, logs and messages with ``***``.
- ``SecretBox`` encrypts the values of secret params before they reach the database, with
  a Fernet key from ``BATON_SECRET_KEY`` or a key file Baton creates on first start.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from engine.errors import BatonError

MASK = "***"
MIN_SECRET_LEN = 4
"""Shortest secret Baton accepts. A shorter value cannot be masked without masking
ordinary text too (every ``ab`` of an output), so it is refused where it comes in:
``SECRET_<NAME>`` and secret files (``load_secrets``), secret params (``engine.playbooks.params``)
and Baton's own secret settings (``bot.settings``). Empty is allowed: it hides nothing."""
_MASKED_FROM = 3  # the Masker's floor: also masks 3-character secrets of runs stored before
ENV_PREFIX = "SECRET_"
_GENERATE = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)

log = logging.getLogger(__name__)


class Masker:
    """Masks secret values inside strings of any JSON-like structure.

    Values shorter than 3 characters are ignored (masking every ``"a"`` would make output
    unreadable); new secrets are at least ``MIN_SECRET_LEN`` long (see ``too_short``).
    Longer values are matched first, so a secret that contains another is masked whole.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = frozenset(v for v in values if isinstance(v, str) and len(v) >= _MASKED_FROM)
        ordered = sorted(self._values, key=lambda v: (-len(v), v))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def with_values(self, values: Iterable[str]) -> Masker:
        """A new masker that also masks ``values``."""
        return Masker([*self._values, *values])

    def mask_text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def present_in(self, obj: Any) -> list[str]:
        """The secret values that occur in the strings of ``obj`` (dict keys included):
        what whoever receives ``obj`` must mask in turn."""
        if self._pattern is None:
            return []
        found: set[str] = set()
        for text in _texts(obj):
            found.update(self._pattern.findall(text))
        return sorted(found)

    def mask(self, obj: Any) -> Any:
        """A copy of ``obj`` with secrets masked in every string (dict keys included).

        Without secrets, ``obj`` itself is returned, uncopied.
        """
        if self._pattern is None:
            return obj
        return self._mask(obj)

    def _mask(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.mask_text(obj)
        if isinstance(obj, Mapping):
            return {self._mask(k): self._mask(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._mask(v) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._mask(v) for v in obj)
        return obj


def _texts(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for k, v in obj.items() for t in (*_texts(k), *_texts(v))]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _texts(v)]
    return []


class SecretBox:
    """Fernet encryption of secret param values (``dict[str, str]``) for the database."""

    def __init__(self, fernet: Fernet, key: str = "") -> None:
        self._fernet = fernet
        self.key = key
        """The key's text, so that it can be masked like a secret ("" when not known)."""
        self._mac_key = hashlib.sha256(b"baton fingerprint\0" + key.encode()).digest()

    @classmethod
    def from_settings(cls, key: str | None, key_file: Path) -> SecretBox:
        """Use ``key`` (BATON_SECRET_KEY) when set, else ``key_file``, created when missing."""
        if key:
            return cls(_fernet(key, "BATON_SECRET_KEY"), key.strip())
        from engine import keyfile

        text = keyfile.read_or_create(key_file)
        return cls(_fernet(text, f"key file {key_file}"), text.strip())

    def fingerprint(self, text: str) -> str:
        """A keyed digest of ``text`` (HMAC-SHA256 under a key derived from this box's):
        equal texts give equal fingerprints, and without the key a guess at the text
        cannot be checked against one. 16 hex digits."""
        return hmac.new(self._mac_key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    def encrypt(self, values: Mapping[str, str]) -> str:
        data = json.dumps(dict(values), sort_keys=True, separators=(",", ":"))
        return self._fernet.encrypt(data.encode("utf-8")).decode("ascii")

    def seal(self, obj: Any) -> str:
        """Any JSON-able value, encrypted (a step's inputs on their way to a worker)."""
        data = json.dumps(obj, separators=(",", ":"))
        return self._fernet.encrypt(data.encode("utf-8")).decode("ascii")

    def unseal(self, token: str) -> Any:
        """What ``seal`` encrypted; ``BatonError`` when this key did not seal it."""
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError):
            raise BatonError(
                "cannot decrypt this step's inputs: they were sealed with another key than "
                "this process's BATON_SECRET_KEY (or key file); give it the servers' key"
            ) from None

    def decrypt(self, token: str) -> dict[str, str]:
        try:
            data = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise BatonError(
                "cannot decrypt stored secrets: BATON_SECRET_KEY changed? "
                "Secret params stored under the old key cannot be read with this one."
            ) from None
        values = json.loads(data)
        if not isinstance(values, dict):
            raise BatonError("cannot decrypt stored secrets: unexpected content")
        return {str(k): str(v) for k, v in values.items()}


def _fernet(key: str, source: str) -> Fernet:
    try:
        return Fernet(key.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BatonError(
            f"{source} is not a valid Fernet key (32 bytes, url-safe base64, 44 characters). "
            f"Generate one with: {_GENERATE}"
        ) from None


def too_short(value: str) -> str | None:
    """Why ``value`` cannot be a secret (it is non-empty and shorter than
    ``MIN_SECRET_LEN``), in words that never repeat it; None when it can."""
    if 0 < len(value) < MIN_SECRET_LEN:
        return (
            f"is {len(value)} character{'s' if len(value) > 1 else ''} long; a secret needs "
            f"at least {MIN_SECRET_LEN} (a shorter one could not be masked in outputs and "
            "logs without masking ordinary text)"
        )
    return None


def load_secrets(env: Mapping[str, str], directory: Path | None) -> dict[str, str]:
    """Secrets for templates: files in ``directory``, then ``SECRET_<NAME>`` variables.

    A file's content loses its trailing newline(s); hidden files (Kubernetes' ``..data``
    links among them) and sub-directories are skipped. A missing directory is no error.
    A secret shorter than ``MIN_SECRET_LEN`` is refused, every one named at once.
    """
    secrets: dict[str, str] = {}
    if directory is not None and directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                secrets[path.name] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise BatonError(f"cannot read secret file {path}: {exc}") from None
    origin = {name: f"secret file {directory / name}" for name in secrets} if directory else {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            secrets[name[len(ENV_PREFIX) :].lower()] = value
            origin[name[len(ENV_PREFIX) :].lower()] = name
    short = [
        f"{origin[name]} {problem}"
        for name, value in sorted(secrets.items())
        if (problem := too_short(value)) is not None
    ]
    if short:
        raise BatonError("; ".join(short) + ". Use longer values.")
    return secrets

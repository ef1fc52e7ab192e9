"""Random keys the embedded development mode makes once and keeps in DATA_DIR (mode 0600).

A fresh machine runs with no configured secret at all, yet a key that changed at every start would log
every user out (JWT) or make every stored secret unreadable (SECRETS_KEY). So the first start writes a
random key into a file only the service's user can read, and every later start reads it back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

KEY_BYTES = 32
KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """A key file that exists but cannot be used: wrong permissions, or not a key."""


class MissingKeyError(Exception):
    """The settings give no usable key the service needs (JWT_SECRET, SECRETS_KEY): it refuses to start."""


def persistent_random_key(path: Path, nbytes: int = KEY_BYTES) -> str:
    """The key kept at `path`, made (URL-safe base64 of `nbytes` random bytes) when there is none yet.

    Two processes starting at once both end up with the one key: the file is created with O_EXCL from a
    fully written temporary file, so a reader never sees a half-written key.
    """
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_urlsafe(nbytes) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(
            f"{path} is readable by other users (mode {mode:o}); make it 0600 (chmod 600 {path})"
        )
    key = path.read_text(encoding="ascii").strip()
    if len(key) < KEY_BYTES:
        raise KeyFileError(f"{path} does not hold a key of at least {KEY_BYTES} characters")
    return key

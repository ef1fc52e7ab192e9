"""The key users' secrets are encrypted with at rest: SECRETS_KEY, or the embedded store's own.

With MongoDB every gateway and job actor sharing the database must seal and open secrets with the same
key, so it has to be configured; on the embedded store (SQLite in DATA_DIR) the service makes one once and
keeps it beside the database, in DATA_DIR/secrets-key (mode 0600).
"""

from __future__ import annotations

from pathlib import Path

from config.local_keys import KeyFileError, MissingKeyError, persistent_random_key
from config.settings import Settings

MIN_KEY_CHARS = 32
KEY_FILE_NAME = "secrets-key"


class SecretsKeyError(MissingKeyError):
    """No usable SECRETS_KEY: the service refuses to start."""


def secrets_key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE_NAME


def secrets_key(settings: Settings, data_dir: Path) -> str:
    """SECRETS_KEY if it is long enough; else, on the embedded store, the key kept in `data_dir` (the
    resolved DATA_DIR), made on first use."""
    if settings.auth.secrets_key is not None:
        key = settings.auth.secrets_key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            raise SecretsKeyError(
                f"SECRETS_KEY is {len(key)} characters long; it must be at least {MIN_KEY_CHARS} "
                "(e.g. SECRETS_KEY=$(openssl rand -hex 32))"
            )
        return key
    if settings.storage.mongodb_url is not None:
        raise SecretsKeyError(
            "SECRETS_KEY must be set when MONGODB_URL is: it encrypts users' secrets, and every gateway and "
            "job actor sharing the database needs the same one (e.g. SECRETS_KEY=$(openssl rand -hex 32))"
        )
    try:
        return persistent_random_key(secrets_key_file(data_dir))
    except (KeyFileError, OSError) as exc:
        raise SecretsKeyError(
            f"SECRETS_KEY is not set and the embedded store's key is unusable: {exc}"
        ) from exc

"""The key the service checks tokens with: JWT_SECRET, never a default anyone can read.

A JWT_SECRET shorter than 32 bytes is refused: an HMAC key that short can be guessed offline from one
token. Without JWT_SECRET the service refuses to start, except in the embedded development mode (no
MONGODB_URL, no REDIS_HOST, a loopback HOST), where it makes a random key once and keeps it in
DATA_DIR/jwt-secret (mode 0600); `workflow-service token` signs with the same key.
"""

from __future__ import annotations

from pathlib import Path

from config.local_keys import KeyFileError, MissingKeyError, persistent_random_key
from config.settings import Settings, is_loopback_host

MIN_SECRET_BYTES = 32
KEY_FILE_NAME = "jwt-secret"
HOW_TO_MAKE_ONE = "e.g. JWT_SECRET=$(openssl rand -hex 32)"


class JwtSecretError(MissingKeyError):
    """No key the service may sign or check tokens with: it refuses to start."""


def jwt_key_file(settings: Settings) -> Path:
    return settings.storage.data_dir / KEY_FILE_NAME


def jwt_secret(settings: Settings) -> str:
    """JWT_SECRET if it is long enough; else, in the embedded development mode only, the key kept in
    DATA_DIR (made on first use)."""
    if settings.auth.jwt_secret is not None:
        secret = settings.auth.jwt_secret.get_secret_value()
        length = len(secret.encode())
        if length < MIN_SECRET_BYTES:
            raise JwtSecretError(
                f"JWT_SECRET is {length} bytes long; it must be at least {MIN_SECRET_BYTES} bytes of random "
                f"data ({HOW_TO_MAKE_ONE})"
            )
        return secret
    if settings.embedded_development_mode:
        try:
            return persistent_random_key(jwt_key_file(settings))
        except (KeyFileError, OSError) as exc:
            raise JwtSecretError(f"JWT_SECRET is not set and the development key is unusable: {exc}") from exc
    raise JwtSecretError(
        f"JWT_SECRET is not set: set it to at least {MIN_SECRET_BYTES} random bytes shared with the "
        f"platform's API gateway ({HOW_TO_MAKE_ONE}). Only the embedded development mode makes its own "
        f"key, and this is not it: {'; '.join(_not_embedded_because(settings))}"
    )


def _not_embedded_because(settings: Settings) -> list[str]:
    reasons = []
    if settings.storage.mongodb_url is not None:
        reasons.append("MONGODB_URL is set")
    if settings.events.redis_host is not None:
        reasons.append("REDIS_HOST is set")
    if not is_loopback_host(settings.server.host):
        reasons.append(f"HOST={settings.server.host} is not a loopback address")
    return reasons

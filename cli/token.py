"""`workflow-service token --sub alice [--admin] [--ttl 1h]`: a bearer token signed with the service's key.

The key is the one the service checks tokens with (config/jwt_secret.py): JWT_SECRET from the environment
or `.env`, else the key the embedded development mode keeps in DATA_DIR. Anything else is refused, as
the service itself would refuse to start.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from jose import jwt

from config.jwt_secret import jwt_secret
from config.settings import Settings
from gateway.auth import ADMIN_ROLE

DEFAULT_TTL = "1h"
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd]?)$")
SIGNING_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


class TokenCommandError(Exception):
    """A token this command cannot make with these settings."""


def duration_seconds(text: str) -> float:
    """`90`, `90s`, `15m`, `1h` or `7d` in seconds; an argparse type."""
    match = DURATION.match(text.strip().lower())
    seconds = float(match["amount"]) * UNIT_SECONDS[match["unit"]] if match else 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 15m, 1h or 7d")
    return seconds


def mint_token(settings: Settings, subject: str, *, admin: bool, ttl_s: float) -> str:
    """A token for `subject` (with the admin role if asked) that expires `ttl_s` from now.

    Raises JwtSecretError without a usable key, TokenCommandError for an empty subject or an algorithm
    JWT_SECRET cannot sign with."""
    if not subject.strip():
        raise TokenCommandError("--sub must name a user, not be empty")
    if settings.auth.jwt_algorithm not in SIGNING_ALGORITHMS:
        raise TokenCommandError(
            f"JWT_ALGORITHM={settings.auth.jwt_algorithm}: this command signs with JWT_SECRET, which only "
            f"{', '.join(sorted(SIGNING_ALGORITHMS))} can; ask the issuer of your tokens for one"
        )
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + max(1, round(ttl_s))}
    if admin:
        claims["roles"] = [ADMIN_ROLE]
    return jwt.encode(claims, jwt_secret(settings), algorithm=settings.auth.jwt_algorithm)

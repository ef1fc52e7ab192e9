"""JWT bearer tokens (python-jose): one pinned algorithm, `exp` and `sub` required, `alg: none` refused.

`sub` is the owner of what the caller creates; a `roles` claim (a list, or a space-separated string)
containing `admin` lets the caller see everyone's workflows and jobs. An `aud` claim is not checked:
the platform configures no audience for this service.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

ADMIN_ROLE = "admin"
REALM = "workflow-service"


class AuthenticationError(Exception):
    """No usable credentials: the gateway answers 401 (HTTP) or closes with 4401 (WebSocket)."""

    def __init__(self, message: str, *, token_given: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.token_given = token_given

    @property
    def www_authenticate(self) -> str:
        """The RFC 6750 challenge: a bare one for a missing token, `invalid_token` for a bad one."""
        if not self.token_given:
            return f'Bearer realm="{REALM}"'
        description = self.message.replace('"', "'")
        return f'Bearer realm="{REALM}", error="invalid_token", error_description="{description}"'


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def owner_filter(self) -> str | None:
        """The owner to filter listings by: the caller's own, or None (everyone's) for an admin."""
        return None if self.is_admin else self.subject

    def may_access(self, owner: str) -> bool:
        return self.is_admin or owner == self.subject


class TokenVerifier:
    def __init__(self, key: str, algorithm: str) -> None:
        if not algorithm or algorithm.lower() == "none":
            raise ValueError("JWT_ALGORITHM must name a signing algorithm, not 'none'")
        self._key = key
        self.algorithm = algorithm

    @property
    def signs_with_a_shared_key(self) -> bool:
        """HMAC (HS256, HS384, HS512): the key that checks tokens can also sign them."""
        return self.algorithm.upper().startswith("HS")

    def mint(self, subject: str, ttl_s: float) -> str:
        """A token of `subject`, without roles, that this verifier accepts (HMAC algorithms only)."""
        if not self.signs_with_a_shared_key:
            raise ValueError(f"cannot sign tokens with {self.algorithm}: the service holds no private key")
        return mint_token(self._key, self.algorithm, subject, ttl_s=ttl_s)

    def verify(self, token: str | None) -> Principal:
        if not token:
            raise AuthenticationError("missing bearer token", token_given=False)
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise AuthenticationError("malformed token") from None
        algorithm = header.get("alg")
        if algorithm != self.algorithm:
            raise AuthenticationError(f"token algorithm {algorithm!r} is not accepted; use {self.algorithm}")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                options={"require_exp": True, "require_sub": True, "verify_aud": False},
            )
        except ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except JWTClaimsError as exc:
            raise AuthenticationError(f"invalid token claims: {exc}") from None
        except JWTError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip():
            raise AuthenticationError("token subject (sub) must be a non-empty string")
        return Principal(subject, _roles(claims.get("roles")))


def _roles(claim: object) -> frozenset[str]:
    if claim is None:
        return frozenset()
    if isinstance(claim, str):
        return frozenset(claim.split())
    if isinstance(claim, list) and all(isinstance(role, str) for role in claim):
        return frozenset(claim)
    raise AuthenticationError("token roles claim must be a list of strings")


def mint_token(key: str, algorithm: str, subject: str, roles: Iterable[str] = (), ttl_s: float = 3600) -> str:
    """A token that `TokenVerifier(key, algorithm)` accepts: `sub`, `exp` (now + ttl_s), `iat`, and
    `roles` when any are given."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + int(ttl_s)}
    if roles:
        claims["roles"] = sorted(roles)
    return jwt.encode(claims, key, algorithm=algorithm)


def header_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without a bearer header."""
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def bearer_matches(authorization: str | None, expected: str) -> bool:
    """Whether an `Authorization: Bearer <token>` header carries `expected`, compared in constant time."""
    given = header_token(authorization)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())

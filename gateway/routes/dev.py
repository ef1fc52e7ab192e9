"""Development tokens: in the embedded development mode, and only there, a caller on this machine gets a
token for a name it types in, signed with the key the service checks tokens with. The browser page's
sign-in uses it; everywhere else the route answers 404 as if it did not exist.

No token from here carries roles (so never `admin`). The request must name a loopback host, and an
`Origin`, when the browser sends one, must be a loopback one too: a web page of another site whose name
was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name in both, and is refused.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Header
from jose import jwt
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import NotFoundError
from gateway.deps import SettingsDep, VerifierDep
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, ErrorBody

DEV_TOKEN_TTL_S = 8 * 3600
"""A working day: the page keeps the token for the browser tab's life."""
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
NOT_OFFERED = "development tokens are offered only in the embedded development mode, on a loopback address"


def _names_loopback(host: str | None) -> bool:
    """Whether a Host header value (`name[:port]`) or an Origin (`scheme://name[:port]`) names loopback."""
    if not host:
        return False
    name = urlsplit(host if "://" in host else f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


async def development_mode_only(
    settings: SettingsDep,
    verifier: VerifierDep,
    host: Annotated[str | None, Header(include_in_schema=False)] = None,
    origin: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    offered = settings.embedded_development_mode and verifier.signs_with_a_shared_key
    if not offered or not _names_loopback(host) or (origin is not None and not _names_loopback(origin)):
        raise NotFoundError(NOT_OFFERED)


router = APIRouter(
    tags=["development"],
    responses={422: ERROR_RESPONSES[422]},
    dependencies=[Depends(development_mode_only)],
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not the embedded development mode, or not a loopback host"}
}


class DevTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sub: str = Field(
        pattern=SUBJECT_PATTERN,
        description="the user to sign in as: a letter or digit, then up to 127 letters, digits or . _ @ -",
        examples=["alice"],
    )


class DevToken(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    sub: str
    expires_at: datetime


@router.post(
    "/api/v1/dev/token",
    responses={**NOT_FOUND, **BODY_TOO_LARGE},
    summary="A development token for a user name, without roles (embedded development mode only)",
)
async def dev_token(body: DevTokenRequest, verifier: VerifierDep) -> DevToken:
    token = verifier.mint(body.sub, DEV_TOKEN_TTL_S)
    expires_at = datetime.fromtimestamp(jwt.get_unverified_claims(token)["exp"], UTC)
    return DevToken(token=token, sub=body.sub, expires_at=expires_at)

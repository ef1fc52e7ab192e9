"""Each user's own secrets: write-only values, listed by name, read only by the user's own jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from engine.records import SecretInfo
from engine.secret_access import MAX_SECRET_VALUE_CHARS, SECRET_NAME_RE
from gateway.deps import CurrentUser, VaultDep, authenticate
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, Responses, documented

router = APIRouter(tags=["secrets"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])
NOT_FOUND: Responses = documented(404, "The caller has no secret of that name")
SecretName = Annotated[
    str,
    Path(
        pattern=SECRET_NAME_RE.pattern,
        description="read by templates as {{secrets.NAME}}: a letter or '_', then letters, digits or '_'",
    ),
]


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(
        min_length=1,
        max_length=MAX_SECRET_VALUE_CHARS,
        description="the secret itself: stored encrypted, never answered back",
    )


@router.put(
    "/api/v1/secrets/{name}",
    responses={200: {"model": SecretInfo, "description": "Replaced"}, **BODY_TOO_LARGE},
    status_code=status.HTTP_201_CREATED,
    summary="Store one of your secrets (201 when new, 200 when replaced); the value is never shown again",
)
async def put_secret(
    name: SecretName, body: SecretValue, principal: CurrentUser, vault: VaultDep, response: Response
) -> SecretInfo:
    info, created = await vault.put(principal.subject, name, body.value)
    if not created:
        response.status_code = status.HTTP_200_OK
    return info


@router.get(
    "/api/v1/secrets",
    summary="The secrets your jobs can read, by name: your own, then the operator's granted to you",
)
async def list_secrets(principal: CurrentUser, vault: VaultDep) -> list[SecretInfo]:
    return await vault.names(principal.subject, principal.roles)


@router.delete(
    "/api/v1/secrets/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    summary="Delete one of your secrets",
)
async def delete_secret(name: SecretName, principal: CurrentUser, vault: VaultDep) -> Response:
    await vault.delete(principal.subject, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Webhooks, managed with a JWT: create one on a workflow (its secret answered once), list, read, change,
rotate the secret, delete. Deliveries to a hook are gateway/routes/hooks.py.

A hook belongs to whoever created it and starts its jobs as them, with the roles their token had then
(which operator secrets those jobs may use), as `execute` would. Another user's hook answers 404, as an
unknown id does; an admin may manage everyone's.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response, status

from engine.records import Page, WebhookChanges, WebhookRecord, WebhookSettings
from engine.webhooks import new_secret
from gateway.deps import (
    CurrentUser,
    HookSecretsDep,
    OwnedWebhook,
    OwnedWorkflow,
    PageParams,
    StoreDep,
    authenticate,
)
from gateway.errors import BODY_TOO_LARGE, ERROR_RESPONSES, UNREADABLE, Responses, documented
from gateway.schemas import WebhookOut, WebhookPatch, WebhookWithSecret

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES, dependencies=[Depends(authenticate)])
NOT_FOUND: Responses = {**documented(404, "No such webhook"), **UNREADABLE}

SettingsBody = Annotated[
    WebhookSettings | None,
    Body(
        description="Optional: how deliveries authenticate and are answered (defaults: signature, accept)",
        examples=[{"delivery_id_header": "X-GitHub-Delivery", "rate_limit_per_min": 120}],
    ),
]


@router.post(
    "/api/v1/workflows/{workflow_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    responses={**documented(404, "No such workflow"), **UNREADABLE, **BODY_TOO_LARGE},
    summary="Create a webhook that starts a job of the workflow per delivery; its secret is shown once",
)
async def create_webhook(
    workflow: OwnedWorkflow,
    principal: CurrentUser,
    store: StoreDep,
    secrets: HookSecretsDep,
    response: Response,
    body: SettingsBody = None,
) -> WebhookWithSecret:
    hook_id, secret = uuid.uuid4().hex, new_secret()
    hook = await store.create_webhook(
        WebhookRecord(
            **(body or WebhookSettings()).model_dump(),
            id=hook_id,
            owner=principal.subject,
            owner_roles=sorted(set(principal.roles)),
            workflow_id=workflow.id,
            sealed_secret=secrets.seal(principal.subject, hook_id, secret),
        )
    )
    response.headers["Location"] = f"/api/v1/webhooks/{hook.id}"
    return WebhookWithSecret(**WebhookOut.from_record(hook).model_dump(), secret=secret)


@router.get("/api/v1/webhooks", summary="List your webhooks, newest first")
async def list_webhooks(
    store: StoreDep,
    principal: CurrentUser,
    page: PageParams,
    workflow_id: Annotated[
        str | None, Query(max_length=128, description="only this workflow's hooks")
    ] = None,
) -> Page[WebhookOut]:
    hooks = await store.list_webhooks(principal.owner_filter, page.offset, page.limit, workflow_id)
    return Page[WebhookOut](
        items=[WebhookOut.from_record(hook) for hook in hooks.items],
        total=hooks.total,
        offset=hooks.offset,
        limit=hooks.limit,
    )


@router.get("/api/v1/webhooks/{hook_id}", responses=NOT_FOUND, summary="Read a webhook (never its secret)")
async def get_webhook(hook: OwnedWebhook) -> WebhookOut:
    return WebhookOut.from_record(hook)


@router.patch(
    "/api/v1/webhooks/{hook_id}",
    responses={**NOT_FOUND, **BODY_TOO_LARGE},
    summary="Change a webhook's options: `enabled` turns it on or off; those left out are kept",
)
async def update_webhook(hook: OwnedWebhook, body: WebhookPatch, store: StoreDep) -> WebhookOut:
    changes = WebhookChanges(**body.model_dump(include=body.model_fields_set))
    return WebhookOut.from_record(await store.update_webhook(hook.id, changes))


@router.post(
    "/api/v1/webhooks/{hook_id}/rotate",
    responses=NOT_FOUND,
    summary="Give a webhook a new secret, shown once; the old one is refused from now on",
)
async def rotate_webhook_secret(
    hook: OwnedWebhook, store: StoreDep, secrets: HookSecretsDep
) -> WebhookWithSecret:
    secret = new_secret()
    rotated = await store.update_webhook(
        hook.id, WebhookChanges(sealed_secret=secrets.seal(hook.owner, hook.id, secret))
    )
    return WebhookWithSecret(**WebhookOut.from_record(rotated).model_dump(), secret=secret)


@router.delete(
    "/api/v1/webhooks/{hook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    summary="Delete a webhook: deliveries to it are refused from now on; the jobs it started are kept",
)
async def delete_webhook(hook: OwnedWebhook, store: StoreDep) -> Response:
    await store.delete_webhook(hook.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

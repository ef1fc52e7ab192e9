"""Deliveries to webhooks: `POST /hooks/{hook_id}`, the one API route that takes no JWT.

A delivery proves it knows the hook's secret: an HMAC-SHA256 of its raw body in `X-Signature-256`, or, for a
hook made with `auth: "token"`, the secret as `Authorization: Bearer` (engine/webhooks.py). The secret is
read from the store at every delivery, so a rotation or a disable takes effect at once in every gateway.

An unknown hook, a disabled one, one whose workflow was deleted and a wrong or missing signature all answer
the same 401, after the same HMAC work, so hook ids cannot be probed and nothing says whether a workflow
exists. Only an authenticated delivery is counted against the hook's rate limit (429 with Retry-After
beyond it): senders without the secret cannot use up a hook's budget, nor learn of the hook from a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from starlette.exceptions import HTTPException

from engine.errors import NotFoundError, UnreadableRecordError
from engine.records import JobRecord, TriggerRef, WebhookRecord
from engine.webhooks import (
    SIGNATURE_HEADER,
    UNKNOWN_HOOK_SECRET,
    authentic,
    delivery_input,
    delivery_key,
)
from gateway.deps import BusDep, ControllerDep, HookSecretsDep, RateLimiterDep, StoreDep, WatcherDep
from gateway.errors import BODY_TOO_LARGE, Responses, documented
from gateway.schemas import DeliveryOut
from storage.protocols import EventBus, Store
from storage.secret_cipher import SecretDecryptionError

logger = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])
MAX_DELIVERY_ID_CHARS = 200
UNAUTHENTICATED = "unknown or disabled webhook, or a wrong or missing signature or token"
RESPONSES: Responses = {
    200: {
        "model": DeliveryOut,
        "description": "`respond: wait`: the job ended in time; its status and result",
    },
    **documented(401, UNAUTHENTICATED),
    **BODY_TOO_LARGE,
    **documented(422, "The body is not UTF-8 or nests too deep, or the delivery id is too long"),
    **documented(429, "More deliveries this minute than the hook's rate_limit_per_min; see Retry-After"),
    **documented(503, "The store or Redis is unavailable; retry after Retry-After"),
}
BODY_DOCUMENTATION = {
    "requestBody": {
        "description": "Anything: JSON becomes the job's `input.body`, other text is kept as text",
        "required": False,
        "content": {"application/json": {"schema": {}}, "text/plain": {"schema": {"type": "string"}}},
    }
}


@router.post(
    "/hooks/{hook_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses=RESPONSES,
    openapi_extra=BODY_DOCUMENTATION,
    summary="Deliver an event to a webhook: starts a job of its workflow (no JWT: the hook's secret)",
)
async def deliver(
    hook_id: Annotated[str, Path(max_length=128)],
    request: Request,
    response: Response,
    store: StoreDep,
    bus: BusDep,
    controller: ControllerDep,
    watcher: WatcherDep,
    secrets: HookSecretsDep,
    limiter: RateLimiterDep,
) -> DeliveryOut:
    body = await request.body()
    hook = await _authenticated_hook(store, secrets, hook_id, body, request)
    retry_after = await limiter.hit(f"webhook:{hook.id}", hook.rate_limit_per_min)
    if retry_after is not None:
        raise HTTPException(
            429,
            f"more than {hook.rate_limit_per_min} deliveries this minute",
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
    key = delivery_key(hook.id, request.headers, hook.delivery_id_header)
    if key is not None and len(key) > MAX_DELIVERY_ID_CHARS + len(f"webhook:{hook.id}:"):
        raise HTTPException(422, f"a delivery id may have at most {MAX_DELIVERY_ID_CHARS} characters")
    try:
        job = await controller.create_job(
            hook.workflow_id,
            delivery_input(body, request.headers.items(), request.query_params),
            hook.owner,
            key,
            hook.owner_roles,
            TriggerRef(kind="webhook", id=hook.id),
        )
    except NotFoundError:  # the hook's workflow was deleted
        raise _unauthenticated() from None
    watcher.watch(job)
    if hook.respond == "wait":
        job = await _ended(bus, store, job, hook.respond_timeout_s)
        if job.status.is_terminal:
            response.status_code = status.HTTP_200_OK
            return DeliveryOut(job_id=job.id, status=job.status, result=job.result)
    return DeliveryOut(job_id=job.id, status=job.status)


async def _authenticated_hook(
    store: Store, secrets: HookSecretsDep, hook_id: str, body: bytes, request: Request
) -> WebhookRecord:
    signature, authorization = request.headers.get(SIGNATURE_HEADER), request.headers.get("authorization")
    try:
        hook: WebhookRecord | None = await store.get_webhook(hook_id)
    except (NotFoundError, UnreadableRecordError):  # an unreadable hook was logged by the store
        hook = None
    secret = UNKNOWN_HOOK_SECRET
    if hook is not None:
        try:
            secret = secrets.open(hook)
        except SecretDecryptionError:
            logger.error("webhook %s has a secret this SECRETS_KEY cannot open; rotate it", hook_id)
            hook = None
    auth = hook.auth if hook is not None else "signature"
    if not authentic(auth, secret, body, signature, authorization) or hook is None or not hook.enabled:
        raise _unauthenticated()
    return hook


def _unauthenticated() -> HTTPException:
    return HTTPException(401, UNAUTHENTICATED)


async def _ended(bus: EventBus, store: Store, job: JobRecord, timeout_s: float) -> JobRecord:
    """The job once it has ended, or as it stands after `timeout_s`."""
    if job.status.is_terminal:
        return job
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            async for _event in bus.subscribe(job.id):
                pass
    return await store.get_job(job.id)

"""The webhook part of the Store contract, against every store: hooks kept with their sealed secret,
listed per owner and workflow, changed field by field, deleted."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.errors import NotFoundError
from engine.records import WebhookChanges, WebhookRecord, utcnow
from storage.protocols import Store

pytestmark = pytest.mark.timeout(30)


def _hook(hook_id: str, owner: str = "alice", workflow_id: str = "wf-1", age_s: int = 0) -> WebhookRecord:
    created = utcnow() - timedelta(seconds=age_s)
    return WebhookRecord(
        id=hook_id,
        owner=owner,
        owner_roles=["team-x"],
        workflow_id=workflow_id,
        sealed_secret=b"\x01sealed-" + hook_id.encode(),
        delivery_id_header="X-GitHub-Delivery",
        created_at=created,
        updated_at=created,
    )


async def test_a_hook_is_stored_with_its_settings_and_sealed_secret(store: Store):
    created = await store.create_webhook(_hook("h1").model_copy(update={"auth": "token", "respond": "wait"}))
    read = await store.get_webhook("h1")
    assert read == created
    assert (read.owner, read.owner_roles, read.workflow_id) == ("alice", ["team-x"], "wf-1")
    assert (read.auth, read.respond, read.respond_timeout_s) == ("token", "wait", 10)
    assert read.rate_limit_per_min == 60
    assert read.delivery_id_header == "X-GitHub-Delivery" and read.enabled
    assert read.sealed_secret == b"\x01sealed-h1"
    with pytest.raises(NotFoundError):
        await store.get_webhook("nope")


async def test_hooks_are_listed_newest_first_per_owner_and_workflow(store: Store):
    await store.create_webhook(_hook("old", age_s=20))
    await store.create_webhook(_hook("new", workflow_id="wf-2", age_s=10))
    await store.create_webhook(_hook("bobs", owner="bob"))
    mine = await store.list_webhooks("alice")
    assert [hook.id for hook in mine.items] == ["new", "old"] and mine.total == 2
    assert [hook.id for hook in (await store.list_webhooks(None, 0, 1)).items] == ["bobs"]
    assert (await store.list_webhooks(None, 0, 1)).total == 3
    assert [hook.id for hook in (await store.list_webhooks("alice", workflow_id="wf-2")).items] == ["new"]


async def test_an_update_changes_what_it_sets_and_keeps_the_rest(store: Store):
    before = await store.create_webhook(_hook("h1", age_s=5))
    disabled = await store.update_webhook("h1", WebhookChanges(enabled=False))
    assert not disabled.enabled and disabled.delivery_id_header == "X-GitHub-Delivery"
    assert disabled.updated_at > before.updated_at
    assert disabled.sealed_secret == before.sealed_secret
    rotated = await store.update_webhook("h1", WebhookChanges(sealed_secret=b"\x01rotated"))
    assert rotated.sealed_secret == b"\x01rotated" and not rotated.enabled
    cleared = await store.update_webhook("h1", WebhookChanges(delivery_id_header=None, rate_limit_per_min=5))
    assert (cleared.delivery_id_header, cleared.rate_limit_per_min) == (None, 5)
    assert await store.get_webhook("h1") == cleared
    with pytest.raises(NotFoundError):
        await store.update_webhook("nope", WebhookChanges(enabled=True))


async def test_a_deleted_hook_is_gone(store: Store):
    await store.create_webhook(_hook("h1"))
    await store.delete_webhook("h1")
    with pytest.raises(NotFoundError):
        await store.get_webhook("h1")
    with pytest.raises(NotFoundError):
        await store.delete_webhook("h1")
    assert (await store.list_webhooks("alice")).total == 0

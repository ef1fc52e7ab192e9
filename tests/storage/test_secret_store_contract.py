"""The SecretStore contract, against every store: sealed bytes kept per (owner, name), never mixed."""

from __future__ import annotations

import pytest

from engine.errors import NotFoundError
from engine.records import JobRecord
from storage.protocols import Store


async def test_a_secret_is_created_then_replaced_and_listed_without_its_value(store: Store):
    info, created = await store.put_secret("alice", "api_key", b"\x01sealed-1")
    assert created and info.name == "api_key" and info.created_at == info.updated_at
    again, created_again = await store.put_secret("alice", "api_key", b"\x01sealed-2")
    assert not created_again and again.created_at == info.created_at and again.updated_at >= info.updated_at
    await store.put_secret("alice", "b_token", b"\x01sealed-3")
    listed = await store.list_secrets("alice")
    assert [item.name for item in listed] == ["api_key", "b_token"]
    assert all(not hasattr(item, "value") for item in listed)
    assert await store.sealed_secrets("alice") == {"api_key": b"\x01sealed-2", "b_token": b"\x01sealed-3"}


async def test_owners_never_see_each_others_secrets(store: Store):
    await store.put_secret("alice", "api_key", b"alice's")
    await store.put_secret("bob", "api_key", b"bob's")
    assert await store.sealed_secrets("alice") == {"api_key": b"alice's"}
    assert await store.sealed_secrets("bob") == {"api_key": b"bob's"}
    assert await store.list_secrets("carol") == []
    await store.delete_secret("bob", "api_key")
    assert await store.sealed_secrets("alice") == {"api_key": b"alice's"}
    with pytest.raises(NotFoundError, match="no secret named 'api_key'"):
        await store.delete_secret("bob", "api_key")


async def test_a_job_keeps_the_roles_its_owner_had_when_it_was_created(store: Store):
    created = await store.create_job(
        JobRecord(id="j1", owner="alice", owner_roles=["team", "user"], workflow_id="wf", workflow_version=1)
    )
    assert created.owner_roles == ["team", "user"]
    assert (await store.get_job("j1")).owner_roles == ["team", "user"]
    assert (await store.list_jobs("alice")).items[0].owner_roles == ["team", "user"]

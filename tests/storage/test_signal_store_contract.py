"""The SignalStore contract and the waiting-jobs listing, against every store: signals kept in the order
stored, one per idempotency key and job, and `waiting_on` stored with a checkpoint."""

from __future__ import annotations

import uuid
from datetime import timedelta

from engine.records import JobChanges, JobStatus, NodeCheckpoint, NodeStatus, SignalRecord, WaitInfo, WaitKind
from storage.protocols import Store
from tests.storage.store_contract_support import at, definition, job


def signal(job_id: str, name: str = "go", key: str | None = None, **payload: object) -> SignalRecord:
    return SignalRecord(
        id=uuid.uuid4().hex,
        job_id=job_id,
        name=name,
        payload=dict(payload),
        sender="bob",
        idempotency_key=key,
    )


async def stored_job(store: Store, job_id: str) -> str:
    workflow = await store.create_workflow("alice", definition())
    await store.create_job(job(job_id, workflow_id=workflow.id))
    return job_id


async def test_signals_are_listed_in_the_order_stored_with_their_payloads(store: Store):
    job_id = await stored_job(store, "j1")
    first = signal(job_id, "go", n=1)
    second = signal(job_id, "stop", n=2)
    for record in (first, second):
        stored, created = await store.put_signal(record)
        assert created and stored.id == record.id
    listed = await store.list_signals(job_id)
    assert [(s.id, s.name, s.payload, s.sender) for s in listed] == [
        (first.id, "go", {"n": 1}, "bob"),
        (second.id, "stop", {"n": 2}, "bob"),
    ]
    assert await store.list_signals("another-job") == []


async def test_an_idempotency_key_stores_one_signal_per_job(store: Store):
    one, other = await stored_job(store, "j1"), await stored_job(store, "j2")
    original, created = await store.put_signal(signal(one, key="delivery-7", n=1))
    again, created_again = await store.put_signal(signal(one, key="delivery-7", n=2))
    assert created and not created_again
    assert again.id == original.id and again.payload == {"n": 1}
    _, elsewhere = await store.put_signal(signal(other, key="delivery-7", n=3))
    assert elsewhere, "the same key on another job is another signal"
    assert [s.payload for s in await store.list_signals(one)] == [{"n": 1}]


async def test_waiting_on_and_the_wait_are_stored_and_waiting_jobs_listed(store: Store):
    waiting_id, plain_id = await stored_job(store, "waits"), await stored_job(store, "plain")
    wait = WaitInfo(
        kind=WaitKind.APPROVAL,
        signal="review",
        message="ok?",
        since=at(0),
        deadline=at(0) + timedelta(seconds=60),
        approvers=["carol"],
        settings={"on_timeout": "reject"},
    )
    node = NodeCheckpoint(node_id="review", node_type="approval", status=NodeStatus.WAITING, wait=wait)
    await store.checkpoint(waiting_id, 0, JobChanges(status=JobStatus.RUNNING, waiting_on=["review"]), [node])
    await store.checkpoint(plain_id, 0, JobChanges(status=JobStatus.RUNNING))

    record = await store.get_job(waiting_id)
    assert record.waiting_on == ["review"]
    assert record.nodes["review"].wait == wait
    listed = await store.list_jobs(status=JobStatus.RUNNING, waiting=True)
    assert [j.id for j in listed.items] == [waiting_id] and listed.total == 1
    assert [j.id for j in (await store.list_jobs(waiting=False)).items] == [plain_id]

    await store.checkpoint(waiting_id, 1, JobChanges(waiting_on=[]))
    assert (await store.list_jobs(waiting=True)).total == 0

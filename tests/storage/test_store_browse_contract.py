"""The store's contract for what the browser page reads: workflows searched by name, a workflow's versions,
one node's log entries, and the rendered config a node checkpoint keeps. Runs on every store."""

from __future__ import annotations

import pytest

from engine.errors import NotFoundError
from engine.records import JobChanges, LogEntry, NodeCheckpoint, NodeStatus
from tests.storage.store_contract_support import definition, job, until_the_clock_passes


async def test_workflows_are_searched_by_a_part_of_their_name_ignoring_ascii_case(store):
    summarise = await store.create_workflow("alice", definition("Summarise reports"))
    await store.create_workflow("alice", definition("Translate"))
    await until_the_clock_passes(summarise.created_at)
    resume = await store.create_workflow("alice", definition("Résumé SUMMARY"))
    await store.create_workflow("bob", definition("summarise for bob"))

    page = await store.list_workflows("alice", name_contains="SUMMAR")
    assert [w.id for w in page.items] == [resume.id, summarise.id]
    assert page.total == 2
    assert [w.id for w in (await store.list_workflows("alice", name_contains="résumé")).items] == [resume.id]
    assert (await store.list_workflows("alice", name_contains="RÉSUMÉ")).total == 0
    assert (await store.list_workflows(None, name_contains="summarise")).total == 2
    paged = await store.list_workflows("alice", offset=1, limit=1, name_contains="summar")
    assert ([w.id for w in paged.items], paged.total) == ([summarise.id], 2)


@pytest.mark.parametrize("text", ["a.b", "a%b", "a_b", "(a", "a*", "[a]", "a\\b"])
async def test_a_name_search_takes_every_character_literally(store, text):
    literal = await store.create_workflow("alice", definition(f"x {text} y"))
    await store.create_workflow("alice", definition("x aXb y"))
    await store.create_workflow("alice", definition("x ab y"))
    assert [w.id for w in (await store.list_workflows("alice", name_contains=text)).items] == [literal.id]


async def test_a_workflows_versions_are_listed_newest_first_also_after_a_delete(store):
    created = await store.create_workflow("alice", definition("v1"))
    second = await store.update_workflow(created.id, definition("v2"))
    third = await store.update_workflow(created.id, definition("v3"))

    versions = await store.list_workflow_versions(created.id)
    assert versions.items == [third, second, created]
    assert versions.total == 3
    page = await store.list_workflow_versions(created.id, offset=1, limit=1)
    assert (page.items, page.total) == ([second], 3)

    await store.delete_workflow(created.id)
    assert [v.version for v in (await store.list_workflow_versions(created.id)).items] == [3, 2, 1]
    with pytest.raises(NotFoundError, match="no-such-workflow"):
        await store.list_workflow_versions("no-such-workflow")
    with pytest.raises(ValueError):
        await store.list_workflow_versions(created.id, limit=0)


async def test_logs_are_listed_for_one_node_in_append_order(store):
    await store.create_job(job("job-1"))
    await store.append_logs(
        [
            LogEntry(job_id="job-1", node_id=node_id, message=f"{node_id} {i}")
            for i in range(3)
            for node_id in ("ask", "route", None)
        ]
    )
    page = await store.list_logs("job-1", node_id="ask")
    assert [e.message for e in page.items] == ["ask 0", "ask 1", "ask 2"]
    assert page.total == 3
    second = await store.list_logs("job-1", offset=1, limit=1, node_id="route")
    assert ([e.message for e in second.items], second.total) == (["route 1"], 3)
    assert (await store.list_logs("job-1", node_id="nobody")).total == 0
    assert (await store.list_logs("job-1")).total == 9


async def test_a_node_checkpoint_keeps_its_rendered_config(store):
    await store.create_job(job("job-1"))
    rendered = {"prompt": "Summarise <b>this</b>", "max_tokens": 200, "api_key": "**********"}
    node = NodeCheckpoint(node_id="ask", node_type="llm", status=NodeStatus.RUNNING, rendered_config=rendered)
    await store.checkpoint("job-1", 0, JobChanges(), [node])
    assert (await store.get_job("job-1")).nodes["ask"].rendered_config == rendered
    assert (await store.get_jobs(["job-1"]))[0].nodes["ask"].rendered_config == rendered

"""A deleted workflow's schedules go with it: they could never start a job again."""

from __future__ import annotations

from actors.ray_runtime.schedule_keeper import KeeperOnDemand
from engine.errors import NotFoundError
from storage.protocols import Store

PAGE = 500


async def delete_schedules_of(store: Store, keeper: KeeperOnDemand, workflow_id: str) -> int:
    """Delete every schedule of the workflow and tell the keeper; how many there were."""
    deleted = 0
    while (page := await store.list_schedules(None, 0, PAGE, workflow_id=workflow_id)).items:
        for schedule in page.items:
            try:
                await store.delete_schedule(schedule.id)
            except NotFoundError:
                continue  # deleted meanwhile by its own endpoint
            await keeper.changed(schedule.id)
            deleted += 1
    return deleted

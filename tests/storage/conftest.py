"""Store implementations for the contract suite: every test taking `store` runs against each."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from mongomock_motor import AsyncMongoMockClient
from motor.motor_asyncio import AsyncIOMotorClient

from storage.mongo_store import MongoStore
from storage.protocols import Store
from storage.sqlite_store import SqliteStore

MONGODB_SKIP_REASON = "set MONGODB_URL to run the contract suite against a real mongod"


@pytest.fixture(
    params=[
        "sqlite",
        # mongomock catches wrong calls to motor; it proves nothing about a real server.
        "mongomock_motor",
        pytest.param("mongodb", marks=pytest.mark.mongo),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind = request.param
    if kind == "sqlite":
        sqlite_store = SqliteStore(tmp_path / "workflow.db")
        await sqlite_store.start()
        yield sqlite_store
        await sqlite_store.close()
    elif kind == "mongomock_motor":
        mock_store = MongoStore(AsyncMongoMockClient(tz_aware=True), "contract")
        await mock_store.start()
        yield mock_store
        await mock_store.close()
    else:
        url = os.environ.get("MONGODB_URL")
        if not url:
            pytest.skip(MONGODB_SKIP_REASON)
        database = f"workflow_contract_{uuid.uuid4().hex}"
        client = AsyncIOMotorClient(url, tz_aware=True, serverSelectionTimeoutMS=10_000)
        mongo_store = MongoStore(client, database)
        await mongo_store.start()
        yield mongo_store
        await client.drop_database(database)
        await mongo_store.close()


@pytest.fixture
async def open_sqlite() -> AsyncIterator[Callable[[Path], Awaitable[SqliteStore]]]:
    """Open (and later close) independent SqliteStore instances, as separate processes would."""
    opened: list[SqliteStore] = []

    async def open_store(path: Path) -> SqliteStore:
        sqlite_store = SqliteStore(path)
        await sqlite_store.start()
        opened.append(sqlite_store)
        return sqlite_store

    yield open_store
    for sqlite_store in opened:
        await sqlite_store.close()

"""Choose the Store: MongoDB when a URL is configured, otherwise the embedded SQLite file."""

from __future__ import annotations

from pathlib import Path

from storage.protocols import Store
from storage.sqlite_store import SqliteStore

SQLITE_FILE_NAME = "workflow.db"


def build_store(
    mongodb_url: str | None, mongodb_db: str, data_dir: Path, write_concern_majority: bool = True
) -> Store:
    """An unstarted store: call `await store.start()` before use and `await store.close()` after. MongoDB's
    driver is imported only for a MongoDB store: a seventh of a second each actor process would pay."""
    if mongodb_url:
        from storage.mongo_store import MongoStore

        return MongoStore.from_url(mongodb_url, mongodb_db, write_concern_majority=write_concern_majority)
    return SqliteStore(Path(data_dir) / SQLITE_FILE_NAME)

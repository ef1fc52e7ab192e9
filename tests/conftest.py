"""Fixtures shared across suites. One real local Ray instance serves the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.ray_runtime import ray_api

TEST_RAY_NAMESPACE = "workflow-service-tests"
TEST_JOB_SLOTS = 48


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[ray_api.ClusterInfo]:
    """A local Ray instance for the session (4-6 s to start here), with the dashboard so tests can read
    its state API; each service runtime built on it uses its own namespace, so their managers and
    actors never meet."""
    info = ray_api.init(None, TEST_RAY_NAMESPACE, job_slots=TEST_JOB_SLOTS, include_dashboard=True)
    yield info
    if info.started_here:
        ray_api.shutdown()

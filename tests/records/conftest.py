"""Fixtures of the storage conformance suite: one scratch database per backend per session,
created the first time a test asks for that backend and dropped at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from harness import scratch_database
from records_support import BACKENDS, MODES

from banata_middleware.stores.records import RecordStore


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], RecordStore]]:
    tmp = str(tmp_path_factory.mktemp("records"))
    stores: dict[str, RecordStore] = {}
    with ExitStack() as stack:

        def get(backend: str) -> RecordStore:
            if backend not in stores:
                # A pool as large as the race tests' crowd, so the sync engine keeps its connections.
                store = RecordStore(stack.enter_context(scratch_database(backend, tmp)), pool_size=20)
                stack.callback(store.dispose)  # runs before the DROP DATABASE above it
                store.upgrade()
                stores[backend] = store
            return stores[backend]

        yield get


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, migrated_store: Callable[[str], RecordStore]) -> RecordStore:
    """A migrated store on ``backend`` (shared by the session; each test uses its own random user ids)."""
    return migrated_store(backend)


@pytest.fixture
def scratch_url(backend: str, tmp_path: object) -> Iterator[str]:
    """A database of its own, empty (for the migration tests)."""
    with scratch_database(backend, str(tmp_path)) as url:
        yield url

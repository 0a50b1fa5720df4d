"""Fixtures of the storage conformance suite: one scratch database per backend per session,
created the first time a test asks for that backend and dropped at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from harness import scratch_database
from records_support import BACKENDS, MODES

from banata_middleware.stores.records import RecordStore


class MigratedStores:
    """``stores(backend)``: the session's migrated store on ``backend``, created when first asked for."""

    def __init__(self, stack: ExitStack, tmp: str) -> None:
        self.stack = stack
        self.tmp = tmp
        self.stores: dict[str, RecordStore] = {}

    def __call__(self, backend: str) -> RecordStore:
        if backend not in self.stores:
            # A pool as large as the race tests' crowd, so the sync engine keeps its connections.
            store = RecordStore(self.stack.enter_context(scratch_database(backend, self.tmp)), pool_size=20)
            self.stack.callback(store.dispose)  # runs before the DROP DATABASE above it
            store.upgrade()
            self.stores[backend] = store
        return self.stores[backend]

    def release(self) -> None:
        """Close the connections the pools keep idle (the pools open new ones when next asked): after
        a race test that is 20 per server, which a worker would otherwise hold to the end of its session
        while the other xdist worker runs its own crowds against the same servers (PostgreSQL's
        max_connections is 100)."""
        for store in self.stores.values():
            store.dispose()


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedStores]:
    with ExitStack() as stack:
        yield MigratedStores(stack, str(tmp_path_factory.mktemp("records")))


@pytest.fixture(scope="module", autouse=True)
def _idle_connections_closed_after_each_module(migrated_store: MigratedStores) -> Iterator[None]:
    yield
    migrated_store.release()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, migrated_store: MigratedStores) -> RecordStore:
    """A migrated store on ``backend`` (shared by the session; each test uses its own random user ids)."""
    return migrated_store(backend)


@pytest.fixture
def scratch_url(backend: str, tmp_path: object) -> Iterator[str]:
    """A database of its own, empty (for the migration tests)."""
    with scratch_database(backend, str(tmp_path)) as url:
        yield url

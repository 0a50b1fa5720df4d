"""Every hot-store operation exists twice, as a Lua script (Redis) and as its twin in the memory
store, and the contract suite runs both. This checks the pairing itself, so that a script added
or removed on one side only fails here, by name, rather than as a KeyError in some flow."""

from __future__ import annotations

from pathlib import Path

import banata_middleware.stores as stores_pkg
from banata_middleware.stores.memory import MemoryStore

LUA = Path(stores_pkg.__file__).parent / "lua"


def lua_scripts() -> set[str]:
    return {p.stem for p in LUA.glob("*.lua") if not p.stem.startswith("_")}


def memory_twins() -> set[str]:
    store = MemoryStore()
    return set(store._scripts) | set(store._reads)


def test_every_lua_script_has_a_memory_twin() -> None:
    missing = lua_scripts() - memory_twins()
    assert not missing, f"Lua scripts without a twin in stores/memory.py: {sorted(missing)}"


def test_every_memory_twin_has_a_lua_script() -> None:
    orphans = memory_twins() - lua_scripts()
    assert not orphans, f"memory-store operations without a Lua script: {sorted(orphans)}"


def test_every_script_is_loaded_by_the_redis_store() -> None:
    from banata_middleware.stores.redis import load_scripts

    assert set(load_scripts()) == lua_scripts()

"""Stores: the only I/O. ``MemoryStore`` (embedded default) and ``RedisStore`` (Lua scripts).

``RedisStore`` is imported on first use, so the base install works without the ``redis`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .memory import MemoryStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["MemoryStore", "RedisStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)

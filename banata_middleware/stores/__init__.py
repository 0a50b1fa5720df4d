"""Stores: the only I/O. ``MemoryStore`` (embedded default) and ``RedisStore`` (Lua scripts)."""

from .memory import MemoryStore
from .redis import RedisStore

__all__ = ["MemoryStore", "RedisStore"]

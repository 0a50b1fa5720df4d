"""Column types that behave the same on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["Ident", "Millis", "RowId"]

#: An autoincrement primary key: BIGINT, except on SQLite, where only INTEGER PRIMARY KEY is the rowid.
RowId = BigInteger().with_variant(Integer(), "sqlite")

#: Unix time in milliseconds, from the Clock (the same unit as audit ``at_ms``): no time zones to get wrong.
Millis = BigInteger


class Ident(TypeDecorator[str]):
    """An identifier compared byte for byte: user ids, factor ids, hashes, ciphertexts.

    MySQL/MariaDB compare VARCHAR case-insensitively and ignore trailing spaces by default, so users
    ``Ann`` and ``ann `` would share one row of factors. There the column is VARBINARY (exact bytes,
    no padding, four bytes per character); elsewhere VARCHAR, whose ``=`` is already exact.
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.VARBINARY(self.length * 4))
        return dialect.type_descriptor(String(self.length))

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name in ("mysql", "mariadb"):
            return value.encode()
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, bytes | bytearray):
            return bytes(value).decode()
        return value  # type: ignore[no-any-return]

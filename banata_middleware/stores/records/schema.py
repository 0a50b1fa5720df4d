"""The durable schema, SQLAlchemy Core, every table name prefixed (default ``banata_``).

Core tables live here: accounts (built-in users), user_state (permanent lock, session generation,
the factor-change lease) and audit_events (append-only). Each second factor owns its tables in its own module under
``factors/``, which declares them in its ``FACTOR`` (``factor.Factor.tables``): a new factor is a
new module, one line in ``factors.FACTORS`` and a migration; nothing here changes. ``user_id`` is
a string everywhere so an app with its own users can store its ids
(see docs/storage.md for adding a foreign key to the app's users table).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, Executable, Index, Integer, MetaData, String, Table, Text

from . import delivery
from .factors import FACTORS
from .types import Ident, Millis, RowId

__all__ = ["USER_ID_LENGTH", "Schema"]

USER_ID_LENGTH = 128
_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,23}\Z")


class Schema:
    """The tables for one prefix, in their own ``MetaData`` (never the app's)."""

    # The built-in factors' tables (made from factors.FACTORS, like any factor's: factor_tables).
    totp_factors: Table
    backup_codes: Table
    passkeys: Table
    otp_factors: Table

    def __init__(self, prefix: str = "banata_", dialect: str = "") -> None:
        if not _PREFIX.match(prefix):
            raise ValueError("table prefix: lower-case letters, digits and '_', starting with a letter, "
                             "at most 24 characters")
        self.prefix = prefix
        #: The SQL dialect name of the store using the schema ("sqlite", "postgresql", "mysql", "mariadb").
        self.dialect = dialect
        self.metadata = m = MetaData()
        self.version_table = f"{prefix}alembic_version"
        self.accounts = Table(
            f"{prefix}accounts", m,
            Column("id", Ident(USER_ID_LENGTH), primary_key=True),
            # The canonical form (trimmed, lower-cased) the flows compute; the unique index decides sign-up races.
            Column("email", Ident(254), nullable=False, unique=True),
            Column("password_hash", String(512), nullable=False),
            Column("name", String(256), nullable=False, server_default=""),
            Column("created_at", Millis, nullable=False),
        )
        self.user_state = Table(
            f"{prefix}user_state", m,
            Column("user_id", Ident(USER_ID_LENGTH), primary_key=True),
            # Consecutive failed second-factor proofs; at the ceiling the account locks until an admin resets it.
            Column("failure_streak", Integer, nullable=False, server_default="0"),
            Column("locked_at", Millis, nullable=True),
            # Bumped when every session of the user ends; the hot store's copy is compared with it.
            Column("generation", BigInteger, nullable=False, server_default="0"),
            Column("revoked_at", Millis, nullable=True),
            # The factor-change lease (0009; named when only removals held it): while a change of
            # the user's factors that its request may still undo is unsettled, when its hold ends
            # (NULL: none in flight); and the lease counter, moved on by every take and every
            # administrator's clear, whose value is the token of the lease last taken (never repeated).
            Column("removing_until", Millis, nullable=True),
            Column("lease_seq", BigInteger, nullable=False, server_default="0"),
        )
        self.audit_events = Table(
            f"{prefix}audit_events", m,
            Column("id", RowId, primary_key=True, autoincrement=True),
            Column("user_id", Ident(USER_ID_LENGTH), nullable=False),
            Column("type", String(64), nullable=False),
            Column("at", Millis, nullable=False),
            Column("ip", String(64), nullable=False, server_default=""),
            Column("user_agent", String(512), nullable=False, server_default=""),
            Column("session_id", String(128), nullable=False, server_default=""),
            Column("detail", Text, nullable=True),  # JSON object of strings
            Index(f"{prefix}audit_events_user_ix", "user_id", "id"),
            Index(f"{prefix}audit_events_at_ix", "at"),  # retention deletes by age
            # SQLite: never reuse an id, even once retention pruned every row (delivery cursors
            # and dead letters name events by id). Servers never do.
            sqlite_autoincrement=True,
        )
        #: Every factor's tables by attribute name (``factors.FACTORS``); the ones of the built-in
        #: factors are also attributes, typed below.
        self.factor_tables: dict[str, Table] = {}
        #: The same by factor name (``Factor.name``): what a factor's rows are, for ``users.takeable``.
        self.tables_of: dict[str, tuple[Table, ...]] = {}
        for factor in FACTORS:
            tables = factor.tables(m, prefix)
            for name, table in tables.items():
                if name in self.factor_tables or hasattr(self, name):
                    raise ValueError(f"factor {factor.name}: the schema has a {name!r} already")
                self.factor_tables[name] = table
                setattr(self, name, table)
            self.tables_of[factor.name] = tuple(tables.values())
        # Each consumer's place in audit_events (the outbox of notices and webhooks) and its dead letters.
        self.delivery_cursors, self.dead_letters = delivery.define_tables(m, prefix)
        self._prepared: dict[Callable[[Schema], Executable], Executable] = {}

    def prepared(self, build: Callable[[Schema], Executable]) -> Executable:
        """``build(self)``, made once: a statement whose values are ``bindparam``s, executed with
        them (``ops.Statement``). Reusing the object also reuses its cache key, which SQLAlchemy
        memoizes on it; ``build`` must be a module-level function (it is the cache's key)."""
        statement = self._prepared.get(build)
        if statement is None:
            statement = self._prepared[build] = build(self)
        return statement

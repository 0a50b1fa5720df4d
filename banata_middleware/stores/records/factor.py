"""What a second factor contributes to the shared parts of the record store, declared once by its
module (``factors/*.py``, each a ``FACTOR``) and listed once (``factors.FACTORS``).

The code that used to list the factors by hand iterates the list instead:

- ``Schema`` makes each factor's tables (``tables``);
- ``LoadUser``'s one statement carries each factor's columns (``load``; at most one factor, the
  authenticator apps, returns rows of its own: ``joined``), and ``UserRecord.parts`` keeps what
  each one read (``read``);
- "two-factor is on" is any factor whose part says so (``turns_on``), and the record store
  decides the same in SQL (``on_in_sql``) when a removal asks whether it removes the last factor;
- a pending sign-in offers each factor's ``twoFactorMethods`` names (``methods``);
- disable takes each factor's rows and an undo puts them back (``take``, ``put_back``); an
  administrator's reset removes them (``remove``); ``kept_by_disable`` factors (passkeys) stay.

A new factor is therefore its module with its ``FACTOR``, one line in ``factors.FACTORS`` and a
migration (docs/storage.md, "Adding a factor"); nothing shared is edited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import BindParameter, ColumnElement, Label, MetaData, Row, Table, delete

from .ops import SqlGen

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["Factor", "Joined", "Offer", "delete_rows"]


@dataclass(frozen=True, slots=True)
class Offer:
    """What the app's configuration lets a pending sign-in offer (``flows.session.SessionCore.methods``)."""

    otp_channels: frozenset[str]  # configured channels for codes by message (empty: off)
    passkeys: bool  # passkey sign-in is on
    code_key_known: Callable[[str], bool]  # the key backup codes were hashed under is still configured


@dataclass(frozen=True, slots=True)
class Joined:
    """The one factor whose rows ``LoadUser`` returns one by one (outer-joined to the scalars):
    its table, ordered by ``order_by``; a user without any gets one row of NULLs."""

    table: Callable[[Schema], Table]
    order_by: Callable[[Schema], Sequence[ColumnElement[Any]]]


def _nothing(schema: Schema, user: BindParameter[str]) -> Sequence[Label[Any]]:
    return ()


def _no_methods(part: Any, offer: Offer) -> Sequence[str]:
    return ()


def delete_rows(table: Callable[[Schema], Table]) -> Callable[[Schema, str], SqlGen[int]]:
    """A ``remove``: every row of the user in ``table``; replies the count."""

    def remove(schema: Schema, user_id: str) -> SqlGen[int]:
        t = table(schema)
        return int((yield delete(t).where(t.c.user_id == user_id)).rowcount)

    return remove


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor's contributions. Only ``name``, ``tables``, ``read`` and ``remove`` are required."""

    #: Its key in ``UserRecord.parts`` and ``DisabledSecondFactor.taken``.
    name: str
    #: Its tables: ``{Schema attribute: Table}`` made in the schema's MetaData with its prefix.
    tables: Callable[[MetaData, str], Mapping[str, Table]]
    #: Its part of the user's record, from ``LoadUser``'s first row (its ``load`` columns, by their
    #: labels) and all rows (``joined``'s columns, for the joined factor).
    read: Callable[[Row[Any], Sequence[Row[Any]]], Any]
    #: An administrator's reset (``RemoveSecondFactor``): delete the user's rows, reply the count.
    remove: Callable[[Schema, str], SqlGen[int]]
    #: Its columns in ``LoadUser``'s one statement: labelled scalar subqueries (one index lookup
    #: each) of the user, given as the bound parameter ``user``. Labels are unique across factors.
    load: Callable[[Schema, BindParameter[str]], Sequence[Label[Any]]] = _nothing
    joined: Joined | None = None
    #: Its part turns two-factor on (a sign-in must pass a second factor); None: never.
    turns_on: Callable[[Any], bool] | None = None
    #: The same decided in SQL: a condition (an EXISTS) true when the user's rows turn it on, read
    #: after the locks every factor removal takes (``lock_user_factors``). Given with ``turns_on``.
    on_in_sql: Callable[[Schema, str], ColumnElement[bool]] | None = None
    #: The ``twoFactorMethods`` names its part lets a pending sign-in answer with.
    methods: Callable[[Any, Offer], Sequence[str]] = _no_methods
    #: Disable keeps its rows (passkeys: a sign-in factor of their own); a reset may remove them.
    kept_by_disable: bool = False
    #: Disable: the user's rows read under lock (FOR UPDATE) and deleted; replies them as they were.
    take: Callable[[Schema, str], SqlGen[tuple[Any, ...]]] | None = None
    #: An undo of ``take``: the rows back as they were (a unique key met: the op says TAKEN).
    put_back: Callable[[Schema, str, tuple[Any, ...]], SqlGen[None]] | None = None
    #: Its part holds anything (the command line's "is this user known to SQL").
    present: Callable[[Any], bool] = field(default=bool)

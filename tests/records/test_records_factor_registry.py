"""The factor registry (``factors.FACTORS``, ``factor.Factor``): a new factor declared in one module
of its own, with nothing shared edited, is made, loaded, counted, offered, taken, put back and
removed by the shared code, on SQLite, PostgreSQL and MariaDB. Here the new factor is a toy
"hardware token" that exists only in this file: registered by adding its ``FACTOR`` to the list
(as a new module's one line would), and its table created as its migration would."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    Label,
    MetaData,
    Row,
    String,
    Table,
    delete,
    exists,
    func,
    insert,
    select,
)

from banata_middleware.flows.session import SessionCore
from banata_middleware.stores.records import (
    AuditEntry,
    DisableOtp,
    DisableSecondFactor,
    EnableOtp,
    EnableTotp,
    LoadUser,
    RecordStore,
    RemoveAuthenticator,
    RemoveSecondFactor,
    RestoreSecondFactor,
    Status,
)
from banata_middleware.stores.records.factor import Factor, Offer, delete_rows
from banata_middleware.stores.records.factors import FACTORS
from banata_middleware.stores.records.ops import SqlGen
from banata_middleware.stores.records.schema import Schema
from banata_middleware.stores.records.types import Ident

T = 1_800_000_000_000
STEP = 60_000_000


# -- the new factor: everything it needs, in one place ---------------------------------------------

def _table(schema: Schema) -> Table:
    return schema.factor_tables["toy_tokens"]


def _tables(metadata: MetaData, prefix: str) -> dict[str, Table]:
    return {"toy_tokens": Table(f"{prefix}toy_tokens", metadata, Column("user_id", Ident(128), primary_key=True),
                                Column("serial", String(32), primary_key=True))}


def _load(schema: Schema, user: BindParameter[str]) -> Sequence[Label[Any]]:
    t = _table(schema)
    return [select(func.count()).select_from(t).where(t.c.user_id == user).scalar_subquery().label("toy_tokens")]


def _read(row: Row[Any], rows: Sequence[Row[Any]]) -> int:
    return int(row.toy_tokens)


def _on_in_sql(schema: Schema, user_id: str) -> ColumnElement[bool]:
    t = _table(schema)
    return exists().where(t.c.user_id == user_id)


def _methods(count: int, offer: Offer) -> Sequence[str]:
    return ("toy",) if count else ()


def _take(schema: Schema, user_id: str) -> SqlGen[tuple[str, ...]]:
    t = _table(schema)
    serials = tuple((yield select(t.c.serial).where(t.c.user_id == user_id).with_for_update()).scalars())
    if serials:
        yield delete(t).where(t.c.user_id == user_id)
    return serials


def _put_back(schema: Schema, user_id: str, serials: tuple[str, ...]) -> SqlGen[None]:
    yield insert(_table(schema)).values([{"user_id": user_id, "serial": s} for s in serials])


TOY = Factor("toy", _tables, _read, delete_rows(_table), load=_load, turns_on=bool, on_in_sql=_on_in_sql,
             methods=_methods, take=_take, put_back=_put_back)


# -- registered, and its table made ------------------------------------------------------------------

@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, scratch_url: str) -> Iterator[RecordStore]:
    registered = (*FACTORS, TOY)
    # The one line a new module adds to factors.FACTORS (read here where it was imported by name).
    for module in ("banata_middleware.stores.records.factors", "banata_middleware.stores.records.schema",
                   "banata_middleware.flows.session"):
        monkeypatch.setattr(f"{module}.FACTORS", registered)
    store = RecordStore(scratch_url)
    store.upgrade()
    _table(store.schema).create(store.engine)  # what its migration would do
    yield store
    store.dispose()


def _add_token(store: RecordStore, uid: str, serial: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(insert(_table(store.schema)).values(user_id=uid, serial=serial))


def _tokens(store: RecordStore, uid: str) -> list[str]:
    t = _table(store.schema)
    with store.engine.connect() as conn:
        return sorted(conn.execute(select(t.c.serial).where(t.c.user_id == uid)).scalars())


def _methods_offered(record: Any) -> list[str]:
    flows = SimpleNamespace(config=SimpleNamespace(otp=None, auth_methods=SimpleNamespace(passkey=True)),
                            codes_key_gone=lambda kid: False)
    return SessionCore.methods(flows, record)  # type: ignore[arg-type]


def test_a_new_factor_is_loaded_counted_and_offered(store: RecordStore) -> None:
    assert "toy_tokens" in store.schema.factor_tables
    record = store.execute(LoadUser("ann"))
    assert record.parts["toy"] == 0 and not record.two_factor_enabled and not record.has_factor_rows()
    _add_token(store, "ann", "T-1")
    _add_token(store, "ann", "T-2")
    record = store.execute(LoadUser("ann"))
    assert record.parts["toy"] == 2 and record.two_factor_enabled and record.has_factor_rows()
    assert _methods_offered(record) == ["toy"]
    store.execute(EnableTotp("ann", "totp", "ct", "k1", T, STEP, ["h1"], "c1"))
    record = store.execute(LoadUser("ann"))
    assert (len(record.totp), record.backup_codes, record.parts["toy"]) == (1, 1, 2)  # one statement, all parts
    assert _methods_offered(record) == ["totp", "backup_code", "toy"]


def test_disable_takes_it_an_undo_puts_it_back_and_a_reset_removes_it(store: RecordStore) -> None:
    store.execute(EnableTotp("bob", "totp", "ct", "k1", T, STEP, ["h1"], "c1"))
    _add_token(store, "bob", "T-9")
    removed = store.execute(DisableSecondFactor("bob", T))
    assert removed is not None and removed.taken["toy"] == ("T-9",)
    assert _tokens(store, "bob") == [] and not store.execute(LoadUser("bob")).two_factor_enabled
    assert store.execute(RestoreSecondFactor("bob", removed)) is Status.OK
    assert _tokens(store, "bob") == ["T-9"] and store.execute(LoadUser("bob")).two_factor_enabled
    assert store.execute(RemoveSecondFactor("bob", T)) is Status.OK
    assert _tokens(store, "bob") == [] and not store.execute(LoadUser("bob")).has_factor_rows()


def test_removing_the_last_app_or_codes_by_message_keeps_2fa_on_while_it_remains(store: RecordStore) -> None:
    """The removals decide in SQL whether they remove the last factor (``users.others_on``): the
    new factor counts there too, without either removal naming it."""
    off = [AuditEntry("two_factor.disabled", T)]
    store.execute(EnableTotp("cy", "totp", "ct", "k1", T, STEP, [], ""))
    _add_token(store, "cy", "T-3")
    assert store.execute(RemoveAuthenticator("cy", "totp", T, audit_off=off)).two_factor_off is False
    store.execute(EnableOtp("cy", "email", "cy@example.com", T))
    assert store.execute(DisableOtp("cy", None, T, audit_off=off)).two_factor_off is False
    record = store.execute(LoadUser("cy"))
    assert (record.totp, record.otp, record.two_factor_enabled) == ((), (), True)  # on by the token alone

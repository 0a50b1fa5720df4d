"""The SQL cost of the verification path, counted (the issue's budget: two transactions per verify;
the wiring adds its Redis round trips on top). Statements are counted as the driver sees them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from records_support import new_id
from sqlalchemy import event

from banata_middleware.stores.records import (
    AcceptTotpStep,
    AddTotpFactor,
    AuditEntry,
    ConfirmTotpFactor,
    ConsumeBackupCode,
    LoadUser,
    RecordStore,
    ReplaceBackupCodes,
    Status,
)

T = 1_800_000_000_000


@contextmanager
def counted(store: RecordStore) -> Iterator[list[str]]:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(("BEGIN", "PRAGMA")):  # SQLite's explicit BEGIN is not a round trip of ours
            statements.append(statement.split()[0].upper())

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)


def test_a_totp_verification_costs_one_read_and_one_write_transaction(store: RecordStore) -> None:
    uid = new_id()
    store.execute(AddTotpFactor(uid, "totp", "ct", "k1", T))
    store.execute(ConfirmTotpFactor(uid, "totp", "ct", 10, T))
    with counted(store) as lookup:
        assert store.execute(LoadUser(uid)).two_factor_enabled
    assert lookup == ["SELECT"]  # factors, counts, state and account in one statement
    with counted(store) as write:
        assert store.execute(AcceptTotpStep(uid, "totp", "ct", 11, audit=[AuditEntry("t", T)])) is Status.ACCEPTED
    # the conditional update (the decision), ending the failure streak, the audit row
    assert write == ["UPDATE", "UPDATE", "INSERT"]


def test_a_backup_code_costs_one_write_transaction_after_the_lookup(store: RecordStore) -> None:
    uid = new_id()
    store.execute(ReplaceBackupCodes(uid, ["h1", "h2"], "k1", T))
    with counted(store) as write:
        assert store.execute(ConsumeBackupCode(uid, ["h1"], audit=[AuditEntry("t", T)], low_at=2,
                                               audit_when_low=[AuditEntry("backup_codes.low", T)])).remaining == 1
    # the conditional delete (the decision), the streak, the count the reply carries (it also decides
    # the "few codes left" row), the audit rows (one batch, the low-codes row with them)
    assert write == ["DELETE", "UPDATE", "SELECT", "INSERT"]

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
    AuditEntry,
    ConsumeBackupCode,
    EnableTotp,
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
    store.execute(EnableTotp(uid, "totp", "ct", "k1", T, 10, [], "", while_off=True))
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


def test_a_passkey_registration_costs_one_write_transaction_and_its_release_only_with_two_factor_on(
        store: RecordStore) -> None:
    """RegisterPasskey (R10-3): the removals' locks, the lease's one conditional UPDATE (which also
    decides whether two-factor is on), the read of which branch it took, the row and its audit
    row; with two-factor off no lease, so the flow pays no EndRemoval either."""
    from banata_middleware.stores.records import LeasedChange, Passkey, RegisterPasskey

    def passkey(uid: str) -> Passkey:
        return Passkey(new_id("cred"), uid, "cose", 0, (), "single_device", False, "", "", T)

    off, on = new_id(), new_id()
    store.execute(EnableTotp(on, "totp", "ct", "k1", T, 10, [], ""))
    for uid, lease in ((off, False), (on, True)):
        with counted(store) as write:
            reply = store.execute(RegisterPasskey(passkey(uid), T, [AuditEntry("passkey.registered", T)]))
        assert isinstance(reply, LeasedChange) and reply.status is Status.CREATED and bool(reply.lease) is lease
        assert write == ["SELECT", "INSERT", "SELECT", "UPDATE", "SELECT", "INSERT", "INSERT"], write

"""A record store that cannot answer fails closed: ``AuthError(503, STORE_UNAVAILABLE)``, on both
engines, and nothing of a failed transaction is left behind."""

from __future__ import annotations

import asyncio
import logging

import pytest
from records_support import new_id

from banata_middleware.errors import AuthError
from banata_middleware.stores.records import (
    AcceptTotpStep,
    AuditEntry,
    ConsumeBackupCode,
    ListAudit,
    LoadUser,
    RecordOp,
    RecordStore,
    ReplaceBackupCodes,
)
from banata_middleware.stores.records.ops import SqlGen
from banata_middleware.stores.records.schema import Schema

UNREACHABLE = {  # nothing listens on port 1
    "postgresql": "postgresql://postgres@127.0.0.1:1/banata",
    "mariadb": "mysql://root@127.0.0.1:1/banata",
}


def _both_engines(store: RecordStore, op: RecordOp[object]) -> list[AuthError]:
    errors = []
    with pytest.raises(AuthError) as sync_error:
        store.execute(op)
    errors.append(sync_error.value)

    async def run() -> None:
        try:
            await store.aexecute(op)
        finally:
            await store.adispose()

    with pytest.raises(AuthError) as async_error:
        asyncio.run(run())
    errors.append(async_error.value)
    return errors


@pytest.mark.parametrize("server", sorted(UNREACHABLE))
def test_an_unreachable_server_gives_503_on_both_engines(server: str, caplog: pytest.LogCaptureFixture) -> None:
    store = RecordStore(UNREACHABLE[server], connect_timeout=1)
    try:
        for error in _both_engines(store, AcceptTotpStep("u", "totp", "ciphertext-xyz", 5)):
            assert (error.status, error.code) == (503, "STORE_UNAVAILABLE")
    finally:
        store.dispose()
    assert "ciphertext-xyz" not in caplog.text  # the log names the failure, not the statement's values


def test_tables_that_do_not_exist_fail_closed(tmp_path: object) -> None:
    store = RecordStore(f"sqlite:///{tmp_path}/never-migrated.db")
    try:
        for error in _both_engines(store, LoadUser("u")):
            assert error.status == 503
    finally:
        store.dispose()


class _ConsumeThenBreak(RecordOp[int]):
    """Consumes a code, writes its audit row, then hits a server error in the same transaction."""

    writes = True

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id

    def run(self, schema: Schema) -> SqlGen[int]:
        inner = ConsumeBackupCode(self.user_id, ["h1"], audit=[AuditEntry("backup_code.used", 1)]).run(schema)
        yield from inner
        from sqlalchemy import text

        yield text("SELECT * FROM banata_no_such_table")
        return 0


def test_a_failed_transaction_leaves_nothing_half_written(store: RecordStore, mode: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    uid = new_id()
    store.execute(ReplaceBackupCodes(uid, ["h1", "h2"], "k1", 1))
    caplog.set_level(logging.WARNING)
    if mode == "sync":
        with pytest.raises(AuthError):
            store.execute(_ConsumeThenBreak(uid))
    else:
        async def run() -> None:
            try:
                await store.aexecute(_ConsumeThenBreak(uid))
            finally:
                await store.adispose()

        with pytest.raises(AuthError):
            asyncio.run(run())
    assert store.execute(LoadUser(uid)).backup_codes == 2  # the consume was rolled back
    assert store.execute(ListAudit(uid)) == ()  # and so was its audit row

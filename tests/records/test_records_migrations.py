"""Schema management: the shipped Alembic migrations, their own version table, ``banata-mfa db``,
the embedded SQLite that creates its schema, and a production store that refuses a stale schema."""

from __future__ import annotations

import argparse
import os

import pytest
from sqlalchemy import inspect, text

from banata_middleware.db_cli import add_db_commands, run_db
from banata_middleware.stores.records import LoadUser, RecordStore, RevokeSessions, SchemaOutOfDate, migrate


def db(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="banata-mfa")
    add_db_commands(parser.add_subparsers(dest="command", required=True))
    return run_db(parser.parse_args(["db", *argv]))


def test_the_migrations_build_exactly_the_schema_the_code_defines(scratch_url: str) -> None:
    store = RecordStore(scratch_url)
    try:
        assert store.current_revision() is None
        with pytest.raises(SchemaOutOfDate, match="banata-mfa db upgrade"):
            store.check_schema()
        store.upgrade()
        assert store.current_revision() == migrate.head()
        assert migrate.check(store.engine, store.schema) == []  # the frozen migration == schema.py
        store.check_schema()
        store.upgrade()  # idempotent
        assert store.execute(RevokeSessions("u", 1)) == 1
    finally:
        store.dispose()


def test_a_schema_at_another_revision_refuses_to_start_and_names_the_command(scratch_url: str) -> None:
    store = RecordStore(scratch_url)
    try:
        store.upgrade()
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE banata_alembic_version SET version_num = '0000'"))
        with pytest.raises(SchemaOutOfDate, match=r"revision 0000.*banata-mfa db upgrade"):
            store.check_schema()
    finally:
        store.dispose()


def test_our_tables_live_beside_the_apps_own(scratch_url: str, backend: str) -> None:
    """The app's tables and its own Alembic history are untouched, and not reported as drift;
    a foreign key the app adds from our user_id to its users (docs/storage.md) is not drift either."""
    store = RecordStore(scratch_url, prefix="mfa_")
    key = "VARBINARY(512)" if backend == "mariadb" else "VARCHAR(128)"  # the type of our user_id columns
    try:
        with store.engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE users (id {key} PRIMARY KEY, email VARCHAR(100))"))
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES ('apps_own')"))
        store.upgrade()
        if backend != "sqlite":  # SQLite cannot add a constraint to an existing table
            with store.engine.begin() as conn:
                conn.execute(text("ALTER TABLE mfa_totp_factors ADD CONSTRAINT mfa_totp_factors_user_fk "
                                  "FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE"))
        assert migrate.check(store.engine, store.schema) == []
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "apps_own"
            assert conn.execute(text("SELECT version_num FROM mfa_alembic_version")).scalar_one() == migrate.head()
        assert "users" in inspect(store.engine).get_table_names()
    finally:
        store.dispose()


def test_the_embedded_sqlite_creates_and_keeps_its_schema(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "demo", "records.db")
    os.makedirs(os.path.dirname(path))
    store = RecordStore.embedded(path)
    store.execute(RevokeSessions("u", 1))
    store.dispose()
    again = RecordStore.embedded(path)  # a restart: same file, same records, no second migration
    try:
        again.check_schema()
        assert again.execute(LoadUser("u")).generation == 1
        with again.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000
    finally:
        again.dispose()


def test_db_commands_upgrade_current_and_check(scratch_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert db("check", "--database-url", scratch_url) == 1
    assert "banata-mfa db upgrade" in capsys.readouterr().err
    assert db("current", "--database-url", scratch_url) == 0
    assert "none" in capsys.readouterr().out
    assert db("upgrade", "--database-url", scratch_url) == 0
    capsys.readouterr()
    assert db("current", "--database-url", scratch_url) == 0
    assert capsys.readouterr().out.strip() == f"{migrate.head()} (newest)"
    assert db("check", "--database-url", scratch_url) == 0
    assert "schema is current" in capsys.readouterr().out


def test_db_commands_explain_a_missing_url_or_server(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANATA_DATABASE_URL", raising=False)
    assert db("check") == 2
    assert "--database-url" in capsys.readouterr().err
    assert db("current", "--database-url", "postgresql://postgres@127.0.0.1:1/none") == 1
    assert "cannot use postgresql+psycopg://postgres@127.0.0.1:1/none" in capsys.readouterr().err
    assert db("upgrade", "--database-url", "oracle://x@y/z") == 2
    assert "unsupported database" in capsys.readouterr().err


def test_0004_makes_sqlite_audit_ids_never_reused_even_after_retention_emptied_the_table(
        tmp_path: os.PathLike[str]) -> None:
    """An existing SQLite database whose events were all pruned: after the upgrade the next event's
    id is past every delivery cursor (R5-5), and the rows kept their ids."""
    from banata_middleware.stores.records import AppendAudit, AuditEntry, ListAudit, PruneAudit

    store = RecordStore(f"sqlite:///{os.path.join(tmp_path, 'old.db')}")
    try:
        migrate.upgrade(store.engine, store.schema, "0003")
        store.execute(AppendAudit("u", [AuditEntry("a", 1), AuditEntry("b", 1), AuditEntry("c", 1)]))
        with store.engine.begin() as conn:  # a cursor as revision 0003 has it (RegisterConsumer is newer)
            conn.execute(text("INSERT INTO banata_delivery_cursors (consumer, last_id) VALUES ('notifier', 3)"))
        store.execute(PruneAudit(10))
        store.execute(AppendAudit("u", [AuditEntry("d", 20)]))  # before 0004: id 1 again
        migrate.upgrade(store.engine, store.schema)
        assert [e.id for e in store.execute(ListAudit())] == [1]  # the rebuild keeps the ids
        store.execute(PruneAudit(30))
        store.execute(AppendAudit("u", [AuditEntry("e", 40)]))
        assert [e.id for e in store.execute(ListAudit())] == [4]  # past the cursor, though no row is left
    finally:
        store.dispose()


def test_0007_names_the_one_app_a_user_had_and_adds_its_last_use(scratch_url: str) -> None:
    """A database from before several authenticator apps per user (issue 15): the unnamed app of
    each user gets the name a first enrolment gives now, so every listed app has one; its last
    use is unknown (NULL) until its next accepted code."""
    from banata_middleware.stores.records import AcceptTotpStep, Status

    store = RecordStore(scratch_url)
    try:
        migrate.upgrade(store.engine, store.schema, "0006")
        with store.engine.begin() as conn:  # the one app as revision 0006 stored it
            conn.execute(text("INSERT INTO banata_totp_factors (user_id, id, name, secret, key_id, created_at, "
                              "confirmed_at, last_step) VALUES ('u', 'totp', '', 'ct', 'k1', 1, 1, 5)"))
        migrate.upgrade(store.engine, store.schema)
        assert migrate.check(store.engine, store.schema) == []
        factor = store.execute(LoadUser("u")).totp[0]
        assert (factor.name, factor.last_step, factor.last_used_at) == ("Authenticator", 5, None)
        assert store.execute(AcceptTotpStep("u", "totp", "ct", 6, at=1_000)) is Status.ACCEPTED
        assert store.execute(LoadUser("u")).totp[0].last_used_at == 1_000
    finally:
        store.dispose()


def test_0008_keeps_every_existing_backup_code_in_use_and_a_downgrade_drops_only_staged_ones(
        scratch_url: str) -> None:
    """Backup codes stored before generation went in two phases are codes in use (``staged`` NULL):
    they still count and still sign in after the upgrade. Going back to 0007 drops the staged rows
    of a generation under way (never shown to anyone), never a code in use."""
    from banata_middleware.stores.records import ConsumeBackupCode, StageBackupCodes, Status

    store = RecordStore(scratch_url)
    try:
        migrate.upgrade(store.engine, store.schema, "0007")
        with store.engine.begin() as conn:  # two codes as revision 0007 stored them
            conn.execute(text("INSERT INTO banata_backup_codes (user_id, code_hash, key_id, created_at) "
                              "VALUES ('u', 'h1', 'k1', 1), ('u', 'h2', 'k1', 1)"))
        migrate.upgrade(store.engine, store.schema)
        assert migrate.check(store.engine, store.schema) == []
        assert store.execute(LoadUser("u")).backup_codes == 2
        assert store.execute(ConsumeBackupCode("u", ["h1"])).status is Status.CONSUMED
        assert store.execute(StageBackupCodes("u", "t" * 32, ["n1", "n2"], "k1", 2)) is Status.OK
        from alembic import command

        with store.engine.begin() as conn:
            command.downgrade(migrate.config(store.schema.prefix, conn), "0007")
        with store.engine.connect() as conn:
            left = conn.execute(text("SELECT code_hash FROM banata_backup_codes")).scalars().all()
        assert [bytes(h).decode() if isinstance(h, bytes | bytearray) else h for h in left] == ["h2"]  # VARBINARY
        migrate.upgrade(store.engine, store.schema)
        assert store.execute(LoadUser("u")).backup_codes == 1
    finally:
        store.dispose()


def test_0009_starts_every_user_with_no_removal_in_flight(scratch_url: str) -> None:
    """Users stored before the factor-change lease have none (NULL, counter 0): their first
    removal takes it at once, with the token 1. Going back to 0008 drops both columns, whatever
    lease is held."""
    from banata_middleware.stores.records import REMOVAL_LEASE_MS, DisableOtp, OtpRemoval, RestoreOtp, Status

    store = RecordStore(scratch_url)
    try:
        migrate.upgrade(store.engine, store.schema, "0008")
        with store.engine.begin() as conn:  # a user as revision 0008 stored them
            conn.execute(text("INSERT INTO banata_user_state (user_id, failure_streak, generation) VALUES ('u', 0, 0)"))
            conn.execute(text("INSERT INTO banata_otp_factors (user_id, channel, address, created_at) "
                              "VALUES ('u', 'email', 'a@example.com', 1), ('u', 'sms', '+15551234567', 1)"))
        migrate.upgrade(store.engine, store.schema)
        assert migrate.check(store.engine, store.schema) == []
        removal = store.execute(DisableOtp("u", "sms", 10))
        assert removal == OtpRemoval(Status.OK, False, gone=(("sms", "+15551234567", 1),), lease=1)
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT removing_until, lease_seq FROM banata_user_state "
                                    "WHERE user_id = 'u'")).one()
        assert tuple(row) == (10 + REMOVAL_LEASE_MS, 1)
        from alembic import command

        with store.engine.begin() as conn:
            command.downgrade(migrate.config(store.schema.prefix, conn), "0008")
        with store.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("banata_user_state")}
        assert not {"removing_until", "lease_seq"} & columns
        migrate.upgrade(store.engine, store.schema)
        assert store.execute(RestoreOtp("u", removal.gone, removal.lease)).status is Status.CHANGED  # its lease went
        assert store.execute(DisableOtp("u", "email", 20)).status is Status.OK  # none held
    finally:
        store.dispose()

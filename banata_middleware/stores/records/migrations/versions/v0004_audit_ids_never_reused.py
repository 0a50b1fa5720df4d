"""Audit event ids are never reused, on SQLite too: ``audit_events`` gets AUTOINCREMENT.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

A plain SQLite rowid table hands out ``max(id) + 1``: once retention pruned every row, the next
event got id 1 again, behind every delivery cursor, and was never delivered (a dead letter of the
old id 1 would replay the new event). AUTOINCREMENT keeps the highest id ever used in
``sqlite_sequence``. SQLite cannot change that in place: the table is rebuilt (same rows, same
ids, same indexes), and the sequence starts past every id a cursor or a dead letter names, in case
the rows were pruned already. PostgreSQL sequences and MariaDB's AUTO_INCREMENT (persisted since
10.2.4) never hand out an id twice: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> bool:
    p = context.config.attributes["prefix"]
    if op.get_bind().dialect.name != "sqlite":
        return False
    with op.batch_alter_table(f"{p}audit_events", recreate="always",
                              table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass
    return True


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    if _rebuild(True):
        name = {"t": f"{p}audit_events"}
        op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t").bindparams(**name))
        op.execute(sa.text(
            "INSERT INTO sqlite_sequence (name, seq) SELECT :t, MAX(n) FROM ("
            f"SELECT MAX(id) AS n FROM {p}audit_events UNION ALL SELECT MAX(last_id) FROM {p}delivery_cursors "
            f"UNION ALL SELECT MAX(event_id) FROM {p}dead_letters UNION ALL SELECT 0)").bindparams(**name))


def downgrade() -> None:
    _rebuild(False)

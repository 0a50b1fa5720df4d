"""Authenticator apps: when each was last used, and a name for every one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A user may have several authenticator apps (issue 15), listed by name with the time of their last
accepted code (``last_used_at``, NULL until the first one after this revision). The one app a user
could have before was stored without a name; it gets the name a first enrolment gives now
("Authenticator"), so every listed app has one. A frozen snapshot: nothing imported from ``schema.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.add_column(f"{p}totp_factors", sa.Column("last_used_at", sa.BigInteger, nullable=True))
    factors = sa.table(f"{p}totp_factors", sa.column("name", sa.String))
    op.execute(factors.update().where(factors.c.name == "").values(name="Authenticator"))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}totp_factors") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("last_used_at")

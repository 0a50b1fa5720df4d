"""Backup codes staged before they go into use.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

generate-backup-codes (two-factor on) writes a new set in two phases (issue 18): staged first,
beside the set in use, then put in use once the factor-change rule passed, in one transaction that
also deletes the old set. A staged row carries its generation's token in ``staged``; NULL, as every
existing row gets, is a code in use. A frozen snapshot: nothing imported from ``schema.py``
except the column type, as in 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from banata_middleware.stores.records.types import Ident

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.add_column(f"{p}backup_codes", sa.Column("staged", Ident(32), nullable=True))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    codes = sa.table(f"{p}backup_codes", sa.column("staged", Ident(32)))
    op.execute(codes.delete().where(codes.c.staged.is_not(None)))  # no code to anyone: never shown
    with op.batch_alter_table(f"{p}backup_codes") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("staged")

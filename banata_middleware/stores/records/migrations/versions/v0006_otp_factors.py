"""One-time codes by message: the address or number each user receives codes at.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

A frozen snapshot of ``factors.otp.define_table`` (``tests/records/test_records_migrations.py``
checks that the two agree). Only confirmed addresses are stored; the codes live in the hot store.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from banata_middleware.stores.records.types import Ident

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.create_table(
        f"{p}otp_factors",
        sa.Column("user_id", Ident(128), primary_key=True),
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("address", sa.String(254), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    op.drop_table(f"{p}otp_factors")

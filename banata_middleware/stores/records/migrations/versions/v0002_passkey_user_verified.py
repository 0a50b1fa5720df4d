"""Passkeys remember whether the user was verified (PIN, biometric) at registration.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A passkey registered without user verification is one factor for good: it never signs in on its
own, whatever later assertions report. Rows written before this revision get ``false``, the safe
side (they can still answer a second-factor challenge; registering the key again with its PIN
makes it passwordless). A frozen snapshot like 0001: nothing imported from ``schema.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.add_column(f"{p}passkeys", sa.Column("user_verified", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}passkeys") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("user_verified")

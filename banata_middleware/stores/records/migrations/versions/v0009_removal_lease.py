"""The removal lease: one removal of a user's factors in flight at a time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

A removal that its request may still undo (disable, disable-otp, removing the last authenticator
app: the hot store's re-check runs after the SQL commit, and a refusal or a failure puts the
factors back) holds ``user_state.removing_until`` (Unix ms) until it is settled; another removal
meanwhile changes nothing and answers 409 (issue 18, R8-2: two undos that overlap do not compose).
NULL, as every existing row gets, is no removal in flight. A frozen snapshot: nothing imported from
``schema.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.add_column(f"{p}user_state", sa.Column("removing_until", sa.BigInteger, nullable=True))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}user_state") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("removing_until")

"""The factor-change lease: one change of a user's factors that its request may undo in flight at a time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

A change that its request may still undo (disable, disable-otp, removing the last authenticator
app, confirming an added app, registering a passkey: the hot store's re-check runs after the SQL
commit, and a refusal or a failure undoes it) holds ``user_state.removing_until`` (Unix ms) until
it is settled; another such change meanwhile changes nothing and answers 409 (issue 18, R8-2 and
R9-1/R9-2: two undos that overlap do not compose). ``lease_seq`` counts the leases taken and
cleared: its value is the token of the lease last taken, which an undo compares, and which never
repeats (R9-6: the end time did, after a reset). NULL and 0, as every existing row gets, are no
change in flight. A frozen snapshot: nothing imported from ``schema.py``. (Amended in place on
the day it was merged, before any release: R9-6 added ``lease_seq``.)
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
    op.add_column(f"{p}user_state", sa.Column("lease_seq", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}user_state") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("lease_seq")
        batch.drop_column("removing_until")

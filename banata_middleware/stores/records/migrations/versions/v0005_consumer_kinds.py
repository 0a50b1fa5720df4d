"""Delivery cursors record the event types their consumer takes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

``kinds``: each type with a space either side, NULL for every type (the value of existing rows
until their consumer's process starts again and registers it). A replay request marks only
consumers that take the event's type, so an endpoint subscribed to some types is never sent others.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.add_column(f"{p}delivery_cursors", sa.Column("kinds", sa.Text, nullable=True))


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    with op.batch_alter_table(f"{p}delivery_cursors") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("kinds")

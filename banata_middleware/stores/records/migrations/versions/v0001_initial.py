"""The first schema: accounts, user state, audit events, TOTP factors, backup codes, passkeys.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

A migration is a frozen snapshot: it spells the tables out instead of importing ``schema.py``,
which will change. ``tests/records/test_migrations.py`` checks that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from banata_middleware.stores.records.types import Ident, RowId

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = context.config.attributes["prefix"]
    op.create_table(
        f"{p}accounts",
        sa.Column("id", Ident(128), primary_key=True),
        sa.Column("email", Ident(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("name", sa.String(256), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        f"{p}user_state",
        sa.Column("user_id", Ident(128), primary_key=True),
        sa.Column("failure_streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_at", sa.BigInteger, nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        f"{p}audit_events",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("user_id", Ident(128), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
        sa.Column("user_agent", sa.String(512), nullable=False, server_default=""),
        sa.Column("session_id", sa.String(128), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index(f"{p}audit_events_user_ix", f"{p}audit_events", ["user_id", "id"])
    op.create_index(f"{p}audit_events_at_ix", f"{p}audit_events", ["at"])
    op.create_table(
        f"{p}totp_factors",
        sa.Column("user_id", Ident(128), primary_key=True),
        sa.Column("id", Ident(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, server_default=""),
        sa.Column("secret", Ident(512), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("confirmed_at", sa.BigInteger, nullable=True),
        sa.Column("last_step", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("user_id", "name", name=f"{p}totp_factors_user_name_key"),
    )
    op.create_table(
        f"{p}backup_codes",
        sa.Column("user_id", Ident(128), primary_key=True),
        sa.Column("code_hash", Ident(128), primary_key=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        f"{p}passkeys",
        sa.Column("credential_key", Ident(64), primary_key=True),
        sa.Column("credential_id", sa.Text, nullable=False),
        sa.Column("user_id", Ident(128), nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("transports", sa.String(255), nullable=False, server_default=""),
        sa.Column("device_type", sa.String(32), nullable=False, server_default=""),
        sa.Column("backed_up", sa.Boolean, nullable=False),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("aaguid", sa.String(36), nullable=False, server_default=""),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
    )
    op.create_index(f"ix_{p}passkeys_user_id", f"{p}passkeys", ["user_id"])


def downgrade() -> None:
    p = context.config.attributes["prefix"]
    for table in ("passkeys", "backup_codes", "totp_factors", "audit_events", "user_state", "accounts"):
        op.drop_table(f"{p}{table}")

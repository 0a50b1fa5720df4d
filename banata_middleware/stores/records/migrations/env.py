"""Alembic environment for banata's tables. Run through ``banata-mfa db`` (or ``RecordStore.upgrade``),
which passes the open connection and the table prefix in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from banata_middleware.stores.records.migrate import include_name, include_object
from banata_middleware.stores.records.schema import Schema

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run banata's migrations with `banata-mfa db upgrade --database-url URL`")
schema = Schema(config.attributes.get("prefix", "banata_"), connection.dialect.name)
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    version_table=schema.version_table,  # our own, so the app's Alembic history is untouched
    include_name=include_name(schema),
    include_object=include_object,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

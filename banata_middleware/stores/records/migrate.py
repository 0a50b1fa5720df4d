"""Alembic, driven from code: the migrations ship inside the package (``migrations/``) and keep
their own version table, ``<prefix>alembic_version``, so they can share the app's database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from .schema import Schema

__all__ = ["check", "current", "head", "include_name", "include_object", "upgrade"]

SCRIPT_LOCATION = "banata_middleware.stores.records:migrations"


def config(prefix: str = "banata_", connection: Any = None) -> Config:
    """An Alembic config for our migrations; env.py reads the prefix and the open connection from it."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.attributes["prefix"] = prefix
    cfg.attributes["connection"] = connection
    return cfg


def include_name(schema: Schema) -> Any:
    """Only our tables: the app's own tables in the same database are none of our business."""

    def include(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in schema.metadata.tables

    return include


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out foreign keys the app added to our tables (docs/storage.md shows how): they are
    the app's, so ``db check`` must not report them as drift."""
    return not (type_ == "foreign_key_constraint" and reflected and compare_to is None)


def head() -> str:
    current = ScriptDirectory.from_config(config()).get_current_head()
    assert current is not None
    return current


def upgrade(engine: Engine, schema: Schema, revision: str = "head") -> None:
    with engine.begin() as conn:
        conn.execution_options(banata_writes=True)
        command.upgrade(config(schema.prefix, conn), revision)


def current(engine: Engine, schema: Schema) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": schema.version_table}).get_current_revision()


def check(engine: Engine, schema: Schema) -> list[Any]:
    """Differences between the live tables and the schema this version defines ([] when none)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "version_table": schema.version_table, "include_name": include_name(schema),
            "include_object": include_object, "compare_type": True})
        return list(compare_metadata(context, schema.metadata))

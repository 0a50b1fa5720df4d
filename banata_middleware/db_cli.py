"""``banata-mfa db upgrade|current|check``: the SQL record store's schema (Alembic, shipped in the package).

``upgrade`` applies the migrations; ``current`` prints the database's revision; ``check`` exits 1
when the schema is missing, behind, or differs from what this version defines (a deploy gate).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_db_commands", "run_db"]


def add_db_commands(subparsers: Any) -> None:
    """Add the ``db`` command to ``banata-mfa``'s subparsers."""
    db = subparsers.add_parser(
        "db", help="create or upgrade the SQL record store's tables",
        description="Manage the record store's schema. The URL may also come from BANATA_DATABASE_URL.")
    db.add_argument("db_command", choices=["upgrade", "current", "check"])
    db.add_argument("--database-url", default=None,
                    help="e.g. postgresql://user@host/db, mysql://user@host/db, sqlite:///records.db")
    db.add_argument("--table-prefix", default="banata_", help="prefix of every table name (default banata_)")


def run_db(args: argparse.Namespace) -> int:
    url = args.database_url or os.environ.get("BANATA_DATABASE_URL", "")
    if not url:
        print("banata-mfa db: give --database-url URL (or set BANATA_DATABASE_URL)", file=sys.stderr)
        return 2
    try:
        from .errors import AuthError
        from .stores.records import RecordStore, migrate
    except ImportError as exc:  # the sql extra is missing
        print(f"banata-mfa db: {exc}; install banata-middleware[postgres], [mysql] or [sql]", file=sys.stderr)
        return 2
    try:
        store = RecordStore(url, prefix=args.table_prefix)
    except (ValueError, ImportError) as exc:
        print(f"banata-mfa db: {exc}", file=sys.stderr)
        return 2
    where = store.url.render_as_string(hide_password=True)
    try:
        head = migrate.head()
        if args.db_command == "upgrade":
            store.upgrade()
            print(f"{where}: at revision {store.current_revision()} (newest: {head})")
            return 0
        current = store.current_revision()
        if args.db_command == "current":
            print(f"{current or 'none (no tables yet)'}{' (newest)' if current == head else ''}")
            return 0
        if current != head:
            print(f"{where}: at revision {current or 'none'}, this version needs {head}; "
                  f"run: banata-mfa db upgrade", file=sys.stderr)
            return 1
        diffs = migrate.check(store.engine, store.schema)
        if diffs:
            print(f"{where}: at revision {head} but the tables differ from this version's schema:", file=sys.stderr)
            for diff in diffs:
                print(f"  {diff}", file=sys.stderr)
            return 1
        print(f"{where}: schema is current (revision {head})")
        return 0
    except AuthError as exc:
        print(f"banata-mfa db: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # a refused connection, a missing database: say what, without a traceback
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(exc, SQLAlchemyError | OSError):
            raise
        cause = getattr(exc, "orig", None) or exc
        print(f"banata-mfa db: cannot use {where}: {type(cause).__name__}: {str(cause).splitlines()[0]}",
              file=sys.stderr)
        return 1
    finally:
        store.dispose()

"""banata-mfa: the demo server, a TOTP code generator for people without a phone, the audit log and
administrator commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ._extras import MissingExtraError, missing_extra
from .db_cli import add_db_commands, run_db
from .delivery.cli import add_webhooks_commands, run_webhooks
from .errors import AuthError

__all__ = ["main"]

#: The demo's record store when no --database-url is given: a file in the current directory, so
#: that accounts and second factors outlive a restart (scripts/demo.sh keeps one in the repository).
DEMO_DATABASE = "sqlite:///banata-demo.db"


class _Refused(Exception):
    """A setup the command cannot run with, said in one line; exits with ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _database_url(args: argparse.Namespace) -> str | None:
    return args.database_url or os.environ.get("BANATA_DATABASE_URL") or None


def _auth_on(config: Any, store: Any, database_url: str, **options: Any) -> Any:
    """``BanataAuth`` on ``store`` and the record store at ``database_url``, both checked now: a
    missing, behind or unreachable database (or Redis) is one line naming it, not a 503 later."""
    from .service import BanataAuth
    from .stores.records import SchemaOutOfDate

    try:
        auth = BanataAuth(config, store=store, records=database_url, **options)
    except ValueError as exc:  # an unsupported or malformed database URL
        raise _Refused(f"--database-url: {exc}", 2) from None
    except (ConnectionError, SchemaOutOfDate) as exc:
        raise _Refused(str(exc)) from None
    try:
        auth.check()
    except ConnectionError as exc:
        raise _Refused(str(exc)) from None
    return auth


def _demo(args: argparse.Namespace) -> int:
    from .demo.pages import DEMO_OUTBOX, DemoPost, demo_config, demo_otp
    from .stores.memory import MemoryStore

    database_url = _database_url(args)
    if args.redis_url and not database_url:
        # Redis is for several processes: they must share one record store, never a local file each.
        raise _Refused("--redis-url needs --database-url URL too (the record store every process shares, e.g. "
                       "postgresql://user@host/db after banata-mfa db upgrade)", 2)
    database_url = database_url or DEMO_DATABASE
    # Everything the demo needs comes with the 'demo' extra: say so once, before anything starts.
    for module in ("segno", "webauthn", "uvicorn", "starlette", "werkzeug"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise missing_extra("this command", "demo", exc) from exc
    secret = args.secret or os.environ.get("BANATA_AUTH_SECRET")
    if not secret:
        secret = secrets.token_urlsafe(48)
        print("warning: no --secret given; using a random one (sessions end, and second factors saved in the "
              "database cannot be read, once the demo stops)", file=sys.stderr)
    site_url = args.site_url or f"http://localhost:{args.port}"
    try:
        if args.mail_dir and not os.path.isdir(args.mail_dir):
            raise ValueError(f"--mail-dir {args.mail_dir}: not a folder")
        # Codes by email and SMS are on in the demo only: they go to this terminal (and --mail-dir).
        config = demo_config(secret=secret, site_url=site_url, challenge_status=args.challenge_status,
                             otp=demo_otp(DemoPost(folder=args.mail_dir)))
    except ValueError as exc:
        print(f"banata-mfa demo: {exc}", file=sys.stderr)
        return 2
    if args.redis_url:
        from .stores.redis import RedisStore, UnsafeRedisPolicy  # the 'redis' extra, needed only here

        store: Any = RedisStore.from_url(args.redis_url)
        from redis.exceptions import RedisError  # after .stores.redis, which names a missing extra clearly

        try:
            store.check()  # refuse an evicting Redis here, not on the first request
        except UnsafeRedisPolicy as exc:
            print(f"banata-mfa demo: {exc}", file=sys.stderr)
            return 2
        except (RedisError, OSError):
            pass  # unreachable: auth.check() below says so in one line
    else:
        store = MemoryStore(config.clock)
    # A wrong --redis-url or --database-url fails here; the outbox page lists the notices.
    auth = _auth_on(config, store, database_url, notifier=DEMO_OUTBOX)
    print(f"records: {auth.records.url.set(drivername=auth.records.backend).render_as_string(hide_password=True)}",
          file=sys.stderr)
    # The origin check and passkeys (rpId) are tied to the site URL, not to the address listened on.
    print(f"open {site_url} in a browser (the site URL; other host names fail the origin check)", file=sys.stderr)
    if args.framework == "werkzeug":
        from .demo.wsgi import serve as serve_wsgi
        from .demo.wsgi import werkzeug_app

        return serve_wsgi(werkzeug_app(auth), args.host, args.port)
    from .demo.app import starlette_app

    app = starlette_app(auth)

    import uvicorn

    class DemoServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises SIGTERM/SIGINT after shutting down (exit status -15); the demo
            # promises a clean exit, so it handles them itself: graceful shutdown, then status 0.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            yield

    server = DemoServer(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                       access_log=False, lifespan="off",
                                       # Above clients' own idle timeouts (undici 4 s, browsers about
                                       # a minute): uvicorn's 5 s let a busy machine close a connection
                                       # just as the client reused it ("fetch failed" in interop).
                                       timeout_keep_alive=75))

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else args.port  # --port 0
            print(f"banata-mfa demo listening on http://{args.host}:{port}", flush=True)
        await task

    asyncio.run(serve())
    return 0 if server.started else 1


def _openapi(args: argparse.Namespace) -> int:
    from .config import AuthMethods, BanataAuthConfig
    from .openapi import openapi_document
    from .service import BanataAuth

    # The document depends on the routes, base path, cookie names and challenge status; not on the secret.
    methods = {m: m not in args.without for m in ("email_password", "two_factor", "passkey")}
    config = BanataAuthConfig(app_name=args.app_name, site_url=args.site_url, secret=secrets.token_urlsafe(48),
                              base_path=args.base_path, challenge_status=args.challenge_status,
                              auth_methods=AuthMethods(**methods), serve_openapi=args.served)
    print(json.dumps(openapi_document(BanataAuth(config).gateway), indent=2))
    return 0


def _audit(args: argparse.Namespace) -> int:
    try:
        import redis
    except ModuleNotFoundError as exc:
        raise missing_extra("this command", "redis", exc) from exc

    client: Any = redis.Redis.from_url(args.redis_url, decode_responses=True)
    prefix = args.key_prefix
    if args.user:
        streams = [f"{prefix}:{{u:{args.user}}}:audit"]
    else:
        streams = sorted(client.scan_iter(match=f"{prefix}:{{u:*}}:audit", count=500))
    last: dict[str, str] = {s: "-" for s in streams}
    database_url = _database_url(args)
    records = _audit_records(database_url) if database_url else None
    after = 0
    while True:
        events: list[tuple[str, dict[str, str]]] = []
        for stream in streams:
            start = last[stream] if last[stream] == "-" else "(" + last[stream]
            for entry_id, fields in client.xrange(stream, min=start, max="+"):
                events.append((entry_id, fields))
                last[stream] = entry_id
        if records is not None:
            # Record changes (2FA on and off, factors, backup codes, resets) are written to SQL with
            # the change: read them beside the hot store's stream, in one time order.
            from .stores.records import ListAudit

            while page := records.execute(ListAudit(args.user, after)):
                for e in page:
                    events.append((f"sql-{e.id:020d}", {
                        "type": e.type, "userId": e.user_id, "at": str(e.at), "ip": e.ip,
                        "userAgent": e.user_agent, "sessionId": e.session_id,
                        "detail": " ".join(e.detail.values())}))
                after = page[-1].id
        for _, fields in sorted(events, key=lambda e: (int(e[1].get("at", "0")), e[0])):
            print(json.dumps(_audit_line(fields)), flush=True)
        if not args.follow:
            return 0
        time.sleep(1)


def _audit_records(url: str) -> Any:
    from .stores.records import RecordStore, SchemaOutOfDate

    try:
        records = RecordStore(url)
        records.check_schema()
    except (ValueError, SchemaOutOfDate, ConnectionError) as exc:
        raise _Refused(f"--database-url: {exc}", 2) from None
    except AuthError as exc:
        raise _Refused(f"the record store is unreachable: {exc.message}") from None
    return records


def _audit_line(fields: dict[str, str]) -> dict[str, Any]:
    """A stream entry as printed: ``at`` in ISO 8601 with milliseconds (as the HTTP API writes
    dates), the stored milliseconds kept as ``atMs`` for machines; empty fields left out."""
    line: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
    if line.get("at", "").isdigit():
        ms = int(line["at"])
        line["at"] = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line["atMs"] = ms
    return line


def _admin_auth(args: argparse.Namespace) -> Any:
    from .config import BanataAuthConfig
    from .stores.redis import RedisStore  # the 'redis' extra (its ImportError names it)

    database_url = _database_url(args)
    if not database_url:
        raise _Refused("give --database-url URL (or set BANATA_DATABASE_URL): the app's record store", 2)
    # Administration sets no cookies and checks no origin: the site URL does not matter here, so
    # from_env's warning about an unset SITE_URL would only be noise.
    config = BanataAuthConfig.from_env(key_prefix=args.key_prefix,
                                       site_url=os.environ.get("SITE_URL") or "http://localhost")
    return _auth_on(config, RedisStore.from_url(args.redis_url), database_url)


def _rotate_keys(args: argparse.Namespace) -> int:
    from .admin import rotate_keys

    report = rotate_keys(_admin_auth(args))
    for uid, name, why in report.skipped:
        print(f"skipped: user {uid}, {name}: cannot be decrypted ({why})", file=sys.stderr)
    print(f"users: {report.users}, re-encrypted: {report.reencrypted}, already current: {report.current}, "
          f"changed meanwhile (left as is): {report.changed_meanwhile}, skipped: {len(report.skipped)}, "
          f"users with backup codes under an older key (regenerate before dropping it): "
          f"{report.backup_codes_old_key}")
    # Non-zero when a record was skipped: scripts must not drop the old secret on a partial rotation.
    return 1 if report.skipped else 0


def _admin(args: argparse.Namespace) -> int:
    from .stores.records import GetAccount, LoadUser

    auth = _admin_auth(args)
    keys = auth.flows.keys
    # A typo must not "succeed" (and write a record and an audit event for a user who never was):
    # a known user has an account or factors in the record store, or a user copy, a session index or
    # audit events in Redis (own-users apps' users may have only the last two; after a lost Redis,
    # only the first).
    record = auth.records.execute(LoadUser(args.user))
    in_sql = (record.has_factor_rows() or record.locked_at is not None
              or auth.records.execute(GetAccount(args.user)) is not None)
    if not in_sql and not auth.store.sync.exists(keys.user(args.user), keys.sessions(args.user),
                                                 keys.audit(args.user)):
        print(f"banata-mfa admin: no such user: {args.user!r} (nothing stored under this id)", file=sys.stderr)
        return 1
    # No address: the operator is at a shell, not a browser. The user agent says where it came from.
    origin = {"user_agent": f"banata-mfa admin {args.admin_command} (command line)"}
    if args.admin_command == "reset-2fa":
        auth.reset_two_factor(args.user, **origin)
        print(f"second factor removed and sessions ended for user {args.user}")
    else:
        auth.revoke_sessions(args.user, **origin)
        print(f"sessions ended for user {args.user}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="banata-mfa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo app with the middleware")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    demo.add_argument("--port", type=int, default=8000,
                      help="port to listen on, 0 for any free one (default: %(default)s)")
    demo.add_argument("--framework", choices=["starlette", "werkzeug"], default="starlette",
                      help="ASGI (Starlette + uvicorn) or WSGI (Werkzeug) (default: %(default)s)")
    demo.add_argument("--redis-url", default=None,
                      help="use Redis instead of the in-memory store (default: the in-memory store); it needs "
                           "maxmemory-policy noeviction or volatile-*; give --database-url with it")
    demo.add_argument("--database-url", default=None,
                      help="the record store: accounts, second factors, passkeys (default: BANATA_DATABASE_URL, "
                           f"else {DEMO_DATABASE}, a file in the current directory, so accounts outlive a "
                           "restart); with --redis-url a shared server, e.g. postgresql://user@host/db, after "
                           "banata-mfa db upgrade")
    demo.add_argument("--secret", default=None,
                      help="app secret, at least 32 characters (default: BANATA_AUTH_SECRET, else a random one "
                           "for this run)")
    demo.add_argument("--site-url", default=None,
                      help="the URL browsers open; the origin check and passkeys use it "
                           "(default: http://localhost:PORT)")
    demo.add_argument("--challenge-status", type=int, choices=[403, 200], default=403,
                      help="a sign-in that needs a second factor answers 403 (contract) or 200 "
                           "(better-auth's {twoFactorRedirect: true}, for onTwoFactorRedirect; default: %(default)s)")
    demo.add_argument("--mail-dir", default=None,
                      help="also write each one-time code the demo sends by email or SMS to a JSON file in this "
                           "folder (they are always printed here, on stderr)")

    from .simulator import cli_code

    cli_code.add_arguments(sub.add_parser("code", help="print the TOTP code for an otpauth:// URI"))

    audit = sub.add_parser("audit", help="print audit events, one JSON object a line: the hot store's (sessions, "
                                         "challenges) and, with --database-url, the record store's (factor changes)")
    audit.add_argument("--database-url", default=None,
                       help="the record store, whose audit table holds every record change (default: "
                            "$BANATA_DATABASE_URL; without either, only the hot store's events)")
    audit.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                       help="the Redis the app uses (default: %(default)s)")
    audit.add_argument("--user", default=None,
                       help="only this user's events (write --user=ID when it starts with '-'); default: every user")
    audit.add_argument("--follow", action="store_true", help="keep printing new events as they come (Ctrl-C stops)")
    audit.add_argument("--key-prefix", default="banata",
                       help="the app's BanataAuthConfig.key_prefix (default: %(default)s)")

    for name, help_text in (("rotate-keys", "re-encrypt TOTP secrets under the newest key"),
                            ("admin", "administrator recovery")):
        env_note = ("reads BANATA_AUTH_SECRET (and BANATA_AUTH_PREVIOUS_SECRETS), and BANATA_DATABASE_URL unless "
                    "--database-url is given, from the environment")
        cmd = sub.add_parser(name, help=help_text, description=env_note)
        cmd.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                         help="the Redis the app uses (default: %(default)s)")
        cmd.add_argument("--database-url", default=None,
                         help="the app's record store, e.g. postgresql://user@host/db (default: BANATA_DATABASE_URL)")
        cmd.add_argument("--key-prefix", default="banata",
                         help="the app's BanataAuthConfig.key_prefix (default: %(default)s)")
        if name == "admin":
            cmd.add_argument("admin_command", choices=["reset-2fa", "revoke-sessions"],
                             help="reset-2fa: remove the second factor, clear locks, end sessions; "
                                  "revoke-sessions: end every session and pending sign-in")
            cmd.add_argument("--user", required=True, help="user id (write --user=ID when it starts with '-')")

    spec = sub.add_parser("openapi", help="print the OpenAPI 3.1 document of the auth endpoints (JSON)")
    spec.add_argument("--base-path", default="/api/auth", help="BanataAuthConfig.base_path (default: %(default)s)")
    spec.add_argument("--site-url", default="http://localhost:3000",
                      help="the site URL; https gives the cookies their __Host- prefix (default: %(default)s)")
    spec.add_argument("--app-name", default="Banata", help="the title's app name (default: %(default)s)")
    spec.add_argument("--challenge-status", type=int, choices=[403, 200], default=403,
                      help="BanataAuthConfig.challenge_status (default: %(default)s)")
    spec.add_argument("--without", action="append", default=[], choices=["email_password", "two_factor", "passkey"],
                      help="leave out the endpoints of an auth method (repeatable)")
    spec.add_argument("--served", action="store_true", help="include {base_path}/openapi.json (serve_openapi)")

    add_db_commands(sub)
    add_webhooks_commands(sub)

    args = parser.parse_args(argv)
    try:
        if args.command == "db":
            return run_db(args)
        if args.command == "webhooks":
            return run_webhooks(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "code":
            return cli_code.run(args)
        if args.command == "rotate-keys":
            return _rotate_keys(args)
        if args.command == "admin":
            return _admin(args)
        if args.command == "openapi":
            return _openapi(args)
        return _audit(args)
    except MissingExtraError as exc:  # the message names the extra to install
        print(f"banata-mfa {args.command}: {exc}", file=sys.stderr)
        return 2
    except _Refused as exc:
        print(f"banata-mfa {args.command}: {exc}", file=sys.stderr)
        return exc.status


if __name__ == "__main__":
    raise SystemExit(main())

"""``banata-mfa``: the demo server, a TOTP code generator for people without a phone, the audit log."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .demo.pages import demo_config
    from .service import BanataAuth
    from .stores import MemoryStore, RedisStore

    secret = args.secret
    if not secret:
        secret = secrets.token_urlsafe(48)
        print("warning: no --secret given; using a random one (sessions end when the demo stops)", file=sys.stderr)
    site_url = args.site_url or f"http://localhost:{args.port}"
    # The origin check and passkeys (rpId) are tied to the site URL, not to the address listened on.
    print(f"open {site_url} in a browser (the site URL; other host names fail the origin check)", file=sys.stderr)
    try:
        config = demo_config(secret=secret, site_url=site_url, challenge_status=args.challenge_status)
    except ValueError as exc:
        print(f"banata-mfa demo: {exc}", file=sys.stderr)
        return 2
    store = RedisStore.from_url(args.redis_url) if args.redis_url else MemoryStore(config.clock)
    if isinstance(store, RedisStore):
        from redis.exceptions import RedisError

        from .stores.redis import UnsafeRedisPolicy

        try:
            store.check()  # refuse an evicting Redis here, not on the first request
        except UnsafeRedisPolicy as exc:
            print(f"banata-mfa demo: {exc}", file=sys.stderr)
            return 2
        except (RedisError, OSError) as exc:
            print(f"warning: Redis at {args.redis_url} is not reachable yet ({type(exc).__name__}); "
                  "requests answer 503 until it is", file=sys.stderr)
    auth = BanataAuth(config, store=store)
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
                                       access_log=False, lifespan="off"))

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


def _audit(args: argparse.Namespace) -> int:
    import redis

    client: Any = redis.Redis.from_url(args.redis_url, decode_responses=True)
    prefix = args.key_prefix
    if args.user:
        streams = [f"{prefix}:{{u:{args.user}}}:audit"]
    else:
        streams = sorted(client.scan_iter(match=f"{prefix}:{{u:*}}:audit", count=500))
    last: dict[str, str] = {s: "-" for s in streams}
    while True:
        events: list[tuple[str, dict[str, str]]] = []
        for stream in streams:
            start = last[stream] if last[stream] == "-" else "(" + last[stream]
            for entry_id, fields in client.xrange(stream, min=start, max="+"):
                events.append((entry_id, fields))
                last[stream] = entry_id
        for _, fields in sorted(events, key=lambda e: (int(e[1].get("at", "0")), e[0])):
            print(json.dumps({k: v for k, v in fields.items() if v != ""}), flush=True)
        if not args.follow:
            return 0
        time.sleep(1)


def _admin_auth(args: argparse.Namespace) -> Any:
    from .config import BanataAuthConfig
    from .service import BanataAuth
    from .stores import RedisStore

    config = BanataAuthConfig.from_env(key_prefix=args.key_prefix)
    return BanataAuth(config, store=RedisStore.from_url(args.redis_url))


def _rotate_keys(args: argparse.Namespace) -> int:
    from .admin import rotate_keys

    report = rotate_keys(_admin_auth(args))
    print(f"users: {report.users}, re-encrypted: {report.reencrypted}, already current: {report.current}, "
          f"emails re-indexed: {report.emails_reindexed}, "
          f"changed meanwhile (left as is): {report.changed_meanwhile}")
    return 0


def _admin(args: argparse.Namespace) -> int:
    auth = _admin_auth(args)
    if args.admin_command == "reset-2fa":
        auth.reset_two_factor(args.user)
        print(f"second factor removed and sessions ended for user {args.user}")
    else:
        auth.revoke_sessions(args.user)
        print(f"sessions ended for user {args.user}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="banata-mfa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the demo app with the middleware")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--framework", choices=["starlette", "werkzeug"], default="starlette")
    demo.add_argument("--redis-url", default=None,
                      help="use Redis instead of the in-memory store (maxmemory-policy noeviction or volatile-*, "
                           "with persistence: it holds users' factors)")
    demo.add_argument("--secret", default=None, help="app secret, at least 32 characters")
    demo.add_argument("--site-url", default=None, help="default http://localhost:PORT")
    demo.add_argument("--challenge-status", type=int, choices=[403, 200], default=403,
                      help="a sign-in that needs a second factor answers 403 (contract) or 200 "
                           "(better-auth's {twoFactorRedirect: true}, for onTwoFactorRedirect)")

    from .simulator import cli_code

    cli_code.add_arguments(sub.add_parser("code", help="print the TOTP code for an otpauth:// URI"))

    audit = sub.add_parser("audit", help="print audit events from Redis")
    audit.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    audit.add_argument("--user", default=None, help="user id (write --user=ID when it starts with '-')")
    audit.add_argument("--follow", action="store_true")
    audit.add_argument("--key-prefix", default="banata")

    for name, help_text in (("rotate-keys", "re-encrypt TOTP secrets under the newest key"),
                            ("admin", "administrator recovery")):
        env_note = "reads BANATA_AUTH_SECRET (and BANATA_AUTH_PREVIOUS_SECRETS) from the environment"
        cmd = sub.add_parser(name, help=help_text, description=env_note)
        cmd.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
        cmd.add_argument("--key-prefix", default="banata")
        if name == "admin":
            cmd.add_argument("admin_command", choices=["reset-2fa", "revoke-sessions"])
            cmd.add_argument("--user", required=True, help="user id (write --user=ID when it starts with '-')")

    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "code":
        return cli_code.run(args)
    if args.command == "rotate-keys":
        return _rotate_keys(args)
    if args.command == "admin":
        return _admin(args)
    return _audit(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""One app process for the scale-out tests: the demo app on a RedisStore, served by uvicorn (ASGI) or
Werkzeug's threaded server (WSGI), on the real clock.

``python two_process_app.py asgi|wsgi PORT REDIS_URL DATABASE_URL``; it prints ``READY`` once it
accepts connections and runs until killed. Every process started with the same arguments shares
sessions, pending challenges and replay state through Redis, and accounts and factors through the
one record store at DATABASE_URL, as production's processes do; nothing else.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

from banata_middleware import BanataAuth, PasswordHashing
from banata_middleware.demo.app import demo_config
from banata_middleware.stores import RedisStore

SITE = "http://testserver"
SECRET = "two-process-secret-" + "p" * 40


def build(kind: str, redis_url: str, database_url: str) -> object:
    config = demo_config(secret=SECRET, site_url=SITE, password_hashing=PasswordHashing(n=2**8))
    auth = BanataAuth(config, store=RedisStore.from_url(redis_url, timeout=2.0), records=database_url)
    if kind == "asgi":
        from banata_middleware.demo.app import starlette_app

        return starlette_app(auth)
    from banata_middleware.demo.wsgi import werkzeug_app

    return werkzeug_app(auth)


def _announce_when_listening(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                print("READY", flush=True)
                return
        except OSError:
            time.sleep(0.02)


def main() -> None:
    kind, port, redis_url, database_url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    app = build(kind, redis_url, database_url)
    threading.Thread(target=_announce_when_listening, args=(port,), daemon=True).start()
    if kind == "asgi":
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",  # type: ignore[arg-type]
                    access_log=False)
    else:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        make_server("127.0.0.1", port, app, threaded=True, request_handler=Quiet).serve_forever()  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

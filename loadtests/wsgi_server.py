"""A pre-forking, threaded WSGI server for the load test: ``python -m loadtests.wsgi_server``.

The parent binds one listening socket and forks ``--workers`` processes; each builds
``loadtests.app:wsgi_app()`` (its own Redis pool) and serves it with Werkzeug's threaded server
(a thread per connection, HTTP/1.1 keep-alive) on the shared socket. SIGTERM or SIGINT to the
parent stops the workers. With ``--server gunicorn`` it execs gunicorn's gthread worker instead
(when gunicorn is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["main"]


def _serve_child(sock: socket.socket) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    from .app import wsgi_app

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = sock.getsockname()[:2]
    server = make_server(host, port, wsgi_app(), threaded=True, request_handler=QuietHandler, fd=sock.fileno())
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _werkzeug(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                _serve_child(sock)
            except BaseException as exc:  # a worker must never fall back into the parent's loop
                print(f"wsgi worker {os.getpid()}: {exc!r}", file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        children.append(pid)
    sock.close()
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: received.append(s))
    signal.signal(signal.SIGINT, lambda s, f: received.append(s))
    print(f"wsgi server: {args.workers} worker(s) on http://{args.host}:{args.port}", flush=True)
    alive = set(children)
    while alive and not received:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            alive.discard(pid)
            print(f"wsgi server: worker {pid} exited", file=sys.stderr, flush=True)
        else:
            time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                alive.discard(pid)
        time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    return 0


def _gunicorn(args: argparse.Namespace) -> int:
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"{args.host}:{args.port}", "--workers", str(args.workers),
            "--worker-class", "gthread", "--threads", str(args.threads), "--keep-alive", "75",
            "--backlog", "2048", "--log-level", "warning", "loadtests.app:wsgi_app()"]
    os.execv(sys.executable, argv)
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.wsgi_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64, help="gunicorn gthread threads per worker")
    parser.add_argument("--server", choices=["werkzeug", "gunicorn"], default="werkzeug")
    args = parser.parse_args(argv)
    return _gunicorn(args) if args.server == "gunicorn" else _werkzeug(args)


if __name__ == "__main__":
    raise SystemExit(main())

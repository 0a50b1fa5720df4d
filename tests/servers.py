"""Real HTTP servers for tests: the app under a real uvicorn (ASGI) or a threaded Werkzeug server (WSGI),
each in a background thread on a free port.

``with serve(app, "asgi") as base_url:`` yields ``http://127.0.0.1:PORT``. The app is configured with
``site_url="http://testserver"`` (the suite's ``SITE``); clients send ``Origin: http://testserver``, which
is what the middleware checks on state-changing requests that carry a cookie.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SERVER_KINDS", "serve", "wsgi_available"]


def wsgi_available() -> bool:
    try:
        import banata_middleware.adapters.werkzeug  # noqa: F401
        from banata_middleware.demo.wsgi import werkzeug_app  # noqa: F401
    except ImportError:
        return False
    return True


# "asgi" is uvicorn, "wsgi" is werkzeug.serving's threaded server (when the WSGI adapter exists).
SERVER_KINDS: tuple[str, ...] = ("asgi", "wsgi") if wsgi_available() else ("asgi",)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _uvicorn(app: Any, root_path: str = "") -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                            access_log=False, root_path=root_path)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _werkzeug(app: Any) -> Iterator[str]:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"werkzeug-{port}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def serve(app: Any, kind: str, *, root_path: str = "") -> Iterator[str]:
    """Serve ``app`` (an ASGI app for ``"asgi"``, a WSGI app for ``"wsgi"``); yields the base URL.
    ``root_path`` (ASGI only) is uvicorn's ``--root-path``: the prefix a proxy in front stripped."""
    if kind == "asgi":
        with _uvicorn(app, root_path) as url:
            yield url
    elif kind == "wsgi":
        with _werkzeug(app) as url:
            yield url
    else:
        raise ValueError(f"unknown server kind {kind!r}")


DEMO_READY = "banata-mfa demo listening on http://"
DEMO_SECRET = "test-secret-" + "x" * 40


@contextmanager
def demo_cli(framework: str, *extra: str) -> Iterator[str]:
    """``banata-mfa demo --framework F`` as a subprocess on a free port, site URL
    ``http://localhost:PORT`` (the rpId passkeys need), records in a SQLite file of its own unless
    ``extra`` gives ``--database-url``; yields that URL once the demo says it listens."""
    import queue
    import subprocess
    import sys
    import tempfile

    import pytest

    port = _free_port()
    site = f"http://localhost:{port}"
    args = [sys.executable, "-m", "banata_middleware.cli", "demo", "--framework", framework, "--host", "127.0.0.1",
            "--port", str(port), "--site-url", site, "--secret", DEMO_SECRET, *extra]
    with tempfile.TemporaryDirectory() as records, tempfile.TemporaryFile("w+") as stderr:  # not a pipe nobody drains
        if "--database-url" not in extra:  # never the default ./banata-demo.db, shared with other runs
            args += ["--database-url", f"sqlite:///{records}/records.db"]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

        def server_stderr() -> str:
            stderr.seek(0)
            return "\n".join(stderr.read().splitlines()[-40:])

        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    pytest.fail(f"banata-mfa demo --framework {framework} did not start in 20 s:\n{server_stderr()}")
                if line is None:
                    proc.wait(5)
                    pytest.fail(f"banata-mfa demo --framework {framework} exited with {proc.returncode} before "
                                f"listening:\n{server_stderr()}")
                if line.startswith(DEMO_READY):
                    break
            yield site
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

"""A private 3-master Redis Cluster on loopback for the cluster suite, and the RedisStore built on it.

Kept out of a ``conftest.py`` (a second non-package ``conftest`` module would fight
``tests/conftest.py`` for the name); test modules import this module by name.

``cluster_store`` is also the proposal for a ``RedisStore.from_cluster_url`` helper: redis-py's
``RedisCluster`` retries a command after a *timeout* (``ERRORS_ALLOW_RETRY`` holds ``TimeoutError``,
whatever ``retry=`` says), so a script that ran but answered late runs a second time. The clients made
here retry once, on a broken connection only, as ``RedisStore.from_url`` does for a single Redis.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.cluster as async_cluster
import redis.cluster as sync_cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from banata_middleware.stores import RedisStore

__all__ = ["LateReplyProxy", "RedisClusterNodes", "cluster_clients", "cluster_store", "free_cluster_ports"]

# The cluster bus listens on port + 10000, so a node's port must leave room for it.
_PORT_RANGE = (20000, 45000)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(*_PORT_RANGE)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


class RedisClusterNodes:
    """Three masters, no replicas, on 127.0.0.1; started by ``start()``, killed by ``stop()``."""

    def __init__(self, masters: int = 3, *, node_timeout_ms: int = 1000) -> None:
        for tool in ("redis-server", "redis-cli"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is not on PATH: the cluster tests need a real Redis")
        self.dir = Path(tempfile.mkdtemp(prefix="banata-cluster-"))
        self.ports = free_cluster_ports(masters)
        self.node_timeout_ms = node_timeout_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def startup_nodes(self) -> list[sync_cluster.ClusterNode]:
        return [sync_cluster.ClusterNode("127.0.0.1", p) for p in self.ports]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=5)

    def _spawn(self, port: int) -> None:
        log = open(self.dir / f"redis-{port}.log", "ab")  # noqa: SIM115 - the child keeps it
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf", "--dir", str(self.dir), "--save", "",
                "--appendonly", "no", "--cluster-node-timeout", str(self.node_timeout_ms),
                "--enable-debug-command", "local", "--daemonize", "no"]
        self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        with self.node(port) as client:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if self.procs[port].poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {port} did not start: "
                                           + (self.dir / f"redis-{port}.log").read_text()[-500:]) from None
                    time.sleep(0.01)

    def start(self) -> RedisClusterNodes:
        for port in self.ports:
            self._spawn(port)
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False)
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout[-800:]} {create.stderr[-800:]}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 20) -> None:
        """Until every node says cluster_state:ok and they agree on who owns every slot."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = []
                for port in self.ports:
                    with self.node(port) as client:
                        states.append(client.cluster("info").get("cluster_state"))
                if all(s == "ok" for s in states):
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach cluster_state:ok ({states})")
            time.sleep(0.05)

    def owner_port(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot, by asking the cluster itself."""
        slot = sync_cluster.key_slot(key.encode())
        with self.node(self.ports[0]) as client:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise LookupError(f"no owner for slot {slot}")

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def restart(self, port: int) -> None:
        """Back with the same id and slots (nodes-P.conf survives); its data is gone (no persistence)."""
        self._spawn(port)
        self.wait_ok()

    def flush_all(self) -> None:
        for port in self.procs:
            with self.node(port) as client:
                client.flushall()

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)


class _SyncOnceCluster(sync_cluster.RedisCluster):
    # Never TimeoutError: the script may have run; running a failure-counting script twice would
    # count one wrong code twice, and running a commit twice answers GONE to a success.
    ERRORS_ALLOW_RETRY = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)


class _AsyncOnceCluster(async_cluster.RedisCluster):
    ERRORS_ALLOW_RETRY = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)


def cluster_clients(url: str, *, timeout: float = 1.0, max_connections: int = 64,
                    retry_on_timeout: bool = False, **extra: Any) -> tuple[Any, Any]:
    """(sync, async) cluster clients with bounded timeouts. ``retry_on_timeout=True`` gives
    redis-py's stock classes and retry policy (what a user gets from ``RedisCluster(...)``)."""
    opts: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "max_connections": max_connections,
        **extra,
    }
    if retry_on_timeout:
        return sync_cluster.RedisCluster.from_url(url, **opts), async_cluster.RedisCluster.from_url(url, **opts)
    return (_SyncOnceCluster.from_url(url, retry=Retry(NoBackoff(), 1), **opts),
            _AsyncOnceCluster.from_url(url, retry=AsyncRetry(NoBackoff(), 1), **opts))


def cluster_store(url: str, *, timeout: float = 1.0, max_connections: int = 64,
                  store_class: type[RedisStore] = RedisStore, retry_on_timeout: bool = False,
                  **extra: Any) -> RedisStore:
    """What ``RedisStore.from_cluster_url(url, timeout=..., max_connections=...)`` could be."""
    sync, aio = cluster_clients(url, timeout=timeout, max_connections=max_connections,
                                retry_on_timeout=retry_on_timeout, **extra)
    return store_class(sync_client=sync, async_client=aio)


class LateReplyProxy:
    """A TCP proxy in front of one node that can hold back the next reply: the command reaches Redis
    and runs, its answer arrives after the client's timeout. Clients reach it through redis-py's
    ``address_remap`` (``remap``)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._delay = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def remap(self, address: tuple[str, int]) -> tuple[str, int]:
        return ("127.0.0.1", self.port) if address[1] == self.target_port else address

    def hold_next_reply(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def _take_delay(self) -> float:
        with self._lock:
            delay, self._delay = self._delay, 0.0
            return delay

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and (delay := self._take_delay()):
                    time.sleep(delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for s in self._sockets:
            s.close()

"""Seeding the load test's pool through the library's own API, without HTTP or password hashing.

Users get 2FA directly with ``BanataAuth.aimport_totp`` and their pending sign-in challenges (and
the pass-through users' sessions) are minted with ``BanataAuth.abegin_second_factor``, against the
same Redis and secret as the server. To mint hundreds of thousands of challenges in seconds, the
``BanataAuth`` used here runs on :class:`PipelinedStore`: an ``OpStore`` that runs the very same
Lua scripts and reads (``stores/redis.py`` ``READS``), but sends the operations of many concurrent
flows in one Redis pipeline.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import multiprocessing
import secrets
import signal
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import redis.asyncio as aioredis

from banata_middleware import BanataAuth
from banata_middleware.demo.app import demo_config
from banata_middleware.effects import Op
from banata_middleware.stores.hot_ops import OPS
from banata_middleware.stores.redis import READS, load_scripts

from .app import BARE_KEY, BARE_VALUE

__all__ = ["PipelinedStore", "PoolPlan", "seed_pool"]

T = TypeVar("T")
_BATCH = 4000  # flows in flight at once


class PipelinedStore:
    """Batches the ops that concurrent flows yield into one pipeline per event-loop turn (seeding only)."""

    in_process = False  # the OpStore protocol: it does I/O, the async driver awaits ``aexecute``

    def __init__(self, url: str) -> None:
        self.client: Any = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
        self.scripts = load_scripts()
        self.sha = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in self.scripts.items()}
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._scheduled = False

    async def prepare(self) -> None:
        for body in self.scripts.values():
            await self.client.script_load(body)

    def execute(self, op: Op) -> Any:
        raise NotImplementedError("PipelinedStore is asyncio only")

    async def aexecute(self, op: Op) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, []
        pipe = self.client.pipeline(transaction=False)
        specs = [OPS[type(op)] for op, _ in batch]
        sent: list[int] = []  # replies per op: 1 for a script, one per command for a read
        for (op, _), spec in zip(batch, specs, strict=True):
            read = READS.get(spec.name)
            if read is None:
                pipe.evalsha(self.sha[spec.name], len(spec.keys), *spec.flat(op))
                sent.append(1)
            else:  # not atomic here: seeding touches each user from one flow at a time
                commands = read.commands(op)
                for command in commands:
                    pipe.execute_command(*command)
                sent.append(len(commands))
        try:
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        at = 0
        for (op, future), spec, count in zip(batch, specs, sent, strict=True):
            mine, at = replies[at:at + count], at + count
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            elif spec.name in READS:
                future.set_result(READS[spec.name].reply(op, mine))  # seeding never writes a last use
            else:
                future.set_result(spec.reply(mine[0]))  # typed, as RedisStore replies

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class PoolPlan:
    """How much to seed. ``totp_users`` x ``totp_challenges`` pending challenges answered by TOTP
    (one user answers at most once per 30 s step); ``backup_users`` with 10 backup codes and
    ``backup_challenges`` challenges each; ``attack_users`` with ``attack_challenges`` challenges
    each (5 wrong codes end a challenge, 10 lock the user); ``sessions`` signed-in sessions."""

    totp_users: int = 0
    totp_challenges: int = 1
    backup_users: int = 0
    backup_challenges: int = 10
    attack_users: int = 0
    attack_challenges: int = 2
    sessions: int = 0
    tag: str = "p"

    @property
    def challenges(self) -> int:
        return (self.totp_users * self.totp_challenges + self.backup_users * self.backup_challenges
                + self.attack_users * self.attack_challenges)


def _secret() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _cookie(set_cookie: str) -> str:
    """``name=value`` from a Set-Cookie header value."""
    return set_cookie.split(";", 1)[0]


async def _bounded(items: Iterable[T], fn: Callable[[T], Awaitable[Any]]) -> list[Any]:
    out: list[Any] = []
    batch: list[Awaitable[Any]] = []
    for item in items:
        batch.append(fn(item))
        if len(batch) >= _BATCH:
            out.extend(await asyncio.gather(*batch))
            batch = []
    if batch:
        out.extend(await asyncio.gather(*batch))
    return out


async def _seed(redis_url: str, database_url: str, secret: str, site_url: str, plan: PoolPlan) -> dict[str, Any]:
    store = PipelinedStore(redis_url)
    await store.prepare()
    await store.client.set(BARE_KEY, BARE_VALUE)
    auth = BanataAuth(demo_config(secret=secret, site_url=site_url), store=store, records=database_url)
    try:
        async def enrol(item: tuple[str, bool]) -> tuple[str, str, list[str]]:
            uid, codes = item
            uri, backup = await auth.aimport_totp(uid, _secret(), backup_codes=codes)
            return uid, uri, backup

        async def challenge(uid: str) -> str:
            result = await auth.abegin_second_factor(uid)
            if not result.two_factor_required:
                raise RuntimeError(f"seeding: {uid} got a session instead of a challenge")
            return _cookie(result.set_cookies[0])

        async def session(uid: str) -> str:
            result = await auth.abegin_second_factor(uid)
            if result.two_factor_required:
                raise RuntimeError(f"seeding: {uid} got a challenge instead of a session")
            return _cookie(result.set_cookies[0])

        tag = plan.tag
        groups = [("totp", plan.totp_users, plan.totp_challenges, False),
                  ("backup", plan.backup_users, plan.backup_challenges, True),
                  ("attack", plan.attack_users, plan.attack_challenges, False)]
        pool: dict[str, Any] = {"site_url": site_url}
        for name, count, per_user, codes in groups:
            users = await _bounded([(f"lt-{tag}-{name}-{i}", codes) for i in range(count)], enrol)
            uids = [uid for uid, _, _ in users for _ in range(per_user)]
            cookies = await _bounded(uids, challenge)
            entries = []
            for index, (uid, uri, backup) in enumerate(users):
                entry: dict[str, Any] = {"uid": uid, "challenges": cookies[index * per_user:(index + 1) * per_user]}
                if codes:
                    entry["codes"] = backup
                else:
                    entry["uri"] = uri
                entries.append(entry)
            pool[name] = entries
        pool["sessions"] = await _bounded([f"lt-{tag}-session-{i}" for i in range(plan.sessions)], session)
        return pool
    finally:
        await store.aclose()
        await auth.records.adispose()


def _run(args: tuple[str, str, str, str, PoolPlan]) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_seed(*args))
    return uvloop.run(_seed(*args))


def _worker_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the pool ends its workers with SIGTERM
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _share(total: int, shards: int, index: int) -> int:
    return total // shards + (1 if index < total % shards else 0)


def seed_pool(redis_url: str, database_url: str, secret: str, site_url: str, plan: PoolPlan, *,
              processes: int = 1) -> dict[str, Any]:
    """Seed ``plan`` into the server's Redis and record store and return the pool the locustfile
    reads (cookie strings, otpauth URIs, codes).

    With ``processes`` > 1 the plan is split between that many forked processes (the Python side of
    redis-py, not Redis, is what limits one process)."""
    if processes <= 1 or plan.challenges + plan.sessions < 20_000:
        return _run((redis_url, database_url, secret, site_url, plan))
    shards = [
        replace(plan, tag=f"{plan.tag}{i}", totp_users=_share(plan.totp_users, processes, i),
                backup_users=_share(plan.backup_users, processes, i),
                attack_users=_share(plan.attack_users, processes, i), sessions=_share(plan.sessions, processes, i))
        for i in range(processes)
    ]
    with multiprocessing.get_context("fork").Pool(processes, initializer=_worker_signals) as workers:
        parts = workers.map(_run, [(redis_url, database_url, secret, site_url, shard) for shard in shards])
    merged: dict[str, Any] = {"site_url": site_url}
    for key in ("totp", "backup", "attack", "sessions"):
        merged[key] = [item for part in parts for item in part[key]]
    return merged

"""The two reads every request makes (``guard``, ``load``) are plain commands in one MULTI/EXEC
rather than Lua scripts (``stores/redis.py`` ``READS``), so what a script did inside Redis is done
in Python here, and checked here against a real Redis: the guard's last-use write is sent only when
due (a second round trip at most once per ``seen_every_ms`` per session), its script decides again
on what is there when it runs (a session ended since the read is not made again, 'seen' never goes
back, an idle session is not revived), and a failed exchange fails closed without leaving replies
on a pooled connection for the next request to read. That both stores answer alike:
``tests/stores/test_conformance.py``; the round trips per request: ``test_round_trips.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from harness import RedisServer

from banata_middleware.errors import AuthError
from banata_middleware.keys import Keys
from banata_middleware.stores import RedisStore
from banata_middleware.stores.hot_ops import Guard, Head, Load, SessionCreate
from banata_middleware.stores.redis import SEEN_SCRIPT

pytestmark = pytest.mark.redis

MINUTE = 60_000
NOW = 1_800_000_000_000
K = Keys("banata")
UID = "ann"
SESSION = K.session(UID, "s1")


def guard(now: int, *, every: int = MINUTE, idle: int = 0, session_key: str = SESSION) -> Guard:
    return Guard(K.user(UID), session_key, K.challenge(UID, "-"), now, "1", "0", every, idle)


def make_session(store: RedisStore, aal: int = 2, ttl_minutes: int = 30) -> None:
    head = Head(K.user(UID), K.audit(UID), NOW, "10.0.0.1", "Firefox", 1000, UID)
    store.execute(SessionCreate(head, SESSION, K.sessions(UID), "s1", str(ttl_minutes * MINUTE), aal, NOW, "1", "1",
                                "pwd"))


class CountingStore(RedisStore):
    """The real store, counting the scripts it sends (the last-use write is the only one a guard sends)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts = 0

    def _script(self, sha: str, script: str, numkeys: int, *fields: Any) -> Any:
        self.scripts += 1
        return super()._script(sha, script, numkeys, *fields)

    async def _ascript(self, sha: str, script: str, numkeys: int, *fields: Any) -> Any:
        self.scripts += 1
        return await super()._ascript(sha, script, numkeys, *fields)


@pytest.fixture
def store(redis_url: str) -> Iterator[CountingStore]:
    fresh = RedisStore.from_url(redis_url, max_connections=1)  # one connection: a stray reply would show
    counting = CountingStore(fresh.sync, fresh.aio)
    yield counting
    counting.close()


def seen(store: RedisStore) -> str | None:
    return store.sync.hget(SESSION, "seen")  # type: ignore[no-any-return]


def test_the_last_use_is_written_only_when_due(store: CountingStore) -> None:
    make_session(store)
    store.scripts = 0
    assert store.execute(guard(NOW + 1000)).session_seen == str(NOW)  # made with its 'seen'
    assert (store.scripts, seen(store)) == (0, str(NOW))  # a second ago: not due
    reply = store.execute(guard(NOW + MINUTE))
    assert reply.session_seen == str(NOW)  # the reply is what was read: the use before this one
    assert (store.scripts, seen(store)) == (1, str(NOW + MINUTE))
    assert store.execute(guard(NOW + MINUTE + 30_000)).session_seen == str(NOW + MINUTE)
    assert store.scripts == 1  # half a minute later: not due again
    # Idle past a 2-minute timeout at aal 2: refused by the flow from the 'seen' read, never revived.
    assert store.execute(guard(NOW + 5 * MINUTE, idle=2 * MINUTE)).session_seen == str(NOW + MINUTE)
    assert (store.scripts, seen(store)) == (1, str(NOW + MINUTE))
    assert store.execute(guard(NOW + 5 * MINUTE)).session_seen == str(NOW + MINUTE)  # no timeout: due
    assert (store.scripts, seen(store)) == (2, str(NOW + 5 * MINUTE))
    store.execute(guard(NOW + 40 * MINUTE))  # expired (30 minutes): nothing written
    assert store.execute(guard(NOW, session_key=K.session(UID, "nope"))).session_exp is None
    assert (store.scripts, seen(store)) == (2, str(NOW + 5 * MINUTE))
    assert store.sync.exists(K.session(UID, "nope")) == 0


def test_an_aal_1_session_has_no_idle_timeout(store: CountingStore) -> None:
    make_session(store, aal=1)
    store.execute(guard(NOW + 5 * MINUTE, idle=2 * MINUTE))
    assert seen(store) == str(NOW + 5 * MINUTE)


def test_the_last_use_script_decides_again_on_what_is_there(store: CountingStore) -> None:
    """Sent after a read that found a write due, the script may meet a session changed since: it
    writes only what the read's rule allows on the session as it is now."""
    def write(now: int, every: int = MINUTE, idle: int = 0, key: str = SESSION) -> None:
        store.sync.eval(SEEN_SCRIPT, 1, key, now, every, idle)

    write(NOW + MINUTE, key=K.session(UID, "gone"))  # ended since the read (sign-out, revocation)
    assert store.sync.exists(K.session(UID, "gone")) == 0
    make_session(store)
    write(NOW + 2 * MINUTE)
    assert seen(store) == str(NOW + 2 * MINUTE)
    write(NOW + MINUTE)  # a request that read before that write, with an older clock: not back
    write(NOW + 2 * MINUTE + 1000)  # another that read an old 'seen' too: written once is enough
    assert seen(store) == str(NOW + 2 * MINUTE)
    write(NOW + 10 * MINUTE, idle=5 * MINUTE)  # idle since: not revived
    assert seen(store) == str(NOW + 2 * MINUTE)
    write(NOW + 31 * MINUTE)  # expired
    assert seen(store) == str(NOW + 2 * MINUTE)


class EndsTheSessionAfterTheRead(CountingStore):
    """A sign-out landing between the guard's read and its last-use write."""

    def _multi(self, commands: list[tuple[str, ...]]) -> list[Any]:
        replies = super()._multi(commands)
        self.sync.delete(SESSION)
        return replies

    async def _amulti(self, commands: list[tuple[str, ...]]) -> list[Any]:
        replies = await super()._amulti(commands)
        await self.aio.delete(SESSION)
        return replies


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_session_ended_between_the_read_and_the_write_is_not_made_again(redis_url: str, driver: str) -> None:
    fresh = RedisStore.from_url(redis_url)
    store = EndsTheSessionAfterTheRead(fresh.sync, fresh.aio)
    make_session(store)
    store.scripts = 0
    op = guard(NOW + 5 * MINUTE)
    if driver == "sync":
        reply = store.execute(op)
    else:
        async def run() -> Any:
            try:
                return await store.aexecute(op)
            finally:
                await store.aclose()

        reply = asyncio.run(run())
    assert reply.session_exp is not None and store.scripts == 1  # the read saw it live, the write was sent
    assert store.sync.exists(SESSION) == 0  # and made nothing: no 'seen'-only hash without an expiry
    store.close()


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_failed_read_fails_closed_and_leaves_the_connection_clean(redis_server: RedisServer, redis_url: str,
                                                                   driver: str) -> None:
    """A key of the wrong type makes a command inside EXEC fail: 503, and the pool's one connection
    answers the next read with its own replies, not this one's leftovers."""
    fresh = RedisStore.from_url(redis_url, max_connections=1)
    make_session(fresh)
    with redis_server.client() as admin:
        admin.set(K.user("bob"), "not a hash")
    bad = Load(K.user("bob"), K.session("bob", "-"), K.challenge("bob", "-"), K.pending_backup_codes("bob"), NOW,
               "0", "0")
    good = guard(NOW + 1000)

    async def run() -> Any:
        try:
            with pytest.raises(AuthError) as refused:
                await fresh.aexecute(bad)
            assert refused.value.status == 503
            return await fresh.aexecute(good)
        finally:
            await fresh.aclose()

    if driver == "sync":
        with pytest.raises(AuthError) as refused:
            fresh.execute(bad)
        assert refused.value.status == 503
        reply = fresh.execute(good)
    else:
        reply = asyncio.run(run())
    assert (reply.session_aal, reply.session_amr) == ("2", "pwd")
    fresh.close()


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_command_refused_in_the_transaction_fails_closed_and_leaves_the_connection_clean(
        redis_server: RedisServer, redis_url: str, driver: str) -> None:
    """A command refused when queued (here by an ACL: no SMEMBERS for this user) answers an error
    in place of QUEUED and EXEC answers EXECABORT: 503, and since the exchange stopped at the first
    error with replies unread, the connection is dropped; the next read gets its own replies."""
    with redis_server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "nosmembers", "on", ">pw", "~*", "+@all", "-smembers")
    try:
        fresh = RedisStore.from_url(redis_url.replace("redis://", "redis://nosmembers:pw@"), max_connections=1)
        make_session(fresh)
        bad = Load(K.user(UID), SESSION, K.challenge(UID, "-"), K.pending_backup_codes(UID), NOW, "1", "0")
        good = guard(NOW + 1000)

        async def run() -> Any:
            try:
                with pytest.raises(AuthError) as refused:
                    await fresh.aexecute(bad)
                assert refused.value.status == 503
                return await fresh.aexecute(good)
            finally:
                await fresh.aclose()

        if driver == "sync":
            with pytest.raises(AuthError) as refused:
                fresh.execute(bad)
            assert refused.value.status == 503
            reply = fresh.execute(good)
        else:
            reply = asyncio.run(run())
        assert (reply.session_aal, reply.session_amr) == ("2", "pwd")
        fresh.close()
    finally:
        with redis_server.client() as admin:
            admin.execute_command("ACL", "DELUSER", "nosmembers")


@pytest.mark.parametrize("parser", ["hiredis", "python"])
@pytest.mark.parametrize("protocol", [2, 3])
def test_the_asyncio_reads_answer_alike_with_every_parser(redis_server: RedisServer, redis_url: str, parser: str,
                                                          protocol: int) -> None:
    """The asyncio exchange takes buffered replies from the hiredis reader directly on RESP2 and
    goes through the parser's read_response otherwise: the same replies and the same refusals
    with redis-py's pure-Python parser and on RESP3 as with the default (hiredis, RESP2) client."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.connection import Connection

    fresh = RedisStore.from_url(redis_url)
    make_session(fresh)
    kwargs: dict[str, Any] = {"decode_responses": True, "protocol": protocol, "socket_timeout": 1.0}
    if parser == "python":
        from redis._parsers import _AsyncRESP2Parser, _AsyncRESP3Parser

        kwargs["parser_class"] = _AsyncRESP3Parser if protocol == 3 else _AsyncRESP2Parser
    pool = BlockingConnectionPool.from_url(redis_url, connection_class=Connection, max_connections=1, **kwargs)
    store = RedisStore(fresh.sync, Redis(connection_pool=pool))
    with redis_server.client() as admin:
        admin.set(K.user("bob"), "not a hash")
    load = Load(K.user(UID), SESSION, K.challenge(UID, "-"), K.pending_backup_codes(UID), NOW + 1000, "1", "0")
    bad = load._replace(user_key=K.user("bob"))

    async def run() -> tuple[Any, Any]:
        try:
            got = (await store.aexecute(guard(NOW + 1000)), await store.aexecute(load))
            with pytest.raises(AuthError) as refused:
                await store.aexecute(bad)
            assert refused.value.status == 503
            assert await store.aexecute(guard(NOW + 1000)) == got[0]  # the connection is clean after it
            return got
        finally:
            await store.aclose()

    assert asyncio.run(run()) == (fresh.execute(guard(NOW + 1000)), fresh.execute(load))
    fresh.close()


def test_a_resp3_push_message_among_the_replies_goes_to_the_parser(redis_url: str) -> None:
    """On RESP3 Redis may send a push message (a client-side-cache invalidation) between two
    replies; the exchange, reading buffered replies from hiredis directly, hands it to the parser's
    push handler as redis-py's own read does, and the replies still come in order."""
    hiredis = pytest.importorskip("hiredis")
    from redis.asyncio import BlockingConnectionPool, Redis

    fresh = RedisStore.from_url(redis_url)
    make_session(fresh)
    pool = BlockingConnectionPool.from_url(redis_url, decode_responses=True, protocol=3, max_connections=1)
    store = RedisStore(fresh.sync, Redis(connection_pool=pool))
    handled: list[Any] = []

    class PushAfterTheFirstReply:
        """hiredis' reader, with an invalidation message between MULTI's OK and the first QUEUED."""

        def __init__(self, reader: Any) -> None:
            self.reader, self.returned, self.pushed = reader, 0, False

        def gets(self, *args: Any) -> Any:
            if self.returned == 1 and not self.pushed:
                self.pushed = True
                return hiredis.PushNotification(["invalidate", [SESSION]])
            reply = self.reader.gets(*args)
            if isinstance(reply, (str, list, int)) or reply is None:
                self.returned += 1
            return reply

        def __getattr__(self, name: str) -> Any:
            return getattr(self.reader, name)

    async def run() -> Any:
        try:
            first = await store.aexecute(guard(NOW + 1000))
            conn = await pool.get_connection()
            parser = conn._parser
            await pool.release(conn)

            async def handle(response: Any, **kwargs: Any) -> None:
                handled.append(list(response))

            parser.handle_push_response = handle
            parser._reader = PushAfterTheFirstReply(parser._reader)
            return first, await store.aexecute(guard(NOW + 1000))
        finally:
            await store.aclose()

    first, second = asyncio.run(run())
    assert handled == [["invalidate", [SESSION]]]
    assert second == first == fresh.execute(guard(NOW + 1000))
    fresh.close()

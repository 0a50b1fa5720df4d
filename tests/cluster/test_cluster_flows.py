"""The core flows on a real 3-master Redis Cluster (DESIGN rule 4: every script stays in one slot).

The app runs on ``RedisStore(sync_client=RedisCluster(...), async_client=redis.asyncio.RedisCluster(...))``
through both adapters (ASGI drives the asyncio cluster client, WSGI the blocking one). A recording
store checks, for every operation, that all its keys hash to one slot, and the cluster itself is
asked afterwards where each user's keys live: all on one node, the owner of the user's slot.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.cluster
from anyio.from_thread import start_blocking_portal
from cluster_support import LateReplyProxy, RedisClusterNodes, cluster_store, free_cluster_ports
from harness import ADAPTERS, PASSWORD, SECRET, SITE, T0, Api, Stack, SyncASGITransport
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from banata_middleware import AuthError, BanataAuth, PasswordHashing, Policies
from banata_middleware.demo.app import demo_config
from banata_middleware.effects import Op
from banata_middleware.simulator import VirtualAuthenticator, VirtualPasskey
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores import RedisStore
from banata_middleware.stores.hot_ops import Load, keys_of, name_of
from banata_middleware.stores.redis import READS, SEEN_SHA, load_scripts

pytestmark = pytest.mark.redis

PK = "/api/auth/passkey"
PREFIX = "banata"
SHA = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in load_scripts().items()}


class SlotCheckingStore(RedisStore):
    """The real RedisStore, noting every operation's script and the slots of its keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ops: list[tuple[str, set[int]]] = []
        self.lock = threading.Lock()
        self.before: dict[str, Callable[[], None]] = {}  # script -> called just before it is sent

    def _note(self, op: Op) -> None:
        with self.lock:
            self.ops.append((name_of(op), {redis.cluster.key_slot(k.encode()) for k in keys_of(op)}))
        hook = self.before.pop(name_of(op), None)
        if hook is not None:
            hook()

    def execute(self, op: Op) -> Any:
        self._note(op)
        return super().execute(op)

    async def aexecute(self, op: Op) -> Any:
        self._note(op)
        return await super().aexecute(op)

    def cross_slot(self) -> list[tuple[str, set[int]]]:
        return [(script, slots) for script, slots in self.ops if len(slots) != 1]

    def scripts(self) -> set[str]:
        return {script for script, _ in self.ops}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes().start()
    yield nodes
    nodes.stop()


@dataclass
class ClusterStack:
    stack: Stack
    store: SlotCheckingStore
    statuses: list[tuple[str, int]] = field(default_factory=list)

    def client(self) -> Api:
        api = self.stack.client()
        api.http.event_hooks["response"].append(
            lambda r: self.statuses.append((f"{r.request.method} {r.request.url.path}", r.status_code)))
        return api

    @property
    def auth(self) -> BanataAuth:
        return self.stack.auth

    @property
    def clock(self) -> FrozenClock:
        return self.stack.clock

    def server_errors(self) -> list[tuple[str, int]]:
        return [s for s in self.statuses if s[1] >= 500]


@contextmanager
def cluster_stack(adapter: str, store: RedisStore, database_url: str) -> Iterator[ClusterStack]:
    """The demo app on ``store`` and the record store at ``database_url`` (the ``database_url``
    fixture) behind ``adapter``, driven in-process like the contract suite's stacks."""
    clock = FrozenClock(T0)
    # sign_up_spread signs up until every master holds a user, all from one address: lift its throttle.
    config = demo_config(secret=SECRET, site_url=SITE, clock=clock, password_hashing=PasswordHashing(n=2**8),
                         policies=Policies(sign_up_per_address=1000))
    auth = BanataAuth(config, store=store, records=database_url)
    app = ADAPTERS[adapter](auth)
    with ExitStack() as exits:
        if adapter == "asgi":
            portal = exits.enter_context(start_blocking_portal())

            def factory(ip: str) -> httpx.BaseTransport:
                return SyncASGITransport(app, portal, (ip, 50000))
        else:
            portal = None

            def factory(ip: str) -> httpx.BaseTransport:
                return httpx.WSGITransport(app=app, remote_addr=ip)
        stack = Stack(adapter, "redis-cluster", auth, app, clock, factory)
        assert isinstance(store, SlotCheckingStore)
        try:
            yield ClusterStack(stack, store)
        finally:
            for c in stack.clients:
                c.close()
            if portal is not None:
                portal.call(store.aclose)
            store.close()


@pytest.fixture(params=sorted(ADAPTERS))
def on_cluster(request: pytest.FixtureRequest, cluster: RedisClusterNodes,
               database_url: str) -> Iterator[ClusterStack]:
    cluster.flush_all()
    with cluster_stack(request.param, cluster_store(cluster.url, timeout=1.0, store_class=SlotCheckingStore),
                       database_url) as cs:
        yield cs


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def user_key(uid: str) -> str:
    return f"{PREFIX}:{{u:{uid}}}:user"


def sign_up_spread(cs: ClusterStack, cluster: RedisClusterNodes, count: int) -> list[tuple[Api, str, str]]:
    """``count`` new users (client, id, e-mail), the first ``len(cluster.ports)`` of them each on
    another master (user ids are random, so sign up until every master holds one)."""
    first_on: dict[int, tuple[Api, str, str]] = {}
    extra: list[tuple[Api, str, str]] = []
    for i in range(60):
        api = cs.client()
        email = f"u{i}-{cs.stack.adapter}@example.com"
        uid = api.sign_up(email).json()["user"]["id"]
        port = cluster.owner_port(user_key(uid))
        if port in first_on:
            extra.append((api, uid, email))
        else:
            first_on[port] = (api, uid, email)
        if len(first_on) == len(cluster.ports) and len(first_on) + len(extra) >= count:
            return [*first_on.values(), *extra][:count]
    raise AssertionError(f"60 sign-ups did not reach every master: {sorted(first_on)}")


def assert_keys_live_with_their_owner(cluster: RedisClusterNodes, uids: list[str]) -> None:
    """Each user's keys sit on exactly one node, the one CLUSTER SLOTS names for the user's slot."""
    found: dict[str, set[int]] = {uid: set() for uid in uids}
    for port in cluster.ports:
        with cluster.node(port) as node:
            for uid in uids:
                if next(iter(node.scan_iter(match=f"{PREFIX}:{{u:{uid}}}:*", count=1000)), None) is not None:
                    found[uid].add(port)
    for uid, ports in found.items():
        assert ports == {cluster.owner_port(user_key(uid))}, (uid, ports)


def test_every_flow_runs_on_a_cluster_with_each_script_in_one_slot(on_cluster: ClusterStack,
                                                                   cluster: RedisClusterNodes) -> None:
    cs = on_cluster
    users = sign_up_spread(cs, cluster, 4)
    alice, alice_id, alice_email = users[0]
    _, bob_id, bob_email = users[1]
    carol, carol_id, carol_email = users[2]
    dave, dave_id, dave_email = users[3]

    # Duplicate e-mail (the index claim) and the sign-in throttle (counters in their own slots).
    r = cs.client().auth("/sign-up/email", {"email": alice_email, "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (422, "USER_ALREADY_EXISTS")
    intruder = cs.client()
    for _ in range(10):
        assert intruder.sign_in("nobody@example.com", "wrong password!").status_code == 401
    assert intruder.sign_in("nobody@example.com", "wrong password!").status_code == 429

    # Enrolment: enable + confirm (which ends alice's other sessions, keys built in the script), the
    # management endpoints.
    elsewhere = cs.client()
    assert elsewhere.sign_in(alice_email).status_code == 200
    device = alice.enable_2fa()
    assert elsewhere.get("/api/me").status_code == 401
    assert alice.auth("/two-factor/get-totp-uri", {"password": PASSWORD}).status_code == 200
    r = alice.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200
    codes = r.json()["backupCodes"]

    # Sign-in challenge answered with TOTP (after a wrong one), then with a backup code.
    cs.clock.advance(30)
    browser = cs.client()
    r = browser.sign_in(alice_email)
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")
    r = browser.auth("/two-factor/verify-totp", {"code": "000000" if device.code() != "000000" else "111111"})
    assert (r.status_code, r.json()["attemptsRemaining"]) == (401, 4)
    assert browser.get("/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"
    r = browser.auth("/two-factor/verify-totp", {"code": device.code(), "trustDevice": True})
    assert r.status_code == 200, r.text
    assert browser.get("/api/me").json() == {"userId": alice_id, "aal": 2}
    replay = cs.client()
    assert replay.sign_in(alice_email).status_code == 403
    assert replay.auth("/two-factor/verify-totp", {"code": device.code()}).json()["code"] == "INVALID_CODE"
    r = replay.auth("/two-factor/verify-backup-code", {"code": codes[0]})
    assert (r.status_code, r.json()["backupCodesRemaining"]) == (200, 9)
    again = cs.client()
    assert again.sign_in(alice_email).status_code == 403
    assert again.auth("/two-factor/verify-backup-code", {"code": codes[0]}).json()["code"] == "INVALID_CODE"

    # A trusted device skips the challenge (trust_use); step-up on a session.
    r = browser.sign_in(alice_email)
    assert r.status_code == 200 and r.json()["token"], r.text
    cs.clock.advance(30)
    r = browser.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200 and r.json()["status"] is True
    assert browser.post("/api/sensitive").status_code == 200

    # The user's own sessions and trusted devices: listed and ended (other keys built in the scripts).
    replay_id = replay.get("/api/auth/get-session").json()["session"]["id"]
    assert replay_id in [s["id"] for s in browser.get("/api/auth/list-sessions").json()]
    assert browser.auth("/revoke-session", {"token": replay_id}).json() == {"status": True}
    assert replay.get("/api/me").status_code == 401
    [trusted] = browser.get("/api/auth/two-factor/list-trusted-devices").json()
    assert browser.auth("/two-factor/revoke-trusted-device", {"id": trusted["id"]}).json() == {"status": True}
    assert browser.get("/api/auth/two-factor/list-trusted-devices").json() == []

    # Passkeys: registration, rename, passwordless sign-in, second factor, delete.
    key = VirtualPasskey()
    options = alice.get(f"{PK}/generate-register-options").json()
    r = alice.post(f"{PK}/verify-registration", {"response": key.create(options, origin=SITE), "name": "Laptop"})
    assert r.status_code == 200, r.text
    cred = r.json()["id"]
    assert cred == b64(key.credential_id)
    assert alice.post(f"{PK}/update-passkey", {"id": cred, "name": "Phone"}).json()["passkey"]["name"] == "Phone"
    passwordless = cs.client()
    options = passwordless.get(f"{PK}/generate-authenticate-options").json()
    r = passwordless.post(f"{PK}/verify-authentication", {"response": key.get(options, origin=SITE)})
    assert r.status_code == 200, r.text
    assert passwordless.get("/api/me").json() == {"userId": alice_id, "aal": 2}
    second = cs.client()
    assert second.sign_in(alice_email).status_code == 403
    options = second.get(f"{PK}/generate-authenticate-options").json()
    assert [c["id"] for c in options["allowCredentials"]] == [cred]
    r = second.post(f"{PK}/verify-authentication", {"response": key.get(options, origin=SITE, user_verified=False)})
    assert r.status_code == 200, r.text
    assert [p["name"] for p in alice.get(f"{PK}/list-user-passkeys").json()] == ["Phone"]
    assert alice.post(f"{PK}/delete-passkey", {"id": cred}).json() == {"status": True}

    # Exhausting a challenge, then disable.
    cs.clock.advance(30)
    guesser = cs.client()
    assert guesser.sign_in(alice_email).status_code == 403
    wrong = "000000" if device.code() != "000000" else "111111"
    answers = [guesser.auth("/two-factor/verify-totp", {"code": wrong}).json()["code"] for _ in range(5)]
    assert answers == ["INVALID_CODE"] * 4 + ["TOO_MANY_ATTEMPTS"]
    assert alice.auth("/two-factor/disable", {"password": PASSWORD}).json() == {"status": True}
    assert cs.client().sign_in(alice_email).status_code == 200

    # Administration: import a secret, reset (removes 2FA, ends sessions), revoke sessions; sign-out.
    uri, backup = cs.auth.import_totp(bob_id, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", email=bob_email, backup_codes=True)
    assert len(backup) == 10
    bob2 = cs.client()
    assert bob2.sign_in(bob_email).status_code == 403
    code = VirtualAuthenticator.from_uri(uri, clock=cs.clock).code()
    assert bob2.auth("/two-factor/verify-totp", {"code": code}).status_code == 200
    assert bob2.get("/api/me").json() == {"userId": bob_id, "aal": 2}
    carol.enable_2fa()
    carol_key = VirtualPasskey()
    options = carol.get(f"{PK}/generate-register-options").json()
    r = carol.post(f"{PK}/verify-registration", {"response": carol_key.create(options, origin=SITE)})
    assert r.status_code == 200, r.text
    cs.auth.reset_two_factor(carol_id)  # passkeys too, and their index entries (other slots)
    assert carol.get("/api/me").status_code == 401
    cs.clock.advance(1)  # a session made in the very millisecond of a reset counts as revoked
    carol = cs.client()
    r = carol.sign_in(carol_email)
    assert r.status_code == 200 and r.json()["user"]["twoFactorEnabled"] is False, r.text
    assert carol.get(f"{PK}/list-user-passkeys").json() == []
    options = carol.get(f"{PK}/generate-register-options").json()
    again = carol_key.create(options, origin=SITE, credential_id=carol_key.credential_id)
    assert carol.post(f"{PK}/verify-registration", {"response": again}).status_code == 200
    cs.auth.revoke_sessions(dave_id)
    assert dave.get("/api/me").status_code == 401
    cs.clock.advance(1)  # a session made in the very millisecond of a revocation counts as revoked
    assert dave.sign_in(dave_email).status_code == 200
    assert dave.get("/api/me").json()["userId"] == dave_id
    assert dave.auth("/sign-out").json() == {"success": True}
    assert dave.get("/api/me").status_code == 401

    assert cs.server_errors() == []
    assert cs.store.cross_slot() == []
    used = cs.store.scripts()
    # backup_codes_replace serves only a setup not yet confirmed (the confirmed set is replaced in SQL).
    expected = {"load", "guard", "throttle", "user_fill", "session_create", "challenge_create",
                "challenge_answer", "session_answer", "trust_use", "two_factor_begin",
                "two_factor_disable", "two_factor_import", "user_reset", "session_revoke", "ceremony",
                "factor_change", "passkey_sign_in", "audit_event",
                "session_list", "session_end", "trust_list", "trust_end"}
    assert expected <= used, expected - used
    assert expected <= set(load_scripts()) | set(READS)
    assert_keys_live_with_their_owner(cluster, [alice_id, bob_id, carol_id, dave_id])


def test_scripts_missing_on_a_node_are_sent_again(on_cluster: ClusterStack, cluster: RedisClusterNodes) -> None:
    """EVALSHA meets NOSCRIPT on a node that never saw the script (or flushed it): RedisStore falls
    back to EVAL there, which also caches it on that node. The guard's last-use write (a minute
    after sign-up) and sign-in's session are scripts; the guard's read is not (MULTI/EXEC)."""
    cs = on_cluster
    users = sign_up_spread(cs, cluster, 3)
    for port in cluster.ports:
        with cluster.node(port) as node:
            node.script_flush()
            assert node.script_exists(SEEN_SHA, SHA["session_create"]) == [False, False]
    cs.clock.advance(61)
    for api, uid, email in users:
        assert api.get("/api/me").json()["userId"] == uid
        assert cs.client().sign_in(email).status_code == 200
    owners = {cluster.owner_port(user_key(uid)) for _, uid, _ in users}
    for port in owners:
        with cluster.node(port) as node:
            assert node.script_exists(SEEN_SHA, SHA["session_create"]) == [True, True]
    for _, uid, _ in users:
        with cluster.node(cluster.owner_port(user_key(uid))) as node:
            sessions = [k for k in node.scan_iter(match=f"{PREFIX}:{{u:{uid}}}:s:*") if node.type(k) == "hash"]
            assert any(node.hget(k, "seen") == str((T0 + 61) * 1000) for k in sessions), uid
    assert cs.server_errors() == []


def test_one_totp_code_sent_to_six_pending_challenges_at_once_gives_one_session(on_cluster: ClusterStack,
                                                                           cluster: RedisClusterNodes) -> None:
    """The replay guard on a cluster: two pending challenges of one user answered at once with one
    code give one session."""
    cs = on_cluster
    (api, _, email), *_ = sign_up_spread(cs, cluster, 3)
    device = api.enable_2fa()
    cs.clock.advance(30)
    browsers = [cs.client() for _ in range(6)]
    for b in browsers:
        assert b.sign_in(email).status_code == 403
    code = device.code()
    barrier = threading.Barrier(len(browsers))
    results: list[int] = []

    def answer(b: Api) -> None:
        barrier.wait()
        results.append(b.auth("/two-factor/verify-totp", {"code": code}).status_code)

    threads = [threading.Thread(target=answer, args=(b,)) for b in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200] + [401] * 5
    assert cs.server_errors() == []


def test_a_cross_slot_operation_is_refused_by_the_client(cluster: RedisClusterNodes) -> None:
    """What a script with keys of two users would meet: redis-py refuses it before sending. The
    store must fail closed with a 503 like any other store error."""
    store = cluster_store(cluster.url, timeout=1.0)
    op = Load(user_key=user_key("a"), session_key=f"{PREFIX}:{{u:b}}:s:-", challenge_key=f"{PREFIX}:{{u:a}}:ch:-",
              pending_codes_key=f"{PREFIX}:{{u:a}}:bcp", now_ms=T0 * 1000, want_session="1", want_challenge="0")
    try:
        with pytest.raises(AuthError) as refused:
            store.execute(op)
        assert refused.value.status == 503
    finally:
        store.close()


def test_an_asgi_app_whose_cluster_is_unreachable_answers_503(cluster: RedisClusterNodes, database_url: str) -> None:
    """The asyncio cluster client connects lazily: an app started while no node answers meets
    RedisClusterException ('Redis Cluster cannot be connected') on its first request, which is not
    a RedisError: the store must still answer 503 STORE_UNAVAILABLE, not let it escape as a 500."""
    dead = f"redis://127.0.0.1:{free_cluster_ports(1)[0]}"
    aio = AsyncRedisCluster.from_url(dead, decode_responses=True, socket_timeout=0.3, socket_connect_timeout=0.3)
    store = SlotCheckingStore(sync_client=None, async_client=aio)
    clock = FrozenClock(T0)
    config = demo_config(secret=SECRET, site_url=SITE, clock=clock, password_hashing=PasswordHashing(n=2**8))
    app = ADAPTERS["asgi"](BanataAuth(config, store=store, records=database_url))
    with start_blocking_portal() as portal, httpx.Client(transport=SyncASGITransport(app, portal),
                                                         base_url=SITE) as client:
        r = client.post("/api/auth/sign-up/email", json={"email": "x@example.com", "password": PASSWORD})
        assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE")


def test_a_node_down_fails_closed_with_503_then_recovers(cluster: RedisClusterNodes, database_url: str) -> None:
    """One master killed: its users get 503 at once on both adapters (sync and asyncio cluster
    clients), other users are served until the cluster declares itself failed (then 503 too), and
    after the node returns (empty: no persistence) nothing crashes."""
    cluster.flush_all()
    with ExitStack() as exits:
        stacks = [exits.enter_context(cluster_stack(adapter, cluster_store(cluster.url, timeout=1.0,
                                                                           store_class=SlotCheckingStore),
                                                    database_url))
                  for adapter in sorted(ADAPTERS)]
        spread = {cs.stack.adapter: sign_up_spread(cs, cluster, 3) for cs in stacks}
        port = cluster.owner_port(user_key(spread[stacks[0].stack.adapter][0][1]))
        victims = [(api, uid) for users in spread.values() for api, uid, _ in users
                   if cluster.owner_port(user_key(uid)) == port]
        others = [(api, uid) for users in spread.values() for api, uid, _ in users
                  if cluster.owner_port(user_key(uid)) != port]
        assert {api.stack.adapter for api, _ in victims} == set(ADAPTERS)
        cluster.kill(port)
        try:
            for api, _ in victims:
                started = time.monotonic()
                r = api.get("/api/me")
                assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE"), r.text
                assert r.json()["message"]
                assert time.monotonic() - started < 3
                assert api.auth("/two-factor/verify-totp", {"code": "123456"}).status_code == 503
            for api, uid in others:
                r = api.get("/api/me")
                assert r.status_code in (200, 503), r.text
                if r.status_code == 200:
                    assert r.json()["userId"] == uid
        finally:
            cluster.restart(port)
        for api, _ in victims:
            assert api.get("/api/me").status_code == 401  # its data is gone: signed out, not a crash
        for api, uid in others:
            assert api.get("/api/me").json()["userId"] == uid
        for cs in stacks:
            assert [s for s in cs.server_errors() if s[1] != 503] == []


@pytest.mark.parametrize("clients", [
    "once",
    pytest.param("stock", marks=pytest.mark.xfail(strict=True, reason=(
        "hazard of RedisStore(RedisCluster(...)) as the RedisStore docstring suggests: redis-py's RedisCluster "
        "retries a command after a timeout (ERRORS_ALLOW_RETRY holds TimeoutError whatever retry= says), so a "
        "script that ran but answered late runs again: one wrong code counts as two failures. Build the "
        "clients as cluster_support.cluster_clients does (proposed RedisStore.from_cluster_url)."))),
])
def test_a_script_whose_answer_is_late_runs_once(cluster: RedisClusterNodes, database_url: str, clients: str) -> None:
    """A wrong code's commit runs on the user's node but its answer comes after the store timeout:
    the caller gets 503, and the failure is counted once, not once per retry."""
    cluster.flush_all()
    # Find the user's node first: the proxy goes in front of it.
    with cluster_stack("wsgi", cluster_store(cluster.url, store_class=SlotCheckingStore), database_url) as setup:
        api = setup.client()
        uid = api.sign_up("late@example.com").json()["user"]["id"]
        secret_uri = api.auth("/two-factor/enable", {"password": PASSWORD}).json()["totpURI"]
        device = VirtualAuthenticator.from_uri(secret_uri, clock=setup.clock)
        assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    with cluster.node(cluster.owner_port(user_key(uid))) as node:  # so the held answer is the script's
        for body in load_scripts().values():
            node.script_load(body)
    proxy = LateReplyProxy(cluster.owner_port(user_key(uid)))
    store = cluster_store(cluster.url, timeout=0.3, store_class=SlotCheckingStore,
                          retry_on_timeout=clients == "stock", address_remap=proxy.remap)
    try:
        with cluster_stack("wsgi", store, database_url) as cs:
            cs.clock.advance(30)
            browser = cs.client()
            assert browser.sign_in("late@example.com").status_code == 403
            wrong = "000000" if device.code() != "000000" else "111111"
            cs.store.before["challenge_answer"] = lambda: proxy.hold_next_reply(0.6)
            r = browser.auth("/two-factor/verify-totp", {"code": wrong})
            time.sleep(0.4)  # the held answer is delivered (or dropped) by now
            with cluster.node(cluster.owner_port(user_key(uid))) as node:
                fails = int(node.hget(user_key(uid), "fails") or 0)
            assert fails == 1, f"one wrong code was counted {fails} times (answer: {r.status_code} {r.text})"
            assert r.status_code == 503, r.text
    finally:
        proxy.close()

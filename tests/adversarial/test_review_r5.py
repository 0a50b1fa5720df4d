"""Round-5 review (R2, attacker's brief): delivery after commit (notices, Standard Webhooks, the
outbox cursors), built-in accounts in SQL, and the demo's outbox page. Each ``xfail(strict=True)``
test reproduces a finding (R5-n) and fails on this code; the others pin attacks that held."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import standardwebhooks
from harness import PASSWORD, SITE, Stack, count_scrypt

sys.path.append(str(Path(__file__).resolve().parents[1] / "delivery"))
from delivery_support import POLL, SECRET, Receiver, commit, make_auth

from banata_middleware import BanataAuth
from banata_middleware.config import Policies
from banata_middleware.delivery import (
    DeliveryFailed,
    DeliveryPolicy,
    Outbox,
    WebhookConsumer,
    WebhookEndpoint,
    WebhookVerificationError,
    event_payload,
    new_webhook_secret,
    sign_webhook,
    verify_webhook,
)
from banata_middleware.delivery.notices import NOTICE_KINDS, notice_of
from banata_middleware.demo import pages
from banata_middleware.demo.app import starlette_app
from banata_middleware.demo.wsgi import werkzeug_app
from banata_middleware.errors import AuthError
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.simulator.testing import app_client, enroll
from banata_middleware.stores.records import (
    AppendAudit,
    AuditEntry,
    CreateAccount,
    GetAccountByEmail,
    ListAudit,
    PruneAudit,
    RecordStore,
)
from banata_middleware.stores.records.delivery import ListDeadLetters, RequestReplay


@pytest.fixture
def records(tmp_path: Path) -> Iterator[RecordStore]:
    store = RecordStore.embedded(tmp_path / "records.db")
    yield store
    store.dispose()


@pytest.fixture
def fclock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.stop()


def _receiver(made: list[Receiver], **options: Any) -> Receiver:
    r = Receiver(**options).start()
    made.append(r)
    return r


# == 1. Delivery after commit ===================================================================
# -- findings ----------------------------------------------------------------------------------
def test_a_replay_goes_only_to_consumers_that_take_the_event(records: RecordStore, fclock: FrozenClock,
                                                            receivers: list[Receiver]) -> None:
    """``banata-mfa webhooks replay ID`` (no --consumer) marks every consumer whose cursor is past the
    event, including those that passed it over because they do not take its type. The drainer then
    delivers the replay without asking ``accepts``: an endpoint configured for ``two_factor.enabled``
    only receives a ``two_factor.verified`` (with its user, IP, user agent, session id), and the
    notifier's ``notice_of`` raises KeyError on a non-notice type, leaving a dead letter for ever."""
    narrow = _receiver(receivers)
    outbox = Outbox()
    endpoint = WebhookEndpoint(narrow.url, new_webhook_secret(), kinds={"two_factor.enabled"}, name="narrow")
    auth = make_auth(records, fclock, webhooks=(endpoint,), notifier=outbox)
    commit(records, fclock, "ann", "two_factor.verified", method="totp")
    auth.deliver_pending()
    assert narrow.received == [] and outbox.notices == []  # passed over by both: not their kind
    [event] = records.execute(ListAudit())
    assert records.execute(RequestReplay(event.id, int(fclock.now() * 1000))) == 0  # nobody takes its type
    auth.deliver_pending()
    assert [json.loads(d.body)["type"] for d in narrow.received] == []
    assert records.execute(ListDeadLetters()) == ()


def test_a_slow_endpoint_does_not_hold_back_another_consumer(records: RecordStore, fclock: FrozenClock,
                                                            receivers: list[Receiver]) -> None:
    """docs/delivery.md: 'Consumers do not wait for each other.' A receiver that answers each POST
    just inside the timeout (here 0.3 s of a 1 s timeout) is a success every time, so the loop
    delivers its whole batch (up to 100 events: 100 x timeout) before it turns to the next consumer.
    A hostile or overloaded endpoint thus delays a user's security notices by minutes."""
    slow = _receiver(receivers, delay=0.3)
    fast = _receiver(receivers)
    policy = DeliveryPolicy(timeout=1.0, max_attempts=3, backoff=1.0, lease=5.0, gap_grace=2.0, background=False)
    auth = make_auth(records, fclock, policy=policy, webhooks=(
        WebhookEndpoint(slow.url, new_webhook_secret(), name="slow"),
        WebhookEndpoint(fast.url, new_webhook_secret(), name="fast")))
    commit(records, fclock, "ann", *["two_factor.verified"] * 10)  # 10 x 0.3 s at the slow endpoint
    worker = threading.Thread(target=auth.deliver_pending)
    start = time.monotonic()
    worker.start()
    try:
        while not fast.received and time.monotonic() - start < 1.5:
            time.sleep(0.02)
        in_time = bool(fast.received)
    finally:
        worker.join()
    waited = time.monotonic() - start
    assert in_time, f"the fast endpoint got nothing in 1.5 s; the drain took {waited:.1f} s"


class Trickler:
    """An HTTP 'receiver' that answers 200 but sends its header one byte every ``interval`` seconds
    for ``seconds``: each read gets a byte well within a socket timeout."""

    def __init__(self, seconds: float, interval: float = 0.1) -> None:
        self.seconds, self.interval = seconds, interval
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.hits = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            self.hits += 1
            conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nx-slow: ")
                end = time.monotonic() + self.seconds
                while time.monotonic() < end:
                    conn.sendall(b"a")
                    time.sleep(self.interval)
                conn.sendall(b"\r\ncontent-length: 0\r\n\r\n")
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def test_a_trickling_receiver_cannot_hold_a_delivery_past_its_timeout(fclock: FrozenClock) -> None:
    """``DeliveryPolicy.timeout`` promises 'seconds one delivery may take', and the lease is only
    required to exceed it. urlopen's timeout bounds each socket read: a receiver sending its answer a
    byte at a time never trips it. The drainer thread is stuck (every consumer waits, R5-2), and once
    the lease runs out a second process takes the consumer and POSTs the same event concurrently."""
    trickler = Trickler(seconds=3.0)
    try:
        consumer = WebhookConsumer(WebhookEndpoint(trickler.url, new_webhook_secret(), name="trickle"), fclock)
        from banata_middleware.stores.records import AuditRecord

        event = AuditRecord(1, "ann", "two_factor.enabled", int(fclock.now() * 1000), "", "", "", {})
        start = time.monotonic()
        with contextlib.suppress(DeliveryFailed):
            consumer.deliver(event, timeout=0.5)
        took = time.monotonic() - start
    finally:
        trickler.close()
    assert took < 1.5, f"one delivery with a 0.5 s timeout took {took:.1f} s"


@pytest.mark.parametrize("stamp", ["\u00b2", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_verify_webhook_refuses_any_malformed_timestamp_with_its_own_error(stamp: str) -> None:
    """The receiver's documented contract: ``WebhookVerificationError`` (answer 400). '²' (U+00B2,
    a Latin-1 byte that any HTTP server decodes into the header) and a 5000-digit number pass
    ``isdigit()`` and then raise ValueError in ``int()``, which a receiver catching the documented
    error turns into a 500 (and an error log per forged request)."""
    headers = {"webhook-id": "evt_1_1", "webhook-timestamp": stamp, "webhook-signature": "v1,AAAA"}
    with pytest.raises(WebhookVerificationError):
        verify_webhook(new_webhook_secret(), headers, b"{}")


def test_an_event_after_retention_emptied_the_sqlite_outbox_is_delivered(records: RecordStore, fclock: FrozenClock,
                                                                        receivers: list[Receiver]) -> None:
    """A quiet app: its only events age out (PruneAudit), then a user turns 2FA on. The new row gets
    id 1 again (no AUTOINCREMENT on audit_events), the cursor is at 3; ClaimBatch sees no id > 3,
    the newest is 1 < 3, and moves the cursor to 1, past the event it never delivered."""
    hook = _receiver(receivers)
    auth = make_auth(records, fclock, webhooks=(WebhookEndpoint(hook.url, new_webhook_secret(), name="quiet"),))
    commit(records, fclock, "ann", "two_factor.enabled", "passkey.added", "two_factor.disabled")
    assert auth.deliver_pending() == 3
    fclock.advance(90 * 86400)
    records.execute(PruneAudit(int(fclock.now() * 1000)))
    commit(records, fclock, "bob", "two_factor.enabled")
    auth.deliver_pending()
    assert [json.loads(d.body)["data"]["userId"] for d in hook.received][3:] == ["bob"]


# -- held ----------------------------------------------------------------------------------------
def test_standard_webhooks_signature_and_strict_timestamps(fclock: FrozenClock) -> None:
    """Our signature is the spec's (the standardwebhooks package signs the same bytes the same way);
    verify_webhook refuses old, future, tampered, other-key and other-version signatures."""
    secret = new_webhook_secret()
    body = b'{"type":"two_factor.enabled"}'
    stamp = int(fclock.now())
    ours = sign_webhook(secret, "evt_1_2", stamp, body)
    from datetime import UTC, datetime

    theirs = standardwebhooks.Webhook(secret).sign("evt_1_2", datetime.fromtimestamp(stamp, UTC), body.decode())
    assert ours == theirs
    headers = {"Webhook-Id": "evt_1_2", "Webhook-Timestamp": str(stamp), "Webhook-Signature": f"v1a,xyz {ours}"}
    assert verify_webhook(secret, headers, body, clock=fclock) == {"type": "two_factor.enabled"}
    for shift in (301, -301):  # a replay of an old delivery, and one stamped in the future
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            verify_webhook(secret, headers, body, clock=FrozenClock(fclock.now() + shift))
    for bad in ({**headers, "Webhook-Signature": ours.replace("v1,", "v2,")},
                {**headers, "Webhook-Timestamp": str(stamp + 1)},
                {**headers, "Webhook-Id": "evt_1_3"},
                {**headers, "Webhook-Signature": ""},
                {**headers, "Webhook-Timestamp": f"{stamp}.0"},
                {**headers, "Webhook-Timestamp": f"-{stamp}"}):
        with pytest.raises(WebhookVerificationError):
            verify_webhook(secret, bad, body, clock=fclock)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, body + b" ", clock=fclock)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(new_webhook_secret(), headers, body, clock=fclock)


def test_verify_webhook_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch, fclock: FrozenClock) -> None:
    import banata_middleware.delivery.webhooks as webhooks

    seen: list[tuple[bytes, bytes]] = []
    real = webhooks.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(webhooks.hmac, "compare_digest", spy)
    secret = new_webhook_secret()
    stamp = int(fclock.now())
    sig = sign_webhook(secret, "m", stamp, b"{}")
    verify_webhook(secret, {"webhook-id": "m", "webhook-timestamp": str(stamp), "webhook-signature": sig}, b"{}",
                   clock=fclock)
    assert seen and seen[-1] == (sig.encode(), sig.encode())


def test_a_redirect_is_a_failure_and_is_not_followed(records: RecordStore, fclock: FrozenClock,
                                                     receivers: list[Receiver]) -> None:
    target = _receiver(receivers)

    class Redirector(Receiver):
        def start(self) -> Receiver:
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    self.send_response(307)
                    self.send_header("location", target.url)
                    self.send_header("content-length", "0")
                    self.end_headers()

                def log_message(self, *args: Any) -> None:
                    pass

            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True).start()
            return self

    redirector = Redirector().start()
    receivers.append(redirector)
    auth = make_auth(records, fclock, webhooks=(WebhookEndpoint(redirector.url, new_webhook_secret(), name="r"),))
    commit(records, fclock, "ann", "two_factor.enabled")
    assert auth.deliver_pending() == 0
    assert target.attempts == 0


def _secrets_of_a_full_life(stack: Stack) -> tuple[str, list[str]]:
    """Sign up, turn 2FA on, use a backup code, view the TOTP URI, regenerate codes, step up, turn
    2FA off: every SQL audit row a built-in user makes. Returns (user id, every secret shown)."""
    api = stack.client()
    r = api.sign_up("leak@example.com")
    uid = r.json()["user"]["id"]
    shown = [PASSWORD, r.json()["token"], SECRET]
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    uri = r.json()["totpURI"]
    totp = parse_qs(urlsplit(uri).query)["secret"][0]
    codes = r.json()["backupCodes"]
    device = VirtualAuthenticator.from_uri(uri, clock=stack.clock)
    r = api.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text
    shown += [totp, r.json()["token"], *codes, *(c.replace("-", "") for c in codes)]
    other = stack.client()
    assert other.sign_in("leak@example.com").status_code in (200, 403)
    r = other.auth("/two-factor/verify-backup-code", {"code": codes[0]})
    assert r.status_code == 200, r.text
    r = api.auth("/two-factor/get-totp-uri", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    r = api.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    shown += r.json()["backupCodes"]
    stack.clock.advance(30)
    assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    assert api.auth("/two-factor/disable", {"password": PASSWORD}).status_code == 200
    for cookie in (*api.http.cookies.values(), *other.http.cookies.values()):
        shown.append(cookie)
    account = stack.records.execute(GetAccountByEmail("leak@example.com"))
    assert account is not None
    shown.append(account.password_hash)
    return uid, [s for s in shown if s]


def test_no_webhook_payload_or_notice_carries_a_secret(stack: Stack) -> None:
    uid, shown = _secrets_of_a_full_life(stack)
    events = stack.records.execute(ListAudit(uid))
    assert {"two_factor.enabled", "two_factor.disabled", "two_factor.verified"} <= {e.type for e in events}
    wire = json.dumps([event_payload(e) for e in events])
    wire += repr([notice_of(e) for e in events if e.type in NOTICE_KINDS])
    for secret in shown:
        assert secret not in wire, "a secret reached the outbox"
    # The details are the flows' own constants or public ids, never request input.
    assert {d for e in events for d in e.detail.values()} <= {"totp", "backup", "import", "ceiling", "pending"}


def test_a_hanging_or_raising_notifier_never_slows_a_request(tmp_path: Path) -> None:
    clock = FrozenClock()
    records = RecordStore.embedded(tmp_path / "records.db")
    release = threading.Event()

    def hang(notice: object) -> None:
        release.wait(10)
        raise RuntimeError("mail server down")

    auth = BanataAuth(pages.demo_config(secret=SECRET, site_url=SITE, clock=clock), records=records,
                      notifier=hang, delivery=DeliveryPolicy(timeout=5.0, lease=10.0, poll_interval=0.05))
    try:
        with app_client(starlette_app(auth), base_url=SITE) as browser:
            start = time.monotonic()
            user = enroll(browser, authenticator=VirtualAuthenticator(clock=clock), clock=clock)
            time.sleep(0.2)  # the delivery thread is now stuck in the notifier
            assert user.post("/two-factor/disable", {"password": user.password}).status_code == 200
            assert time.monotonic() - start < 4.0
    finally:
        release.set()
        auth.close()
        records.dispose()


# == 2. Built-in accounts in SQL =================================================================
@pytest.mark.parametrize("variant", ["ANN@BÜCHER.EXAMPLE.", "ann@xn--bcher-kva.example", "Ann@ＢＵＣＨＥＲ.example",
                                     " ann@bücher\uff0eexample\u3000", "ann@XN--BCHER-KVA.example"])
def test_one_mailbox_one_account_across_case_unicode_and_idna(stack: Stack, variant: str) -> None:
    api = stack.client(ip="203.0.113.5")
    api.sign_up("ann@bücher.example")
    r = stack.client(ip="203.0.113.6").auth("/sign-up/email", {"email": variant, "password": PASSWORD, "name": "x"})
    if "ＢＵＣＨＥＲ" in variant:  # 'bucher' without the umlaut is another domain: its own account
        assert r.status_code == 200
        return
    assert r.status_code == 422, r.text
    assert stack.client(ip="203.0.113.7").sign_in(variant).status_code in (200, 403)


def test_an_unknown_email_costs_the_same_one_hash_as_a_known_one(stack: Stack) -> None:
    stack.client(ip="203.0.113.20").sign_up("known@example.com")
    calls = count_scrypt(stack)
    stack.client(ip="203.0.113.21").sign_in("known@example.com", "wrong password!")
    known = calls[0]
    stack.client(ip="203.0.113.22").sign_in("nobody@example.com", "wrong password!")
    assert known == 1 and calls[0] - known == 1


def _count_records(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ops: list[str] = []
    store = stack.records
    real, areal = store.execute, store.aexecute

    def execute(op: Any) -> Any:
        ops.append(type(op).__name__)
        return real(op)

    async def aexecute(op: Any) -> Any:
        ops.append(type(op).__name__)
        return await areal(op)

    monkeypatch.setattr(store, "execute", execute)
    monkeypatch.setattr(store, "aexecute", aexecute)
    return ops


def test_sign_up_throttles_come_before_any_sql_and_hash(stack_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stack_factory(policies=Policies(sign_up_per_address=2, anonymous_records_per_window=3))
    ops = _count_records(stack, monkeypatch)
    calls = count_scrypt(stack)
    api = stack.client(ip="203.0.113.30")
    statuses = [api.auth("/sign-up/email", {"email": f"a{i}@example.com", "password": PASSWORD}).status_code
                for i in range(4)]
    assert statuses == [200, 200, 429, 429]
    assert ops.count("CreateAccount") == 2 and ops.count("GetAccountByEmail") == 2 and calls[0] == 2
    # The global cap: other addresses, one each; the 4th account overall is refused before SQL writes.
    ops.clear()
    statuses = [stack.client(ip=f"198.51.100.{i}").auth(
        "/sign-up/email", {"email": f"b{i}@example.com", "password": PASSWORD}).status_code for i in range(3)]
    assert statuses == [200, 429, 429]
    assert ops.count("CreateAccount") == 1


@pytest.mark.parametrize("failing", ["GetAccountByEmail", "CreateAccount"])
def test_a_database_down_at_sign_up_is_503_and_creates_nothing(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                                               failing: str) -> None:
    store = stack.records
    real, areal = store.execute, store.aexecute
    down = AuthError(503, "STORE_UNAVAILABLE", "the record store is unavailable")

    def execute(op: Any) -> Any:
        if type(op).__name__ == failing:
            raise down
        return real(op)

    async def aexecute(op: Any) -> Any:
        if type(op).__name__ == failing:
            raise down
        return await areal(op)

    monkeypatch.setattr(store, "execute", execute)
    monkeypatch.setattr(store, "aexecute", aexecute)
    api = stack.client(ip="203.0.113.40")
    r = api.auth("/sign-up/email", {"email": "down@example.com", "password": PASSWORD})
    assert r.status_code == 503 and "set-cookie" not in r.headers
    r = api.sign_in("down@example.com")
    assert r.status_code == (503 if failing == "GetAccountByEmail" else 401)
    monkeypatch.undo()
    assert real(GetAccountByEmail("down@example.com")) is None
    assert stack.client(ip="203.0.113.41").sign_up("down@example.com").status_code == 200


def test_two_sign_ups_racing_for_one_address_make_one_account(stack: Stack) -> None:
    from banata_middleware.stores.records import Account, Status

    a = stack.records.execute(CreateAccount(Account("u1", "race@example.com", "h", "", 1)))
    b = stack.records.execute(CreateAccount(Account("u2", "race@example.com", "h", "", 1)))
    assert (a, b) == (Status.CREATED, Status.TAKEN)


# == 3. The demo's outbox page ==================================================================
@pytest.fixture(params=["starlette", "werkzeug"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[BanataAuth, object, FrozenClock]]:
    clock = FrozenClock()
    records = RecordStore.embedded(tmp_path / "records.db")
    pages.DEMO_OUTBOX.clear()
    auth = BanataAuth(pages.demo_config(secret=SECRET, site_url=SITE, clock=clock), records=records,
                      notifier=pages.DEMO_OUTBOX, delivery=DeliveryPolicy(background=False))
    app = starlette_app(auth) if request.param == "starlette" else werkzeug_app(auth)
    yield auth, app, clock
    records.dispose()
    pages.DEMO_OUTBOX.clear()


def test_the_outbox_escapes_what_an_attacker_put_in_a_victims_notice(
        demo: tuple[BanataAuth, object, FrozenClock]) -> None:
    """Someone who knows the victim's password locks their second factor from a browser whose
    user agent is markup: the victim's outbox shows it as text; nobody else's outbox shows it."""
    auth, app, clock = demo
    with app_client(app, base_url=SITE) as victim, app_client(app, base_url=SITE) as other:
        user = enroll(victim, authenticator=VirtualAuthenticator(clock=clock), clock=clock)
        enroll(other, authenticator=VirtualAuthenticator(clock=clock), clock=clock, email="other@example.com")
        at = int(clock.now() * 1000)
        ua = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
        auth.records.execute(AppendAudit(user.user_id, [AuditEntry("two_factor.locked", at, "<b>ip</b>", ua)]))
        auth.deliver_pending()
        mine, theirs = victim.get("/outbox"), other.get("/outbox")
    assert mine.status_code == 200 and "<script>alert" not in mine.text and "&lt;script&gt;" in mine.text
    assert "<b>ip</b>" not in mine.text
    assert "two_factor.locked" not in theirs.text and "alert" not in theirs.text


def test_the_outbox_is_closed_to_a_password_only_sign_in_of_a_2fa_account(
        demo: tuple[BanataAuth, object, FrozenClock]) -> None:
    _, app, clock = demo
    with app_client(app, base_url=SITE) as owner, app_client(app, base_url=SITE) as thief:
        user = enroll(owner, authenticator=VirtualAuthenticator(clock=clock), clock=clock)
        r = thief.post("/api/auth/sign-in/email", json={"email": user.email, "password": user.password},
                       headers={"origin": SITE})
        assert r.status_code == 403  # the second factor is due
        assert thief.get("/outbox", headers={"accept": "application/json"}).status_code in (401, 403)


def test_a_gap_that_fills_in_leaves_nothing_behind_in_the_drainer(records: RecordStore, fclock: FrozenClock,
                                                                  receivers: list[Receiver]) -> None:
    """On PostgreSQL and MariaDB concurrent flows commit ids out of order all the time: each such
    gap is waited for (right) and recorded in ``_gaps``; the entry is deleted only when the grace
    runs out, never when the missing id shows up. A busy process collects one entry per race."""
    from sqlalchemy import insert

    hook = _receiver(receivers)
    auth = make_auth(records, fclock, webhooks=(WebhookEndpoint(hook.url, new_webhook_secret(), name="gaps"),))
    a = records.schema.audit_events
    at = int(fclock.now() * 1000)
    for first, late in ((2, 1), (4, 3), (6, 5)):  # each later id commits before the one below it
        with records.engine.begin() as conn:
            conn.execute(insert(a).values(id=first, user_id="ann", type="two_factor.enabled", at=at))
        assert auth.deliver_pending() == 0  # waiting for the missing id: right
        with records.engine.begin() as conn:
            conn.execute(insert(a).values(id=late, user_id="ann", type="two_factor.enabled", at=at))
        assert auth.deliver_pending() == 2
    assert len(hook.received) == 6
    assert auth.delivery is not None and auth.delivery._gaps == {}


def test_a_hung_notifier_does_not_pile_up_threads(records: RecordStore, fclock: FrozenClock) -> None:
    """A notifier stuck on a dead SMTP connection (no socket timeout) is abandoned after the timeout
    and retried: right. But the abandoned call keeps its thread, and the retry starts another one;
    every event gets ``max_attempts`` stuck threads before it is dead-lettered, and the next event
    starts over. A mail server that hangs for a day leaves thousands of threads in the app."""
    release = threading.Event()

    def hang(notice: object) -> None:
        release.wait(30)

    policy = DeliveryPolicy(timeout=0.1, max_attempts=3, backoff=1.0, lease=5.0, gap_grace=2.0, background=False)
    auth = make_auth(records, fclock, notifier=hang, policy=policy)
    try:
        commit(records, fclock, "ann", "two_factor.enabled", "two_factor.disabled", "passkey.added")
        for _ in range(12):
            auth.deliver_pending()
            fclock.advance(10)
        stuck = [t for t in threading.enumerate() if t.name == "banata-notifier"]
        assert len(stuck) <= 1, f"{len(stuck)} notifier threads are still running"
    finally:
        release.set()


@pytest.mark.parametrize("kind", [
    "events",  # held: each cursor move renews the lease
    "replays",  # R5-8: each settled replay renews the lease too
])
def test_slow_deliveries_are_made_by_one_process_at_a_time(records: RecordStore, fclock: FrozenClock,
                                                           kind: str) -> None:
    """Every cursor move renews the lease, so regular events keep their one holder; the replay
    loop in ``Drainer._drain`` renews nothing. Three replays that each take 0.6 s (by the clock) of
    a 1 s lease: during the second, another process finds the lease expired, claims the consumer
    and delivers the replays still due, while the first goes on delivering them as well."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got: list[str] = []
    other: list[BanataAuth] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            got.append(self.headers["webhook-id"])
            fclock.advance(0.6)  # a slow answer, within the timeout
            if len(got) == 2 and other:
                other.pop().deliver_pending()  # the other process's drain round, meanwhile
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        secret = new_webhook_secret()
        policy = DeliveryPolicy(timeout=0.9, max_attempts=3, backoff=1.0, lease=1.0, gap_grace=2.0, background=False)
        first = make_auth(records, fclock, policy=policy, webhooks=(WebhookEndpoint(url, secret, name="r"),))
        second = make_auth(records, fclock, policy=policy, webhooks=(WebhookEndpoint(url, secret, name="r"),))
        commit(records, fclock, "ann", "two_factor.enabled", "two_factor.disabled", "passkey.added")
        if kind == "replays":
            assert first.deliver_pending() == 3
            fclock.advance(5)  # the lease is free again
            got.clear()
            for event in records.execute(ListAudit()):
                assert records.execute(RequestReplay(event.id, int(fclock.now() * 1000))) == 1
        other.append(second)
        first.deliver_pending()
        assert len(got) == len(set(got)) == 3, f"delivered: {got}"
    finally:
        server.shutdown()
        server.server_close()

"""Prometheus metrics (``banata_middleware.metrics``): each counter moves by exactly what one request
means, on both adapters and both stores; labels stay within the route table under random paths; and
with metrics off nothing is registered."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness import SITE, FailingStore, Stack

pytest.importorskip("prometheus_client")

from prometheus_client import REGISTRY, CollectorRegistry

from banata_middleware.config import Policies
from banata_middleware.metrics import Metrics
from banata_middleware.simulator import VirtualPasskey

VERIFY_TOTP = "POST /two-factor/verify-totp"
SIGN_IN = "POST /sign-in/email"


class Reader:
    """The registry's samples, read as differences from the last ``mark``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.before: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def snapshot(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for metric in self.registry.collect() for s in metric.samples}

    def mark(self) -> None:
        self.before = self.snapshot()

    def changes(self, prefix: str = "banata_") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The counters (``_total``) that moved since ``mark``, and by how much."""
        now = self.snapshot()
        return {k: v - self.before.get(k, 0.0) for k, v in now.items()
                if k[0].startswith(prefix) and k[0].endswith("_total") and v != self.before.get(k, 0.0)}


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def answer(route: str, status: int, code: str = "") -> tuple[str, tuple[tuple[str, str], ...]]:
    return key("banata_requests_total", route=route, status=str(status), code=code)


def build(stack_factory: Callable[..., Stack], **overrides: Any) -> tuple[Stack, Reader]:
    registry = CollectorRegistry()
    return stack_factory(metrics=Metrics(registry), **overrides), Reader(registry)


def with_pending_sign_in(stack: Stack, reader: Reader) -> Any:
    owner = stack.client()
    owner.sign_up("m@example.com")
    device = owner.enable_2fa()
    stack.clock.advance(30)
    api = stack.client()
    reader.mark()
    r = api.sign_in("m@example.com")
    assert r.json()["twoFactorRedirect"] is True
    assert reader.changes() == {answer(SIGN_IN, r.status_code): 1,
                                key("banata_sign_ins_second_factor_required_total"): 1}
    return api, device


def test_a_right_and_a_wrong_code_count_once_each(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory)
    api, device = with_pending_sign_in(stack, reader)
    reader.mark()
    r = api.auth("/two-factor/verify-totp", {"code": "000000"})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    assert reader.changes() == {answer(VERIFY_TOTP, 401, "INVALID_CODE"): 1,
                                key("banata_verifications_total", method="totp", outcome="wrong"): 1}
    reader.mark()
    r = api.auth("/two-factor/verify-backup-code", {"code": "AAAAA-AAAAA"})
    assert r.status_code == 401
    assert reader.changes() == {answer("POST /two-factor/verify-backup-code", 401, "INVALID_CODE"): 1,
                                key("banata_verifications_total", method="backup_code", outcome="wrong"): 1}
    reader.mark()
    r = api.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text
    assert reader.changes() == {answer(VERIFY_TOTP, 200): 1,
                                key("banata_verifications_total", method="totp", outcome="ok"): 1}
    # A pass-through of the app's own protected page: counted under "(app)", never its path.
    reader.mark()
    assert api.get("/api/me").status_code == 200
    assert reader.changes() == {answer("(app)", 200): 1}


def test_a_lock_counts_as_a_locked_verification_and_a_locked_refusal(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory, policies=Policies(user_lock_failures=2))
    api, _ = with_pending_sign_in(stack, reader)
    api.auth("/two-factor/verify-totp", {"code": "000000"})
    reader.mark()
    r = api.auth("/two-factor/verify-totp", {"code": "000000"})
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    assert reader.changes() == {answer(VERIFY_TOTP, 429, "ACCOUNT_TEMPORARILY_LOCKED"): 1,
                                key("banata_verifications_total", method="totp", outcome="locked"): 1,
                                key("banata_locked_refusals_total", route=VERIFY_TOTP): 1}


def test_a_throttled_sign_in_counts_as_one_throttle(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory, policies=Policies(sign_in_failures_per_account=2))
    stack.client().sign_up("t@example.com")
    api = stack.client()
    for _ in range(2):
        assert api.sign_in("t@example.com", "wrong password!").status_code == 401
    reader.mark()
    r = api.sign_in("t@example.com", "wrong password!")
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert reader.changes() == {answer(SIGN_IN, 429, "TOO_MANY_REQUESTS"): 1,
                                key("banata_throttled_total", route=SIGN_IN): 1}


def test_a_store_failure_counts_a_store_error_and_a_503(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory)
    api = stack.client()
    api.sign_up("s@example.com")
    if stack.redis is not None:
        stack.redis.stop()  # the real thing; the next test's fixture starts it again
    else:
        stack.auth.store = FailingStore()
    reader.mark()
    r = api.get("/api/me")
    assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE")
    assert reader.changes() == {answer("(app)", 503, "STORE_UNAVAILABLE"): 1,
                                key("banata_store_errors_total", op="guard"): 1}


def test_store_time_is_observed_per_operation(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory)
    stack.client().sign_up("o@example.com")
    count = reader.registry.get_sample_value("banata_store_seconds_count", {"op": "load"})
    assert count is not None and count >= 1
    latency = reader.registry.get_sample_value("banata_request_seconds_count", {"route": "POST /sign-up/email"})
    assert latency == 1


def test_labels_stay_within_the_route_table_under_random_paths(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory)
    api = stack.client()
    rng = random.Random(16)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.~"  # no "%": httpx's WSGITransport breaks PEP 3333 on it
    for _ in range(60):
        segment = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        prefix = rng.choice(["/api/auth/", "/api/auth/two-factor/", "/", "/app/"])
        method = rng.choice(["GET", "POST", "DELETE", "PATCH"])
        api.http.request(method, prefix + segment, json={})
    allowed = {f"{m} {p}" for m, p in stack.auth.gateway.routes} | {"(app)", "(unmatched)"}
    routes = {s.labels["route"] for metric in reader.registry.collect() for s in metric.samples
              if "route" in s.labels}
    assert routes and routes <= allowed
    assert "(unmatched)" in routes and "(app)" in routes


def test_metrics_off_registers_nothing(stack: Stack) -> None:
    """The default stack has no metrics: nothing in the default registry, no wrapped store."""
    api = stack.client()
    api.sign_up("n@example.com")
    assert api.get("/api/me").status_code == 200
    assert stack.auth.metrics is None and stack.auth.gateway.metrics is None
    assert stack.auth._ops() is stack.auth.store
    assert not [m for m in REGISTRY.collect() if m.name.startswith("banata")]


def test_a_passkey_sign_in_and_its_replay_count_as_ok_then_expired(stack_factory: Callable[..., Stack]) -> None:
    stack, reader = build(stack_factory)
    owner = stack.client()
    owner.sign_up("pk@example.com")
    passkey = VirtualPasskey()
    options = owner.get("/api/auth/passkey/generate-register-options").json()
    r = owner.post("/api/auth/passkey/verify-registration", {"response": passkey.create(options, origin=SITE)})
    assert r.status_code == 200, r.text
    api = stack.client()
    response = passkey.get(api.get("/api/auth/passkey/generate-authenticate-options").json(), origin=SITE)
    route = "POST /passkey/verify-authentication"
    reader.mark()
    assert api.post("/api/auth/passkey/verify-authentication", {"response": response}).status_code == 200
    assert reader.changes() == {answer(route, 200): 1,
                                key("banata_verifications_total", method="passkey", outcome="ok"): 1}
    reader.mark()
    r = api.post("/api/auth/passkey/verify-authentication", {"response": response})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")
    assert reader.changes() == {answer(route, 400, "CHALLENGE_NOT_FOUND"): 1,
                                key("banata_verifications_total", method="passkey", outcome="expired"): 1}



def test_metrics_alone_and_with_tracing_count_the_same(stack_factory: Callable[..., Stack]) -> None:
    """With metrics alone the drivers time a request and its store operations and report them in one
    call; with tracing on too, the gateway's span and the measured store report them. The same
    requests give the same series and the same counts either way (times aside: sums, buckets)."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from banata_middleware.tracing import Tracing

    def counts(traced: bool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        registry = CollectorRegistry()
        extra = {"tracing": Tracing(sdk.TracerProvider())} if traced else {}
        stack = stack_factory(metrics=Metrics(registry), **extra)
        email = f"same-{traced}@example.com"  # the two stacks may share one Redis and one database
        owner = stack.client()
        owner.sign_up(email)
        device = owner.enable_2fa()
        stack.clock.advance(30)
        api = stack.client()
        assert api.sign_in(email).json()["twoFactorRedirect"] is True
        assert api.auth("/two-factor/verify-totp", {"code": "000000"}).status_code == 401
        assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
        assert api.get("/api/me").status_code == 200  # a pass-through
        assert stack.client().get("/api/me").status_code == 401
        assert api.get("/api/auth/no-such-endpoint").status_code == 404
        return {k: v for k, v in Reader(registry).snapshot().items()
                if k[0].startswith("banata_") and k[0].endswith(("_total", "_count"))}

    alone, traced = counts(False), counts(True)
    assert alone == traced
    assert alone[answer("(app)", 200)] == 1 and alone[answer("(app)", 401, "UNAUTHORIZED")] == 1
    # The signed-in pass-through runs the guard; the anonymous one has no cookie to look up.
    assert alone[key("banata_store_seconds_count", op="guard")] == 1


def _evict_copy(stack: Stack, uid: str) -> None:
    """The user's hash (the read-through copy) is gone, as after an eviction; the session stays."""
    key = stack.auth.flows.keys.user(uid)
    if stack.redis is not None:
        with stack.redis.client() as client:
            client.delete(key)
    else:
        store: Any = stack.auth.store
        store.data.pop(key, None)


def test_a_pass_through_that_rebuilds_the_copy_counts_the_same_with_and_without_tracing(
        stack_factory: Callable[..., Stack]) -> None:
    """The drivers' direct pass-through hands the rest to the gateway's flow when the copy must be
    rebuilt first: the guard, the record read, the fill and the guard again are counted as the
    flow with tracing on counts them, and the request once."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from banata_middleware.tracing import Tracing

    def counts(traced: bool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        registry = CollectorRegistry()
        extra = {"tracing": Tracing(sdk.TracerProvider())} if traced else {}
        stack = stack_factory(metrics=Metrics(registry), **extra)
        api = stack.client()
        api.sign_up(f"refill-{traced}@example.com")
        uid = api.get("/api/me").json()["userId"]
        reader = Reader(registry)
        reader.mark()
        _evict_copy(stack, uid)
        assert api.get("/api/me").json()["userId"] == uid
        now = reader.snapshot()
        return {k: v - reader.before.get(k, 0.0) for k, v in now.items()
                if k[0].endswith(("_total", "_count")) and v != reader.before.get(k, 0.0)}

    alone, traced = counts(False), counts(True)
    assert alone == traced
    assert alone == {answer("(app)", 200): 1, key("banata_request_seconds_count", route="(app)"): 1,
                     key("banata_store_seconds_count", op="guard"): 2,
                     key("banata_store_seconds_count", op="sql.LoadUser"): 1,
                     key("banata_store_seconds_count", op="user_fill"): 1}


def test_pass_throughs_under_threads_lose_no_count(stack_factory: Callable[..., Stack]) -> None:
    """WSGI servers run requests in threads: every pass-through is counted once, while scrapes (which
    add the pass-throughs' own counts into their series) run beside them."""
    import sys
    import threading

    stack, reader = build(stack_factory)
    if stack.adapter != "wsgi":
        pytest.skip("threads: the WSGI adapter (ASGI runs its requests on one loop)")
    api = stack.client()
    api.sign_up("threads@example.com")
    cookies = dict(api.http.cookies)
    threads, each = 6, 150
    reader.mark()
    before = reader.snapshot()
    errors: list[BaseException] = []
    done = threading.Event()

    def requests() -> None:
        try:
            with httpx.Client(transport=stack.transport_factory("127.0.0.1"), base_url=SITE, cookies=cookies) as c:
                for _ in range(each):
                    assert c.get("/api/me").status_code == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    def scrapes() -> None:
        while not done.is_set():
            list(reader.registry.collect())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        workers = [threading.Thread(target=requests) for _ in range(threads)]
        scraper = threading.Thread(target=scrapes)
        scraper.start()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        done.set()
        scraper.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    now = reader.snapshot()

    def moved(k: tuple[str, tuple[tuple[str, str], ...]]) -> float:
        return now.get(k, 0.0) - before.get(k, 0.0)

    n = threads * each
    assert moved(answer("(app)", 200)) == n
    assert moved(key("banata_request_seconds_count", route="(app)")) == n
    assert moved(key("banata_request_seconds_bucket", route="(app)", le="+Inf")) == n
    assert moved(key("banata_store_seconds_count", op="guard")) == n


def test_observe_pass_under_threads_and_scrapes_loses_no_count() -> None:
    """``Metrics.observe_pass`` from threads at full speed, scraped meanwhile: every observation is in
    the series once (its counts are added into them at each scrape, under the same lock). Without
    the lock, about one round in two loses observations here; five rounds."""
    import sys
    import threading

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    threads, each = 4, 30_000

    def observe(start: threading.Barrier) -> None:
        start.wait()
        for i in range(each):
            metrics.observe_pass(0.0001 if i % 2 else 0.002, 0.00005 if i % 3 else 0.003)

    def scrape(start: threading.Barrier, done: threading.Event) -> None:
        start.wait()
        while not done.is_set():
            list(registry.collect())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        for round_ in range(1, 6):
            done = threading.Event()
            start = threading.Barrier(threads + 1)
            workers = [threading.Thread(target=observe, args=(start,)) for _ in range(threads)]
            scraper = threading.Thread(target=scrape, args=(start, done))
            for t in [*workers, scraper]:
                t.start()
            for w in workers:
                w.join()
            done.set()
            scraper.join()
            n = threads * each * round_
            snapshot = Reader(registry).snapshot()
            assert snapshot[answer("(app)", 200)] == n
            assert snapshot[key("banata_request_seconds_count", route="(app)")] == n
            assert snapshot[key("banata_request_seconds_bucket", route="(app)", le="0.0005")] == n / 2
            assert snapshot[key("banata_store_seconds_count", op="guard")] == n
            assert snapshot[key("banata_request_seconds_sum", route="(app)")] == pytest.approx(n / 2 * 0.0021)
    finally:
        sys.setswitchinterval(interval)


def test_observe_pass_exposes_what_observe_request_exposes() -> None:
    """The pass-through's own counts (``observe_pass``) come out as the same series, samples and values
    as the same requests reported the general way (``observe_request``), ``_created`` times aside."""
    from prometheus_client import generate_latest

    from banata_middleware.http import Identity
    from banata_middleware.stores.hot_ops import Guard

    timings = [(0.0001, 0.00002), (0.003, 0.0004), (0.7, 0.3), (0.00005, 0.00009), (6.0, 2.0)]
    general, direct = CollectorRegistry(), CollectorRegistry()
    by_request, by_pass = Metrics(general), Metrics(direct)
    identity = Identity("u1", "s1", 2, None, True)
    for seconds, stored in timings:
        by_request.observe_request("(app)", identity, seconds, [(Guard, stored)])
        by_pass.observe_pass(seconds, stored)

    def exposition(registry: CollectorRegistry) -> tuple[list[str], list[str]]:
        lines = generate_latest(registry).decode().splitlines()
        created = [line.split(" ")[0] for line in lines if "_created" in line]
        return [line for line in lines if "_created" not in line], created

    assert exposition(general) == exposition(direct)
    assert exposition(direct)[1]  # the three series have their _created samples
    by_pass.observe_pass(0.0001, 0.00002)  # and after a scrape, the next pass-through is counted on top
    assert Reader(direct).snapshot()[answer("(app)", 200)] == len(timings) + 1

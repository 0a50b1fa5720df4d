"""Prometheus metrics (the optional ``metrics`` extra, ``prometheus_client``).

Off by default: ``BanataAuth(config, metrics=Metrics())`` turns them on. No flow knows about
metrics: they are fed each answer (its route, status and error code; verification outcomes, throttles
and locks are all read from that) and the time of each store operation. With metrics alone, the
drivers (``effects.run_sync``/``run_async``) time the request and its store operations themselves and
report them in one call, ``observe_request``, once the request is answered; the authenticated
pass-through, driven by ``BanataAuth.handle``/``ahandle`` without a flow, by ``observe_pass``: one
call, one lock, three numbers. With tracing on too, ``Gateway.handle`` reports the answer inside its span
(``observe_answer``) and ``effects.MeasuredStore`` each operation inside its own (``observe_store``).
When off, the drivers and the gateway cost an ``if`` or two and the store is not wrapped at all.

Labels are bounded: a route is a ``"METHOD /path"`` of the gateway's route table, ``(unmatched)``
for any other path under ``base_path``, or ``(app)`` for the app's own paths (the guard); a code is
one of the middleware's own error codes; an op is a store script name. Never a user id or a raw path.
The metrics live in a ``CollectorRegistry`` (``prometheus_client``'s default one unless given): the
app exposes it the way it exposes its own metrics (``prometheus_client.make_asgi_app(registry)``,
``make_wsgi_app``, ``start_http_server`` on an internal port).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ._extras import missing_extra
from .http import Response
from .stores.hot_ops import OPS, Guard

try:
    import prometheus_client.metrics
    from prometheus_client import REGISTRY, CollectorRegistry, Counter
    from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise missing_extra(__name__, "metrics", exc) from exc

__all__ = ["APP_ROUTE", "UNMATCHED_ROUTE", "Metrics"]

APP_ROUTE = "(app)"  # as gateway.APP_ROUTE
UNMATCHED_ROUTE = "(unmatched)"

# The endpoints that verify a second factor, and the method each verifies.
_VERIFY_METHODS = {
    "POST /two-factor/verify-totp": "totp",
    "POST /two-factor/verify-backup-code": "backup_code",
    "POST /two-factor/verify-otp": "otp",
    "POST /passkey/verify-authentication": "passkey",
}
# A refusal of a verification, by its error code. TOTP replays answer INVALID_CODE like a wrong code
# (the contract does not tell them apart), so they are counted as "wrong".
_OUTCOMES = {
    "INVALID_CODE": "wrong",
    "AUTHENTICATION_FAILED": "wrong",
    "PASSKEY_NOT_FOUND": "wrong",
    "TOO_MANY_ATTEMPTS": "exhausted",
    "ACCOUNT_TEMPORARILY_LOCKED": "locked",
    "UNAUTHORIZED": "expired",
    "CHALLENGE_NOT_FOUND": "expired",
    "STORE_UNAVAILABLE": "store_error",
}
_SIGN_IN = "POST /sign-in/email"
_REQUESTS_HELP = "Answers of the middleware, by route, status and error code"
# How prometheus_client writes a bucket's bound in its "le" label (untyped there).
_le: Callable[[float], str] = floatToGoString
_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
_STORE_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1)
_LATENCY_BOUNDS = (*_LATENCY_BUCKETS, float("inf"))
_STORE_BOUNDS = (*_STORE_BUCKETS, float("inf"))
_LATENCY_FIRST, _STORE_FIRST = _LATENCY_BUCKETS[0], _STORE_BUCKETS[0]
# _HotSeries.passes: how many pass-throughs fell in each (latency bucket, guard's store bucket) pair,
# row by row (+Inf last in both), then the sum of their latencies and the sum of their guards' times.
_PASS_COLUMNS = len(_STORE_BOUNDS)
_PASS_LATENCY_SUM = len(_LATENCY_BOUNDS) * _PASS_COLUMNS
_PASS_CELLS = _PASS_LATENCY_SUM + 2


class _Histograms:
    """One labelled histogram, kept as plain numbers: per label value, the count of each bucket (not
    cumulative), then the sum, then when the series was made."""

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = (*buckets, float("inf"))
        self.first = self.bounds[0]
        self.le = [_le(b) for b in self.bounds]
        self.series: dict[str, list[float]] = {}

    def new_series(self, value: str) -> list[float]:
        """Called with the lock held."""
        # _created is the wall time the series was made, as prometheus_client's own (not the Clock's).
        series = self.series[value] = [0.0] * (len(self.bounds) + 1) + [time.time()]
        return series

    def observe(self, value: str, seconds: float) -> None:
        """Called with the lock held."""
        series = self.series.get(value)
        if series is None:
            series = self.new_series(value)
        # The first bucket whose bound is >= seconds; most fall in the first (the pass-through).
        series[0 if seconds <= self.first else bisect_left(self.bounds, seconds)] += 1.0
        series[-2] += seconds

    def family(self, created: bool) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, series in self.series.items():
            total = 0.0
            buckets = []
            for le, count in zip(self.le, series, strict=False):
                total += count
                buckets.append((le, total))
            family.add_metric([value], buckets, series[-2])
            if created:
                family.add_sample(self.name + "_created", {self.label: value}, series[-1])
        return family


class _HotSeries(Collector):
    """The three series every request moves (its answer, its time; each store operation's time),
    kept as plain numbers under one lock and handed to the registry when it is scraped.
    ``prometheus_client``'s Counter and Histogram take a lock per number and walk the buckets in
    Python: three times the cost, on every request. Same names, labels, buckets and samples.

    The lock is needed: WSGI servers run requests in threads, and a number's ``+=`` is a read and a
    write that another thread may come between (under free-threaded Python at any instruction);
    ``collect`` adding the pass-throughs' counts into their series and zeroing them (``fold_passes``)
    is the same. Every write and that fold hold it, so no count is lost
    (tests/contract/test_metrics.py runs threads and scrapes together)."""

    def __init__(self, namespace: str) -> None:
        self.lock = threading.Lock()
        prefix = f"{namespace}_" if namespace else ""
        self.requests_name = prefix + "requests"
        # (route, status, code) -> [count, made at]
        self.answers: dict[tuple[str, int, str], list[float]] = {}
        self.latency = _Histograms(prefix + "request_seconds", "Time the middleware took to decide a request, by route",
                                   "route", _LATENCY_BUCKETS)
        self.store = _Histograms(prefix + "store_seconds", "Time of one store operation, by operation (script name)",
                                 "op", _STORE_BUCKETS)
        # The same lists as above, found without a key to build: route -> (latency series, count of
        # its answers 200 without a code); operation type -> its store series; type -> op label.
        self.passing: dict[str, tuple[list[float], list[float]]] = {}
        self.store_by_kind: dict[type[Any], list[float]] = {}
        self.op_names: dict[type[Any], str] = {}
        # observe_pass's counts, kept apart in one flat list and added into the three series they
        # belong to when scraped (fold_passes): one count per (latency bucket, store bucket) pair, so
        # that a pass-through moves one count and two sums (each number moved costs, on every
        # request), and the (app) route's latency buckets, the guard's store buckets and the count
        # of answers (app, 200, "") are its rows', columns' and whole sums. None until the first
        # pass, which makes the three series (their _created time) as observe_request would.
        self.passes: list[float] | None = None

    def passing_cells(self, route: str) -> tuple[list[float], list[float]]:
        """(latency series, answer count) of requests on ``route`` that pass through (200, no code),
        made (or found) as ``observe_answer`` would, and kept by route. Called with the lock held."""
        latency = self.latency.series.get(route) or self.latency.new_series(route)
        answers = self.answers.get((route, 200, ""))
        if answers is None:
            answers = self.answers[(route, 200, "")] = [0.0, time.time()]
        cells = self.passing[route] = (latency, answers)
        return cells

    def pass_cells(self) -> list[float]:
        """``passes``, made at the first pass with the three series it adds to. Lock held."""
        if APP_ROUTE not in self.passing:
            self.passing_cells(APP_ROUTE)
        if Guard not in self.store_by_kind:
            self.store_cells(Guard)
        cells = self.passes = [0.0] * _PASS_CELLS
        return cells

    def fold_passes(self) -> None:
        """Add ``passes`` into the series they count for, and start them again from 0. Lock held."""
        cells = self.passes
        if cells is None:
            return
        latency, answers = self.passing[APP_ROUTE]
        store = self.store_by_kind[Guard]
        for row in range(len(_LATENCY_BOUNDS)):
            counts = cells[row * _PASS_COLUMNS:(row + 1) * _PASS_COLUMNS]
            latency[row] += sum(counts)
            for column, count in enumerate(counts):
                store[column] += count
        latency[-2] += cells[_PASS_LATENCY_SUM]
        store[-2] += cells[-1]
        answers[0] += sum(cells[:_PASS_LATENCY_SUM])
        cells[:] = [0.0] * _PASS_CELLS

    def op_name(self, kind: type[Any]) -> str:
        """The ``op`` label of an operation type, as ``effects.MeasuredStore._name`` names it."""
        name = self.op_names.get(kind)
        if name is None:
            spec = OPS.get(kind)
            name = self.op_names[kind] = spec.name if spec is not None else f"sql.{kind.__name__}"
        return name

    def store_cells(self, kind: type[Any]) -> list[float]:
        """The store time series of operations of type ``kind``, kept by type. Lock held."""
        name = self.op_name(kind)
        series = self.store_by_kind[kind] = self.store.series.get(name) or self.store.new_series(name)
        return series

    def answered(self, route: str, status: int, code: str) -> None:
        """One more answer (route, status, code). Called with the lock held."""
        answers = self.answers.get((route, status, code))
        if answers is None:
            answers = self.answers[(route, status, code)] = [0.0, time.time()]
        answers[0] += 1.0

    def collect(self) -> Iterator[Metric]:
        # prometheus_client.disable_created_metrics() turns off the _created samples of its own metrics.
        created = getattr(prometheus_client.metrics, "_use_created", True)
        with self.lock:
            self.fold_passes()
            requests = CounterMetricFamily(self.requests_name, _REQUESTS_HELP, labels=["route", "status", "code"])
            for (route, status, code), (count, made) in self.answers.items():
                requests.add_metric([route, str(status), code], count, created=made if created else None)
            families = [requests, self.latency.family(created), self.store.family(created)]
        yield from families

    def describe(self) -> Iterator[Metric]:
        # The names, so that the registry refuses a second Metrics in it as it does for its own.
        yield CounterMetricFamily(self.requests_name, "", labels=["route", "status", "code"])
        yield HistogramMetricFamily(self.latency.name, "", labels=["route"])
        yield HistogramMetricFamily(self.store.name, "", labels=["op"])


class Metrics:
    """The middleware's metrics, registered in ``registry`` (default: ``prometheus_client.REGISTRY``).

    ``namespace`` prefixes every name (``banata_requests_total`` ...). One ``Metrics`` per registry:
    registering the same names twice in one registry is an error in ``prometheus_client``."""

    def __init__(self, registry: CollectorRegistry | None = None, *, namespace: str = "banata") -> None:
        r = REGISTRY if registry is None else registry
        self.registry = r
        # banata_requests_total, banata_request_seconds and banata_store_seconds: see _HotSeries.
        self._hot = _HotSeries(namespace)
        r.register(self._hot)
        self.verifications = Counter("verifications", "Second-factor verifications, by method and outcome",
                                     ["method", "outcome"], namespace=namespace, registry=r)
        self.second_factor_sign_ins = Counter(
            "sign_ins_second_factor_required", "Password sign-ins answered with a second-factor challenge",
            namespace=namespace, registry=r)
        self.locked = Counter("locked_refusals", "Requests refused because the account is locked (429), by route",
                              ["route"], namespace=namespace, registry=r)
        self.throttled = Counter("throttled", "Requests refused by a rate limit (429 TOO_MANY_REQUESTS), by route",
                                 ["route"], namespace=namespace, registry=r)
        self.store_errors = Counter("store_errors", "Store operations that failed (answered 503), by operation",
                                    ["op"], namespace=namespace, registry=r)

    def observe_store(self, op: str, seconds: float, failed: bool) -> None:
        """Called by ``effects.MeasuredStore`` once a store operation (with tracing on; with metrics
        alone the drivers time the operations and call ``observe_request``)."""
        hot = self._hot
        # acquire/release rather than `with`: half the cost, and nothing between them can raise.
        hot.lock.acquire()
        try:
            hot.store.observe(op, seconds)
        finally:
            hot.lock.release()
        if failed:
            self.store_errors.labels(op).inc()

    def observe_answer(self, route: str, response: Response | None, code: str, seconds: float) -> None:
        """Called by ``Gateway.handle`` once a request when tracing is on: ``response`` is None when
        the request passes through to the app, ``code`` the ``AuthError`` code when it was refused
        ("" otherwise)."""
        status = 200 if response is None else response.status
        hot = self._hot
        hot.lock.acquire()
        try:
            hot.latency.observe(route, seconds)
            hot.answered(route, status, code)
        finally:
            hot.lock.release()
        if response is not None:
            self._count_answer(route, response, status, code)

    # -- with metrics alone: what the drivers call (effects.Meter) -------------------------------
    def observe_request(self, route: str, result: object, seconds: float,
                        stores: list[tuple[type[Any], float]] | None) -> None:
        """A request answered (``result``: the gateway's flow's answer, a ``Response`` or what passes
        through) in ``seconds``, with the successful store operations it ran (type, seconds): the
        same series as ``observe_answer`` and ``observe_store``, under one lock."""
        if type(result) is Response:
            self.observe_answer(route, result, result.code, seconds)
            if stores is not None:
                self.observe_stores(stores)
            return
        hot = self._hot
        # A request that passes through (status 200, no code): its series found by route alone,
        # its store operations' by their type, without building a key or a label (``passing_cells``).
        hot.lock.acquire()
        try:
            cells = hot.passing.get(route) or hot.passing_cells(route)
            latency = cells[0]
            # += 1.0, not 1: float + float is the interpreter's specialised add.
            latency[0 if seconds <= _LATENCY_FIRST else bisect_left(_LATENCY_BOUNDS, seconds)] += 1.0
            latency[-2] += seconds
            cells[1][0] += 1.0
            if stores is not None:
                by_kind = hot.store_by_kind
                for kind, op_seconds in stores:
                    series = by_kind.get(kind) or hot.store_cells(kind)
                    series[0 if op_seconds <= _STORE_FIRST else bisect_left(_STORE_BOUNDS, op_seconds)] += 1.0
                    series[-2] += op_seconds
        finally:
            hot.lock.release()

    def observe_pass(self, seconds: float, guard_seconds: float) -> None:
        """A protected request let through (route ``(app)``, 200, no code) in ``seconds``, whose one
        store operation, the guard, took ``guard_seconds``: ``observe_request``'s series, found
        without a look-up (the drivers' direct pass-through, ``BanataAuth.handle``)."""
        hot = self._hot
        hot.lock.acquire()
        try:
            cells = hot.passes or hot.pass_cells()
            row = 0 if seconds <= _LATENCY_FIRST else bisect_left(_LATENCY_BOUNDS, seconds) * _PASS_COLUMNS
            cells[row if guard_seconds <= _STORE_FIRST else row + bisect_left(_STORE_BOUNDS, guard_seconds)] += 1.0
            cells[_PASS_LATENCY_SUM] += seconds
            cells[-1] += guard_seconds
        finally:
            hot.lock.release()

    def observe_stores(self, stores: list[tuple[type[Any], float]]) -> None:
        """Store operations (type, seconds) of one request, e.g. one that ended in an exception (a bug)."""
        hot = self._hot
        hot.lock.acquire()
        try:
            for kind, seconds in stores:
                hot.store.observe(hot.op_name(kind), seconds)
        finally:
            hot.lock.release()

    def observe_store_failure(self, kind: type[Any], seconds: float) -> None:
        """A store operation of type ``kind`` that failed (the store's ``AuthError``, a 503)."""
        self.observe_store(self._hot.op_name(kind), seconds, True)

    def _count_answer(self, route: str, response: Response, status: int, code: str) -> None:
        """The counters read from an answer of the middleware's own (refusals, verifications, sign-ins)."""
        if code == "ACCOUNT_TEMPORARILY_LOCKED":
            self.locked.labels(route).inc()
        elif code == "TOO_MANY_REQUESTS":
            self.throttled.labels(route).inc()
        method = _VERIFY_METHODS.get(route)
        if method is not None:
            outcome = "ok" if status == 200 else _OUTCOMES.get(code, "refused")
            self.verifications.labels(method, outcome).inc()
        elif route == _SIGN_IN and b'"twoFactorRedirect":true' in response.body:
            self.second_factor_sign_ins.inc()

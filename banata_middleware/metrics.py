"""Prometheus metrics (the optional ``metrics`` extra, ``prometheus_client``).

Off by default: ``BanataAuth(config, metrics=Metrics())`` turns them on. Two calls feed them, so no
flow knows about metrics: ``Gateway.handle`` reports each answer (its route, status and error code;
verification outcomes, throttles and locks are all read from that), and ``effects.MeasuredStore``, which
wraps the store the drivers run on, times each store operation. When off, the gateway costs one ``if``
and the store is not wrapped at all.

Labels are bounded: a route is a ``"METHOD /path"`` of the gateway's route table, ``(unmatched)``
for any other path under ``base_path``, or ``(app)`` for the app's own paths (the guard); a code is
one of the middleware's own error codes; an op is a store script name. Never a user id or a raw path.
The metrics live in a ``CollectorRegistry`` (``prometheus_client``'s default one unless given): the
app exposes it the way it exposes its own metrics (``prometheus_client.make_asgi_app(registry)``,
``make_wsgi_app``, ``start_http_server`` on an internal port).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._extras import missing_extra

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise missing_extra(__name__, "metrics", exc) from exc

if TYPE_CHECKING:
    from .http import Response

__all__ = ["APP_ROUTE", "UNMATCHED_ROUTE", "Metrics"]

APP_ROUTE = "(app)"
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
_LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5)
_STORE_BUCKETS = (.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1)


class Metrics:
    """The middleware's metrics, registered in ``registry`` (default: ``prometheus_client.REGISTRY``).

    ``namespace`` prefixes every name (``banata_requests_total`` ...). One ``Metrics`` per registry:
    registering the same names twice in one registry is an error in ``prometheus_client``."""

    def __init__(self, registry: CollectorRegistry | None = None, *, namespace: str = "banata") -> None:
        r = REGISTRY if registry is None else registry
        self.registry = r
        self.requests = Counter("requests", "Answers of the middleware, by route, status and error code",
                                ["route", "status", "code"], namespace=namespace, registry=r)
        self.latency = Histogram("request_seconds", "Time the middleware took to decide a request, by route",
                                 ["route"], namespace=namespace, registry=r, buckets=_LATENCY_BUCKETS)
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
        self.store_latency = Histogram("store_seconds", "Time of one store operation, by operation (script name)",
                                       ["op"], namespace=namespace, registry=r, buckets=_STORE_BUCKETS)

        # The labelled children, kept here: ``labels()`` checks and locks on every call, and these
        # two calls are on every request. Bounded like the labels they are keyed by.
        self._store_children: dict[str, Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._request_children: dict[tuple[str, int, str], Any] = {}

    def observe_store(self, op: str, seconds: float, failed: bool) -> None:
        """Called by ``effects.MeasuredStore`` once a store operation."""
        child = self._store_children.get(op)
        if child is None:
            child = self._store_children[op] = self.store_latency.labels(op)
        child.observe(seconds)
        if failed:
            self.store_errors.labels(op).inc()

    def observe_answer(self, route: str, response: Response | None, code: str, seconds: float) -> None:
        """Called by ``Gateway.handle`` once a request: ``response`` is None when the request passes
        through to the app, ``code`` the ``AuthError`` code when it was refused ("" otherwise)."""
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self.latency.labels(route)
        child.observe(seconds)
        status = 200 if response is None else response.status
        key = (route, status, code)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, str(status), code)
        counter.inc()
        if code == "ACCOUNT_TEMPORARILY_LOCKED":
            self.locked.labels(route).inc()
        elif code == "TOO_MANY_REQUESTS":
            self.throttled.labels(route).inc()
        method = _VERIFY_METHODS.get(route)
        if method is not None:
            outcome = "ok" if status == 200 else _OUTCOMES.get(code, "refused")
            self.verifications.labels(method, outcome).inc()
        elif route == _SIGN_IN and response is not None and b'"twoFactorRedirect":true' in response.body:
            self.second_factor_sign_ins.inc()

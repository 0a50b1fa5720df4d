"""The middleware's decision for one request: serve an auth endpoint, refuse, or let the request
through with an ``Identity``. ``Gateway.handle`` is that decision as one flow; ``BanataAuth.handle``
and ``ahandle`` (what the adapters call) run a protected request's guard as the flow's own plain
steps instead, ``step``, the store, ``finish``, so that the pass-through drives no generator."""

from __future__ import annotations

import json
from time import perf_counter
from typing import TYPE_CHECKING, NamedTuple, cast
from urllib.parse import urlsplit

from .config import BanataAuthConfig
from .effects import Flow
from .errors import AuthError
from .flows import Flows, Guarded, Handler
from .http import Body, Identity, Request, Response, error_response, read_json
from .policy import PHISHING_RESISTANT_AMR, PathPolicy, Rule, ambiguous_path
from .stores.hot_ops import Guard, GuardReply

if TYPE_CHECKING:
    from .metrics import Metrics
    from .tracing import Tracing

__all__ = ["APP_ROUTE", "PUBLIC_PASS", "Gateway", "GuardStep"]

_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


PUBLIC_PASS = None  # returned for public paths: the app sees the request untouched
APP_ROUTE = "(app)"  # the metrics' and spans' route of every path outside base_path
_new_tuple = tuple.__new__
_JUDGED_SIZE = 4096  # paths kept by _judge, and the longest kept
_JUDGED_PATH = 512


class GuardStep(NamedTuple):
    """A protected request half decided (``Gateway.step``): its ``op`` is to run on the hot store,
    and ``Gateway.finish`` answers from its reply."""

    request: Request
    rule: Rule
    uid: str
    sid: str
    op: Guard


class Gateway:
    def __init__(self, config: BanataAuthConfig, flows: Flows, metrics: Metrics | None = None,
                 tracing: Tracing | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.tracing = tracing
        self.observed = metrics is not None or tracing is not None
        self.flows = flows
        self.base = config.base_path
        self._base_slash = config.base_path + "/"
        self.trusted_proxies = config.trusted_proxies
        # Paths judged before (_judge): not ambiguous, outside base_path, and their rule.
        self._judged: dict[str, Rule] = {}
        self.require_two_factor = config.require_two_factor
        self.policy = PathPolicy(config.public_paths, config.fresh_paths, protect_by_default=config.protect_by_default,
                                 phishing_resistant=config.phishing_resistant_paths)
        self.trusted_origins = {config.site_origin, *(o.rstrip("/") for o in config.trusted_origins)}
        # Each flows module declares its routes (path -> (method, handler)) and its cookies.
        routes: dict[tuple[str, str], Handler] = {
            (method, path): handler for path, (method, handler) in flows.routes().items()}
        if config.serve_openapi:
            routes[("GET", "/openapi.json")] = self._openapi
        self.routes = routes
        self.paths = {path for _, path in routes}
        self._openapi_body: bytes | None = None

    def _openapi(self, request: Request, body: Body) -> Flow[Response]:
        """``{base_path}/openapi.json``: the document of these routes, made once (``openapi``)."""
        yield from ()
        if self._openapi_body is None:
            from .openapi import openapi_document

            self._openapi_body = json.dumps(openapi_document(self), separators=(",", ":")).encode()
        return Response(200, self._openapi_body, [("content-type", "application/json")])

    def is_endpoint(self, path: str) -> bool:
        """Adapters read the body only for these paths."""
        return path.startswith(self._base_slash) or path == self.base

    def client_address(self, request: Request) -> str:
        """The peer address, or with ``trusted_proxies=N`` the N-th address from the right of
        X-Forwarded-For (what the outermost trusted proxy saw)."""
        hops = self.config.trusted_proxies
        if hops:
            forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",") if a.strip()]
            if len(forwarded) >= hops:
                return forwarded[-hops][:64]
        return request.client

    def handle(self, request: Request) -> Flow[Response | Identity | None]:
        """The flow that answers ``request``: a refusal or an endpoint's reply (``Response``), an
        ``Identity`` to pass through with, or None (public path). It raises no ``AuthError``: each
        is rendered with ``error_response``. With metrics or tracing on, it reports the answer
        (``_measured``). The drivers of ``BanataAuth`` run a protected request's guard without this
        flow (``step``, the store, ``finish``); this flow runs the same steps."""
        if self.observed:
            return self._measured(request)
        return self._flow(self.step(request))

    def step(self, request: Request) -> GuardStep | Response | Flow[Response] | None:
        """The checks of every request, as a plain function: a ``GuardStep`` (a protected path: run its
        ``op`` on the hot store, then ``finish``), an answer (``Response``: a refusal; None: a public
        path) or an auth endpoint's flow. It raises no ``AuthError``."""
        try:
            path, raw_path = request.path, request.raw_path
            rule = self._judged.get(path)
            if rule is None or raw_path != path:
                rule = self._judge(path, raw_path)
            if self.trusted_proxies:
                request.client = self.client_address(request)
            # WSGI frameworks route "post" as POST: decide on the method as they will see it.
            request.method = request.method.upper()
            if rule is None:
                return self._endpoint(request)
            # Every other path: public, or the caller's Identity, or a refusal.
            if rule.public:
                return PUBLIC_PASS
            if request.method in _STATE_CHANGING or request.websocket:  # else _check_origin has nothing to check
                self._check_origin(request)
        except AuthError as error:
            return error_response(error)
        guard = self.flows.guard_op(request)
        if guard is None:  # no user named: refused (a Response)
            return cast(Response, self._admit(request, rule, None))
        uid, sid, op = guard
        # tuple.__new__: the NamedTuple without its Python-level __new__ (every pass-through).
        return _new_tuple(GuardStep, (request, rule, uid, sid, op))

    def _judge(self, path: str, raw_path: str) -> Rule | None:
        """What ``path`` is: an auth endpoint's (None), or another path and its ``Rule``; an
        ``AuthError`` (INVALID_PATH) for a path that may route as another. A path's verdict depends on
        the path alone: kept (``_judged``), so that a path judged before costs one look-up."""
        # Before any policy decision, on every path (public, protected, auth endpoints): the
        # path judged must be the path the app routes, and these may route as another one.
        if ambiguous_path(path) or (raw_path != path and ambiguous_path(raw_path)):
            raise AuthError(400, "INVALID_PATH",
                            "the path has a '.', '..' or empty segment, a backslash, a NUL or an encoded slash")
        if path.startswith(self._base_slash) or path == self.base:  # is_endpoint
            return None
        rule = self.policy.rule(path)
        if len(path) <= _JUDGED_PATH:
            judged = self._judged
            if len(judged) >= _JUDGED_SIZE:
                judged.clear()  # bounded (paths made up to fill it cost a clear now and then); no pop: threads
            judged[path] = rule
        return rule

    def finish(self, step: GuardStep, reply: GuardReply) -> Response | Identity | Flow[Response | Identity]:
        """The answer to ``step`` from its op's ``reply``: the caller's ``Identity`` or a refusal; or,
        when the user's copy must be rebuilt first (``guard_refill``), the flow that does it and
        answers."""
        request, rule, uid, sid, _ = step  # by position: an unpack, not four descriptor calls
        g = self.flows.guarded(uid, sid, reply)
        if g is None:
            return self._refilled(step, reply)
        return self._admit(request, rule, g)

    def _refilled(self, step: GuardStep, reply: GuardReply) -> Flow[Response | Identity]:
        f = self.flows
        try:
            reply = yield from f.guard_refill(step.uid, step.op, reply)
        except AuthError as error:  # the store's or the record store's failure: 503
            return error_response(error)
        return self._admit(step.request, step.rule, f.guarded(step.uid, step.sid, reply, refilled=True))

    def _flow(self, step: GuardStep | Response | Flow[Response] | None) -> Flow[Response | Identity | None]:
        """``step``'s answer as a flow (for ``handle``: the driver runs it)."""
        if type(step) is GuardStep:
            return self._guarded(step)
        if step is None or type(step) is Response:
            return _answered(step)
        return step  # type: ignore[return-value]  # an endpoint's flow

    def _guarded(self, step: GuardStep) -> Flow[Response | Identity]:
        try:
            reply = yield step.op
        except AuthError as error:  # the store failed: 503, nobody let in
            return error_response(error)
        result = self.finish(step, reply)
        if type(result) is Identity or type(result) is Response:
            return result
        return (yield from result)  # type: ignore[misc,no-any-return]

    def route(self, request: Request) -> str:
        """``route_label``, with the app's own paths (every pass-through) answered without its calls."""
        path = request.path
        return self.route_label(request) if path.startswith(self._base_slash) or path == self.base else APP_ROUTE

    def _measured(self, request: Request) -> Flow[Response | Identity | None]:
        """``handle`` with metrics or tracing on: one span around the flow, and the answer, its time
        and its route reported once (``metrics``, ``tracing``)."""
        route = self.route(request)
        start = perf_counter()
        if self.tracing is None:
            result = yield from self._flow(self.step(request))
            response = result if type(result) is Response else None
        else:
            with self.tracing.flow(route) as span:
                result = yield from self._flow(self.step(request))
                response = result if type(result) is Response else None
                span.set_attribute("http.response.status_code", response.status if response is not None else 200)
                if response is not None and response.code:
                    span.set_attribute("banata.code", response.code)
        if self.metrics is not None:
            self.metrics.observe_answer(route, response, response.code if response is not None else "",
                                        perf_counter() - start)
        return result

    def route_label(self, request: Request) -> str:
        """The request's route for metrics: ``"METHOD /path"`` from the route table, never the raw path."""
        if not self.is_endpoint(request.path):
            return APP_ROUTE
        key = (request.method.upper(), request.path[len(self.base):])
        return f"{key[0]} {key[1]}" if key in self.routes else "(unmatched)"

    # -- auth endpoints ----------------------------------------------------------------------
    def _endpoint(self, request: Request) -> Flow[Response]:
        try:
            sub = request.path[len(self.base):]
            handler = self.routes.get((request.method, sub))
            if handler is None:
                if sub in self.paths:  # RFC 9110 15.5.6: a 405 lists the methods that are allowed
                    allowed = ", ".join(sorted(m for m, p in self.routes if p == sub))
                    raise AuthError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here",
                                    headers={"Allow": allowed})
                raise AuthError(404, "NOT_FOUND", "no such endpoint")
            cap = self.config.policies.max_body_bytes
            if request.body_too_large or len(request.body or b"") > cap:
                raise AuthError(413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {cap} bytes")
            self._check_origin(request)
            data = read_json(request, cap) if request.method != "GET" else {}
            return (yield from handler(request, Body(data)))
        except AuthError as error:
            return error_response(error)

    # -- every other path --------------------------------------------------------------------
    def _admit(self, request: Request, rule: Rule, g: Guarded | None) -> Response | Identity:
        """A protected request's answer from what the guard read: the caller's ``Identity``, or the
        refusal (``g`` None: the request names no user)."""
        try:
            if g is not None:  # by position (Guarded's order): an unpack, not a descriptor call a field
                _, sid, aal, mfa_ms, two_factor_enabled, pending, amr = g
            if g is None or not sid:
                html = "text/html" in request.headers.get("accept", "")
                if g is not None and pending:
                    if self.config.two_factor_page and html:
                        raise AuthError(303, "TWO_FACTOR_REQUIRED", "two-factor authentication required",
                                        headers={"location": self.config.two_factor_page})
                    raise AuthError(403, "TWO_FACTOR_REQUIRED", "two-factor authentication required")
                if self.config.sign_in_page and html:
                    raise AuthError(303, "SIGN_IN_REQUIRED", "sign in first",
                                    headers={"location": self.config.sign_in_page})
                raise AuthError(401, "UNAUTHORIZED", "sign in first")
            if self.require_two_factor and not two_factor_enabled:
                raise AuthError(403, "TWO_FACTOR_ENROLLMENT_REQUIRED", "set up two-factor authentication first")
            fresh_max_age = rule.fresh_max_age
            if fresh_max_age is not None and (not mfa_ms or self.flows.now_ms() - mfa_ms > fresh_max_age * 1000):
                raise AuthError(403, "FRESH_TWO_FACTOR_REQUIRED",
                                f"confirm with a second factor (needed within the last {fresh_max_age} s)")
            if rule.phishing_resistant and PHISHING_RESISTANT_AMR.isdisjoint(amr):
                raise AuthError(403, "PHISHING_RESISTANT_FACTOR_REQUIRED",
                                "sign in with a passkey to open this page (a password with a code is not enough here)")
            # tuple.__new__: the NamedTuple without its Python-level __new__ (every pass-through).
            return _new_tuple(Identity, (g[0], sid, aal, mfa_ms / 1000 if mfa_ms else None, two_factor_enabled, amr))
        except AuthError as error:
            return error_response(error)

    def _check_origin(self, request: Request) -> None:
        """CSRF: a state-changing request that carries one of our cookies must come from the site.
        So must a WebSocket handshake: it is a GET, but it opens a socket that acts as the user, and
        SameSite=Lax sends the cookie from any same-site page (a sibling subdomain, another port).
        A handshake with Authorization and an Origin is held to the same rule; one without Origin
        (browsers always send it on handshakes) is a non-browser client and passes."""
        if request.websocket:
            if not self._carries_cookie(request) and not (
                    "authorization" in request.headers and "origin" in request.headers):
                return
        elif request.method not in _STATE_CHANGING or not self._carries_cookie(request):
            return
        origin = request.headers.get("origin")
        if not origin or origin == "null":
            try:
                parts = urlsplit(request.headers.get("referer", ""))
            except ValueError:  # unparsable (e.g. "http://[", an unclosed IPv6 literal): no origin
                origin = ""
            else:
                origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
        if origin.rstrip("/") not in self.trusted_origins:
            raise AuthError(403, "INVALID_ORIGIN", "this request must come from the site's own pages")

    def _carries_cookie(self, request: Request) -> bool:
        cookie_header = request.headers.get("cookie", "")
        return any(name + "=" in cookie_header for name in self.flows.cookie_names)


def _answered(response: Response | None) -> Flow[Response | None]:
    """A flow that yields nothing and answers ``response`` (None: a public path)."""
    yield from ()
    return response

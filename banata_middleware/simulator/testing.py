"""Drive an app protected by banata-middleware from a test, the way a browser and a phone would.

- :func:`asgi_client` / :func:`wsgi_client` / :func:`app_client`: a synchronous ``httpx.Client``
  talking to the app in-process (ASGI through an anyio blocking portal, lifespan included; WSGI
  through ``httpx.WSGITransport``), sending the site's ``Origin`` header like a browser does
  (the middleware refuses cookie-carrying POSTs from anywhere else).
- :func:`enroll`: sign a user up, enable two-factor with the password, scan the ``totpURI`` into a
  :class:`~banata_middleware.simulator.VirtualAuthenticator`, confirm with its code; returns an
  :class:`MfaUser` that knows how to sign in, answer challenges and step up.

The pytest plugin (``banata_middleware.simulator.pytest_plugin``) wraps these in fixtures.
httpx is imported only when a client is made, so importing this module needs the base install only.
"""

from __future__ import annotations

import functools
import inspect
import math
import secrets
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from .authenticator import Account, VirtualAuthenticator
from .clocks import ControllableClock

if TYPE_CHECKING:
    import httpx
    from anyio.from_thread import BlockingPortal

    from ..otp import Inbox, OtpMessage

__all__ = [
    "DEFAULT_PASSWORD",
    "SITE_URL",
    "MfaEnroll",
    "MfaFlowError",
    "MfaUser",
    "app_client",
    "asgi_client",
    "enroll",
    "site_origin",
    "wsgi_client",
]

SITE_URL = "http://testserver"
"""The base URL of clients made here unless told otherwise; configure ``site_url`` to match."""

DEFAULT_PASSWORD = "correct horse battery staple"
DEFAULT_BASE_PATH = "/api/auth"

Json = dict[str, Any]


class MfaFlowError(AssertionError):
    """A step of a helper flow got an answer it did not expect; the message shows the request and
    the response. An ``AssertionError``, so pytest reports it as a test failure, not an error."""


def site_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what a browser sends as ``Origin``."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    return f"{parts.scheme}://{parts.netloc}"


def _headers(origin: str | None, base_url: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(extra or {})
    origin = site_origin(base_url) if origin is None else origin
    if origin:
        headers.setdefault("origin", origin)
    return headers


# -- clients ------------------------------------------------------------------------------------


def wsgi_client(
    app: Any,
    *,
    base_url: str = SITE_URL,
    origin: str | None = None,
    remote_addr: str = "127.0.0.1",
    headers: Mapping[str, str] | None = None,
    **client_options: Any,
) -> httpx.Client:
    """A synchronous ``httpx.Client`` calling the WSGI ``app`` in-process (for Flask: ``app`` or
    ``app.wsgi_app``). ``origin`` is sent on every request: ``None`` means ``base_url``'s origin,
    ``""`` sends none. ``remote_addr`` is the client address the app sees."""
    import httpx

    transport = httpx.WSGITransport(app=app, remote_addr=remote_addr)
    return httpx.Client(
        transport=transport, base_url=base_url, headers=_headers(origin, base_url, headers), **client_options
    )


def asgi_client(
    app: Any,
    *,
    base_url: str = SITE_URL,
    origin: str | None = None,
    client_address: tuple[str, int] = ("127.0.0.1", 50000),
    lifespan: bool = True,
    headers: Mapping[str, str] | None = None,
    **client_options: Any,
) -> httpx.Client:
    """A synchronous ``httpx.Client`` calling the ASGI ``app`` in-process.

    The app runs on one event loop in a background thread (an anyio blocking portal), for the whole
    life of the client, so async stores and connection pools keep working between requests. With
    ``lifespan`` (default) the app's startup runs now and its shutdown at ``client.close()``; an app
    that does not speak the lifespan protocol is served without it, as ASGI servers do. ``origin``
    is sent on every request: ``None`` means ``base_url``'s origin, ``""`` sends none.
    ``client_address`` is what the app sees as ``scope["client"]``. Close the client (or use it as a
    context manager) to stop the loop.
    """
    import httpx

    transport = _portal_transport_class()(app, client_address=client_address, lifespan=lifespan)
    try:
        return httpx.Client(
            transport=transport, base_url=base_url, headers=_headers(origin, base_url, headers), **client_options
        )
    except BaseException:
        transport.close()
        raise


def is_asgi_app(app: Any) -> bool:
    """Whether ``app`` looks like an ASGI application (an ``async`` callable) rather than WSGI."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(type(app), "__call__", None)  # noqa: B004 - the type's, not the instance's
    return call is not None and inspect.iscoroutinefunction(call)


def app_client(app: Any, **options: Any) -> httpx.Client:
    """:func:`asgi_client` for an ``async`` app (Starlette, FastAPI, Django ASGI...), else
    :func:`wsgi_client` (Flask, Django WSGI...). Options go to the chosen one."""
    if is_asgi_app(app):
        return asgi_client(app, **options)
    for asgi_only in ("client_address", "lifespan"):
        options.pop(asgi_only, None)
    return wsgi_client(app, **options)


@functools.cache
def _portal_transport_class() -> Callable[..., httpx.BaseTransport]:
    """Made on first use, so that httpx is imported only when a client is."""
    import httpx
    from anyio.from_thread import start_blocking_portal

    class PortalASGITransport(httpx.BaseTransport):
        """Runs every request on one event loop owned by a blocking portal."""

        def __init__(self, app: Any, *, client_address: tuple[str, int], lifespan: bool) -> None:
            self._exits = ExitStack()
            self.portal: BlockingPortal = self._exits.enter_context(start_blocking_portal())
            self.inner = httpx.ASGITransport(app=app, client=client_address)
            self._lifespan: _Lifespan | None = None
            if lifespan:
                try:
                    self._lifespan = _Lifespan.start(app, self.portal)
                except BaseException:
                    self._exits.close()
                    raise

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
                body = request.read()
                forwarded = httpx.Request(request.method, request.url, headers=request.headers, content=body)
                response = await self.inner.handle_async_request(forwarded)
                # The raw bytes: the client decodes any Content-Encoding itself (aread() would too, twice).
                data = b"".join([part async for part in response.aiter_raw()])
                return response.status_code, response.headers.raw, data

            status, headers, data = self.portal.call(call)
            return httpx.Response(status, headers=headers, content=data, request=request)

        def close(self) -> None:
            try:
                if self._lifespan is not None:
                    lifespan, self._lifespan = self._lifespan, None
                    lifespan.shutdown()
            finally:
                self._exits.close()

    return PortalASGITransport


class _Lifespan:
    """The ASGI lifespan protocol (startup now, shutdown later) on a portal's event loop."""

    def __init__(self, portal: BlockingPortal) -> None:
        import anyio

        self.portal = portal
        self.state: dict[str, Any] = {}
        self.to_app_send, self.to_app_receive = anyio.create_memory_object_stream[MutableMapping[str, Any]](math.inf)
        self.from_app_send, self.from_app_receive = anyio.create_memory_object_stream[MutableMapping[str, Any] | None](
            math.inf
        )
        self.task: Any = None

    @classmethod
    def start(cls, app: Any, portal: BlockingPortal) -> _Lifespan | None:
        """Run startup; ``None`` when the app does not take part in lifespan."""
        self = cls(portal)
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}

        async def run() -> None:
            try:
                await app(scope, self.to_app_receive.receive, self.from_app_send.send)
            finally:
                self.from_app_send.send_nowait(None)  # unbounded: never blocks

        self.task = portal.start_task_soon(run)
        message = portal.call(self._exchange, "lifespan.startup")
        if message is None:
            # The app returned or raised without answering: no lifespan support (ASGI spec:
            # the server carries on without lifespan events).
            return None
        if message["type"] == "lifespan.startup.failed":
            self._stop()
            raise RuntimeError(f"the app's lifespan startup failed: {message.get('message', '')}")
        return self

    async def _exchange(self, kind: str) -> MutableMapping[str, Any] | None:
        await self.to_app_send.send({"type": kind})
        return await self.from_app_receive.receive()

    def _stop(self, wait: float = 0) -> None:
        """Let the app's lifespan task end within ``wait`` seconds, else cancel it (the portal
        cannot close while it runs)."""
        try:
            self.task.result(timeout=wait)
        except BaseException:  # its outcome was reported through the protocol, or it is cancelled now
            self.task.cancel()

    def shutdown(self) -> None:
        message = self.portal.call(self._exchange, "lifespan.shutdown")
        self._stop(wait=5 if message is not None else 0)
        if message is not None and message["type"] == "lifespan.shutdown.failed":
            raise RuntimeError(f"the app's lifespan shutdown failed: {message.get('message', '')}")


# -- the user -----------------------------------------------------------------------------------


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _expect(response: httpx.Response, status: int, what: str) -> Json:
    if response.status_code != status:
        hint = ""
        body = _json(response)
        if isinstance(body, dict) and body.get("code") == "INVALID_ORIGIN":
            hint = (
                f"\nhint: the request's Origin ({response.request.headers.get('origin')!r}) is not the site_url of"
                " the app's BanataAuthConfig: make the client's base_url (or mfa_site_url) match it"
            )
        elif response.status_code == 404:
            hint = "\nhint: is the app wrapped with BanataMiddleware, and is the base path right?"
        raise MfaFlowError(
            f"{what}: {response.request.method} {response.request.url} answered {response.status_code},"
            f" expected {status}: {response.text[:500]}{hint}"
        )
    body = _json(response)
    if not isinstance(body, dict):
        raise MfaFlowError(f"{what}: expected a JSON object, got {response.text[:500]!r}")
    return body


@dataclass(eq=False)
class MfaUser:
    """A user with two-factor on, the phone that holds their TOTP account, and their browser.

    ``client`` holds the session made at enrolment (AAL2). ``account`` is the entry in
    ``authenticator`` (``account.code()`` is what the user would type now). ``backup_codes`` is the
    set issued at enrolment. ``clock`` is the clock the server reads, when it is one a test can move:
    :meth:`fresh_code` moves it to the next TOTP step when the current one was already spent here,
    like a person waiting for the next code.

    Every method takes an optional ``client`` (default: this user's browser), e.g. a fresh
    ``mfa_client_factory()`` to sign in from a second browser.
    """

    client: httpx.Client
    email: str
    password: str
    user_id: str
    user: Json
    authenticator: VirtualAuthenticator
    account: Account
    totp_uri: str
    backup_codes: list[str]
    base_path: str = DEFAULT_BASE_PATH
    origin: str = ""
    clock: ControllableClock | None = None
    last_step: int | None = None
    """The latest TOTP step accepted for this user through these helpers (the server refuses it
    and every earlier one again: the replay guard)."""
    used_backup_codes: set[str] = field(default_factory=set)
    inbox: Inbox | None = None
    """Where the app's one-time codes by message land (``OtpConfig(sender=...)``); None: the
    ``mfa_inbox`` fixture's (``outbox.shared_inbox()``)."""

    # -- codes ------------------------------------------------------------------------------

    def code(self, steps: int = 0) -> str:
        """The code the phone shows now (``steps`` periods later; negative: earlier)."""
        return self.account.code(steps=steps)

    def fresh_code(self) -> str:
        """A code the server has not seen accepted yet: the phone's current code, after moving
        ``clock`` to the phone's next step while the current one was already spent here."""
        for _ in range(8):
            if self.last_step is None or self.account.step() > self.last_step:
                return self.account.code()
            if self.clock is None:
                raise MfaFlowError(
                    f"the code of step {self.account.step()} was already used and the server's clock"
                    " cannot be moved here; advance it by a TOTP period first"
                )
            # Jump the phone to the first second of the step after the spent one (whole seconds,
            # so a drifting phone that lands a hair short still gets there on the next round).
            gap = (self.last_step + 1) * self.account.period - self.account.clock.now()
            self.clock.advance(max(1, math.ceil(gap)))
        raise MfaFlowError("moving the clock did not move the phone to a new TOTP step")

    @property
    def unused_backup_codes(self) -> list[str]:
        """The issued backup codes not yet accepted through these helpers."""
        return [c for c in self.backup_codes if c not in self.used_backup_codes]

    def _inbox(self) -> Inbox:
        if self.inbox is not None:
            return self.inbox
        from .outbox import shared_inbox

        return shared_inbox()

    def latest_message(self, purpose: str | None = None) -> OtpMessage:
        """The newest one-time code message sent to this user (of ``purpose``: "sign_in",
        "step_up" or "enrol"). Raises :class:`MfaFlowError` when there is none."""
        for message in reversed(self._inbox().for_user(self.user_id)):
            if purpose in (None, message.purpose):
                return message
        raise MfaFlowError(f"no one-time code{' for ' + purpose if purpose else ''} was sent to {self.email}; "
                           "is the app's OtpConfig(sender=...) the mfa_inbox?")

    def latest_otp(self, purpose: str | None = None) -> str:
        """The code of :meth:`latest_message`: what the user reads in their mail or texts."""
        return self.latest_message(purpose).code

    def _note_accepted(self, code: str) -> None:
        # Which step did the server take? The one near now whose code this is.
        now = self.account.step()
        for offset in (0, -1, 1, -2, 2, -3, 3):
            if self.account.code(steps=offset) == code:
                step = now + offset
                self.last_step = step if self.last_step is None else max(self.last_step, step)
                return

    # -- requests ---------------------------------------------------------------------------

    def post(self, path: str, json: Any = None, *, client: httpx.Client | None = None) -> httpx.Response:
        """POST ``json`` to ``base_path + path`` with the site's ``Origin``."""
        http = self.client if client is None else client
        headers = {"origin": self.origin} if self.origin else {}
        return http.post(self.base_path + path, json=json, headers=headers)

    def session(self, *, client: httpx.Client | None = None) -> Any:
        """``GET /get-session``: ``{session, user}`` or ``None``."""
        http = self.client if client is None else client
        return _json(http.get(self.base_path + "/get-session"))

    def sign_in(self, *, client: httpx.Client | None = None, **extra: Any) -> httpx.Response:
        """``POST /sign-in/email`` with this user's email and password (``extra``: ``rememberMe``).
        With two-factor on, the answer is the 403 ``TWO_FACTOR_REQUIRED`` challenge."""
        return self.post("/sign-in/email", {"email": self.email, "password": self.password, **extra}, client=client)

    def verify_totp(
        self, code: str | None = None, *, client: httpx.Client | None = None, **extra: Any
    ) -> httpx.Response:
        """``POST /two-factor/verify-totp`` with ``code`` (default: :meth:`fresh_code`); answers a
        pending challenge, or steps the session up. ``extra``: ``trustDevice``."""
        code = self.fresh_code() if code is None else code
        response = self.post("/two-factor/verify-totp", {"code": code, **extra}, client=client)
        if response.status_code == 200:
            self._note_accepted(code)
        return response

    def verify_backup_code(
        self, code: str | None = None, *, client: httpx.Client | None = None, **extra: Any
    ) -> httpx.Response:
        """``POST /two-factor/verify-backup-code`` with ``code`` (default: the first unused one)."""
        if code is None:
            if not self.unused_backup_codes:
                raise MfaFlowError("every backup code issued to this user was used")
            code = self.unused_backup_codes[0]
        response = self.post("/two-factor/verify-backup-code", {"code": code, **extra}, client=client)
        if response.status_code == 200:
            self.used_backup_codes.add(code)
        return response

    def sign_in_with_totp(self, *, client: httpx.Client | None = None, **extra: Any) -> httpx.Response:
        """Password, then the 403 challenge, then a fresh TOTP code: the whole sign-in. Returns the
        ``verify-totp`` answer (200 ``{token, user}`` with the session cookie set on the client).
        ``extra`` goes to verify-totp (``trustDevice=True``). Raises :class:`MfaFlowError` when the
        password step does not ask for a second factor (a trusted device, say): check that first."""
        challenge = self.sign_in(client=client)
        body = _json(challenge)
        if not (isinstance(body, dict) and body.get("twoFactorRedirect")):
            raise MfaFlowError(
                f"sign-in answered {challenge.status_code} without a two-factor challenge: {challenge.text[:500]}"
            )
        return self.verify_totp(client=client, **extra)

    def step_up(self, *, client: httpx.Client | None = None) -> httpx.Response:
        """Refresh the session's second factor (``mfaVerifiedAt``) with a fresh code. The server
        rotates the session on success: the client's cookie is replaced (a bearer client must
        switch to the ``token`` of the answer). Factor changes (backup codes, disable, passkeys)
        need a step-up within ``Policies.factor_change_max_age`` (default 600 s)."""
        return self.verify_totp(client=client)

    def sign_out(self, *, client: httpx.Client | None = None) -> httpx.Response:
        return self.post("/sign-out", client=client)

    # -- one-time codes by message (OtpConfig) ------------------------------------------------

    def enable_otp(self, *, channel: str = "email", to: str | None = None,
                   client: httpx.Client | None = None) -> httpx.Response:
        """Turn codes by message on: ``enable`` with ``method: "otp"`` (``to`` defaults to the
        account's email), then ``verify-otp`` with the code sent there. Needs a fresh second factor
        when two-factor is on (the enrolment's session has one for 10 minutes; else
        :meth:`step_up`). Returns the ``verify-otp`` answer; raises :class:`MfaFlowError` when the
        first step fails."""
        body: Json = {"password": self.password, "method": "otp", "channel": channel}
        if to is not None:
            body["to"] = to
        _expect(self.post("/two-factor/enable", body, client=client), 200, "two-factor enable (otp)")
        return self.verify_otp(self.latest_otp("enrol"), client=client)

    def send_otp(self, *, client: httpx.Client | None = None, **extra: Any) -> httpx.Response:
        """``POST /two-factor/send-otp``: a code for the pending sign-in, or for a step-up."""
        return self.post("/two-factor/send-otp", extra, client=client)

    def verify_otp(self, code: str | None = None, *, client: httpx.Client | None = None,
                   **extra: Any) -> httpx.Response:
        """``POST /two-factor/verify-otp`` with ``code`` (default: :meth:`latest_otp`)."""
        code = self.latest_otp() if code is None else code
        return self.post("/two-factor/verify-otp", {"code": code, **extra}, client=client)

    def sign_in_with_otp(self, *, client: httpx.Client | None = None, **extra: Any) -> httpx.Response:
        """Password, then the 403 challenge, then ``send-otp`` and the code it sent: the whole
        sign-in by a code by message. Returns the ``verify-otp`` answer (``extra``: ``trustDevice``)."""
        challenge = self.sign_in(client=client)
        body = _json(challenge)
        if not (isinstance(body, dict) and body.get("twoFactorRedirect")):
            raise MfaFlowError(
                f"sign-in answered {challenge.status_code} without a two-factor challenge: {challenge.text[:500]}"
            )
        _expect(self.send_otp(client=client), 200, "send-otp")
        return self.verify_otp(self.latest_otp("sign_in"), client=client, **extra)


def enroll(
    client: httpx.Client,
    *,
    authenticator: VirtualAuthenticator,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    name: str = "Test User",
    sign_up: bool = True,
    confirm: bool = True,
    base_path: str = DEFAULT_BASE_PATH,
    origin: str | None = None,
    clock: ControllableClock | None = None,
) -> MfaUser:
    """Sign up through ``client`` and turn two-factor on; returns the :class:`MfaUser`.

    1. ``POST {base_path}/sign-up/email`` (skipped with ``sign_up=False``: ``client`` must then be
       signed in already, e.g. by the app's own login, and ``password`` be what re-authenticates);
    2. ``POST {base_path}/two-factor/enable`` with the password: ``totpURI`` goes into
       ``authenticator``, the backup codes into the result;
    3. ``POST {base_path}/two-factor/verify-totp`` with the phone's code (skipped with
       ``confirm=False``, leaving the setup unfinished).

    ``email`` defaults to a new random address, so users never collide in a shared store.
    ``origin`` is sent on every POST (``None``: the origin of ``client.base_url``). ``clock``: the
    server's clock, for :meth:`MfaUser.fresh_code`. Raises :class:`MfaFlowError` when a step fails.
    """
    if origin is None:
        origin = site_origin(str(client.base_url)) if str(client.base_url) else ""
    headers = {"origin": origin} if origin else {}
    email = f"mfa-{secrets.token_hex(6)}@example.com" if email is None else email

    def post(path: str, body: Json) -> httpx.Response:
        return client.post(base_path + path, json=body, headers=headers)

    if sign_up:
        user = _expect(post("/sign-up/email", {"email": email, "password": password, "name": name}), 200, "sign-up")
        user = user["user"]
    else:
        current = _json(client.get(base_path + "/get-session"))
        if not isinstance(current, dict) or not isinstance(current.get("user"), dict):
            raise MfaFlowError("enroll(sign_up=False) needs a client that is signed in already")
        user = current["user"]
        email = str(user.get("email", email))
    enabled = _expect(post("/two-factor/enable", {"password": password}), 200, "two-factor enable")
    account = authenticator.add_uri(enabled["totpURI"])
    result = MfaUser(
        client=client,
        email=email,
        password=password,
        user_id=str(user["id"]),
        user=user,
        authenticator=authenticator,
        account=account,
        totp_uri=enabled["totpURI"],
        backup_codes=list(enabled["backupCodes"]),
        base_path=base_path,
        origin=origin,
        clock=clock,
    )
    if confirm:
        code = account.code()
        confirmed = _expect(post("/two-factor/verify-totp", {"code": code}), 200, "two-factor confirmation")
        result._note_accepted(code)
        if isinstance(confirmed.get("user"), dict):
            result.user = confirmed["user"]
    return result


class MfaEnroll(Protocol):
    """The ``mfa_enroll`` fixture: :func:`enroll` with the test's phone, clock and client filled in."""

    def __call__(
        self,
        client: httpx.Client | None = None,
        *,
        email: str | None = None,
        password: str = DEFAULT_PASSWORD,
        name: str = "Test User",
        sign_up: bool = True,
        confirm: bool = True,
        authenticator: VirtualAuthenticator | None = None,
        base_path: str | None = None,
        origin: str | None = None,
    ) -> MfaUser: ...


ClientFactory = Callable[..., "httpx.Client"]

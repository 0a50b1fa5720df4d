"""``BanataAuth``: the configured library. Adapters and host apps talk to this object."""

from __future__ import annotations

import base64
import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import TYPE_CHECKING

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from .audit import AuditEvent, AuditLog
from .config import BanataAuthConfig
from .crypto import Keyring, PasswordHasher
from .delivery import DeliveryPolicy, Drainer, NoticeConsumer, Notifier, WebhookConsumer, WebhookEndpoint
from .effects import Flow, MeasuredStore, OpStore, Rec, RecordRunner, T, run_async, run_sync
from .errors import AuthError
from .flows import Flows, SignInResult
from .gateway import APP_ROUTE, Gateway, GuardStep
from .http import Identity, Request, Response, error_response
from .stores.hot_ops import Guard, Throttle
from .stores.memory import MemoryStore
from .stores.records import GetAccount, RecordStore
from .tokens import valid_user_id

if TYPE_CHECKING:
    from .flows.otp import OtpFlows
    from .metrics import Metrics
    from .tracing import Tracing

__all__ = ["BanataAuth"]


class BanataAuth:
    r"""The library, configured. Two stores, two jobs (docs/storage.md):

    - ``records``: the durable record store (``RecordStore``: accounts, factors, backup codes,
      passkeys, the permanent lock, the audit trail), or a database URL for one;
    - ``store``: the hot store (sessions, challenges, ceremonies, counters): ``RedisStore`` or
      ``RedisClusterStore``; by default the in-process ``MemoryStore``.

    One line per deployment shape:

    - ``BanataAuth(config)``: embedded, for tests: memory + a SQLite file in a new temporary
      directory (gone with the process; pass ``records=RecordStore.embedded("records.db")`` to keep it);
    - ``BanataAuth(config, store=RedisStore.from_url(REDIS_URL), records=DATABASE_URL)``: production.

    A Redis store without ``records`` is refused: several processes must share one record store,
    never keep records in separate local files.

    ``verify_password(user_id, password) -> bool`` lets apps with their own users re-authenticate
    for enable/disable (used when the user has no built-in password). Given it, the built-in email
    sign-up and sign-in are off unless ``AuthMethods(email_password=True)`` says otherwise.
    ``account_name(user_id)`` gives such users the name their authenticator app shows
    (``otpauth://totp/App:alice@example.com``; default: the user id). ``on_event`` callbacks
    receive every audit event. ``metrics=Metrics(registry)`` (``banata_middleware.metrics``, the
    'metrics' extra) turns on Prometheus metrics, ``tracing=Tracing()`` (``banata_middleware.tracing``,
    the 'otel' extra) OpenTelemetry spans; both off by default.

    Delivery after commit (``banata_middleware.delivery``, docs/delivery.md): ``notifier`` (sync or
    async) receives a ``Notice`` for each factor change the user must hear about; ``webhooks``
    (``WebhookEndpoint``\ s) get audit events as signed POSTs. Both read the audit table as an
    outbox from a background thread (``delivery=DeliveryPolicy(...)`` tunes it), at least once,
    with retries; ``deliver_pending()`` drains once; ``close()`` stops the thread.
    """

    def __init__(
        self,
        config: BanataAuthConfig,
        *,
        store: OpStore | None = None,
        records: RecordStore | str | None = None,
        verify_password: Callable[[str, str], bool] | None = None,
        account_name: Callable[[str], str | None] | None = None,
        on_event: Iterable[Callable[[AuditEvent], None]] = (),
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
        notifier: Notifier | None = None,
        webhooks: Iterable[WebhookEndpoint] = (),
        delivery: DeliveryPolicy | None = None,
    ) -> None:
        methods = config.auth_methods
        if methods.email_password is None:
            # An app with its own users (verify_password given) gets no public sign-up by default.
            config = dataclasses.replace(
                config, auth_methods=dataclasses.replace(methods, email_password=verify_password is None))
        self.config = config
        self.store: OpStore = store if store is not None else MemoryStore(config.clock)
        self.records: RecordStore = _record_store(records, self.store)
        self.metrics = metrics
        self.tracing = tracing
        self._measured: MeasuredStore | None = None
        self._measured_records: MeasuredStore | None = None
        self.keyring = Keyring(config.secret, config.previous_secrets)
        self.audit = AuditLog(on_event)
        self.flows = Flows(config, keyring=self.keyring, hasher=PasswordHasher(config.password_hashing),
                           audit=self.audit, verify_password=verify_password, account_name=account_name)
        self.gateway = Gateway(config, self.flows, metrics, tracing)
        self.delivery = _drainer(self, notifier, webhooks, delivery or DeliveryPolicy())

    def _ops(self) -> OpStore:
        """What the drivers run on: the store, or with metrics or tracing on the store timed and traced
        per operation (made again when ``self.store`` is swapped, so that the store set here is used)."""
        if self.metrics is None and self.tracing is None:
            return self.store
        measured = self._measured
        if measured is None or measured.store is not self.store:
            measured = self._measured = MeasuredStore(self.store, self.metrics, self.tracing)
        return measured

    def _records(self) -> RecordRunner:
        """The record store, measured like ``_ops`` when metrics or tracing are on."""
        if self.metrics is None and self.tracing is None:
            return self.records
        measured = self._measured_records
        if measured is None or measured.store is not self.records:
            measured = self._measured_records = MeasuredStore(self.records, self.metrics, self.tracing)
        return measured

    # -- what adapters call -----------------------------------------------------------------
    def is_endpoint(self, path: str) -> bool:
        return self.gateway.is_endpoint(path)

    def handle(self, request: Request) -> Response | Identity | None:
        """Blocking (WSGI): a response to send, an identity to pass through with, or None (public)."""
        if self.tracing is not None:  # the gateway's flow, with its span (and metrics) around it
            return run_sync(self.gateway.handle(request), *self._measured_stores())
        meter = self.metrics
        start = perf_counter() if meter is not None else 0.0
        step = self.gateway.step(request)
        if type(step) is not GuardStep:
            if step is None or type(step) is Response:
                return self._answered(request, step, start)
            return run_sync(step, self.store, self.records, meter,  # type: ignore[arg-type]
                            self.gateway.route(request) if meter is not None else "", start)
        # A protected request: the guard's op, run here rather than through the gateway's flow
        # (Gateway.handle runs the same steps), so a pass-through drives no generator; ahandle is
        # the same with the store awaited (the drivers' twins, as run_sync and run_async).
        began = perf_counter() if meter is not None else 0.0
        try:
            reply = self.store.execute(step.op)
        except AuthError as error:
            return self._guard_failed(error, start, began)
        stored = perf_counter() - began if meter is not None else 0.0
        result = self.gateway.finish(step, reply)
        if type(result) is Identity:  # let through: the pass-through, the one case made cheap here
            if meter is not None:
                meter.observe_pass(perf_counter() - start, stored)
            return result
        if type(result) is Response:
            return self._guard_refused(result, start, stored)
        return run_sync(result, self.store, self.records, meter, APP_ROUTE, start,  # type: ignore[arg-type]
                        [(Guard, stored)] if meter is not None else None)

    async def ahandle(self, request: Request) -> Response | Identity | None:
        """``await auth.ahandle(request)``: ``handle`` for ASGI (the same steps; the store awaited)."""
        if self.tracing is not None:
            return await run_async(self.gateway.handle(request), *self._measured_stores())
        meter = self.metrics
        start = perf_counter() if meter is not None else 0.0
        step = self.gateway.step(request)
        if type(step) is not GuardStep:
            if step is None or type(step) is Response:
                return self._answered(request, step, start)
            return await run_async(step, self.store, self.records, meter,  # type: ignore[arg-type]
                                   self.gateway.route(request) if meter is not None else "", start)
        store = self.store
        began = perf_counter() if meter is not None else 0.0
        try:
            reply = store.execute(step.op) if store.in_process else await store.aexecute(step.op)
        except AuthError as error:
            return self._guard_failed(error, start, began)
        stored = perf_counter() - began if meter is not None else 0.0
        result = self.gateway.finish(step, reply)
        if type(result) is Identity:  # let through: the pass-through, the one case made cheap here
            if meter is not None:
                meter.observe_pass(perf_counter() - start, stored)
            return result
        if type(result) is Response:
            return self._guard_refused(result, start, stored)
        return await run_async(result, store, self.records, meter, APP_ROUTE, start,  # type: ignore[arg-type]
                               [(Guard, stored)] if meter is not None else None)

    # handle's and ahandle's own steps (no I/O), written once for both.
    def _answered(self, request: Request, answer: Response | None, start: float) -> Response | None:
        """An answer ``Gateway.step`` gave at once (a public path, a refusal), reported."""
        if self.metrics is not None:
            self.metrics.observe_request(self.gateway.route(request), answer, perf_counter() - start, None)
        return answer

    def _guard_failed(self, error: AuthError, start: float, began: float) -> Response:
        """The guard's op failed (the store's ``AuthError``: 503): rendered as the gateway's flow does."""
        response = error_response(error)
        meter = self.metrics
        if meter is not None:
            now = perf_counter()
            meter.observe_store_failure(Guard, now - began)
            meter.observe_request(APP_ROUTE, response, now - start, None)
        return response

    def _guard_refused(self, response: Response, start: float, stored: float) -> Response:
        """A refusal ``Gateway.finish`` gave (``stored``: the guard op's time), reported."""
        if self.metrics is not None:
            self.metrics.observe_request(APP_ROUTE, response, perf_counter() - start, [(Guard, stored)])
        return response

    def _measured_stores(self) -> tuple[OpStore, RecordRunner]:
        """``_ops()`` and ``_records()`` with metrics or tracing on, in one call while neither store
        was swapped since the last."""
        ops, records = self._measured, self._measured_records
        if ops is not None and records is not None and ops.store is self.store and records.store is self.records:
            return ops, records
        return self._ops(), self._records()

    def run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._ops(), self._records())

    async def arun(self, flow: Flow[T]) -> T:
        return await run_async(flow, self._ops(), self._records())

    # -- startup ----------------------------------------------------------------------------
    def check(self) -> None:
        """Fail fast at startup when a store cannot be reached, instead of a 503 on the first
        request: one read on each store (a key and an account that never exist). Raises
        ``ConnectionError`` naming the store, the server and the error, e.g. ``the authentication
        store is unreachable: Redis at localhost:6379: ConnectionError: Error 111 connecting to
        localhost:6379. Connection refused.`` or ``the record store is unreachable:
        postgresql+psycopg://app@db:5432/app: OperationalError: connection failed: ...``"""
        self.run(self._probe())

    async def acheck(self) -> None:
        await self.arun(self._probe())

    def _probe(self) -> Flow[None]:
        try:
            # A throttle peek (a read, never a write) of a counter that never exists.
            yield Throttle(counter_key=self.flows.keys.account_failures("startup-check"), now_ms=self.flows.now_ms(),
                           mode="peek", window_ms=1, limit=1)
        except AuthError as exc:
            raise ConnectionError(_unreachable(exc)) from None
        try:
            yield Rec(GetAccount("startup-check"))
        except AuthError as exc:
            raise ConnectionError(_records_unreachable(self.records, exc)) from None

    # -- host-app API -----------------------------------------------------------------------
    def _begin(self, user_id: str, remember_me: bool, request: Request | None) -> Flow[SignInResult]:
        self._check_id(user_id)
        caller = yield from self.flows.load(user_id)
        return (yield from self.flows.start_sign_in(request, caller, remember=remember_me))

    def begin_second_factor(self, user_id: str, *, remember_me: bool = True,
                            request: Request | None = None) -> SignInResult:
        """For apps that check the password themselves: after it passes, call this and copy
        ``set_cookies`` onto the response. A user without 2FA gets a session; one with 2FA gets
        the pending-challenge cookie (``two_factor_required``). Raises ``AuthError`` (429) while
        the user is locked."""
        return self.run(self._begin(user_id, remember_me, request))

    async def abegin_second_factor(self, user_id: str, *, remember_me: bool = True,
                                   request: Request | None = None) -> SignInResult:
        return await self.arun(self._begin(user_id, remember_me, request))




    # -- delivery (notices, webhooks) --------------------------------------------------------
    def deliver_pending(self) -> int:
        """Deliver now what is due to the notifier and the webhooks (blocking); returns how many
        deliveries succeeded. For tests, the CLI, and apps that run delivery in a worker."""
        return self.delivery.drain() if self.delivery is not None else 0

    async def adeliver_pending(self) -> int:
        return await anyio.to_thread.run_sync(self.deliver_pending)

    def close(self) -> None:
        """Stop the delivery thread (what is not delivered yet stays in the outbox for the next start)."""
        if self.delivery is not None:
            self.delivery.stop()

    # -- administration ---------------------------------------------------------------------
    @staticmethod
    def _check_id(user_id: str) -> None:
        if not valid_user_id(user_id):
            raise ValueError("user ids are 1-128 characters of A-Z a-z 0-9 _ . @ : + -")

    @staticmethod
    def _origin(ip: str, user_agent: str) -> Request | None:
        """The administrator's request as the audit trail and the user's notice describe it."""
        return Request("POST", "", {"user-agent": user_agent}, client=ip) if ip or user_agent else None

    def import_totp(self, user_id: str, secret: str, *, email: str | None = None, backup_codes: bool = False,
                    ip: str = "", user_agent: str = "") -> tuple[str, list[str]]:
        """Turn 2FA on for ``user_id`` with an existing base32 ``secret`` (a migration from another
        system, or seeding a load test), without any HTTP round. The secret becomes the user's one
        authenticator app (id ``"totp"``, named "Authenticator"): every earlier app and the backup
        codes are replaced. Returns the otpauth URI and, with ``backup_codes=True``, a new set of
        backup codes. ``ip`` and ``user_agent`` (here and in the other administrator operations):
        where the operation was asked from, for the audit trail and the user's notice (empty: no
        request, such as the command line)."""
        self._check_id(user_id)
        return self.run(self.flows.import_totp(user_id, _base32(secret), email=email, backup_codes=backup_codes,
                                               origin=self._origin(ip, user_agent)))

    async def aimport_totp(self, user_id: str, secret: str, *, email: str | None = None, backup_codes: bool = False,
                           ip: str = "", user_agent: str = "") -> tuple[str, list[str]]:
        self._check_id(user_id)
        return await self.arun(self.flows.import_totp(user_id, _base32(secret), email=email,
                                                      backup_codes=backup_codes, origin=self._origin(ip, user_agent)))

    def _otp(self) -> OtpFlows:
        if self.flows.otp is None:
            raise ValueError("codes by message are off: configure BanataAuthConfig(otp=OtpConfig(sender=...))")
        return self.flows.otp

    def enable_otp(self, user_id: str, *, to: str, channel: str = "email", ip: str = "",
                   user_agent: str = "") -> None:
        """Apps with their own users: turn on one-time codes by message for ``user_id``, sent to
        ``to`` (an email address, or an E.164 phone number for ``channel="sms"``) that the app has
        verified itself, with no confirmation code. Replaces the channel's earlier address.
        Raises ``AuthError`` (400) for an address that is not one. ``ip``, ``user_agent``: as
        for ``import_totp``."""
        self._check_id(user_id)
        self.run(self._otp().enable_verified(user_id, channel, to, self._origin(ip, user_agent)))

    async def aenable_otp(self, user_id: str, *, to: str, channel: str = "email", ip: str = "",
                          user_agent: str = "") -> None:
        self._check_id(user_id)
        await self.arun(self._otp().enable_verified(user_id, channel, to, self._origin(ip, user_agent)))

    def reset_two_factor(self, user_id: str, *, ip: str = "", user_agent: str = "") -> None:
        """Administrator recovery for a locked-out user: remove their second factor, clear locks,
        end every session. Audited as ``two_factor.reset_by_admin`` (the user's notice)."""
        self._check_id(user_id)
        self.run(self.flows.reset_user(user_id, "reset", self._origin(ip, user_agent)))

    async def areset_two_factor(self, user_id: str, *, ip: str = "", user_agent: str = "") -> None:
        self._check_id(user_id)
        await self.arun(self.flows.reset_user(user_id, "reset", self._origin(ip, user_agent)))

    def revoke_sessions(self, user_id: str, *, ip: str = "", user_agent: str = "") -> None:
        """End every session of ``user_id``, every pending challenge and every remembered (trusted)
        device at once."""
        self._check_id(user_id)
        self.run(self.flows.reset_user(user_id, "revoke", self._origin(ip, user_agent)))

    async def arevoke_sessions(self, user_id: str, *, ip: str = "", user_agent: str = "") -> None:
        self._check_id(user_id)
        await self.arun(self.flows.reset_user(user_id, "revoke", self._origin(ip, user_agent)))


def _drainer(auth: BanataAuth, notifier: Notifier | None, webhooks: Iterable[WebhookEndpoint],
             policy: DeliveryPolicy) -> Drainer | None:
    """The delivery loop when anything is to be delivered, woken after each request whose flow
    reported audit events (a cheap flag; the request never waits for delivery)."""
    clock = auth.config.clock
    consumers: list[NoticeConsumer | WebhookConsumer] = [WebhookConsumer(w, clock) for w in webhooks]
    if notifier is not None:
        consumers.insert(0, NoticeConsumer(notifier))
    if not consumers:
        return None
    drainer = Drainer(auth.records, consumers, clock, policy)
    auth.audit.subscribe(lambda _event: drainer.poke())
    if policy.background:
        drainer.start()
    return drainer


def _record_store(records: RecordStore | str | None, store: OpStore) -> RecordStore:
    """The record store for ``records`` (a URL gets one whose schema must be current), or the
    embedded default, which only an in-process hot store may have."""
    if isinstance(records, RecordStore):
        return records
    if isinstance(records, str):
        made = RecordStore(records)
        try:
            if made.backend == "sqlite":
                made.upgrade()  # an embedded file brings its own schema
            else:
                made.check_schema()  # a server's schema is the deploy's job: refuse one that is behind
        except (AuthError, SQLAlchemyError, OSError) as exc:  # at startup: say which database, as check() does
            made.dispose()
            raise ConnectionError(_records_unreachable(made, exc)) from None
        return made
    if not getattr(store, "in_process", False):
        raise ValueError(
            "a shared hot store (Redis) needs a shared record store: pass records=DATABASE_URL, e.g. "
            "BanataAuth(config, store=RedisStore.from_url(REDIS_URL), "
            "records='postgresql://user@host/db'), after `banata-mfa db upgrade --database-url URL`. "
            "Processes must never keep accounts and factors in separate local files.")
    return RecordStore.embedded(os.path.join(tempfile.mkdtemp(prefix="banata-records-"), "records.db"))


def _unreachable(exc: AuthError) -> str:
    return "the authentication store is unreachable: " + "; ".join(getattr(exc, "__notes__", None) or [exc.message])


def _records_unreachable(records: RecordStore, exc: BaseException) -> str:
    """The database (password hidden) and the driver's error. Only for the startup probes and
    migrations: their statements carry no secret, so the driver's first line may be shown (the
    store itself logs class names only, as a statement's parameters can be hashes)."""
    error = exc.__cause__ if isinstance(exc, AuthError) else exc
    cause = getattr(error, "orig", None) or error
    why = f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}" if cause else str(exc)
    return f"the record store is unreachable: {records.url.render_as_string(hide_password=True)}: {why}"


def _base32(secret: str) -> str:
    cleaned = secret.replace(" ", "").upper().rstrip("=")
    try:
        base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except ValueError:
        raise ValueError("the TOTP secret must be base32") from None
    if len(cleaned) < 16:
        raise ValueError("the TOTP secret must have at least 80 bits (16 base32 characters)")
    return cleaned

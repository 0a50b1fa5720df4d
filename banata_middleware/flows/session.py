"""The session core every flow builds on: the caller and the guard, the hot store's copy of the
durable record, the audit helpers, the cookies, and issuing a session (written once, ``signed_in``).

Each flow is a generator (see ``effects``): it yields store operations and returns a ``Response``.
Nothing here does I/O, so the same code serves WSGI and ASGI. The other modules of ``flows`` use
only what is public here.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, NamedTuple

from ..audit import AuditLog
from ..config import BanataAuthConfig
from ..crypto import Keyring, PasswordHasher
from ..effects import Flow, Rec
from ..errors import AuthError
from ..http import Body, Request, Response, json_response, set_cookie
from ..keys import Keys
from ..stores.hot_ops import (
    Copied,
    DevicesForgotten,
    FactorChange,
    Guard,
    GuardReply,
    Head,
    HotStatus,
    Load,
    LoadReply,
    SessionCreate,
    Throttle,
    TrustEnd,
    UserFill,
    UserOp,
    Verdict,
)
from ..stores.records import REMOVAL_LEASE_MS, AppendAudit, AuditEntry, EndRemoval, LoadUser, UserRecord
from ..stores.records.factor import Offer
from ..stores.records.factors import FACTORS
from ..tokens import TokenSigner

_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__ (all fields given)

__all__ = ["Caller", "Guarded", "Handler", "Routes", "SessionCore", "SignInResult"]

PasswordVerifier = Callable[[str, str], bool]
#: An endpoint: the request and its parsed body in, a flow of the response out.
Handler = Callable[[Request, Body], Flow[Response]]
#: What a flows module serves: path under ``base_path`` -> (HTTP method, handler).
Routes = dict[str, tuple[str, Handler]]

log = logging.getLogger("banata_middleware.flows")


@lru_cache(maxsize=4096)  # get-session writes four of a session's few fixed times at every call
def iso(ms: int | float | str | None) -> str | None:
    """Unix milliseconds as JavaScript's ``Date.prototype.toISOString()`` writes them (exactly three
    fraction digits, ``Z``): better-auth's client reads the fraction digits as milliseconds, so six
    (microseconds) would put every date up to 999 s late."""
    if ms in (None, "", "0", 0):
        return None
    seconds, millis = divmod(int(float(ms)), 1000)
    # time.gmtime, not a datetime: half the time, and get-session writes four.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


@lru_cache(maxsize=64)  # a session's 'amr', one of a few strings (AMR_*), read on every request
def _amr(stored: str) -> tuple[str, ...]:
    return tuple(stored.split())


def pairs(flat: list[Any]) -> dict[str, str]:
    """A Redis HGETALL reply (flat list) as a dict; values arrive as str (decode_responses)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _seen(user: dict[str, str], field: str) -> str:
    """How ``user_fill.lua`` may write ``field`` of a copy read as ``user`` before the record was:
    over the value seen then ('=' + value), or only where absent ('')."""
    value = user.get(field)
    return "" if value is None else "=" + value


def retry_after(until_ms: int, now_ms: int) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil((until_ms - now_ms) / 1000)))}


UNAUTHORIZED = ("UNAUTHORIZED", "sign in first")

# How the user authenticated, as RFC 8176 'amr' values (stored space-separated on the session).
# A backup code is a NIST look-up secret: single use, something you have. RFC 8176 has no value of
# its own for it; 'otp' (one-time password) is the nearest, while 'kba' means knowledge-based
# authentication (security questions), which NIST SP 800-63B-4 does not allow as an authenticator.
# The audit event two_factor.verified still names the method ('totp' or 'backup').
AMR_PASSWORD = "pwd"
AMR_OTP = "otp"
# A passkey: 'pop', proof of possession of a key (RFC 8176: unlike 'hwk'/'swk', it leaves open
# whether the key is hardware- or software-secured, which we cannot tell without attestation), and
# 'user', the user-presence test every assertion passes. With user verification (a PIN or
# biometric, modality unknown) the passkey is two factors in one: 'mfa' as well.
AMR_PASSKEY = "pop user"
AMR_PASSKEY_VERIFIED = "pop user mfa"
# The last-use time ('seen') of a session is written at most this often (the guard: stores/redis.py
# SEEN_SCRIPT, MemoryStore._read_guard).
SEEN_GRANULARITY_MS = 60_000
# What Retry-After says of the permanent lock: it has no end.
PERMANENT_LOCK_MS = 100 * 365 * 24 * 3600 * 1000
# guard_op's cache: (user id, session id hash, user key, session key, challenge key, want session,
# want challenge), by Cookie header; bounded in entries and in the size of a header kept.
_GuardIds = tuple[str, str, str, str, str, str, str]
_GUARD_CACHE_SIZE = 4096
_GUARD_CACHE_HEADER = 1024


@dataclass(slots=True)
class Caller:
    """A user as loaded by the ``Load`` read: the user hash plus the session and/or challenge named by
    the request's cookies (None when absent, expired or not asked for)."""

    uid: str
    #: The hot store's user hash: a pending setup's secret (ciphertext) among its fields, so, like
    #: the token and the codes' hashes, out of the repr (logs and error reports print reprs).
    user: dict[str, str] = field(repr=False)
    session: dict[str, str] | None
    sid: str
    token: str = field(repr=False)
    challenge: dict[str, str] | None
    cid: str
    #: The hashes of a pending setup's backup codes (what its confirmation writes to SQL).
    pending_codes: list[str] = field(repr=False)
    #: The durable record (SQL), once a flow loaded it (``Flows.load_record``): the truth for every
    #: decision about factors. ``user`` is the hot store's copy of part of it, for the pass-through.
    record: UserRecord | None = None

    def locked_until(self, now_ms: int) -> int:
        lock = int(self.user.get("lock_until", "0"))
        return lock if lock > now_ms else 0


class Guarded(NamedTuple):
    """The middleware's view of a caller: a live session (``session_id`` non-empty) or not, and
    whether a live pending challenge exists."""

    user_id: str
    session_id: str
    aal: int
    mfa_ms: int
    two_factor_enabled: bool
    pending: bool
    amr: tuple[str, ...] = ()


class Settling:
    """The audit rows of a change that holds the factor-change lease (``take_lease``), committed
    in its own transaction, waiting for the in-process sinks (``emit_entries``: the host's
    ``on_event`` callbacks) until the change is settled: its hot re-check passed and the lease
    was released (``end_removal``), or its record undo ran (``emit`` first thing after it, before
    the undo's own rows, so that the sinks hear both in order, or, when the undo put nothing back,
    the change alone). Why (R10-2): the callbacks run synchronously and no timeout bounds them;
    called between the commit and the re-check they stretched the lease's window, which is
    sized against the stores' documented timeouts alone, and a slow one outlasted it. The rows in
    the audit table (the outbox) are the change's transaction's as before; only the in-process
    hand-off waits. Emitted once, whatever happens (the flow's ``finally`` is the backstop)."""

    __slots__ = ("entries", "flows", "uid")

    def __init__(self, flows: SessionCore, uid: str, entries: Sequence[AuditEntry]) -> None:
        self.flows, self.uid, self.entries = flows, uid, entries

    def emit(self) -> None:
        entries, self.entries = self.entries, ()
        self.flows.emit_entries(self.uid, entries)


@dataclass(frozen=True, slots=True)
class SignInResult:
    """What ``begin_second_factor`` gives a host app that did its own first factor.

    ``set_cookies`` are Set-Cookie header values to copy onto the app's response.
    """

    two_factor_required: bool
    methods: list[str]
    token: str | None
    set_cookies: list[str]


class SessionCore:
    """State shared by every flow (config, keys, signers, cookie names) and what they share: loading
    the caller, the guard, the audit helpers, and issuing a session. The layers above
    (``primary``, ``two_factor``, ``admin``) and the composed ``passkeys`` and ``sessions`` use
    only its public methods."""

    def __init__(
        self,
        config: BanataAuthConfig,
        *,
        keyring: Keyring,
        hasher: PasswordHasher,
        audit: AuditLog,
        verify_password: PasswordVerifier | None = None,
        account_name: Callable[[str], str | None] | None = None,
    ) -> None:
        self.config = config
        self.policies = config.policies
        self._clock_now = config.clock.now  # the config is frozen: its clock stays (now_ms, twice a request)
        self.keys = Keys(config.key_prefix)
        self.keyring = keyring
        self.hasher = hasher
        self.audit = audit
        self.verify_password_hook = verify_password
        self.account_name_hook = account_name
        signing_keys = keyring.cookie_keys
        self.session_tokens = TokenSigner(signing_keys, "session")
        self.challenge_tokens = TokenSigner(signing_keys, "two_factor")
        self.trust_tokens = TokenSigner(signing_keys, "trust_device")
        # __Host-: Secure, Path=/, no Domain (as all ours are), so a sibling subdomain cannot plant one.
        prefix = "__Host-" if config.secure_cookies else ""
        self.session_cookie = prefix + "banata.session_token"
        self.challenge_cookie = prefix + "banata.two_factor"
        self.trust_cookie = prefix + "banata.trust_device"
        #: The cookies this module owns (``Flows.cookie_names`` adds those of the others).
        self.cookies: tuple[str, ...] = (self.session_cookie, self.challenge_cookie, self.trust_cookie)
        self.aal2_limits = bool(self.policies.aal2_max_lifetime or self.policies.aal2_idle_timeout)
        self.guard_idle_ms = self.policies.aal2_idle_timeout * 1000
        # Cookie header -> what guard_op reads from it (_guard_ids_of).
        self._guard_ids: dict[str, _GuardIds] = {}

    def routes(self) -> Routes:
        """The endpoints of this layer and the ones below it: each layer adds its own to its base's
        (``Flows.routes`` adds the composed modules'). The session core serves none itself."""
        return {}

    # -- small pieces ----------------------------------------------------------------------
    def now_ms(self) -> int:
        """The configured clock's time, in ms (what the scripts are given as 'now')."""
        return int(self._clock_now() * 1000)

    def head(self, uid: str, req: Request | None) -> Head:
        """What every writing operation of user ``uid`` starts with (``hot_ops.Head``)."""
        ip = req.client if req else ""
        ua = (req.headers.get("user-agent", "")[:256]) if req else ""
        return Head(self.keys.user(uid), self.keys.audit(uid), self.now_ms(), ip, ua,
                    self.policies.audit_stream_length, uid)

    def commit(self, op: UserOp, sid: str = "", *, durable: Mapping[str, str] | None = None) -> Flow[Any]:
        """Run a writing operation and hand the events it recorded to the in-process sinks; returns
        its typed reply (``hot_ops``: a ``Verdict`` or a richer one, all with ``status`` and ``events``).

        ``durable`` (event type -> detail) names events the script decides that must also reach the
        record store's audit table, the outbox of notices and webhooks (``delivery``): those it
        recorded are appended there after the script, with who and where, and only then are the
        sinks told (they wake the delivery thread, which must find the row). The script's change
        stands whatever SQL answers: a failed append is logged, and that event is not delivered;
        so is a crash between the two stores. Costs a SQL transaction only when such an event
        happened."""
        reply: Verdict = yield op
        if reply.events:
            head = op.head
            at, ip, ua, uid = head.now_ms, head.ip, head.user_agent, head.user_id
            rows = [AuditEntry(e, at, ip, ua, "", {"detail": durable[e]} if durable[e] else {})
                    for e in reply.events if e in durable] if durable else []
            if rows:
                try:
                    yield Rec(AppendAudit(uid, rows))
                except AuthError as exc:
                    log.warning("%s of user %s is not in the audit table, so not delivered: %s",
                                ", ".join(r.type for r in rows), uid, exc.code)
            self.audit.emit(reply.events, user_id=uid, at_ms=at, ip=ip, user_agent=ua, session_id=sid)
        return reply

    def entries(self, req: Request | None, sid: str, *events: str | tuple[str, str]) -> tuple[AuditEntry, ...]:
        """Audit rows for a record operation (written in its transaction): each event a type, or a
        (type, detail) pair. Who and where come from the request; never a code or a secret."""
        ip = req.client if req else ""
        ua = (req.headers.get("user-agent", "")[:256]) if req else ""
        now = self.now_ms()
        return tuple(AuditEntry(e, now, ip, ua, sid) if isinstance(e, str)
                     else AuditEntry(e[0], now, ip, ua, sid, {"detail": e[1]}) for e in events)

    def emit_entries(self, uid: str, entries: Sequence[AuditEntry]) -> None:
        """Hand the audit rows a record operation committed to the in-process sinks (callbacks,
        logging), as ``_commit`` does for the hot store's scripts. Call it only when the op's
        reply says the change (and so its rows) happened."""
        if entries:
            first = entries[0]
            self.audit.emit([e.type for e in entries], user_id=uid, at_ms=first.at, ip=first.ip,
                            user_agent=first.user_agent, session_id=first.session_id)

    def cookie_header(self, name: str, value: str, max_age: int | None) -> tuple[str, str]:
        """A Set-Cookie header for one of the flows' cookies (``Secure`` as the config says)."""
        return set_cookie(name, value, max_age=max_age, secure=self.config.secure_cookies)

    def clear_cookie(self, name: str) -> tuple[str, str]:
        """The Set-Cookie header that deletes cookie ``name``."""
        return self.cookie_header(name, "", 0)

    def session_token(self, req: Request) -> str | None:
        """The session token the request carries: its session cookie, else a bearer token."""
        token = req.cookies().get(self.session_cookie)
        if token is None:
            auth = req.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                token = auth[7:].strip()
        return token

    def user_json(self, caller: Caller) -> dict[str, Any]:
        """The ``user`` of a reply (better-auth's shape), from the hot store's copy."""
        u = caller.user
        return {
            "id": caller.uid,
            "email": u.get("email") or None,
            "name": u.get("name", ""),
            "twoFactorEnabled": u.get("tfa") == "1",
            "createdAt": iso(u.get("created")),
        }

    def methods(self, record: UserRecord) -> list[str]:
        """The second factors a pending sign-in may be answered with, from the durable record: each
        factor's ``twoFactorMethods`` names (``Factor.methods``), in the order of ``FACTORS``, as
        far as the configuration offers them."""
        offer = Offer(frozenset(self.config.otp.channels if self.config.otp is not None else ()),
                      self.config.auth_methods.passkey, lambda kid: not self.codes_key_gone(kid))
        return [m for f in FACTORS for m in f.methods(record.parts.get(f.name), offer)]

    def locked_error(self, until_ms: int) -> AuthError:
        """The answer to a locked account, whose Retry-After says when the lock ends."""
        return AuthError(
            429, "ACCOUNT_TEMPORARILY_LOCKED",
            "too many failed second-factor attempts; try again later",
            headers=retry_after(until_ms, self.now_ms()),
        )

    def refuse_locked(self, caller: Caller, record: UserRecord) -> None:
        """The permanent lock (the record store's, at the failure ceiling; only an administrator's
        reset lifts it), then the temporary one (the hot store's). The same answer for both."""
        now = self.now_ms()
        if record.locked_at is not None:
            raise self.locked_error(now + PERMANENT_LOCK_MS)
        lock = caller.locked_until(now)
        if lock:
            raise self.locked_error(lock)

    # -- loading the caller ------------------------------------------------------------------
    def copy_fields(self, record: UserRecord, seen: dict[str, str]) -> tuple[str, ...]:
        """What the hot store keeps of the durable record (``user_fill.lua``), as (field, value,
        seen) triplets: enough for the pass-through and get-session, never a secret or a hash.
        ``seen`` is the copy as read before the record: '2FA on' and the codes' key, which every
        later read of the record compares, are written over a value seen there (older than the
        read); the other fields only where absent (a script that wrote them meanwhile wins)."""
        a = record.account
        # The permanent lock is copied as a hot lock without end, so that the scripts that check the
        # hot lock (challenge_refusal, trust_use.lua, passkey_sign_in.lua) honour it after a loss too.
        lock = ("lock_until", str(self.now_ms() + PERMANENT_LOCK_MS), "") if record.locked_at is not None else ()
        return ("tfa", "1" if record.two_factor_enabled else "0", _seen(seen, "tfa"),
                "codes_kid", record.codes_key_id, _seen(seen, "codes_kid"),
                "revoked_at", str(record.revoked_at or 0), "", "email", a.email if a else "", "",
                "name", a.name if a else "", "", "created", str(a.created_at) if a else "", "", *lock)

    def copy_op(self, uid: str, mode: Literal["fill", "repair"], record: UserRecord,
                fields: Sequence[str], keep_sid: str = "") -> UserFill:
        """``user_fill.lua`` on the user's copy: ``mode`` 'fill' (only while the copy is absent) or
        'repair', ``fields`` as (field, value, seen) triplets, given the SQL generation of
        ``record``, the read they come from. ``keep_sid``: when the repair turns 2FA on, the one
        session that stays (``enroller``)."""
        k = self.keys
        return UserFill(self.head(uid, None), sessions_key=k.sessions(uid),
                        pending_codes_key=k.pending_backup_codes(uid), session_prefix_key=k.session(uid, ""),
                        otp_key=k.otp(uid), generation=secrets.randbelow(2**40) + 1, mode=mode,
                        sql_generation=record.generation, keep_sid=keep_sid, fields=tuple(fields))

    def write_copy(self, uid: str, mode: Literal["fill", "repair"], record: UserRecord,
                   fields: Sequence[str], keep_sid: str = "") -> Flow[dict[str, str]]:
        """Run ``copy_op`` (its events, sessions a repair ended, go to the sinks); the user hash after."""
        reply: Copied = yield from self.commit(self.copy_op(uid, mode, record, fields, keep_sid))
        return reply.user

    @staticmethod
    def enroller(user: dict[str, str], record: UserRecord) -> str:
        """The session that confirmed the factor ``record`` has and the copy ``user`` does not know
        of yet (the hot half of its enrolment failed: R4-2), which the repair keeps while it ends
        the others: the session of the pending authenticator setup only when the record's app IS
        that setup (its secret's ciphertext); else the session that used an enrolment code sent
        by message ('enrol_sid', otp_enrol.lua) when the record has the address it confirmed
        ('enrol_to': not one the record store refused, EnableOtp.while_off); else none (an import,
        the app's own vouching: every session ends). Never ``pending_sid`` alone (R6-2): a setup
        begun with the password alone, perhaps a thief's, while another session's enrolment turned
        2FA on."""
        secret = user.get("pending_secret")
        if secret and any(hmac.compare_digest(t.secret, secret) and t.confirmed_at is not None for t in record.totp):
            return user.get("pending_sid", "")
        confirmed = user.get("enrol_to")
        if user.get("enrol_sid") and any(f"{o.channel}:{o.address}" == confirmed for o in record.otp):
            return user["enrol_sid"]
        return ""

    def fill_copy(self, uid: str, seen: dict[str, str]) -> Flow[tuple[UserRecord, dict[str, str]]]:
        """Read the user's record from SQL and put its copy in the hot store (read-through): after
        a flush or an eviction the copy is rebuilt from the truth, so the loss ends sessions and
        nothing else. ``seen``: the user hash as loaded before (a part left by a script, or
        nothing). Returns the record and the user hash after the fill."""
        record: UserRecord = yield Rec(LoadUser(uid))
        return record, (yield from self.write_copy(uid, "fill", record, self.copy_fields(record, seen)))

    def load_record(self, caller: Caller) -> Flow[UserRecord]:
        """The caller's durable record: read once per request, from SQL. When the copy disagrees
        with it on 2FA, on the backup codes' key or on the generation (a crash between a record
        change, written first, and its copy's update), the copy is repaired here, before anything
        decides on it (the scripts that follow read it: session_create.lua, factor_change_refused,
        trust_use.lua)."""
        if caller.record is None:
            caller.record = yield Rec(LoadUser(caller.uid))
            yield from self._repair_copy(caller, caller.record)
        return caller.record

    def _repair_copy(self, caller: Caller, record: UserRecord) -> Flow[None]:
        tfa = "1" if record.two_factor_enabled else "0"
        user = caller.user
        # A copy's key of codes all used up since is left alone: it only marks them stale. A copy
        # whose 'sgen' is ahead of the record read here (a read older than the copy's) needs nothing.
        if (user.get("tfa") == tfa and (not record.codes_key_id or user.get("codes_kid") == record.codes_key_id)
                and int(user.get("sgen") or -1) >= record.generation):
            return
        caller.user = yield from self.write_copy(caller.uid, "repair", record, (
            "tfa", tfa, _seen(user, "tfa"), "codes_kid", record.codes_key_id, _seen(user, "codes_kid")),
            self.enroller(user, record))

    def load(self, uid: str, *, sid: str = "", cid: str = "", token: str = "") -> Flow[Caller]:
        user_key, session_key, challenge_key, pending_codes_key = self.keys.for_load(uid, sid or "-", cid or "-")
        # By position, like Guard (get-session and every endpoint read through here): the order is
        # hot_ops.Load's (keys, now, wants).
        reply: LoadReply = yield Load(user_key, session_key, challenge_key, pending_codes_key, self.now_ms(),
                                      "1" if sid else "0", "1" if cid else "0")
        user = reply.user
        record = None
        if "rec" not in user:
            record, user = yield from self.fill_copy(uid, user)
        now = self.now_ms()
        session = reply.session or None
        challenge = reply.challenge or None
        revoked_at = int(user.get("revoked_at", "0"))
        if session is not None and (int(session.get("exp", "0")) <= now or int(session["created"]) <= revoked_at
                                    or (self.aal2_limits and self.aal2_expired(session, now))):
            session = None
        if challenge is not None and (int(challenge.get("exp", "0")) <= now or int(challenge["created"]) <= revoked_at):
            challenge = None
        # The fill compared its record with the copy already (what it saw of it, as 'seen').
        return Caller(uid, user, session, sid, token, challenge, cid, reply.pending_codes, record)

    def _cookie_ids(self, req: Request, want_challenge: bool) -> tuple[str, str, str, str] | None:
        """(user id, session id hash, challenge id hash, session token) named by the request's
        cookies or bearer token; a pending challenge of another user than the session's wins."""
        token = self.session_token(req) or ""
        session = self.session_tokens.read(token)
        pending = None
        if want_challenge:
            challenge = req.cookies().get(self.challenge_cookie)
            if challenge:  # read() refuses an absent or empty one too: the call is saved on most requests
                pending = self.challenge_tokens.read(challenge)
        if pending:
            same = session is not None and session[0] == pending[0]
            return pending[0], session[1] if same and session else "", pending[1], token
        if session:
            return session[0], session[1], "", token
        return None

    def load_caller(self, req: Request, *, want_challenge: bool = False) -> Flow[Caller | None]:
        """The caller by their cookies (or bearer token), in one round trip."""
        ids = self._cookie_ids(req, want_challenge)
        if ids is None:
            return None
        uid, sid, cid, token = ids
        return (yield from self.load(uid, sid=sid, cid=cid, token=token))

    # -- the guard: every protected request ------------------------------------------------
    # Plain functions, not a generator: the gateway's guard flow (``Gateway.handle``) and the drivers'
    # direct pass-through (``BanataAuth.handle``/``ahandle``) both run the guard as these three steps
    # (``guard_op``, the store, ``guarded``; ``guard_refill`` between them when the copy is gone),
    # so that it is written once and a pass-through pays no generator.
    def guard_op(self, req: Request) -> tuple[str, str, Guard] | None:
        """(user id, session id hash, the ``Guard`` op) of a protected request, or None when it names
        no user (no cookie or bearer token, or none that verifies)."""
        header = req.headers.get("cookie") or ""
        ids = self._guard_ids.get(header)
        if ids is None:
            ids = self._guard_ids_of(req, header)
            if ids is None:
                return None
        uid, sid, user_key, session_key, challenge_key, want_session, want_challenge = ids
        # By position, unlike every other operation: this runs on every request. The order is
        # hot_ops.Guard's (keys, now (now_ms(), inlined), wants, timings); tuple.__new__ skips the
        # NamedTuple's Python-level __new__, as for Guarded below.
        return uid, sid, _new_tuple(Guard, (user_key, session_key, challenge_key, int(self._clock_now() * 1000),
                                            want_session, want_challenge, SEEN_GRANULARITY_MS, self.guard_idle_ms))

    def _guard_ids_of(self, req: Request, header: str) -> _GuardIds | None:
        """``guard_op``'s ids and keys, read from the request's cookies (or bearer token), and kept by
        Cookie header when they come from it alone: a browser sends the same header again and again,
        and the cookies' parse, the tokens' reads and the keys are a third of the guard's work."""
        found = self._cookie_ids(req, True)
        if found is None:
            return None
        uid, sid, cid, _ = found
        ids = (uid, sid, *self.keys.for_guard(uid, sid or "-", cid or "-"), "1" if sid else "0", "1" if cid else "0")
        # Kept only when the Cookie header alone decides them (its session cookie is there, so no
        # bearer token is read) and that cookie's token verified (sid: forgeries never enter, as in
        # TokenSigner's own cache). Bounded like the parsed cookies' cache: a clear now and then.
        if sid and len(header) <= _GUARD_CACHE_HEADER and req.cookies().get(self.session_cookie):
            cache = self._guard_ids
            if len(cache) >= _GUARD_CACHE_SIZE:
                cache.clear()  # no pop: it would race across WSGI threads
            cache[header] = ids
        return ids

    def guard_refill(self, uid: str, op: Guard, r: GuardReply) -> Flow[GuardReply]:
        """``op``'s reply after the user's copy was rebuilt from SQL, for a reply ``r`` that ``guarded``
        could not decide on: the copy is gone (an eviction) while a session or challenge is still
        there, and a revocation recorded in SQL must still count."""
        yield from self.fill_copy(uid, {} if r.tfa is None else {"tfa": r.tfa})
        reply: GuardReply = yield op
        return reply

    def guarded(self, uid: str, sid: str, r: GuardReply, refilled: bool = False) -> Guarded | None:
        """What the middleware decides on, read from the guard's reply (``guard_op``'s op); None when
        the copy must be rebuilt first (``guard_refill``, then this again with ``refilled``)."""
        # By position (GuardReply's order): a NamedTuple's attribute is a descriptor call, an unpack is not.
        tfa, revoked, s_exp, s_created, s_aal, s_mfa, c_exp, c_created, s_amr, s_auth, s_seen, rec = r
        if rec is None and (s_exp is not None or c_exp is not None) and not refilled:
            return None
        now = int(self._clock_now() * 1000)  # now_ms(), inlined here and in guard_op: every request
        revoked_at = int(revoked or 0)
        session_live = s_exp is not None and int(s_exp) > now and int(s_created or 0) > revoked_at
        if session_live and self.aal2_limits:
            session_live = not self.aal2_expired({"created": s_created, "aal": s_aal, "auth": s_auth,
                                                  "seen": s_seen}, now)
        pending_live = c_exp is not None and int(c_exp) > now and int(c_created or 0) > revoked_at
        if not session_live:
            return _new_tuple(Guarded, (uid, "", 0, 0, tfa == "1", pending_live, ()))
        return _new_tuple(Guarded, (uid, sid, int(s_aal or 1), int(s_mfa or 0), tfa == "1", pending_live,
                                    _amr(s_amr or "")))

    def aal2_expired(self, session: dict[str, Any], now: int) -> bool:
        """An aal 2 session past ``Policies.aal2_max_lifetime`` since its sign-in ('auth', kept
        across step-up rotations, else 'created') or idle past ``aal2_idle_timeout`` since its last
        use ('seen', written coarsely by the guard, else 'created'). The same rule for the guard
        (pass-through requests) and ``load`` (endpoints); the guard never refreshes 'seen' on a
        session idle past the timeout, so once over, it stays over."""
        p = self.policies
        if int(session.get("aal") or 1) < 2:
            return False
        created = int(session.get("created") or 0)
        if p.aal2_max_lifetime and now - int(session.get("auth") or created) > p.aal2_max_lifetime * 1000:
            return True
        return bool(p.aal2_idle_timeout) and now - int(session.get("seen") or created) > p.aal2_idle_timeout * 1000

    def require_session(self, req: Request) -> Flow[Caller]:
        """The caller of an endpoint that needs a live session; 401 without one."""
        caller = yield from self.load_caller(req)
        if caller is None or caller.session is None:
            raise AuthError(401, *UNAUTHORIZED)
        return caller

    def factor_change_args(self, caller: Caller) -> tuple[str, int]:
        """(session key, max age ms): what a factor-changing script re-checks the rule with."""
        return self.keys.session(caller.uid, caller.sid), self.policies.factor_change_max_age * 1000

    def factor_change(self, req: Request, caller: Caller, password_given: Literal["0", "1", "on"], *,
                      forget_devices: bool = False, fields: tuple[str, ...] = ()) -> FactorChange:
        """The re-check of the factor-change rule (``factor_change.lua``) for ``caller``'s change.
        ``forget_devices``: the change removes a second factor while two-factor stays on, so every
        trusted device of the user is forgotten in the same step, when it is allowed."""
        uid = caller.uid
        session_key, max_age_ms = self.factor_change_args(caller)
        return FactorChange(
            self.head(uid, req), session_key=session_key, devices_key=self.keys.trusted_devices(uid),
            trust_key=self.keys.trust(uid, "-"), max_age_ms=max_age_ms, password_given=password_given,
            forget_devices="1" if forget_devices else "0", fields=fields)

    def forget_devices(self, req: Request, caller: Caller, mode: Literal["one", "all"] = "all",
                       tid: str = "-") -> Flow[None]:
        """Trusted devices of ``caller``'s user forgotten now (``trust_end.lua``: the one ``tid``, or
        all), the factor-change rule re-checked in the same step (its refusal raised): the user's
        revoke-trusted-device(s), and a change that takes a factor away by another name than a
        removal (an address replaced)."""
        uid, k = caller.uid, self.keys
        session_key, max_age_ms = self.factor_change_args(caller)
        reply: DevicesForgotten = yield from self.commit(TrustEnd(
            self.head(uid, req), session_key=session_key, devices_key=k.trusted_devices(uid),
            trust_key=k.trust(uid, tid), mode=mode, sid=caller.sid, max_age_ms=max_age_ms), caller.sid)
        if reply.status != HotStatus.OK:
            raise self.factor_change_error(reply.status)

    def factor_change_error(self, status: str) -> AuthError:
        """The answer to a refused factor change (statuses of ``factor_change_refused``)."""
        max_age = self.policies.factor_change_max_age
        if status == "FRESH_TWO_FACTOR":
            return AuthError(403, "FRESH_TWO_FACTOR_REQUIRED",
                             f"step up first: confirm a second factor (verify-totp, a backup code or a passkey);"
                             f" changing a factor needs one from the last {max_age} s")
        if status == "FRESH_PASSWORD":
            return AuthError(403, "FRESH_PASSWORD_REQUIRED",
                             f"sign in again with your password first; adding or changing a passkey needs a"
                             f" password check from the last {max_age} s")
        return AuthError(401, *UNAUTHORIZED)

    @staticmethod
    def two_factor_changed() -> AuthError:
        """The answer of a change of the user's factors that changed nothing because another
        request changed them meanwhile, or is changing them now (its factor-change lease is live):
        disable, disable-otp, remove-authenticator, the verify-totp that confirms an added app,
        passkey registration."""
        return AuthError(409, "TWO_FACTOR_CHANGED",
                         "another request changed your second factors meanwhile, or is changing them now; this "
                         "one changed nothing: load the account again and retry in a moment if still needed")

    def end_removal(self, uid: str, lease: int) -> Flow[None]:
        """A change confirmed by its hot re-check (a removal, an app's confirmation, a passkey's
        registration): release its factor-change lease (``EndRemoval``, one more SQL transaction),
        so that the user's next change goes through at once. Best effort: the change is made and
        its answer stands; a lease the record store could not release runs out by itself
        (``REMOVAL_LEASE_MS``), and the user's changes that take it answer 409 until then. Lease 0
        (a change that took none: a passkey registered with two-factor off) costs nothing."""
        if not lease:
            return
        try:
            yield Rec(EndRemoval(uid, lease))
        except AuthError as exc:
            log.warning("the factor-change lease of user %s runs out by itself within %d s: the record store "
                        "could not release it (%s)", uid, REMOVAL_LEASE_MS // 1000, exc.code)

    # -- sessions and challenges -------------------------------------------------------------
    def session_spec(self) -> str:
        """How the store makes a session (``new_session`` in ``lua/_prelude.lua``): its lifetime in
        ms with and without rememberMe, and the cap of live sessions per user."""
        p = self.policies
        short = min(p.session_ttl, p.session_ttl_not_remembered)
        return f"{p.session_ttl * 1000},{short * 1000},{p.max_sessions_per_user}"

    def new_session(self, req: Request | None, uid: str, *, aal: int, mfa_ms: int,
                    remember: bool,
                    password_checked: bool, amr: str = AMR_PASSWORD) -> Flow[tuple[str, tuple[str, str]] | None]:
        """(token, Set-Cookie) of a new session, or None when an aal 1 session is refused because
        2FA was turned on after the caller was loaded (``session_create.lua``)."""
        token, sid = self.session_tokens.issue(uid)
        reply: Verdict = yield from self.commit(SessionCreate(
            self.head(uid, req), session_key=self.keys.session(uid, sid), sessions_key=self.keys.sessions(uid), sid=sid,
            session_spec=self.session_spec(), aal=aal, mfa_ms=mfa_ms, remember="1" if remember else "0",
            password_checked="1" if password_checked else "0", amr=amr), sid)
        if reply.status != HotStatus.OK:
            return None
        return token, self.session_cookie_header(token, remember)

    def session_cookie_header(self, token: str, remember: bool) -> tuple[str, str]:
        """The session cookie: for ``session_ttl`` when remembered, else a browser-session cookie
        (rememberMe: false)."""
        return self.cookie_header(self.session_cookie, token, self.policies.session_ttl if remember else None)

    def signed_in(self, caller: Caller, token: str, *, remember: bool, clear_challenge: bool = False,
                  cookies: Sequence[tuple[str, str]] = (), status: bool = False,
                  fields: dict[str, Any] | None = None) -> Response:
        """The one ending of every flow that signs someone in, once its script made the session
        (``new_session``, or atomically with the proof: challenge_answer, session_answer,
        passkey_sign_in): the session cookie, the pending sign-in's challenge cookie cleared when
        one was answered, the flow's own ``cookies``, and the reply ``{token, user}`` (with
        better-auth's verifyTotp answer, the contract's ``status`` first; then any ``fields``)."""
        headers = [self.session_cookie_header(token, remember)]
        if clear_challenge:
            headers.append(self.clear_cookie(self.challenge_cookie))
        headers.extend(cookies)
        return self.signed_in_reply(caller, token, headers, status=status, fields=fields)

    def signed_in_reply(self, caller: Caller, token: str | None, headers: Sequence[tuple[str, str]], *,
                        status: bool = False, fields: dict[str, Any] | None = None) -> Response:
        """The reply of a sign-in whose cookies are made (``signed_in``, or a ``SignInResult``)."""
        payload: dict[str, Any] = {"status": True} if status else {}
        payload.update({"token": token, "user": self.user_json(caller)})
        payload.update(fields or {})
        return json_response(200, payload, headers=list(headers))

    def backup_codes_stale(self, caller: Caller) -> bool:
        """The user's backup codes were hashed under a secret no longer configured (dropped from
        ``previous_secrets``): they can never match again and must be regenerated. From the
        record once a flow loaded it, else from the copy (get-session must not touch SQL)."""
        kid = caller.record.codes_key_id if caller.record is not None else caller.user.get("codes_kid", "")
        return self.codes_key_gone(kid)

    def codes_key_gone(self, kid: str) -> bool:
        """Codes stored before key ids were recorded have none, and are assumed usable."""
        return bool(kid) and kid not in self.keyring.code_key_ids

    def throttle(self, key: str, mode: Literal["peek", "hit"], limit: int) -> Flow[int]:
        """``lua/throttle.lua`` on ``key`` over the sign-in window: ms until it allows again, 0 if now."""
        retry: int = yield Throttle(counter_key=key, now_ms=self.now_ms(), mode=mode,
                                    window_ms=self.policies.sign_in_window * 1000, limit=limit)
        return retry


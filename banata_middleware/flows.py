"""One implementation of every flow: sign-up, sign-in, sign-out, session, TOTP and backup codes.

Each flow is a generator (see ``effects``): it yields store operations and returns a
``Response``. Nothing here does I/O, so the same code serves WSGI and ASGI.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .addresses import throttle_group, throttle_site
from .audit import AuditLog
from .backup_codes import generate_codes, normalize_code
from .config import BanataAuthConfig
from .crypto import Keyring, PasswordHasher, UnreadableSecret, hash_token, new_token
from .effects import Compute, Flow, Op, Rec
from .emails import canonical_email
from .errors import AuthError
from .http import Body, Request, Response, json_response, set_cookie
from .keys import Keys
from .passwords import normalize_password
from .stores.records import Account, AuditEntry, CreateAccount, GetAccountByEmail, LoadUser, Status, UserRecord
from .tokens import TokenSigner
from .totp import matched_step, new_secret, totp_uri

__all__ = ["Caller", "Flows", "Guarded", "SignInResult"]

PasswordVerifier = Callable[[str, str], bool]

log = logging.getLogger("banata_middleware.flows")


def _iso(ms: int | float | str | None) -> str | None:
    """Unix milliseconds as JavaScript's ``Date.prototype.toISOString()`` writes them (exactly three
    fraction digits, ``Z``): better-auth's client reads the fraction digits as milliseconds, so six
    (microseconds) would put every date up to 999 s late."""
    if ms in (None, "", "0", 0):
        return None
    seconds, millis = divmod(int(float(ms)), 1000)
    # time.gmtime, not a datetime: half the time, and get-session writes four.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _pairs(flat: list[Any]) -> dict[str, str]:
    """A Redis HGETALL reply (flat list) as a dict; values arrive as str (decode_responses)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _retry_after(until_ms: int, now_ms: int) -> dict[str, str]:
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
# The last-use time ('seen') of a session is written at most this often (guard.lua).
SEEN_GRANULARITY_MS = 60_000


def _ask_hook(hook: PasswordVerifier, uid: str, password: str) -> bool | None:
    """The app's ``verify_password``; None when it raised. A broken hook (its database down, a bug)
    must fail closed with a clear error, never a 500 traceback page. Only the exception's type is
    logged: its message could quote what the hook was given."""
    try:
        return bool(hook(uid, password))
    except Exception as exc:
        log.error("verify_password hook raised %s for user %s; answered 503", type(exc).__name__, uid)
        return None


@dataclass(slots=True)
class Caller:
    """A user as loaded by ``load.lua``: the user hash plus the session and/or challenge named by
    the request's cookies (None when absent, expired or not asked for)."""

    uid: str
    user: dict[str, str]
    session: dict[str, str] | None
    sid: str
    token: str
    challenge: dict[str, str] | None
    cid: str
    backup_codes: int
    passkeys: int
    #: The durable record (SQL), once a flow loaded it (``Flows.load_record``): the truth for every
    #: decision about factors. ``user`` is the hot store's copy of part of it, for the pass-through.
    record: UserRecord | None = None

    @property
    def two_factor_enabled(self) -> bool:
        return self.user.get("tfa") == "1"

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


@dataclass(frozen=True, slots=True)
class SignInResult:
    """What ``begin_second_factor`` gives a host app that did its own first factor.

    ``set_cookies`` are Set-Cookie header values to copy onto the app's response.
    """

    two_factor_required: bool
    methods: list[str]
    token: str | None
    set_cookies: list[str]


class Flows:
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
        self.cookie_names: tuple[str, ...] = (self.session_cookie, self.challenge_cookie, self.trust_cookie)
        self.aal2_limits = bool(self.policies.aal2_max_lifetime or self.policies.aal2_idle_timeout)

    # -- small pieces ----------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.config.clock.now() * 1000)

    def _user_op(self, script: str, uid: str, keys: tuple[str, ...], args: tuple[str | int, ...],
                 req: Request | None) -> Op:
        """An op following the user-script layout of ``lua/_prelude.lua``."""
        ip = req.client if req else ""
        ua = (req.headers.get("user-agent", "")[:256]) if req else ""
        return Op(script, (self.keys.user(uid), self.keys.audit(uid), *keys),
                  (self.now_ms(), ip, ua, self.policies.audit_stream_length, uid, *args))

    def _commit(self, script: str, uid: str, keys: tuple[str, ...], args: tuple[str | int, ...],
                req: Request | None, sid: str = "") -> Flow[list[Any]]:
        """Run a writing script and hand the events it recorded to the in-process sinks."""
        op = self._user_op(script, uid, keys, args, req)
        reply: list[Any] = yield op
        if reply[1]:
            self.audit.emit(reply[1], user_id=uid, at_ms=int(op.args[0]), ip=str(op.args[1]),
                            user_agent=str(op.args[2]), session_id=sid)
        return reply

    def entries(self, req: Request | None, sid: str, *events: str | tuple[str, str]) -> tuple[AuditEntry, ...]:
        """Audit rows for a record operation (written in its transaction): each event a type, or a
        (type, detail) pair. Who and where come from the request; never a code or a secret."""
        ip = req.client if req else ""
        ua = (req.headers.get("user-agent", "")[:256]) if req else ""
        now = self.now_ms()
        return tuple(AuditEntry(e, now, ip, ua, sid) if isinstance(e, str)
                     else AuditEntry(e[0], now, ip, ua, sid, {"detail": e[1]}) for e in events)

    def emit_entries(self, uid: str, entries: tuple[AuditEntry, ...]) -> None:
        """Hand the audit rows a record operation committed to the in-process sinks (callbacks,
        logging), as ``_commit`` does for the hot store's scripts. Call it only when the op's
        reply says the change (and so its rows) happened."""
        if entries:
            first = entries[0]
            self.audit.emit([e.type for e in entries], user_id=uid, at_ms=first.at, ip=first.ip,
                            user_agent=first.user_agent, session_id=first.session_id)

    def _cookie(self, name: str, value: str, max_age: int | None) -> tuple[str, str]:
        return set_cookie(name, value, max_age=max_age, secure=self.config.secure_cookies)

    def _clear(self, name: str) -> tuple[str, str]:
        return self._cookie(name, "", 0)

    def _session_token(self, req: Request) -> str | None:
        token = req.cookies().get(self.session_cookie)
        if token is None:
            auth = req.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                token = auth[7:].strip()
        return token

    def user_json(self, caller: Caller) -> dict[str, Any]:
        u = caller.user
        return {
            "id": caller.uid,
            "email": u.get("email") or None,
            "name": u.get("name", ""),
            "twoFactorEnabled": u.get("tfa") == "1",
            "createdAt": _iso(u.get("created")),
        }

    def methods(self, caller: Caller) -> list[str]:
        methods = ["totp"]
        if caller.backup_codes and not self.backup_codes_stale(caller):
            methods.append("backup_code")
        # Passkeys live in the record store only: their count comes from the record.
        if caller.record is not None and caller.record.passkeys and self.config.auth_methods.passkey:
            methods.append("passkey")
        return methods

    def locked_error(self, until_ms: int) -> AuthError:
        return AuthError(
            429, "ACCOUNT_TEMPORARILY_LOCKED",
            "too many failed second-factor attempts; try again later",
            headers=_retry_after(until_ms, self.now_ms()),
        )

    # -- loading the caller ------------------------------------------------------------------
    def copy_fields(self, record: UserRecord) -> list[str]:
        """What the hot store keeps of the durable record (``user_fill.lua``), as field/value pairs:
        enough for the pass-through and get-session, never a secret or a hash."""
        a = record.account
        return ["tfa", "1" if record.two_factor_enabled else "0", "revoked_at", str(record.revoked_at or 0),
                "codes_kid", record.codes_key_id, "email", a.email if a else "", "name", a.name if a else "",
                "created", str(a.created_at) if a else ""]

    def fill_copy(self, uid: str) -> Flow[tuple[UserRecord, dict[str, str]]]:
        """Read the user's record from SQL and put its copy in the hot store (read-through): after
        a flush or an eviction the copy is rebuilt from the truth, so the loss ends sessions and
        nothing else. Returns the record and the user hash after the fill."""
        record: UserRecord = yield Rec(LoadUser(uid))
        flat = yield Op("user_fill", (self.keys.user(uid),),
                        (self.now_ms(), secrets.randbelow(2**40) + 1, *self.copy_fields(record)))
        return record, _pairs(flat)

    def load_record(self, caller: Caller) -> Flow[UserRecord]:
        """The caller's durable record: read once per request, from SQL."""
        if caller.record is None:
            caller.record = yield Rec(LoadUser(caller.uid))
        return caller.record

    def load(self, uid: str, *, sid: str = "", cid: str = "", token: str = "") -> Flow[Caller]:
        reply = yield Op("load", self.keys.for_load(uid, sid or "-", cid or "-"),
                         (self.now_ms(), "1" if sid else "0", "1" if cid else "0"))
        user = _pairs(reply[0])
        record = None
        if "rec" not in user:
            record, user = yield from self.fill_copy(uid)
        now = self.now_ms()
        session = _pairs(reply[1]) or None
        challenge = _pairs(reply[2]) or None
        revoked_at = int(user.get("revoked_at", "0"))
        if session is not None and (int(session.get("exp", "0")) <= now or int(session["created"]) <= revoked_at
                                    or (self.aal2_limits and self.aal2_expired(session, now))):
            session = None
        if challenge is not None and (int(challenge.get("exp", "0")) <= now or int(challenge["created"]) <= revoked_at):
            challenge = None
        return Caller(uid, user, session, sid, token, challenge, cid, int(reply[3]), int(reply[4]), record)

    def _cookie_ids(self, req: Request, want_challenge: bool) -> tuple[str, str, str, str] | None:
        """(user id, session id hash, challenge id hash, session token) named by the request's
        cookies or bearer token; a pending challenge of another user than the session's wins."""
        token = self._session_token(req) or ""
        session = self.session_tokens.read(token)
        pending = self.challenge_tokens.read(req.cookies().get(self.challenge_cookie)) if want_challenge else None
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

    def guard(self, req: Request) -> Flow[Guarded | None]:
        """What the middleware needs to decide on a protected request, read lean (``guard.lua``)."""
        ids = self._cookie_ids(req, True)
        if ids is None:
            return None
        uid, sid, cid, _ = ids
        op = Op("guard", self.keys.for_guard(uid, sid or "-", cid or "-"),
                (self.now_ms(), "1" if sid else "0", "1" if cid else "0", SEEN_GRANULARITY_MS,
                 self.policies.aal2_idle_timeout * 1000))
        r = yield op
        if r[11] is None and (r[2] is not None or r[6] is not None):
            # The copy is gone (an eviction) while a session or challenge is still there: rebuilt
            # from SQL before deciding, so that a revocation recorded there still counts.
            yield from self.fill_copy(uid)
            r = yield op
        now = self.now_ms()
        revoked_at = int(r[1] or 0)
        session_live = r[2] is not None and int(r[2]) > now and int(r[3]) > revoked_at
        if session_live and self.aal2_limits:
            session_live = not self.aal2_expired({"created": r[3], "aal": r[4], "auth": r[9], "seen": r[10]}, now)
        pending_live = r[6] is not None and int(r[6]) > now and int(r[7]) > revoked_at
        if not session_live:
            return Guarded(uid, "", 0, 0, r[0] == "1", pending_live)
        return Guarded(uid, sid, int(r[4] or 1), int(r[5] or 0), r[0] == "1", pending_live, tuple((r[8] or "").split()))

    def aal2_expired(self, session: dict[str, Any], now: int) -> bool:
        """An aal 2 session past ``Policies.aal2_max_lifetime`` since its sign-in ('auth', kept
        across step-up rotations, else 'created') or idle past ``aal2_idle_timeout`` since its last
        use ('seen', written coarsely by guard.lua, else 'created'). The same rule for the guard
        (pass-through requests) and ``load`` (endpoints); guard.lua never refreshes 'seen' on a
        session idle past the timeout, so once over, it stays over."""
        p = self.policies
        if int(session.get("aal") or 1) < 2:
            return False
        created = int(session.get("created") or 0)
        if p.aal2_max_lifetime and now - int(session.get("auth") or created) > p.aal2_max_lifetime * 1000:
            return True
        return bool(p.aal2_idle_timeout) and now - int(session.get("seen") or created) > p.aal2_idle_timeout * 1000

    def require_session(self, req: Request) -> Flow[Caller]:
        caller = yield from self.load_caller(req)
        if caller is None or caller.session is None:
            raise AuthError(401, *UNAUTHORIZED)
        return caller

    def account_label(self, caller: Caller) -> Flow[str]:
        """The account name in the otpauth label (what the authenticator app shows): the built-in
        user's email, else the host's ``account_name(user_id)`` (apps with their own users), else the id."""
        email: str | None = caller.user.get("email")
        hook = self.account_name_hook
        if email or hook is None:
            return email or caller.uid
        name = yield Compute(lambda: hook(caller.uid))  # the host may look it up in its database
        return str(name or caller.uid)

    def require_factor_change(self, req: Request, password: str | None = None) -> Flow[Caller]:
        """The caller of an endpoint that reads, adds, replaces or removes a factor (OWASP: changing
        a factor needs an existing factor). With 2FA on: an aal 2 session whose second factor is
        at most ``factor_change_max_age`` old, whatever else the endpoint asks. Without: the
        ``password`` the contract asks for, or (passkey endpoints, which take none) a session whose
        password or user-verified passkey is that recent. Every such endpoint calls this first;
        the script that then makes the change checks the same rule again, atomically
        (``factor_change_refused`` in lua/_prelude.lua, given ``factor_change_args``), since
        2FA may be confirmed, or the session ended, while this request is under way."""
        caller = yield from self.require_session(req)
        session = caller.session or {}
        oldest = self.now_ms() - self.policies.factor_change_max_age * 1000
        if caller.two_factor_enabled:
            if int(session.get("aal") or 1) < 2 or int(session.get("mfa") or 0) < oldest:
                raise self.factor_change_error("FRESH_TWO_FACTOR")
        elif password is None and max(int(session.get("pwd") or 0), int(session.get("mfa") or 0)) < oldest:
            raise self.factor_change_error("FRESH_PASSWORD")
        if password is not None:
            yield from self.check_password(caller, password, req)
        return caller

    def factor_change_args(self, caller: Caller) -> tuple[tuple[str], int]:
        """(session key, max age ms): what a factor-changing script re-checks the rule with."""
        return (self.keys.session(caller.uid, caller.sid),), self.policies.factor_change_max_age * 1000

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

    def check_password(self, caller: Caller, password: str, req: Request | None = None) -> Flow[None]:
        # Re-checks count with sign-in's account throttle (checked before any hashing).
        account_idx = self.keyring.index(caller.user.get("email") or caller.uid)
        address_idx = self.keyring.index(throttle_group(req.client if req else "", self.policies) or "-")
        retry, _ = yield from self._password_gate(account_idx, address_idx, "peek")
        if retry:
            raise self._too_many(retry)
        yield from self._hash_budget(address_idx)
        # The hash is read from SQL (the hot store never holds it); an app's own user has no account.
        account = (yield from self.load_record(caller)).account
        hook = self.verify_password_hook
        if account is None and hook is not None:
            ok = yield Compute(lambda: _ask_hook(hook, caller.uid, password))
            if ok is None:
                raise AuthError(503, "PASSWORD_CHECK_UNAVAILABLE",
                                "the password cannot be checked right now; try again shortly")
        else:
            ok = yield from self._password_matches(account, password)
        if not ok:
            # Counted in the account's slot, then audited in the user's (two slots: two ops).
            yield from self._password_gate(account_idx, address_idx, "hit")
            yield from self._commit("password_failed", caller.uid, (), (caller.sid,), req, caller.sid)
            raise AuthError(400, "INVALID_PASSWORD", "the password is incorrect")

    def _decrypt_secret(self, req: Request, caller: Caller, ct: str) -> Flow[str]:
        """The user's TOTP secret in the clear. One that does not decrypt (a record copied onto
        another user, corrupted, or made with a key no longer configured) is a factor that cannot
        be used: a clear refusal and an audit event, never a 500, and not counted as a failed
        attempt, since the user typed nothing wrong."""
        try:
            return self.keyring.decrypt(ct, context=caller.uid).decode()
        except (UnreadableSecret, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, UnreadableSecret) else "not text"
        log.error("TOTP secret of user %s cannot be read: %s", caller.uid, reason)
        yield from self._commit("audit_event", caller.uid, (),
                                ("two_factor.secret_unreadable", caller.sid, reason), req, caller.sid)
        raise AuthError(409, "TWO_FACTOR_SECRET_UNREADABLE",
                        "the stored authenticator secret cannot be read; use a backup code or a passkey, "
                        "or ask an administrator to reset two-factor authentication")

    def _password_matches(self, account: Account | None, password: str) -> Flow[bool]:
        """The password, NFKC-normalized (``passwords``), against the account's hash; an unknown
        account (None) is checked against the dummy hash, so it costs the same one hash. Every hash
        in SQL was made of a normalized password (sign-up is the only writer), so one is enough."""
        stored = account.password_hash if account is not None else None
        normalized = normalize_password(password)
        matched: bool = yield Compute(lambda: self.hasher.verify(normalized, stored))
        return matched

    def _with_site(self, req: Request, address_idx: str) -> list[str]:
        """The throttle indexes of a client: its address group, and for IPv6 also its site."""
        site = throttle_site(req.client, self.policies)
        site_idx = self.keyring.index(site) if site else address_idx
        return [address_idx] if site_idx == address_idx else [address_idx, site_idx]

    def _hash_budget(self, address_idx: str) -> Flow[None]:
        """Counts one password hash for the client address (group), before it runs: past
        ``password_hashes_per_address`` per ``password_hash_window`` the answer is 429, right
        password or not, so one client can make the server hash only so much."""
        p = self.policies
        retry: int = yield Op("throttle", (self.keys.address_hashes(address_idx),),
                              (self.now_ms(), "hit", p.password_hash_window * 1000, p.password_hashes_per_address + 1))
        if retry:
            raise AuthError(429, "TOO_MANY_REQUESTS", "too many password checks from this address; try again later",
                            headers=_retry_after(self.now_ms() + retry, self.now_ms()))

    def _password_gate(self, account_idx: str, address_idx: str, mode: str) -> Flow[tuple[int, bool]]:
        """``lua/password_gate.lua``: (ms until this account may be tried from this address, whether
        the address signed in to the account before)."""
        p, k = self.policies, self.keys
        reply = yield Op("password_gate", (k.account_address_failures(account_idx, address_idx),
                                           k.account_failures(account_idx), k.known_addresses(account_idx)),
                         (self.now_ms(), mode, p.sign_in_window * 1000, p.sign_in_failures_per_account,
                          p.sign_in_failures_per_account_all_addresses, address_idx, p.known_address_ttl * 1000))
        return int(reply[0]), int(reply[1]) == 1

    def _too_many(self, retry_ms: int) -> AuthError:
        return AuthError(429, "TOO_MANY_REQUESTS", "too many failed passwords; try again later",
                         headers=_retry_after(self.now_ms() + retry_ms, self.now_ms()))

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
        reply = yield from self._commit("session_create", uid, (self.keys.session(uid, sid), self.keys.sessions(uid)),
                                        (sid, self.session_spec(), aal, mfa_ms, "1" if remember else "0",
                                         "1" if password_checked else "0", amr), req, sid)
        if reply[0] != "OK":
            return None
        return token, self._cookie(self.session_cookie, token, self.policies.session_ttl if remember else None)

    def start_sign_in(self, req: Request | None, caller: Caller, *, remember: bool) -> Flow[SignInResult]:
        """After a first factor: a session when no second factor is due, else a pending challenge
        (or, from a trusted device, a session with the device's trust rotated)."""
        now = self.now_ms()
        lock = caller.locked_until(now)
        if lock:
            raise self.locked_error(lock)
        uid = caller.uid
        if not caller.two_factor_enabled:
            # After the app's password check (sign-in, or the host's own via begin_second_factor).
            made = yield from self.new_session(req, uid, aal=1, mfa_ms=0, remember=remember, password_checked=True)
            if made is not None:
                return SignInResult(False, [], made[0], [made[1][1]])
            # 2FA was confirmed while this sign-in was under way (the enrolment ended every other
            # session; this one must not slip past it): the second factor is due after all.
            caller = yield from self.load(uid)
        trusted = self.trust_tokens.read(req.cookies().get(self.trust_cookie)) if req else None
        if trusted and trusted[0] == uid:
            new_trust, new_tid = self.trust_tokens.issue(uid)
            token, sid = self.session_tokens.issue(uid)
            k = self.keys
            reply = yield from self._commit(
                "trust_use", uid,
                (k.trust(uid, trusted[1]), k.trust(uid, new_tid), k.session(uid, sid),
                 k.sessions(uid), k.trusted_devices(uid)),
                # The trust was made by a TOTP or backup code answer (challenge_answer.lua), which the
                # session inherits like its mfa time.
                (sid, self.session_spec(), "1" if remember else "0", f"{AMR_PASSWORD} {AMR_OTP}"), req, sid)
            if reply[0] == "LOCKED":
                raise self.locked_error(int(reply[2]))
            if reply[0] == "OK":
                # The rotated trust keeps its original expiry (reply[2]): the cookie lasts as long.
                trust_left = max(1, math.ceil((int(reply[2]) - self.now_ms()) / 1000))
                return SignInResult(False, [], token, [
                    self._cookie(self.session_cookie, token, self.policies.session_ttl if remember else None)[1],
                    self._cookie(self.trust_cookie, new_trust, trust_left)[1],
                ])
        yield from self.load_record(caller)  # for methods(): the passkeys are counted in the record
        ctoken, cid = self.challenge_tokens.issue(uid)
        yield from self._commit(
            "challenge_create", uid, (self.keys.challenge(uid, cid),),
            (self.policies.pending_ttl * 1000, self.policies.challenge_attempts, "1" if remember else "0"), req)
        cookie = self._cookie(self.challenge_cookie, ctoken, self.policies.pending_ttl)
        return SignInResult(True, self.methods(caller), None, [cookie[1]])

    def sign_in_response(self, caller: Caller, result: SignInResult) -> Response:
        cookies = [("set-cookie", c) for c in result.set_cookies]
        if result.two_factor_required:
            payload = {"code": "TWO_FACTOR_REQUIRED", "message": "two-factor authentication required",
                       "twoFactorRedirect": True, "twoFactorMethods": result.methods}
            return json_response(self.config.challenge_status, payload, headers=cookies)
        return json_response(200, {"token": result.token, "user": self.user_json(caller)}, headers=cookies)

    # -- primary authentication --------------------------------------------------------------
    def _email(self, body: Body) -> str:
        """The canonical address (``emails``): one account per address a person reads as one."""
        return canonical_email(body.text("email", max_len=254))

    def sign_up(self, req: Request, body: Body) -> Flow[Response]:
        p = self.policies
        # Every attempt counts, whatever its outcome, and is counted before any hashing: the cost one
        # address can cause is at most sign_up_per_address scrypt runs per sign_up_window (plus the
        # cheap refusals). Hit-and-decide is one script, so parallel attempts cannot slip past the limit.
        # The address as the sign-in throttle groups it (an IPv6 client by its network), so that
        # rotating through a /64 does not reset the count.
        address_idx = self.keyring.index(throttle_group(req.client, p) or "-")
        for idx in self._with_site(req, address_idx):
            retry: int = yield Op("throttle", (self.keys.address_sign_ups(idx),),
                                  (self.now_ms(), "hit", p.sign_up_window * 1000, p.sign_up_per_address + 1))
            if retry:
                raise AuthError(429, "TOO_MANY_REQUESTS", "too many sign-ups from this address; try again later",
                                headers=_retry_after(self.now_ms() + retry, self.now_ms()))
        email = self._email(body)
        typed = body.text("password", max_len=128)
        password = normalize_password(typed)
        name = body.text("name", max_len=128, required=False)
        # Counted as typed too: NFKC expands some characters (U+FDFA is 18), none of which makes a
        # one-character password long.
        if min(len(typed), len(password)) < self.policies.password_min_length:
            raise AuthError(400, "PASSWORD_TOO_SHORT",
                            f"the password must have at least {self.policies.password_min_length} characters")
        # A taken email is refused before hashing. The 422 itself already tells that the address has
        # an account (the documented contract), so answering it early reveals nothing more; an
        # address that is free still costs one hash, as before. This read only saves the hash:
        # CreateAccount's unique email index below decides two sign-ups racing for one address.
        if (yield Rec(GetAccountByEmail(email))) is not None:
            raise self._email_taken()
        # An account is a record an anonymous request adds: counted under the global cap.
        retry = yield from self._throttle(self.keys.anonymous_records(), "hit", p.anonymous_records_per_window + 1)
        if retry:
            raise AuthError(429, "TOO_MANY_REQUESTS", "too many sign-ups right now; try again later",
                            headers=_retry_after(self.now_ms() + retry, self.now_ms()))
        pw = yield Compute(lambda: self.hasher.hash(password))
        uid = new_token(16)
        # Write order: the account commits in SQL first (the unique email decides a race: TAKEN
        # wrote nothing); the session in Redis comes after. A crash between leaves an account
        # without a session, and the user signs in. Nothing of the account is written to Redis: its
        # copy (email, name, created) is filled from SQL by the load below (``fill_copy``).
        created = yield Rec(CreateAccount(Account(uid, email, pw, name, self.now_ms())))
        if created is Status.TAKEN:
            raise self._email_taken()
        made = yield from self.new_session(req, uid, aal=1, mfa_ms=0, remember=True, password_checked=True)
        if made is None:  # 2FA on an account created an instant ago: only an administrator's import does that
            raise AuthError(409, "TWO_FACTOR_REQUIRED", "two-factor authentication was turned on; sign in")
        token, cookie = made
        caller = yield from self.load(uid)  # the stored record: createdAt is the instant sign-in reports too
        return json_response(200, {"token": token, "user": self.user_json(caller)}, headers=[cookie])

    @staticmethod
    def _email_taken() -> AuthError:
        return AuthError(422, "USER_ALREADY_EXISTS", "a user with this email already exists")

    def _throttle(self, key: str, mode: str, limit: int) -> Flow[int]:
        retry: int = yield Op("throttle", (key,), (self.now_ms(), mode, self.policies.sign_in_window * 1000, limit))
        return retry

    def sign_in(self, req: Request, body: Body) -> Flow[Response]:
        email = self._email(body)
        password = body.text("password", max_len=128)
        remember = body.data.get("rememberMe", True) is not False
        p = self.policies
        email_idx = self.keyring.index(email)
        address_idx = self.keyring.index(throttle_group(req.client, p) or "-")
        # The address's failures, and for IPv6 its site's (the same limit: rotating networks gains nothing).
        address_keys = [self.keys.address_failures(idx) for idx in self._with_site(req, address_idx)]
        anonymous = self.keys.anonymous_records()
        retry, known = yield from self._password_gate(email_idx, address_idx, "peek")
        for key in address_keys:
            retry = max(retry, (yield from self._throttle(key, "peek", p.sign_in_failures_per_address)))
        if not known:  # past the global cap of anonymous records, only addresses known to the account
            retry = max(retry, (yield from self._throttle(anonymous, "peek", p.anonymous_records_per_window)))
        if retry:
            raise self._too_many(retry)
        yield from self._hash_budget(address_idx)
        # The account by its canonical email, from SQL (the authority; Redis keeps no email index).
        account: Account | None = yield Rec(GetAccountByEmail(email))
        ok = yield from self._password_matches(account, password)
        if not ok or account is None:
            yield from self._password_gate(email_idx, address_idx, "hit")
            for key in address_keys:
                yield from self._throttle(key, "hit", p.sign_in_failures_per_address)
            yield from self._throttle(anonymous, "hit", p.anonymous_records_per_window)
            raise AuthError(401, "INVALID_EMAIL_OR_PASSWORD", "invalid email or password")
        # Renewed at every right password (not only the first), so an address in daily use stays known.
        # Recorded before the second factor: after it would cost a verification a third round trip
        # (DESIGN rule 3; the known list lives in the account's slot, the challenge in the user's).
        yield from self._password_gate(email_idx, address_idx, "known")
        caller = yield from self.load(account.id)
        result = yield from self.start_sign_in(req, caller, remember=remember)
        return self.sign_in_response(caller, result)

    def sign_out(self, req: Request) -> Flow[Response]:
        session = self.session_tokens.read(self._session_token(req))
        pending = self.challenge_tokens.read(req.cookies().get(self.challenge_cookie))
        targets: list[tuple[str, str, str]] = []
        if session:
            targets.append((session[0], session[1], "-"))
        if pending:
            targets.append((pending[0], "", pending[1]))
        for uid, sid, cid in targets:
            yield from self._commit("session_revoke", uid,
                                    (self.keys.session(uid, sid or "-"), self.keys.sessions(uid),
                                     self.keys.challenge(uid, cid)), (sid,), req, sid)
        return json_response(200, {"success": True},
                             headers=[self._clear(self.session_cookie), self._clear(self.challenge_cookie)])

    def get_session(self, req: Request) -> Flow[Response]:
        caller = yield from self.load_caller(req)
        if caller is None or caller.session is None:
            return json_response(200, None)
        s = caller.session
        exp, aal = int(s.get("exp", "0")), int(s.get("aal", "1"))
        if aal >= 2 and self.policies.aal2_max_lifetime:
            exp = min(exp, int(s.get("auth") or s["created"]) + self.policies.aal2_max_lifetime * 1000)
        session = {"id": caller.sid, "userId": caller.uid, "expiresAt": _iso(exp),
                   "createdAt": _iso(s.get("created")), "mfaVerifiedAt": _iso(s.get("mfa")),
                   "aal": aal, "amr": s.get("amr", "").split()}
        user = self.user_json(caller)
        user["backupCodesNeedRegeneration"] = self.backup_codes_stale(caller)
        return json_response(200, {"session": session, "user": user})

    # -- two-factor management ---------------------------------------------------------------
    def _new_backup_codes(self, count: int | None = None) -> tuple[list[str], list[str]]:
        """New codes, and what the scripts store for them: the id of the key they are hashed under
        (``codes_kid``), then their keyed hashes."""
        codes = generate_codes(self.policies.backup_code_count if count is None else count, self.policies.backup_codes)
        # Hashed as typed back (normalize_code: no group dashes), shown as generated.
        return codes, [self.keyring.current_code_key_id,
                       *(self.keyring.hash_code(normalize_code(c) or c) for c in codes)]

    def backup_codes_stale(self, caller: Caller) -> bool:
        """The user's backup codes were hashed under a secret no longer configured (dropped from
        ``previous_secrets``): they can never match again and must be regenerated. Codes stored
        before key ids were recorded have none, and are assumed usable."""
        kid = caller.user.get("codes_kid")
        return bool(caller.backup_codes and kid and kid not in self.keyring.code_key_ids)

    def enable(self, req: Request, body: Body) -> Flow[Response]:
        password = body.text("password", max_len=128)
        issuer = body.text("issuer", max_len=64, required=False) or self.config.app_name
        if body.data.get("method", "totp") != "totp":
            raise AuthError(400, "VALIDATION_ERROR", "only 'totp' is supported as 'method'")
        caller = yield from self.require_factor_change(req, password)
        if caller.two_factor_enabled:
            raise self._already_enabled()
        secret = new_secret()
        codes, hashes = self._new_backup_codes()
        ct = self.keyring.encrypt(secret.encode(), context=caller.uid)
        reply = yield from self._commit("two_factor_begin", caller.uid, (self.keys.pending_backup_codes(caller.uid),),
                                        (ct, caller.sid, *hashes), req, caller.sid)
        if reply[0] == "ALREADY":
            raise self._already_enabled()
        uri = totp_uri(secret, issuer=issuer, account=(yield from self.account_label(caller)), policy=self.config.totp)
        return json_response(200, {"method": "totp", "totpURI": uri, "backupCodes": codes})

    @staticmethod
    def _already_enabled() -> AuthError:
        return AuthError(409, "TWO_FACTOR_ALREADY_ENABLED", "two-factor authentication is already on; disable it first")

    @staticmethod
    def _not_enabled() -> AuthError:
        return AuthError(400, "TWO_FACTOR_NOT_ENABLED", "two-factor authentication is not set up for this user")

    def disable(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.require_factor_change(req, body.text("password", max_len=128))
        k = self.keys
        session_key, max_age_ms = self.factor_change_args(caller)
        reply = yield from self._commit("two_factor_disable", caller.uid,
                                        (k.backup_codes(caller.uid), k.pending_backup_codes(caller.uid), *session_key),
                                        (caller.sid, max_age_ms), req, caller.sid)
        if reply[0] == "NOT_ENABLED":
            raise self._not_enabled()
        if reply[0] != "OK":
            raise self.factor_change_error(reply[0])
        return json_response(200, {"status": True})

    def get_totp_uri(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.require_factor_change(req, body.text("password", max_len=128))
        user = caller.user
        # A pending setup's secret is shown only to the session that started it (two_factor_begin.lua).
        ct = user.get("secret") if caller.two_factor_enabled else (
            user.get("pending_secret") if user.get("pending_sid") == caller.sid else None)
        if not ct:
            raise self._not_enabled()
        secret = yield from self._decrypt_secret(req, caller, ct)
        # Recorded before the secret leaves: a store that cannot record it refuses (fail closed).
        detail = "" if caller.two_factor_enabled else "pending"
        yield from self._commit("audit_event", caller.uid, (), ("two_factor.secret_viewed", caller.sid, detail),
                                req, caller.sid)
        uri = totp_uri(secret, issuer=self.config.app_name, account=(yield from self.account_label(caller)),
                       policy=self.config.totp)
        return json_response(200, {"totpURI": uri})

    def generate_backup_codes(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.require_factor_change(req, body.text("password", max_len=128))
        codes, hashes = self._new_backup_codes()
        k = self.keys
        session_key, max_age_ms = self.factor_change_args(caller)
        reply = yield from self._commit("backup_codes_replace", caller.uid,
                                        (k.backup_codes(caller.uid), k.pending_backup_codes(caller.uid), *session_key),
                                        (caller.sid, max_age_ms, *hashes), req, caller.sid)
        if reply[0] == "NOT_ENABLED":
            raise self._not_enabled()
        if reply[0] != "OK":
            raise self.factor_change_error(reply[0])
        return json_response(200, {"status": True, "backupCodes": codes})

    # -- verification ------------------------------------------------------------------------
    def verify(self, req: Request, body: Body, method: str) -> Flow[Response]:
        """verify-totp and verify-backup-code: one flow, three modes (contract: sign-in challenge,
        enrolment, step-up), decided by the caller's cookies."""
        code = body.text("code", max_len=64).strip()
        trust = body.flag("trustDevice")
        caller = yield from self.load_caller(req, want_challenge=True)
        if caller is None or (caller.challenge is None and caller.session is None):
            raise AuthError(401, *UNAUTHORIZED)
        lock = caller.locked_until(self.now_ms())
        if lock:
            raise self.locked_error(lock)
        user = caller.user
        # Without 2FA on, only enrolment is left: in the session that set it up. A challenge cookie
        # still in the browser (a sign-in abandoned before 2FA was turned off) plays no part.
        enrolling = not caller.two_factor_enabled
        if enrolling and (method == "backup" or caller.session is None or "pending_secret" not in user):
            raise self._not_enabled()
        if method == "backup" and self.backup_codes_stale(caller):
            # Not a failed attempt: no code of this set can match, so trying one proves nothing.
            raise AuthError(409, "BACKUP_CODES_NEED_REGENERATION",
                            "these backup codes were issued under a key that is no longer configured and "
                            "can no longer be used; sign in another way and generate new ones")
        if method == "totp":
            ct = user["pending_secret"] if enrolling else user["secret"]
            secret = yield from self._decrypt_secret(req, caller, ct)
            step = matched_step(secret, code, at=self.config.clock.now(), policy=self.config.totp)
            proof = "" if step is None else str(step)
        else:
            ct = ""
            normalized = normalize_code(code)
            proof = " ".join(self.keyring.code_candidates(normalized)) if normalized else ""
        if caller.challenge is not None and not enrolling:
            return (yield from self._answer_challenge(req, caller, method, proof, ct, trust))
        return (yield from self._answer_in_session(req, caller, method, proof, ct, enrolling))

    def _answer_challenge(self, req: Request, caller: Caller, method: str, proof: str, ct: str,
                          trust: bool) -> Flow[Response]:
        uid, p, k = caller.uid, self.policies, self.keys
        token, sid = self.session_tokens.issue(uid)
        trust_token, trust_id = self.trust_tokens.issue(uid) if trust else ("", "-")
        reply = yield from self._commit(
            "challenge_answer", uid,
            (k.challenge(uid, caller.cid), k.backup_codes(uid), k.session(uid, sid), k.sessions(uid),
             k.trust(uid, trust_id), k.trusted_devices(uid)),
            (method, proof, ct, sid, self.session_spec(), "1" if trust else "0", p.trust_device_ttl * 1000,
             p.user_lock_failures, p.user_lock_seconds * 1000, f"{AMR_PASSWORD} {AMR_OTP}"), req, sid)
        status = reply[0]
        if status == "OK":
            remember = caller.challenge is not None and caller.challenge.get("remember") == "1"
            headers = [self._cookie(self.session_cookie, token, p.session_ttl if remember else None),
                       self._clear(self.challenge_cookie)]
            if trust:
                headers.append(self._cookie(self.trust_cookie, trust_token, p.trust_device_ttl))
            caller.user["tfa"] = "1"
            payload: dict[str, Any] = {"token": token, "user": self.user_json(caller)}
            if method == "backup":
                payload["backupCodesRemaining"] = int(reply[2])
            return json_response(200, payload, headers=headers)
        raise self._answer_error(reply)

    def _answer_in_session(self, req: Request, caller: Caller, method: str, proof: str, ct: str,
                           enrolling: bool) -> Flow[Response]:
        uid, p, k = caller.uid, self.policies, self.keys
        # The session is rotated (new id, old one ended) in the script that accepts the proof; made
        # by the session spec, so it keeps rememberMe:false's short lifetime and counts toward the cap.
        token, sid = self.session_tokens.issue(uid)
        reply = yield from self._commit(
            "session_answer", uid,
            (k.session(uid, caller.sid), k.backup_codes(uid), k.pending_backup_codes(uid), k.session(uid, sid),
             k.sessions(uid)),
            ("enrol" if enrolling else "stepup", method, proof, ct, caller.sid, p.user_lock_failures,
             p.user_lock_seconds * 1000, sid, self.session_spec(), AMR_OTP), req, sid)
        if reply[0] != "OK":
            raise self._answer_error(reply)
        caller.user["tfa"] = "1"
        remember = caller.session is not None and caller.session.get("remember") == "1"
        cookie = self._cookie(self.session_cookie, token, p.session_ttl if remember else None)
        # better-auth's verifyTotp always answers {token, user}; the contract's {status} is kept too.
        payload: dict[str, Any] = {"status": True, "token": token, "user": self.user_json(caller)}
        if method == "backup":
            payload["backupCodesRemaining"] = int(reply[2])
        return json_response(200, payload, headers=[cookie])

    def _answer_error(self, reply: list[Any]) -> AuthError:
        status = reply[0]
        if status == "LOCKED":
            return self.locked_error(int(reply[2]))
        if status == "WRONG" and len(reply) > 2:
            return AuthError(401, "INVALID_CODE", "the code is invalid, expired or already used",
                             extra={"attemptsRemaining": int(reply[2])})
        if status == "WRONG":
            return AuthError(401, "INVALID_CODE", "the code is invalid, expired or already used")
        if status == "EXHAUSTED":
            cleared = self._clear(self.challenge_cookie)
            return AuthError(401, "TOO_MANY_ATTEMPTS", "too many wrong codes for this sign-in; sign in again",
                             headers={cleared[0]: cleared[1]})
        if status == "NOT_ENABLED":
            return self._not_enabled()
        if status == "ALREADY":
            return self._already_enabled()
        return AuthError(401, *UNAUTHORIZED)

    # -- host and administrator operations -----------------------------------------------------
    def import_totp(self, uid: str, secret: str, *, email: str | None,
                    backup_codes: bool) -> Flow[tuple[str, list[str]]]:
        """2FA on with a known base32 secret; returns (totpURI, new backup codes or [])."""
        codes, hashes = self._new_backup_codes(None if backup_codes else 0)
        ct = self.keyring.encrypt(secret.encode(), context=uid)
        yield from self._commit("two_factor_import", uid,
                                (self.keys.backup_codes(uid), self.keys.pending_backup_codes(uid)),
                                (ct, *hashes), None)
        uri = totp_uri(secret, issuer=self.config.app_name, account=email or uid, policy=self.config.totp)
        return uri, codes

    def reset_user(self, uid: str, mode: str) -> Flow[None]:
        """'revoke': end every session of the user; 'reset': that, and remove their second factor
        and passkeys."""
        k = self.keys
        reply = yield from self._commit("user_reset", uid,
                                        (k.backup_codes(uid), k.pending_backup_codes(uid), k.passkeys(uid)),
                                        (mode,), None)
        # The passkeys are gone above; their index entries live in other slots and go after. A
        # crash between leaves an entry naming a passkey that no longer exists: it signs nobody in.
        for credential_id in reply[2]:
            yield Op("index", (k.credential(hash_token(str(credential_id))),), (self.now_ms(), "release", uid))

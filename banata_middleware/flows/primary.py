"""Primary authentication: sign-up, sign-in, sign-out, get-session, and the password checks and
throttles (which changing a factor needs too: ``require_factor_change``)."""

from __future__ import annotations

import math
from typing import Literal

from ..addresses import throttle_group, throttle_site
from ..crypto import new_token
from ..effects import Compute, Flow, Rec
from ..emails import canonical_email
from ..errors import AuthError
from ..http import Body, Request, Response, display_name, json_response
from ..passwords import normalize_password
from ..stores.hot_ops import (
    ChallengeCreate,
    GateReply,
    HotStatus,
    PasswordFailed,
    PasswordGate,
    SessionRevoke,
    Throttle,
    TrustRotated,
    TrustUse,
)
from ..stores.records import Account, CreateAccount, GetAccountByEmail, Status
from .session import (
    AMR_OTP,
    AMR_PASSWORD,
    Caller,
    PasswordVerifier,
    Routes,
    SessionCore,
    SignInResult,
    iso,
    log,
    retry_after,
)

__all__ = ["PrimaryFlows"]


def _ask_hook(hook: PasswordVerifier, uid: str, password: str) -> bool | None:
    """The app's ``verify_password``; None when it raised. A broken hook (its database down, a bug)
    must fail closed with a clear error, never a 500 traceback page. Only the exception's type is
    logged: its message could quote what the hook was given."""
    try:
        return bool(hook(uid, password))
    except Exception as exc:
        log.error("verify_password hook raised %s for user %s; answered 503", type(exc).__name__, uid)
        return None



class PrimaryFlows(SessionCore):
    """Sign-up, sign-in, sign-out and get-session; the password checks and their throttles; the
    factor-change rule (``require_factor_change``), which asks for the password without 2FA."""

    def routes(self) -> Routes:
        routes = super().routes()
        routes["/sign-out"] = ("POST", lambda r, b: self.sign_out(r))
        routes["/get-session"] = ("GET", lambda r, b: self.get_session(r))
        if self.config.auth_methods.email_password:
            routes["/sign-up/email"] = ("POST", self.sign_up)
            routes["/sign-in/email"] = ("POST", self.sign_in)
        return routes

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
        # Whether 2FA is on comes from the record (and the copy, repaired if need be, says so too).
        record = yield from self.load_record(caller)
        session = caller.session or {}
        oldest = self.now_ms() - self.policies.factor_change_max_age * 1000
        if record.two_factor_enabled:
            if int(session.get("aal") or 1) < 2 or int(session.get("mfa") or 0) < oldest:
                raise self.factor_change_error("FRESH_TWO_FACTOR")
        elif password is None and max(int(session.get("pwd") or 0), int(session.get("mfa") or 0)) < oldest:
            raise self.factor_change_error("FRESH_PASSWORD")
        if password is not None:
            yield from self.check_password(caller, password, req)
        return caller

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
            yield from self.commit(PasswordFailed(self.head(caller.uid, req), sid=caller.sid), caller.sid)
            raise AuthError(400, "INVALID_PASSWORD", "the password is incorrect")

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
        retry: int = yield Throttle(counter_key=self.keys.address_hashes(address_idx), now_ms=self.now_ms(), mode="hit",
                                    window_ms=p.password_hash_window * 1000, limit=p.password_hashes_per_address + 1)
        if retry:
            raise AuthError(429, "TOO_MANY_REQUESTS", "too many password checks from this address; try again later",
                            headers=retry_after(self.now_ms() + retry, self.now_ms()))

    def _password_gate(self, account_idx: str, address_idx: str,
                       mode: Literal["peek", "hit", "known"]) -> Flow[tuple[int, bool]]:
        """``lua/password_gate.lua``: (ms until this account may be tried from this address, whether
        the address signed in to the account before)."""
        p, k = self.policies, self.keys
        reply: GateReply = yield PasswordGate(
            pair_key=k.account_address_failures(account_idx, address_idx), account_key=k.account_failures(account_idx),
            known_key=k.known_addresses(account_idx), now_ms=self.now_ms(), mode=mode,
            window_ms=p.sign_in_window * 1000, pair_limit=p.sign_in_failures_per_account,
            account_limit=p.sign_in_failures_per_account_all_addresses, address=address_idx,
            known_ttl_ms=p.known_address_ttl * 1000)
        return reply.retry_ms, reply.known

    def _too_many(self, retry_ms: int) -> AuthError:
        return AuthError(429, "TOO_MANY_REQUESTS", "too many failed passwords; try again later",
                         headers=retry_after(self.now_ms() + retry_ms, self.now_ms()))

    def start_sign_in(self, req: Request | None, caller: Caller, *, remember: bool) -> Flow[SignInResult]:
        """After a first factor: a session when no second factor is due, else a pending challenge
        (or, from a trusted device, a session with the device's trust rotated)."""
        # "No second factor due" is decided from the record store, never from the hot store's copy
        # alone: losing every Redis key must not let a password alone through.
        record = yield from self.load_record(caller)
        self.refuse_locked(caller, record)
        uid = caller.uid
        if not record.two_factor_enabled:
            # After the app's password check (sign-in, or the host's own via begin_second_factor).
            made = yield from self.new_session(req, uid, aal=1, mfa_ms=0, remember=remember, password_checked=True)
            if made is not None:
                return SignInResult(False, [], made[0], [made[1][1]])
            # 2FA was confirmed while this sign-in was under way (the enrolment wrote the factor,
            # then the copy, and ended every other session; this one must not slip past it): the
            # second factor is due after all, with the methods the record has by now.
            caller = yield from self.load(uid)
            record = yield from self.load_record(caller)
        trusted = self.trust_tokens.read(req.cookies().get(self.trust_cookie)) if req else None
        if trusted and trusted[0] == uid:
            new_trust, new_tid = self.trust_tokens.issue(uid)
            token, sid = self.session_tokens.issue(uid)
            k = self.keys
            reply: TrustRotated = yield from self.commit(TrustUse(
                self.head(uid, req), trust_key=k.trust(uid, trusted[1]), new_trust_key=k.trust(uid, new_tid),
                new_session_key=k.session(uid, sid), sessions_key=k.sessions(uid), devices_key=k.trusted_devices(uid),
                new_sid=sid, session_spec=self.session_spec(), remember="1" if remember else "0",
                # The trust was made by a TOTP or backup code answer (challenge_answer.lua), which the
                # session inherits like its mfa time.
                amr=f"{AMR_PASSWORD} {AMR_OTP}"), sid)
            if reply.status == HotStatus.LOCKED:
                raise self.locked_error(int(reply.lock_until))
            if reply.status == HotStatus.OK:
                # The rotated trust keeps its original expiry: the cookie lasts as long.
                trust_left = max(1, math.ceil((int(reply.expires_ms) - self.now_ms()) / 1000))
                return SignInResult(False, [], token, [
                    self.session_cookie_header(token, remember)[1],
                    self.cookie_header(self.trust_cookie, new_trust, trust_left)[1],
                ])
        yield from self.load_record(caller)  # for methods(): the passkeys are counted in the record
        ctoken, cid = self.challenge_tokens.issue(uid)
        yield from self.commit(ChallengeCreate(
            self.head(uid, req), challenge_key=self.keys.challenge(uid, cid), ttl_ms=self.policies.pending_ttl * 1000,
            attempts=self.policies.challenge_attempts, remember="1" if remember else "0"))
        cookie = self.cookie_header(self.challenge_cookie, ctoken, self.policies.pending_ttl)
        return SignInResult(True, self.methods(record), None, [cookie[1]])

    def sign_in_response(self, caller: Caller, result: SignInResult) -> Response:
        cookies = [("set-cookie", c) for c in result.set_cookies]
        if result.two_factor_required:
            payload = {"code": "TWO_FACTOR_REQUIRED", "message": "two-factor authentication required",
                       "twoFactorRedirect": True, "twoFactorMethods": result.methods}
            return json_response(self.config.challenge_status, payload, headers=cookies)
        return self.signed_in_reply(caller, result.token, cookies)

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
            retry: int = yield Throttle(counter_key=self.keys.address_sign_ups(idx), now_ms=self.now_ms(), mode="hit",
                                        window_ms=p.sign_up_window * 1000, limit=p.sign_up_per_address + 1)
            if retry:
                raise AuthError(429, "TOO_MANY_REQUESTS", "too many sign-ups from this address; try again later",
                                headers=retry_after(self.now_ms() + retry, self.now_ms()))
        email = self._email(body)
        typed = body.text("password", max_len=128)
        password = normalize_password(typed)
        name = display_name(body.text("name", max_len=128, required=False), "name", max_len=128)
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
        retry = yield from self.throttle(self.keys.anonymous_records(), "hit", p.anonymous_records_per_window + 1)
        if retry:
            raise AuthError(429, "TOO_MANY_REQUESTS", "too many sign-ups right now; try again later",
                            headers=retry_after(self.now_ms() + retry, self.now_ms()))
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
        caller = yield from self.load(uid)  # the stored record: createdAt is the instant sign-in reports too
        return self.signed_in(caller, made[0], remember=True)

    @staticmethod
    def _email_taken() -> AuthError:
        return AuthError(422, "USER_ALREADY_EXISTS", "a user with this email already exists")

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
            retry = max(retry, (yield from self.throttle(key, "peek", p.sign_in_failures_per_address)))
        if not known:  # past the global cap of anonymous records, only addresses known to the account
            retry = max(retry, (yield from self.throttle(anonymous, "peek", p.anonymous_records_per_window)))
        if retry:
            raise self._too_many(retry)
        yield from self._hash_budget(address_idx)
        # The account by its canonical email, from SQL (the authority; Redis keeps no email index).
        account: Account | None = yield Rec(GetAccountByEmail(email))
        ok = yield from self._password_matches(account, password)
        if not ok or account is None:
            yield from self._password_gate(email_idx, address_idx, "hit")
            for key in address_keys:
                yield from self.throttle(key, "hit", p.sign_in_failures_per_address)
            yield from self.throttle(anonymous, "hit", p.anonymous_records_per_window)
            raise AuthError(401, "INVALID_EMAIL_OR_PASSWORD", "invalid email or password")
        # Renewed at every right password (not only the first), so an address in daily use stays known.
        # Recorded before the second factor: after it would cost a verification a third round trip
        # (DESIGN rule 3; the known list lives in the account's slot, the challenge in the user's).
        yield from self._password_gate(email_idx, address_idx, "known")
        caller = yield from self.load(account.id)
        result = yield from self.start_sign_in(req, caller, remember=remember)
        return self.sign_in_response(caller, result)

    def sign_out(self, req: Request) -> Flow[Response]:
        session = self.session_tokens.read(self.session_token(req))
        pending = self.challenge_tokens.read(req.cookies().get(self.challenge_cookie))
        targets: list[tuple[str, str, str]] = []
        if session:
            targets.append((session[0], session[1], "-"))
        if pending:
            targets.append((pending[0], "", pending[1]))
        for uid, sid, cid in targets:
            yield from self.commit(SessionRevoke(
                self.head(uid, req), session_key=self.keys.session(uid, sid or "-"),
                sessions_key=self.keys.sessions(uid), challenge_key=self.keys.challenge(uid, cid), sid=sid), sid)
        return json_response(200, {"success": True},
                             headers=[self.clear_cookie(self.session_cookie), self.clear_cookie(self.challenge_cookie)])

    def get_session(self, req: Request) -> Flow[Response]:
        caller = yield from self.load_caller(req)
        if caller is None or caller.session is None:
            return json_response(200, None)
        s = caller.session
        exp, aal = int(s.get("exp", "0")), int(s.get("aal", "1"))
        if aal >= 2 and self.policies.aal2_max_lifetime:
            exp = min(exp, int(s.get("auth") or s["created"]) + self.policies.aal2_max_lifetime * 1000)
        session = {"id": caller.sid, "userId": caller.uid, "expiresAt": iso(exp),
                   "createdAt": iso(s.get("created")), "mfaVerifiedAt": iso(s.get("mfa")),
                   "aal": aal, "amr": s.get("amr", "").split()}
        user = self.user_json(caller)
        user["backupCodesNeedRegeneration"] = self.backup_codes_stale(caller)
        return json_response(200, {"session": session, "user": user})


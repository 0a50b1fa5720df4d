"""Passkey flows: registration, passwordless sign-in, passkey as the second factor, management.

Same shape as the other flows: generators yielding store operations, one implementation for both
adapters. Composed on the flows (``Flows.passkeys``) when passkeys are on: py_webauthn is the
'passkeys' extra, so this module is imported only then.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace
from typing import Any, Literal

from ..addresses import throttle_group
from ..crypto import hash_token
from ..effects import Flow, Rec
from ..errors import AuthError
from ..http import Body, Request, Response, display_name, json_response
from ..passkeys import (
    authentication_options,
    credential_id_of,
    registration_options,
    unb64url,
    verify_authentication,
    verify_registration,
)
from ..stores.hot_ops import Ceremony, HotStatus, PasskeySession, PasskeySignIn, Verdict
from ..stores.records import (
    AdvanceSignCount,
    GetPasskey,
    LeasedChange,
    ListPasskeys,
    Passkey,
    RegisterPasskey,
    RemovePasskey,
    RenamePasskey,
    Status,
)
from ..tokens import SealSigner
from .primary import PrimaryFlows
from .session import (
    AMR_PASSKEY,
    AMR_PASSKEY_VERIFIED,
    AMR_PASSWORD,
    PERMANENT_LOCK_MS,
    UNAUTHORIZED,
    Caller,
    Routes,
    Settling,
    iso,
    log,
    retry_after,
)

__all__ = ["PasskeyFlows"]


def _not_found() -> AuthError:
    return AuthError(401, "PASSKEY_NOT_FOUND", "no such passkey")


def _challenge_not_found() -> AuthError:
    return AuthError(400, "CHALLENGE_NOT_FOUND", "the passkey challenge is missing, expired or already used")


def _public(passkey: Passkey) -> dict[str, Any]:
    return {
        "id": passkey.credential_id,
        "name": passkey.name,
        "createdAt": iso(passkey.created_at),
        "deviceType": passkey.device_type,
        "backedUp": passkey.backed_up,
        "aaguid": passkey.aaguid,
    }


class PasskeyFlows:
    #: How long a single-use mark outlives its ceremony (ms). The cookie's end is judged by the app's
    #: Clock, the mark's by the store's (Redis counts PX on its own clock): an app host whose clock is
    #: up to this much behind Redis's must still find the mark, or an answered ceremony would answer again.
    MARK_MARGIN_MS = 60_000

    def __init__(self, flows: PrimaryFlows) -> None:
        self.f = flows
        self.config = flows.config.passkey
        self.seals = SealSigner(flows.keyring.cookie_keys, "passkey")
        self.cookie = ("__Host-" if flows.config.secure_cookies else "") + "banata.passkey"
        #: The cookies this module owns: the ceremony's.
        self.cookies: tuple[str, ...] = (self.cookie,)

    def routes(self) -> Routes:
        """The passkey endpoints (better-auth's passkey plugin)."""
        return {
            "/passkey/generate-register-options": ("GET", self.register_options),
            "/passkey/verify-registration": ("POST", self.verify_registration),
            "/passkey/generate-authenticate-options": ("GET", self.authenticate_options),
            "/passkey/verify-authentication": ("POST", self.verify_authentication),
            "/passkey/list-user-passkeys": ("GET", self.list),
            "/passkey/delete-passkey": ("POST", self.delete),
            "/passkey/update-passkey": ("POST", self.rename),
        }

    # -- ceremonies --------------------------------------------------------------------------
    # A ceremony (kind, challenge, user, name, expiry) travels in the signed banata.passkey cookie,
    # not in the store: asking for options writes nothing, so anonymous callers cannot grow the store
    # with them. The challenge is no secret from the browser that holds it (the options carry it);
    # the signature binds it to its kind, user and expiry. Single use is a mark written when the
    # ceremony is answered (``ceremony.lua``; for sign-in, once the assertion verifies), living as
    # long as the ceremony could, plus a margin for clocks (``MARK_MARGIN_MS``).
    def _begin(self, kind: str, challenge: str, uid: str = "", name: str = "") -> Flow[tuple[str, str]]:
        yield from ()  # a Flow like the others (it used to write the ceremony), so callers need not change
        ttl = self.f.policies.passkey_ceremony_ttl
        token = self.seals.seal({"type": kind, "challenge": challenge, "uid": uid, "name": name,
                                 "exp": self.f.now_ms() + ttl * 1000})
        return self.f.cookie_header(self.cookie, token, ttl)

    def _ceremony(self, req: Request, kind: str) -> dict[str, Any]:
        """The browser's live ceremony of ``kind`` from its cookie (nothing read from the store)."""
        record = self.seals.open(req.cookies().get(self.cookie))
        if record is None or record.get("type") != kind or not isinstance(record.get("challenge"), str) \
                or int(record.get("exp", 0)) <= self.f.now_ms():
            raise _challenge_not_found()
        return record

    def _spend(self, ceremony: dict[str, Any]) -> Flow[None]:
        """Mark the ceremony's challenge used (atomic set-if-absent, for as long as the ceremony
        could live, plus ``MARK_MARGIN_MS``): a challenge answers once, even to parallel requests."""
        now = self.f.now_ms()
        left = int(ceremony["exp"]) - now
        if left <= 0:
            raise _challenge_not_found()
        first: bool = yield Ceremony(mark_key=self.f.keys.ceremony(hash_token(ceremony["challenge"])), now_ms=now,
                                     mode="spend", ttl_ms=left + self.MARK_MARGIN_MS)
        if not first:
            raise _challenge_not_found()

    def _take(self, req: Request, kind: str) -> Flow[dict[str, Any]]:
        """The browser's ceremony, spent: a challenge answers once, and only in its own browser."""
        ceremony = self._ceremony(req, kind)
        yield from self._spend(ceremony)
        return ceremony

    def _list(self, uid: str) -> Flow[tuple[Passkey, ...]]:
        """The user's passkeys (the record store is their only home), oldest first."""
        passkeys: tuple[Passkey, ...] = yield Rec(ListPasskeys(uid))
        return passkeys

    def _factor_change_allowed(self, req: Request, caller: Caller) -> Flow[str]:
        """The factor-change rule re-checked in the hot store now (``factor_change.lua``): OK,
        or the refusal for ``Flows.factor_change_error``."""
        # A passkey never trusts a device (no trustDevice at its sign-in): none is forgotten.
        reply: Verdict = yield from self.f.commit(self.f.factor_change(req, caller, "0"), caller.sid)
        return reply.status

    # -- registration ------------------------------------------------------------------------
    def register_options(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_factor_change(req)
        existing = yield from self._list(caller.uid)
        account = caller.user.get("email") or caller.uid
        options, challenge = registration_options(
            self.config, rp_name=self.config.rp_name or self.f.config.app_name, user_id=caller.uid,
            user_name=account, display_name=caller.user.get("name") or account,
            exclude=[p.credential_id for p in existing])
        name = display_name(req.query.get("name", "")[:64], "name", max_len=64)
        cookie = yield from self._begin("registration", challenge, caller.uid, name)
        return Response(200, options.encode(), [("content-type", "application/json"), ("cache-control", "no-store"),
                                                cookie])

    def verify_registration(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_factor_change(req)
        response = body.data.get("response")
        if not isinstance(response, dict):
            raise AuthError(400, "VALIDATION_ERROR", "'response' must be the browser's credential as JSON")
        name = display_name(body.text("name", max_len=64, required=False), "name", max_len=64)
        ceremony = yield from self._take(req, "registration")
        if ceremony.get("uid") != caller.uid:
            raise _challenge_not_found()
        verified = verify_registration(self.config, response, ceremony["challenge"])
        uid, f = caller.uid, self.f
        passkey = Passkey(verified.credential_id, uid, verified.public_key, verified.sign_count, (),
                          verified.device_type, verified.backed_up, name or ceremony.get("name") or "Passkey",
                          verified.aaguid, f.now_ms(), user_verified=verified.user_verified)
        # Write order: the record store first, then the factor-change re-check in the hot store,
        # undoing the add when that refuses. The unique credential key decides duplicates (two
        # registrations of one credential: one wins). The re-check runs AFTER the commit so that
        # it is not a stale answer: whatever ended this session, or turned 2FA on, before the check
        # is seen by it (and the passkey removed again); whatever comes after the check came after
        # the add, as if the request had been a moment quicker. Checking first would leave a gap,
        # check -> commit, in which such a change goes unseen. A crash between the commit and the
        # re-check keeps the passkey: the request had passed the rule when loaded, an instant before
        # (and the factor-change lease until it runs out).
        # Since it may be undone, the registration holds the user's factor-change lease until this
        # request settles it, as a removal does (RegisterPasskey), while a factor turns 2FA on:
        # while another change of the user's factors is in flight it registers nothing (409), and
        # none runs in its window (a disable's undo removes the passkeys registered in its window:
        # this one's 200 would not hold). With 2FA off it takes none (lease 0, R10-3): no 409 for
        # a lease that guards nothing, and no counter moved under a stalled disable (R10-1); a
        # disable's undo may then still remove it (its window's passkeys go: R7-3).
        added = f.entries(req, caller.sid, ("passkey.registered", passkey.credential_id))
        registered: LeasedChange = yield Rec(RegisterPasskey(passkey, f.now_ms(), audit=added))
        if registered.status is Status.TAKEN:
            raise AuthError(409, "PASSKEY_ALREADY_REGISTERED", "this passkey is already registered")
        if registered.status is Status.BUSY:
            raise f.two_factor_changed()
        settling = Settling(f, uid, added)  # the sinks hear it once settled (R10-2)
        try:
            try:
                status = yield from self._factor_change_allowed(req, caller)
            except AuthError:  # the hot store is down: the rule cannot be checked, so the add is undone
                with suppress(AuthError):  # logged by _undo_add; the hot store's 503 is the answer
                    yield from self._undo_add(req, caller, passkey.credential_id, registered.lease, settling)
                raise
            if status != "OK":
                yield from self._undo_add(req, caller, passkey.credential_id, registered.lease, settling)
                raise f.factor_change_error(status)
            yield from f.end_removal(uid, registered.lease)
        finally:
            settling.emit()
        return json_response(200, _public(passkey), headers=[f.clear_cookie(self.cookie)])

    def _undo_add(self, req: Request, caller: Caller, credential_id: str, lease: int,
                  settling: Settling) -> Flow[None]:
        """Remove a passkey whose registration the re-check refused (audited like any removal),
        releasing its factor-change lease in the same transaction (``RemovePasskey`` with
        ``lease``). A record store that fails here is logged and raises: the passkey then stays,
        and the lease runs out by itself."""
        removed = self.f.entries(req, caller.sid, ("passkey.deleted", credential_id))
        try:
            status = yield Rec(RemovePasskey(caller.uid, credential_id, audit=removed, lease=lease))
        except AuthError as exc:
            settling.emit()
            log.warning("a passkey of user %s stays registered: a registration that was not confirmed could not be "
                        "undone in the record store (%s)", caller.uid, exc.code)
            raise
        settling.emit()  # settled: the registration's rows, then the undo's
        if status is Status.OK:
            self.f.emit_entries(caller.uid, removed)

    # -- authentication ----------------------------------------------------------------------
    def authenticate_options(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.load_caller(req, want_challenge=True)
        allow: list[str] = []
        if caller is not None and (caller.challenge is not None or caller.session is not None):
            allow = [p.credential_id for p in (yield from self._list(caller.uid))]
        options, challenge = authentication_options(self.config, allow=allow)
        cookie = yield from self._begin("authentication", challenge)
        return Response(200, options.encode(), [("content-type", "application/json"), ("cache-control", "no-store"),
                                                cookie])

    def verify_authentication(self, req: Request, body: Body) -> Flow[Response]:
        response = body.data.get("response")
        if not isinstance(response, dict):
            raise AuthError(400, "VALIDATION_ERROR", "'response' must be the browser's credential as JSON")
        cred_id = credential_id_of(response)
        # Spent only once the assertion verifies (below): an anonymous caller's cookie and junk
        # answer write nothing.
        ceremony = self._ceremony(req, "authentication")
        f = self.f
        stored: Passkey | None = yield Rec(GetPasskey(cred_id))
        if stored is None:
            raise _not_found()
        owner = stored.user_id
        pending = f.challenge_tokens.read(req.cookies().get(f.challenge_cookie))
        if pending is not None and pending[0] != owner:
            raise AuthError(401, "AUTHENTICATION_FAILED", "this passkey belongs to another account")
        inner = response.get("response")
        handle = inner.get("userHandle") if isinstance(inner, dict) else None
        if handle:
            try:
                claimed = unb64url(str(handle)).decode()
            except (ValueError, UnicodeError):
                claimed = ""
            if claimed != owner:
                raise AuthError(401, "AUTHENTICATION_FAILED", "the passkey's user handle does not match its owner")
        new_count, user_verified = verify_authentication(self.config, response, ceremony["challenge"],
                                                          stored.public_key)
        # Counted per address before anything is written: anyone can register a software passkey on
        # an account of their own, and each sign-in writes a mark and a session (junk answers, refused
        # above, write nothing and are not counted).
        address_idx = f.keyring.index(throttle_group(req.client, f.policies) or "-")
        retry = yield from f.throttle(f.keys.address_passkey_sign_ins(address_idx), "hit",
                                      f.policies.passkey_sign_ins_per_address + 1)
        if retry:
            raise AuthError(429, "TOO_MANY_REQUESTS", "too many passkey sign-ins from this address; try again later",
                            headers=retry_after(f.now_ms() + retry, f.now_ms()))
        yield from self._spend(ceremony)
        mode: Literal["second_factor", "passwordless"] = "second_factor" if pending is not None else "passwordless"
        # A passkey without user verification is one factor, something you have (NIST SP 800-63B-4):
        # it never opens a sign-in by itself. Nor does one registered without it, whatever this
        # assertion reports: a thief may set a PIN on a stolen key that had none.
        if mode == "passwordless" and not (user_verified and stored.user_verified):
            raise AuthError(401, "AUTHENTICATION_FAILED",
                            "this passkey did not verify you with a PIN or biometric (or was registered without "
                            "one), so it cannot sign in on its own; sign in with your password and use it as the "
                            "second factor, or register it again with its PIN")
        caller = yield from f.load(owner, cid=pending[1] if pending else "")
        # Refusals already certain are given before the sign count moves (passkey_sign_in.lua
        # decides them again, atomically, below).
        if pending is not None and caller.challenge is None:
            raise AuthError(401, *UNAUTHORIZED)
        lock = caller.locked_until(f.now_ms())
        if lock:
            raise f.locked_error(lock)
        k = f.keys
        token, sid = f.session_tokens.issue(owner)
        # Write order: the sign count in the record store first (the clone check and the permanent
        # lock: one conditional UPDATE, audited in its transaction), then the session in the hot store. A crash, or a
        # refusal of passkey_sign_in.lua, in between leaves the count advanced without a session:
        # safe (the next assertion counts higher still). The reverse could make a session from an
        # assertion whose count a racing twin (a clone) had already used.
        used = f.entries(req, sid, ("passkey.authenticated", cred_id))
        cloned = f.entries(req, "", ("passkey.clone_suspected", cred_id))
        advanced = yield Rec(AdvanceSignCount(owner, cred_id, new_count, f.now_ms(), audit=used,
                                              audit_on_regress=cloned))
        if advanced is Status.LOCKED:  # the permanent lock, read from the record (R4-5)
            raise f.locked_error(f.now_ms() + PERMANENT_LOCK_MS)
        if advanced is Status.REGRESSED:
            f.emit_entries(owner, cloned)
            raise AuthError(401, "AUTHENTICATION_FAILED",
                            "the passkey's signature counter went backwards; it may have been cloned")
        if advanced is not Status.ACCEPTED:  # removed since it was read
            raise _not_found()
        f.emit_entries(owner, used)
        remember = body.data.get("rememberMe", True) is not False
        # A passwordless sign-in in a browser already signed in as the owner is a step-up: like
        # verify-totp's, it rotates the session (the old one, which a thief may hold, ends).
        current = f.session_tokens.read(f.session_token(req)) if mode == "passwordless" else None
        replaced = current[1] if current is not None and current[0] == owner else ""
        amr = AMR_PASSKEY_VERIFIED if user_verified else AMR_PASSKEY
        if pending is not None:  # a password opened every pending sign-in (challenge_create.lua)
            amr = f"{AMR_PASSWORD} {amr}"
        reply: PasskeySession = yield from f.commit(PasskeySignIn(
            f.head(owner, req), challenge_key=k.challenge(owner, pending[1] if pending else "-"),
            new_session_key=k.session(owner, sid), sessions_key=k.sessions(owner),
            replaced_key=k.session(owner, replaced or "-"), mode=mode, new_sid=sid, session_spec=f.session_spec(),
            remember="1" if remember else "0", replaced_sid=replaced, amr=amr), sid)
        status = reply.status
        if status == HotStatus.SESSION:
            # A pending sign-in keeps the rememberMe its password step chose (the script says which).
            return f.signed_in(caller, token, remember=reply.remember == "1", clear_challenge=pending is not None,
                               cookies=[f.clear_cookie(self.cookie)])
        if status == HotStatus.SAME_FACTOR:
            raise AuthError(401, "AUTHENTICATION_FAILED",
                            "a passkey cannot answer this sign-in; use your authenticator app or a backup code")
        if status == HotStatus.LOCKED:
            raise f.locked_error(int(reply.lock_until))
        raise AuthError(401, *UNAUTHORIZED)

    # -- management --------------------------------------------------------------------------
    def list(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_session(req)
        passkeys = yield from self._list(caller.uid)
        return json_response(200, [_public(p) for p in passkeys])

    def _change(self, req: Request) -> Flow[Caller]:
        """The caller of a rename or delete, with the factor-change rule checked when loaded and
        again just before the change. Here the re-check comes first (unlike registration): neither
        change lets anyone in, and one that commits an instant after a revocation changes what the
        session could still change an instant before."""
        caller = yield from self.f.require_factor_change(req)
        status = yield from self._factor_change_allowed(req, caller)
        if status != "OK":
            raise self.f.factor_change_error(status)
        return caller

    def delete(self, req: Request, body: Body) -> Flow[Response]:
        cred_id = body.text("id", max_len=1400)
        caller = yield from self._change(req)
        removed = self.f.entries(req, caller.sid, ("passkey.deleted", cred_id))
        if (yield Rec(RemovePasskey(caller.uid, cred_id, audit=removed))) is not Status.OK:
            raise _not_found()
        self.f.emit_entries(caller.uid, removed)
        return json_response(200, {"status": True})

    def rename(self, req: Request, body: Body) -> Flow[Response]:
        cred_id = body.text("id", max_len=1400)
        name = display_name(body.text("name", max_len=64), "name", max_len=64, required=True)
        caller = yield from self._change(req)
        stored: Passkey | None = yield Rec(GetPasskey(cred_id))
        # The UPDATE decides (it matches the owner too); the read above only shapes the answer.
        if stored is None or (yield Rec(RenamePasskey(caller.uid, cred_id, name))) is not Status.OK:
            raise _not_found()
        return json_response(200, {"passkey": _public(replace(stored, name=name))})

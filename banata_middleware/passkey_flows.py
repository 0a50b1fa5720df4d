"""Passkey flows: registration, passwordless sign-in, passkey as the second factor, management.

Same shape as ``flows``: generators yielding store operations, one implementation for both adapters.
"""

from __future__ import annotations

import json
from typing import Any

from .addresses import throttle_group
from .crypto import hash_token
from .effects import Flow, Op
from .errors import AuthError
from .flows import AMR_PASSKEY, AMR_PASSKEY_VERIFIED, AMR_PASSWORD, UNAUTHORIZED, Caller, Flows, _iso, _retry_after
from .http import Body, Request, Response, json_response
from .passkeys import (
    authentication_options,
    credential_id_of,
    registration_options,
    unb64url,
    verify_authentication,
    verify_registration,
)
from .tokens import SealSigner

__all__ = ["PasskeyFlows"]


def _not_found() -> AuthError:
    return AuthError(401, "PASSKEY_NOT_FOUND", "no such passkey")


def _challenge_not_found() -> AuthError:
    return AuthError(400, "CHALLENGE_NOT_FOUND", "the passkey challenge is missing, expired or already used")


def _public(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "name": record.get("name", ""),
        "createdAt": _iso(record.get("createdAt")),
        "deviceType": record.get("deviceType"),
        "backedUp": bool(record.get("backedUp")),
        "aaguid": record.get("aaguid"),
    }


class PasskeyFlows:
    #: How long a single-use mark outlives its ceremony (ms). The cookie's end is judged by the app's
    #: Clock, the mark's by the store's (Redis counts PX on its own clock): an app host whose clock is
    #: up to this much behind Redis's must still find the mark, or an answered ceremony would answer again.
    MARK_MARGIN_MS = 60_000

    def __init__(self, flows: Flows) -> None:
        self.f = flows
        self.config = flows.config.passkey
        self.seals = SealSigner(flows.keyring.cookie_keys, "passkey")
        self.cookie = ("__Host-" if flows.config.secure_cookies else "") + "banata.passkey"

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
        return self.f._cookie(self.cookie, token, ttl)

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
        first = yield Op("ceremony", (self.f.keys.ceremony(hash_token(ceremony["challenge"])),),
                         (now, "spend", left + self.MARK_MARGIN_MS))
        if not first:
            raise _challenge_not_found()

    def _take(self, req: Request, kind: str) -> Flow[dict[str, Any]]:
        """The browser's ceremony, spent: a challenge answers once, and only in its own browser."""
        ceremony = self._ceremony(req, kind)
        yield from self._spend(ceremony)
        return ceremony

    def _list(self, uid: str) -> Flow[dict[str, dict[str, Any]]]:
        flat = yield Op("passkey_list", (self.f.keys.passkeys(uid),), (self.f.now_ms(),))
        return {str(flat[i]): json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    # -- registration ------------------------------------------------------------------------
    def register_options(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_factor_change(req)
        existing = yield from self._list(caller.uid)
        account = caller.user.get("email") or caller.uid
        options, challenge = registration_options(
            self.config, rp_name=self.config.rp_name or self.f.config.app_name, user_id=caller.uid,
            user_name=account, display_name=caller.user.get("name") or account, exclude=list(existing))
        name = req.query.get("name", "")[:64]
        cookie = yield from self._begin("registration", challenge, caller.uid, name)
        return Response(200, options.encode(), [("content-type", "application/json"), ("cache-control", "no-store"),
                                                cookie])

    def verify_registration(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_factor_change(req)
        response = body.data.get("response")
        if not isinstance(response, dict):
            raise AuthError(400, "VALIDATION_ERROR", "'response' must be the browser's credential as JSON")
        name = body.text("name", max_len=64, required=False)
        ceremony = yield from self._take(req, "registration")
        if ceremony.get("uid") != caller.uid:
            raise _challenge_not_found()
        passkey = verify_registration(self.config, response, ceremony["challenge"])
        uid = caller.uid
        index_key = self.f.keys.credential(hash_token(passkey.credential_id))
        taken = yield Op("index", (index_key,), (self.f.now_ms(), "claim", uid))
        if taken:
            raise AuthError(409, "PASSKEY_ALREADY_REGISTERED", "this passkey is already registered")
        record = {
            "id": passkey.credential_id, "name": name or ceremony.get("name") or "Passkey",
            "publicKey": passkey.public_key, "signCount": passkey.sign_count, "createdAt": self.f.now_ms(),
            "deviceType": passkey.device_type, "backedUp": passkey.backed_up, "aaguid": passkey.aaguid,
            # Registered without user verification: one factor for good (passkey_sign_in.lua), even
            # if its later assertions report UV (a thief can set a PIN on a stolen key that had none).
            "uv": passkey.user_verified,
        }
        session_key, max_age_ms = self.f.factor_change_args(caller)
        reply = yield from self.f._commit("passkey_add", uid, (self.f.keys.passkeys(uid), *session_key),
                                          (passkey.credential_id, json.dumps(record), max_age_ms), req, caller.sid)
        if reply[0] == "EXISTS":
            raise AuthError(409, "PASSKEY_ALREADY_REGISTERED", "this passkey is already registered")
        if reply[0] != "OK":
            # Refused by the factor-change re-check, nothing stored: free the id claimed above.
            yield Op("index", (index_key,), (self.f.now_ms(), "release", uid))
            raise self.f.factor_change_error(reply[0])
        return json_response(200, _public(record), headers=[self.f._clear(self.cookie)])

    # -- authentication ----------------------------------------------------------------------
    def authenticate_options(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.load_caller(req, want_challenge=True)
        allow: list[str] = []
        if caller is not None and (caller.challenge is not None or caller.session is not None):
            allow = list((yield from self._list(caller.uid)))
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
        owner = yield Op("index", (f.keys.credential(hash_token(cred_id)),), (f.now_ms(), "get", ""))
        if not owner:
            raise _not_found()
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
        passkeys = yield from self._list(owner)
        stored = passkeys.get(cred_id)
        if stored is None:
            raise _not_found()
        new_count, user_verified = verify_authentication(self.config, response, ceremony["challenge"],
                                                          stored["publicKey"])
        # Counted per address before anything is written: anyone can register a software passkey on
        # an account of their own, and each sign-in writes a mark and a session (junk answers, refused
        # above, write nothing and are not counted).
        address_idx = f.keyring.index(throttle_group(req.client, f.policies) or "-")
        retry = yield from f._throttle(f.keys.address_passkey_sign_ins(address_idx), "hit",
                                       f.policies.passkey_sign_ins_per_address + 1)
        if retry:
            raise AuthError(429, "TOO_MANY_REQUESTS", "too many passkey sign-ins from this address; try again later",
                            headers=_retry_after(f.now_ms() + retry, f.now_ms()))
        yield from self._spend(ceremony)
        caller = yield from f.load(owner)
        p, k = f.policies, f.keys
        token, sid = f.session_tokens.issue(owner)
        remember = body.data.get("rememberMe", True) is not False
        mode = "second_factor" if pending is not None else "passwordless"
        # A passwordless sign-in in a browser already signed in as the owner is a step-up: like
        # verify-totp's, it rotates the session (the old one, which a thief may hold, ends).
        current = f.session_tokens.read(f._session_token(req)) if mode == "passwordless" else None
        replaced = current[1] if current is not None and current[0] == owner else ""
        amr = AMR_PASSKEY_VERIFIED if user_verified else AMR_PASSKEY
        if pending is not None:  # a password opened every pending sign-in (challenge_create.lua)
            amr = f"{AMR_PASSWORD} {amr}"
        reply = yield from f._commit(
            "passkey_sign_in", owner,
            (k.passkeys(owner), k.challenge(owner, pending[1] if pending else "-"), k.session(owner, sid),
             k.sessions(owner), k.session(owner, replaced or "-")),
            (cred_id, new_count, mode, "1" if user_verified else "0", sid, f.session_spec(),
             "1" if remember else "0", replaced, amr), req, sid)
        status = reply[0]
        if status == "SESSION":
            # A pending sign-in keeps the rememberMe its password step chose (the script says which).
            remembered = reply[2] == "1"
            headers = [f._cookie(f.session_cookie, token, p.session_ttl if remembered else None),
                       f._clear(self.cookie)]
            if pending is not None:
                headers.append(f._clear(f.challenge_cookie))
            return json_response(200, {"token": token, "user": f.user_json(caller)}, headers=headers)
        if status == "UV_REQUIRED":
            raise AuthError(401, "AUTHENTICATION_FAILED",
                            "this passkey did not verify you with a PIN or biometric (or was registered without "
                            "one), so it cannot sign in on its own; sign in with your password and use it as the "
                            "second factor, or register it again with its PIN")
        if status == "SAME_FACTOR":
            raise AuthError(401, "AUTHENTICATION_FAILED",
                            "a passkey cannot answer this sign-in; use your authenticator app or a backup code")
        if status == "LOCKED":
            raise f.locked_error(int(reply[2]))
        if status == "CLONE":
            raise AuthError(401, "AUTHENTICATION_FAILED",
                            "the passkey's signature counter went backwards; it may have been cloned")
        if status == "GONE":
            raise AuthError(401, *UNAUTHORIZED)
        raise _not_found()

    # -- management --------------------------------------------------------------------------
    def list(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_session(req)
        passkeys = yield from self._list(caller.uid)
        items = sorted(passkeys.values(), key=lambda r: int(r.get("createdAt", 0)))
        return json_response(200, [_public(r) for r in items])

    def _update(self, req: Request, body: Body, mode: str) -> Flow[tuple[Caller, dict[str, Any]]]:
        caller = yield from self.f.require_factor_change(req)
        cred_id = body.text("id", max_len=1400)
        name = body.text("name", max_len=64) if mode == "rename" else ""
        session_key, max_age_ms = self.f.factor_change_args(caller)
        reply = yield from self.f._commit("passkey_update", caller.uid,
                                          (self.f.keys.passkeys(caller.uid), *session_key),
                                          (mode, cred_id, name, max_age_ms), req, caller.sid)
        if reply[0] == "GONE":
            raise _not_found()
        if reply[0] != "OK":
            raise self.f.factor_change_error(reply[0])
        return caller, json.loads(reply[2])

    def delete(self, req: Request, body: Body) -> Flow[Response]:
        caller, record = yield from self._update(req, body, "delete")
        yield Op("index", (self.f.keys.credential(hash_token(record["id"])),),
                 (self.f.now_ms(), "release", caller.uid))
        return json_response(200, {"status": True})

    def rename(self, req: Request, body: Body) -> Flow[Response]:
        _, record = yield from self._update(req, body, "rename")
        return json_response(200, {"passkey": _public(record)})


"""A user's sessions and trusted devices: list them, end them (issue 14, section 2).

The session endpoints are better-auth's (``/list-sessions``, ``/revoke-session``,
``/revoke-other-sessions``, ``/revoke-sessions``), so its client's ``listSessions``,
``revokeSession``, ``revokeOtherSessions`` and ``revokeSessions`` work unchanged. One difference:
better-auth lists each session's token and revokes by token; we never store tokens, so a listed
session's ``token`` is its id (the stored hash), and ``revoke-session`` takes that id (or a session
token of the caller's, which is hashed to it). Trusted devices have endpoints of their own under
``/two-factor`` (better-auth has none).

Ending sessions or devices needs what changing a factor needs (``PrimaryFlows.require_factor_change``:
with 2FA on, a second factor from the last ``factor_change_max_age``), checked again atomically in
the script that ends them (``session_end.lua``, ``trust_end.lua``). Same shape as the other flows:
generators yielding store operations, one implementation for both adapters.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from ..effects import Flow
from ..errors import AuthError
from ..http import Body, Request, Response, json_response
from ..stores.hot_ops import HotStatus, SessionEnd, SessionList, SessionsEnded, TrustList
from .primary import PrimaryFlows
from .session import Caller, Routes, iso

__all__ = ["SessionFlows"]

_ID = re.compile(r"[0-9a-f]{64}")  # a session or trust id as stored: hash_token's SHA-256 hex


def _amr(value: str | None) -> list[str] | None:
    """The session's RFC 8176 methods, as stored (a JSON list, or words separated by spaces or
    commas); None when the session has none recorded."""
    if not value:
        return None
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return [str(m) for m in parsed] if isinstance(parsed, list) else None
    return [m for m in re.split(r"[\s,]+", value) if m]


class SessionFlows:
    """Composed on the flows (``Flows.sessions``); owns no cookie of its own (it clears the core's)."""

    def __init__(self, flows: PrimaryFlows) -> None:
        self.f = flows
        self.cookies: tuple[str, ...] = ()

    def routes(self) -> Routes:
        """better-auth's session endpoints, and (with 2FA on) the trusted-device ones."""
        routes: Routes = {
            "/list-sessions": ("GET", self.list_sessions),
            "/revoke-session": ("POST", self.revoke_session),
            "/revoke-other-sessions": ("POST", self.revoke_other_sessions),
            "/revoke-sessions": ("POST", self.revoke_sessions),
        }
        if self.f.config.auth_methods.two_factor:
            routes.update({
                "/two-factor/list-trusted-devices": ("GET", self.list_trusted_devices),
                "/two-factor/revoke-trusted-device": ("POST", self.revoke_trusted_device),
                "/two-factor/revoke-trusted-devices": ("POST", self.revoke_trusted_devices),
            })
        return routes

    # -- sessions (better-auth's endpoints) ------------------------------------------------------
    def list_sessions(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_session(req)
        k = self.f.keys
        listed: list[tuple[str, dict[str, str]]] = yield SessionList(
            user_key=k.user(caller.uid), sessions_key=k.sessions(caller.uid),
            session_key=k.session(caller.uid, caller.sid), now_ms=self.f.now_ms())
        items = [self._session_json(caller, sid, s) for sid, s in listed]
        items.sort(key=lambda s: s["updatedAt"] or "", reverse=True)  # the latest used first,
        items.sort(key=lambda s: not s["current"])  # after the caller's own
        return json_response(200, items)

    def _session_json(self, caller: Caller, sid: str, s: dict[str, str]) -> dict[str, Any]:
        seen = iso(s.get("seen") or s.get("created"))
        item: dict[str, Any] = {
            "id": sid,
            "token": sid,  # not the token (never stored): the id, which revoke-session takes back
            "userId": caller.uid,
            "createdAt": iso(s.get("created")),
            "updatedAt": seen,  # better-auth's name; here the last use, to the minute
            "lastUsedAt": seen,
            "expiresAt": iso(s.get("exp")),
            "ipAddress": s.get("ip") or None,
            "userAgent": s.get("ua") or None,
            "aal": int(s.get("aal") or 1),
            "mfaVerifiedAt": iso(s.get("mfa")),
            "current": sid == caller.sid,
        }
        amr = _amr(s.get("amr"))
        if amr is not None:
            item["amr"] = amr
        return item

    def _end_sessions(self, req: Request, mode: Literal["one", "others", "all"], target: str = "") -> Flow[Response]:
        caller = yield from self.f.require_factor_change(req)
        k = self.f.keys
        session_key, max_age_ms = self.f.factor_change_args(caller)
        reply: SessionsEnded = yield from self.f.commit(SessionEnd(
            self.f.head(caller.uid, req), session_key=session_key, sessions_key=k.sessions(caller.uid), mode=mode,
            sid=caller.sid, max_age_ms=max_age_ms, target_sid=target), caller.sid)
        if reply.status != HotStatus.OK:
            raise self.f.factor_change_error(reply.status)
        # As better-auth: ending the caller's own session (or all of them) clears its cookie.
        headers = [self.f.clear_cookie(self.f.session_cookie)] if int(reply.current) or mode == "all" else []
        return json_response(200, {"status": True}, headers=headers)

    def revoke_session(self, req: Request, body: Body) -> Flow[Response]:
        """``{token}``: a listed session's id (its ``token`` in the list), or a session token of the
        caller's own. Anything else ends nothing and answers ``{status: true}``, as better-auth does."""
        value = body.text("token", max_len=512)
        # Only ids in the caller's own index are ended (session_end.lua): another user's token or
        # id ends nothing.
        named = self.f.session_tokens.read(value)
        target = named[1] if named is not None else value if _ID.fullmatch(value) else ""
        return (yield from self._end_sessions(req, "one", target))

    def revoke_other_sessions(self, req: Request, body: Body) -> Flow[Response]:
        return (yield from self._end_sessions(req, "others"))

    def revoke_sessions(self, req: Request, body: Body) -> Flow[Response]:
        return (yield from self._end_sessions(req, "all"))

    # -- trusted devices (ours) ------------------------------------------------------------------
    def _current_device(self, req: Request, uid: str) -> str:
        trusted = self.f.trust_tokens.read(req.cookies().get(self.f.trust_cookie))
        return trusted[1] if trusted and trusted[0] == uid else ""

    def list_trusted_devices(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_session(req)
        k = self.f.keys
        listed: list[tuple[str, dict[str, str]]] = yield TrustList(
            user_key=k.user(caller.uid), devices_key=k.trusted_devices(caller.uid), trust_key=k.trust(caller.uid, "-"),
            now_ms=self.f.now_ms())
        current = self._current_device(req, caller.uid)
        items = [{
            "id": tid,
            "createdAt": iso(t.get("created") or t.get("mfa")),
            "lastUsedAt": iso(t.get("seen") or t.get("created") or t.get("mfa")),
            "expiresAt": iso(t.get("exp")),
            "ipAddress": t.get("ip") or None,
            "userAgent": t.get("ua") or None,
            "current": tid == current,
        } for tid, t in listed]
        items.sort(key=lambda d: d["lastUsedAt"] or "", reverse=True)
        items.sort(key=lambda d: not d["current"])
        return json_response(200, items)

    def _forget(self, req: Request, mode: Literal["one", "all"], tid: str) -> Flow[Response]:
        caller = yield from self.f.require_factor_change(req)
        yield from self.f.forget_devices(req, caller, mode, tid)
        this_browser = mode == "all" or tid == self._current_device(req, caller.uid)
        headers = [self.f.clear_cookie(self.f.trust_cookie)] if this_browser else []
        return json_response(200, {"status": True}, headers=headers)

    def revoke_trusted_device(self, req: Request, body: Body) -> Flow[Response]:
        tid = body.text("id", max_len=128)
        if not _ID.fullmatch(tid):
            raise AuthError(400, "VALIDATION_ERROR", "'id' must be the id of a listed trusted device")
        return (yield from self._forget(req, "one", tid))

    def revoke_trusted_devices(self, req: Request, body: Body) -> Flow[Response]:
        return (yield from self._forget(req, "all", "-"))

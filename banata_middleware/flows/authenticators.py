"""Several authenticator apps per user (issue 15): list, rename and remove them.

Adding one is better-auth's ``enable`` while two-factor is on, and confirming it is its
``verify-totp`` with the new app's code (``two_factor``); this module serves the three endpoints
better-auth has no equivalent of, under paths of its own (``/two-factor/*-authenticator*``).
The apps live in the record store only (``totp_factors``, one row each, every one with its own
secret and its own replay guard); the hot store's copy knows only whether two-factor is on.
Composed on the flows (``Flows.authenticators``) when two-factor is on.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..effects import Flow, Rec
from ..errors import AuthError
from ..http import Body, Request, Response, display_name, json_response
from ..stores.hot_ops import HotStatus, TwoFactorDisable, Verdict
from ..stores.records import (
    DEFAULT_NAME,
    AuthenticatorRemoval,
    RemoveAuthenticator,
    RenameTotpFactor,
    Status,
    TotpFactor,
    UserRecord,
)
from .session import Caller, Routes, Settling, iso

if TYPE_CHECKING:
    from .two_factor import TwoFactorFlows

__all__ = ["MAX_AUTHENTICATORS", "PENDING_TTL_MS", "AuthenticatorFlows", "authenticator_name", "default_name",
           "listed", "pending", "public"]

#: At most this many authenticator apps per user, counting those still being added.
MAX_AUTHENTICATORS = 10
#: An app added while two-factor is on must be confirmed (its first code) within this time; an
#: older unfinished one is not listed, confirms nothing, and goes at the user's next add.
PENDING_TTL_MS = 15 * 60 * 1000


def pending(record: UserRecord, now_ms: int) -> list[TotpFactor]:
    """The user's apps being added (unconfirmed, recent enough), newest first."""
    fresh = [f for f in record.totp if f.confirmed_at is None and f.created_at >= now_ms - PENDING_TTL_MS]
    return sorted(fresh, key=lambda f: f.created_at, reverse=True)


def listed(record: UserRecord, now_ms: int) -> list[TotpFactor]:
    """What the list shows: the confirmed apps and those being added, oldest first. Only while
    two-factor is on: without a confirmed app, nothing is being added either."""
    if not record.two_factor_enabled:
        return []
    keep = {f.id for f in pending(record, now_ms)}
    return [f for f in record.totp if f.confirmed_at is not None or f.id in keep]


def public(factor: TotpFactor) -> dict[str, Any]:
    """An app as the endpoints show it: never its secret."""
    return {
        "id": factor.id,
        "name": factor.name,
        "createdAt": iso(factor.created_at),
        "lastUsedAt": iso(factor.last_used_at),
        "confirmed": factor.confirmed_at is not None,
    }


def default_name(record: UserRecord) -> str:
    """"Authenticator" for a user's first app (one whose only factor was codes by message), then
    "Authenticator 2", "Authenticator 3", ...: the first number no app of the user is named after."""
    if not any(f.confirmed_at is not None for f in record.totp):
        return DEFAULT_NAME  # an unfinished setup of that name is replaced (AddAuthenticator)
    taken = {f.name.casefold() for f in record.totp}
    n = 2
    while f"authenticator {n}" in taken:
        n += 1
    return f"Authenticator {n}"


def authenticator_name(body: Body, *, required: bool) -> str:
    """The ``name`` field: NFC, trimmed, 1-64 characters, no control or invisible formatting
    characters (``http.display_name``). Optional: absent, null, "" or blank is "" (the caller picks
    the default name). Anything else is refused with 400 ``VALIDATION_ERROR``: a better-auth client
    sends no name."""
    return display_name(body.text("name", max_len=64, required=required), "name", max_len=64, required=required)


def _last_factor(record: UserRecord, factor_id: str) -> bool:
    """Whether removing app ``factor_id`` leaves ``record`` without a second factor (as read: the
    record store decides again, under its locks)."""
    confirmed = [f.id for f in record.totp if f.confirmed_at is not None]
    return confirmed == [factor_id] and not record.otp


def password_needed() -> AuthError:
    """The answer ``disable`` gives without its ``password`` (400 VALIDATION_ERROR), naming why."""
    return AuthError(400, "VALIDATION_ERROR", "'password' must be a non-empty string: removing your last "
                                              "second factor turns two-factor authentication off")


def not_found() -> AuthError:
    return AuthError(404, "AUTHENTICATOR_NOT_FOUND", "no such authenticator app")


def name_taken() -> AuthError:
    return AuthError(409, "AUTHENTICATOR_NAME_TAKEN", "another of your authenticator apps has that name")


class AuthenticatorFlows:
    def __init__(self, flows: TwoFactorFlows) -> None:
        self.f = flows
        #: The cookies this module owns: none.
        self.cookies: tuple[str, ...] = ()

    def routes(self) -> Routes:
        return {
            "/two-factor/list-authenticators": ("GET", self.list),
            "/two-factor/rename-authenticator": ("POST", self.rename),
            "/two-factor/remove-authenticator": ("POST", self.remove),
        }

    def list(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.f.require_session(req)
        record = yield from self.f.load_record(caller)
        return json_response(200, [public(f) for f in listed(record, self.f.now_ms())])

    def _recheck(self, req: Request, caller: Caller, *, forget_devices: bool = False) -> Flow[None]:
        """The factor-change rule, checked when the caller was loaded, checked again in the hot
        store just before a rename or removal (``factor_change.lua``), as for passkeys: neither
        change lets anyone in, so the re-check comes first. ``forget_devices``: see ``remove``."""
        f = self.f
        # 'on': judged as with 2FA on when the record had it (the copy may say off by now).
        on = caller.record is not None and caller.record.two_factor_enabled
        reply: Verdict = yield from f.commit(f.factor_change(req, caller, "on" if on else "0",
                                                             forget_devices=forget_devices), caller.sid)
        if reply.status != HotStatus.OK:
            raise f.factor_change_error(reply.status)

    def rename(self, req: Request, body: Body) -> Flow[Response]:
        factor_id = body.text("id", max_len=64)
        name = authenticator_name(body, required=True)
        caller = yield from self.f.require_factor_change(req)
        yield from self._recheck(req, caller)
        record = yield from self.f.load_record(caller)  # read once per request: already loaded
        factor = next((x for x in listed(record, self.f.now_ms()) if x.id == factor_id), None)
        if factor is None:
            raise not_found()
        # Names compare without case, as MySQL's default collation does, so every backend agrees.
        if any(x.id != factor_id and x.name.casefold() == name.casefold() for x in record.totp):
            raise name_taken()
        status = yield Rec(RenameTotpFactor(caller.uid, factor_id, name))
        if status is Status.TAKEN:  # a concurrent add or rename of that name won the unique index
            raise name_taken()
        if status is not Status.OK:
            raise not_found()
        return json_response(200, {"authenticator": public(replace(factor, name=name))})

    def remove(self, req: Request, body: Body) -> Flow[Response]:
        """Remove an app. ``password?``: needed when the removal turns two-factor off (the user's
        last second factor), as ``disable`` and ``disable-otp`` need it (R6-4: a stolen fresh
        session alone must not turn 2FA off by another name); checked whenever given."""
        factor_id = body.text("id", max_len=64)
        password = body.text("password", max_len=128, required=False) or None
        caller = yield from self.f.require_factor_change(req, password)
        record = caller.record
        if record is not None and not any(x.id == factor_id for x in record.totp):
            raise not_found()  # as read; the record store decides again below
        if password is None and record is not None and _last_factor(record, factor_id):
            raise password_needed()
        # Removing a confirmed app while another factor stays forgets every trusted device of the
        # user in the re-check's step, when it allows the change: the app may be removed because
        # it was lost or its secret leaked, and a browser trusted by its codes must ask for the
        # second factor again (which factor trusted a device is not recorded, so all go). An
        # unfinished app never answered a sign-in: cancelling it forgets none. The last app's
        # removal turns 2FA off, whose own step voids them (two_factor_disable.lua, as disable's,
        # so its undo has none to put back). Unlike disable-otp's, this step comes before the
        # record store's removal (which has no undo when another app remains), so a removal the
        # record store then refuses in a race (BUSY, NOT_FOUND, CHANGED) has forgotten them
        # anyway: the safe direction; the checks above, on the record as read, keep the ordinary
        # refusals from doing so.
        forget = record is None or (any(x.id == factor_id and x.confirmed_at is not None for x in record.totp)
                                    and not _last_factor(record, factor_id))
        yield from self._recheck(req, caller, forget_devices=forget)
        f, uid, since = self.f, caller.uid, self.f.now_ms()
        removed = f.entries(req, caller.sid, ("two_factor.authenticator_removed", factor_id))
        off = f.entries(req, caller.sid, ("two_factor.disabled", "last_authenticator"))
        # The record store decides, with every app of the user locked: of two removals at once,
        # exactly one removes the last, and turns two-factor off with it (its audit rows too), or,
        # without the password, removes nothing. While another change of the user's factors is
        # in flight (its factor-change lease is live: its undo would put back over this one, R8-2),
        # nothing is removed and the answer is 409; the removal of the last app keeps the lease
        # until this request settles it (finish_disable).
        result: AuthenticatorRemoval = yield Rec(RemoveAuthenticator(uid, factor_id, since, removed, off,
                                                                     may_turn_off=password is not None))
        if result.status is Status.BUSY:
            raise f.two_factor_changed()
        if result.status is Status.CHANGED:
            raise password_needed()
        if result.status is not Status.OK:
            raise not_found()
        # The sinks hear the removal once it is settled (R10-2: Settling): at once when it holds
        # no lease (another app remains), after the hot half and its release or undo otherwise.
        settling = Settling(f, uid, (*removed, *off) if result.two_factor_off else removed)
        if result.removed is None:
            settling.emit()
        else:
            # Two-factor went off: as ``disable``, the record first, then two_factor_disable.lua
            # re-checks the factor-change rule at this moment and updates the copy (finish_disable:
            # a session that ended or went stale meanwhile is refused, and a hot store that fails
            # answers 503; either way the factor is put back, and a pass releases the
            # factor-change lease). A crash between leaves a copy saying on for a user without a
            # factor, which the next flow that reads the record repairs (and the lease until it
            # runs out); never the other way round. (An app removed while others remain has no hot half: the
            # re-check ran before the change, in _change, so a 503 there changed nothing either.)
            session_key, max_age_ms = f.factor_change_args(caller)
            disable = TwoFactorDisable(
                f.head(uid, req), pending_codes_key=f.keys.pending_backup_codes(uid), session_key=session_key,
                sessions_key=f.keys.sessions(uid), sid=caller.sid, max_age_ms=max_age_ms, mode="confirmed")
            try:
                reply = yield from f.finish_disable(req, caller, result.removed, disable, since, settling)
            finally:
                settling.emit()
            if reply.status != HotStatus.OK:
                raise f.factor_change_error(reply.status)
        return json_response(200, {"status": True, "twoFactorEnabled": not result.two_factor_off})

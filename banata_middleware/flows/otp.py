"""One-time codes by message (email or SMS) as a second factor (issue 15, section 1).

better-auth's ``POST /two-factor/send-otp`` and ``POST /two-factor/verify-otp {code, trustDevice?}``,
with its shapes, so ``authClient.twoFactor.sendOtp()`` and ``verifyOtp()`` work unchanged; and its
``enable {method: "otp"}``, which here starts an enrolment that a code sent to the address confirms
(better-auth turns codes on at once, unconfirmed). Composed on the flows when
``BanataAuthConfig.otp`` is set; off otherwise.

Where each part lives: the confirmed address is a record (``stores/records/factors/otp.py``); the
code is hot state, ONE live code per user (``lua/otp_issue.lua``), stored as a keyed hash bound to
the user and to the challenge or session that asked for it. A code is checked and used up in the
same script that answers with it (``challenge_answer.lua``, ``session_answer.lua``: ``otp_take``),
so two verifies of one code give one session, and a resend (which replaces the code in one step)
never leaves two live codes. Wrong codes count against the challenge's attempts, the user's
temporary lock and the permanent failure ceiling, as a wrong TOTP code does.

The order across the two stores: at sign-in and step-up the hot store's script decides, uses the
code up and makes the session in one step (R2); the record store then ends the failure streak or
counts the failure (S2). A crash between loses at most that count or the success's audit row; it
never makes a session without the code used up. An enrolment uses the code up first, then writes
the factor, then updates the copy and rotates the session: a crash leaves a code used and no
factor, or a factor the next request's record read repairs the copy for.
"""

from __future__ import annotations

import secrets
from contextlib import suppress
from typing import TYPE_CHECKING, Literal

from ..config import OtpConfig
from ..effects import Call, Flow, Rec
from ..errors import AuthError
from ..http import Body, Request, Response, json_response
from ..otp import OtpMessage, canonical_address, mask_address, new_code, normalize_code, sending
from ..stores.hot_ops import (
    Answer,
    ChallengeAnswer,
    HotStatus,
    OtpEnrol,
    OtpEnrolled,
    OtpIssue,
    OtpIssued,
    SessionAnswer,
    TwoFactorDisable,
    TwoFactorImport,
    Verdict,
)
from ..stores.records import (
    DisableOtp,
    EnableOtp,
    LoadUser,
    OtpFactor,
    OtpRemoval,
    OtpRestore,
    RecordFailure,
    RecordOtpUse,
    RestoreOtp,
    Status,
    UserRecord,
)
from .session import (
    AMR_OTP,
    AMR_PASSWORD,
    PERMANENT_LOCK_MS,
    UNAUTHORIZED,
    Caller,
    Routes,
    Settling,
    log,
    retry_after,
)
from .two_factor import FAILURE_CEILING

if TYPE_CHECKING:
    from .admin import AdminFlows

__all__ = ["OtpFlows"]

Purpose = Literal["sign_in", "step_up", "enrol"]


class OtpFlows:
    """Composed on the flows (``Flows.otp``); owns no cookie of its own."""

    def __init__(self, flows: AdminFlows, config: OtpConfig) -> None:
        self.f = flows
        self.otp = config
        self.cookies: tuple[str, ...] = ()

    def routes(self) -> Routes:
        return {
            "/two-factor/send-otp": ("POST", self.send_otp),
            "/two-factor/verify-otp": ("POST", self.verify_otp),
            # better-auth's enable takes method "otp" too: that one is ours, the rest the TOTP flow's.
            "/two-factor/enable": ("POST", self.enable),
            "/two-factor/disable-otp": ("POST", self.disable_otp),
        }

    # -- small pieces ----------------------------------------------------------------------
    @staticmethod
    def _not_enabled() -> AuthError:
        return AuthError(400, "OTP_NOT_ENABLED", "codes by message are not set up for this user")

    def _channel(self, body: Body, default: str | None) -> str | None:
        value = body.data.get("channel", default)
        if value is None:
            return None
        if value not in self.otp.channels:
            raise AuthError(400, "VALIDATION_ERROR", f"'channel' must be one of {', '.join(self.otp.channels)}")
        return str(value)

    def _factor(self, record: UserRecord, channel: str | None) -> OtpFactor:
        """The address to send to: the one of ``channel``, else the user's first (email before SMS)
        of the channels still configured."""
        for factor in record.otp:
            if factor.channel in self.otp.channels and channel in (None, factor.channel):
                return factor
        raise self._not_enabled()

    @staticmethod
    def _conflict() -> AuthError:
        return AuthError(409, "OTP_ENROLMENT_CONFLICT", "another enrolment of this channel finished first; try again")

    def _lock(self) -> tuple[int, int]:
        p = self.f.policies
        return p.user_lock_failures, p.user_lock_seconds * 1000

    def _hash(self, caller: Caller, binding: str, code: str, to: OtpFactor | None = None) -> str:
        """The code's keyed hash, bound to the user, the challenge or session, and (a sign-in or
        step-up code) the address it is sent to: R6-5, a code sent to an address the user has
        since removed or replaced answers nothing, whatever the hot store still holds."""
        where = "" if to is None else f"\x00{to.channel}:{to.address}"
        return self.f.keyring.hash_otp(code, user_id=caller.uid, binding=binding + where)

    def _hashes(self, caller: Caller, record: UserRecord, binding: str, code: str) -> str:
        """A verify's hashes of ``code``: one for each address the record has now (space-separated;
        ``otp_take`` matches any), as read in this request."""
        return " ".join(self._hash(caller, binding, code, o) for o in record.otp if o.channel in self.otp.channels)

    def _send(self, req: Request, caller: Caller, channel: str, to: str, purpose: Purpose,
              binding: str) -> Flow[None]:
        """Make a code, store it as the user's one live code (the throttle counted in the same
        step), then hand it to the app's sender. A sender that fails: the code and its send are
        taken back (``void``), 503 ``OTP_DELIVERY_FAILED``; nothing else changed (the challenge
        or session is as it was)."""
        f, c, uid = self.f, self.otp, caller.uid
        code = new_code(c.digits)
        h = self._hash(caller, binding, code, None if purpose == "enrol" else OtpFactor(channel, to))
        send_id = secrets.token_hex(8)
        issue = OtpIssue(f.head(uid, req), otp_key=f.keys.otp(uid), sends_key=f.keys.otp_sends(uid), mode="issue",
                         send_id=send_id, code_hash=h, binding=binding, purpose=purpose, ttl_ms=c.ttl * 1000,
                         channel=channel, address=to, resend_interval_ms=c.resend_interval * 1000,
                         sends_per_window=c.sends_per_window, window_ms=c.send_window * 1000)
        reply: OtpIssued = yield from f.commit(issue, caller.sid)
        if reply.status == HotStatus.LOCKED:
            raise f.locked_error(int(reply.lock_until))
        if reply.status == HotStatus.THROTTLED:
            raise AuthError(429, "TOO_MANY_REQUESTS", "a code was sent a moment ago; wait before asking for another",
                            headers=retry_after(int(reply.retry_at), f.now_ms()))
        message = OtpMessage(f.user_json(caller), channel, to, code, purpose, f.now_ms() / 1000 + c.ttl,
                             f.config.app_name)
        fn, coroutine = sending(c.sender, message, c.send_timeout)
        delivered = yield Call(fn, coroutine)
        if not delivered:
            yield from f.commit(issue._replace(head=f.head(uid, req), mode="void"), caller.sid)
            raise AuthError(503, "OTP_DELIVERY_FAILED", "the code could not be sent; try again shortly")

    def _caller(self, req: Request) -> Flow[tuple[Caller, UserRecord]]:
        """The caller by their pending challenge or session, and their record; refused while locked."""
        f = self.f
        caller = yield from f.load_caller(req, want_challenge=True)
        if caller is None or (caller.challenge is None and caller.session is None):
            raise AuthError(401, *UNAUTHORIZED)
        record = yield from f.load_record(caller)
        f.refuse_locked(caller, record)
        return caller, record

    # -- endpoints -------------------------------------------------------------------------
    def send_otp(self, req: Request, body: Body) -> Flow[Response]:
        """A code for the pending sign-in (the ``two_factor`` cookie) or, in a session, for a
        step-up. better-auth's body (``trustDevice?``, which counts at verify-otp); ``channel?``
        is ours, for a user with both an email address and a number."""
        body.flag("trustDevice")
        channel = self._channel(body, None)
        caller, record = yield from self._caller(req)
        factor = self._factor(record, channel)
        purpose: Purpose
        if caller.challenge is not None:
            purpose, binding = "sign_in", "ch:" + caller.cid
        else:
            purpose, binding = "step_up", "s:" + caller.sid
        yield from self._send(req, caller, factor.channel, factor.address, purpose, binding)
        return json_response(200, {"status": True})

    def verify_otp(self, req: Request, body: Body) -> Flow[Response]:
        """Answer the pending sign-in (``{token, user}``), step a session up, or confirm an
        enrolment (both ``{status: true, token, user}``, the session rotated), as verify-totp does."""
        code = normalize_code(body.text("code", max_len=64))
        trust = body.flag("trustDevice")
        caller, record = yield from self._caller(req)
        f, k, uid = self.f, self.f.keys, caller.uid
        if caller.challenge is None and caller.user.get("otp_enrol") == caller.sid:
            return (yield from self._confirm(req, caller, record, code))
        if not any(o.channel in self.otp.channels for o in record.otp):
            raise self._not_enabled()
        token, sid = f.session_tokens.issue(uid)
        lock = self._lock()
        if caller.challenge is not None:
            binding = "ch:" + caller.cid
            p = f.policies
            trust_token, trust_id = f.trust_tokens.issue(uid) if trust else ("", "-")
            reply: Answer = yield from f.commit(ChallengeAnswer(  # R2: the code taken and the challenge answered
                f.head(uid, req), challenge_key=k.challenge(uid, caller.cid), new_session_key=k.session(uid, sid),
                sessions_key=k.sessions(uid), trust_key=k.trust(uid, trust_id), devices_key=k.trusted_devices(uid),
                otp_key=k.otp(uid), method="otp", outcome="otp", new_sid=sid, session_spec=f.session_spec(),
                trust="1" if trust else "0", trust_ttl_ms=p.trust_device_ttl * 1000, lock_failures=lock[0],
                lock_ms=lock[1], amr=f"{AMR_PASSWORD} {AMR_OTP}", binding=binding,
                code_hash=self._hashes(caller, record, binding, code), record_generation=record.generation), sid)
            yield from self._settle(req, caller, reply, sid, trusted=trust)  # S2
            remember = caller.challenge.get("remember") == "1"
            trusted = [f.cookie_header(f.trust_cookie, trust_token, p.trust_device_ttl)] if trust else []
            caller.user["tfa"] = "1"
            return f.signed_in(caller, token, remember=remember, clear_challenge=True, cookies=trusted)
        binding = "s:" + caller.sid
        reply = yield from f.commit(SessionAnswer(  # R2: the code taken and the session stepped up (rotated)
            f.head(uid, req), session_key=k.session(uid, caller.sid), pending_codes_key=k.pending_backup_codes(uid),
            new_session_key=k.session(uid, sid), sessions_key=k.sessions(uid), otp_key=k.otp(uid), mode="stepup",
            method="otp", outcome="otp", sid=caller.sid, lock_failures=lock[0], lock_ms=lock[1], new_sid=sid,
            session_spec=f.session_spec(), amr=AMR_OTP, codes_kid="", binding=binding,
            code_hash=self._hashes(caller, record, binding, code)), sid)
        yield from self._settle(req, caller, reply, sid)  # S2
        caller.user["tfa"] = "1"
        remember = caller.session is not None and caller.session.get("remember") == "1"
        return f.signed_in(caller, token, remember=remember, status=True)

    def _settle(self, req: Request, caller: Caller, reply: Answer, sid: str, *,
                trusted: bool = False) -> Flow[None]:
        """S2, after the hot store's verdict: a success ends the failure streak (with its audit
        rows: a browser the answer remembered is a new trusted device); a wrong code counts toward
        the permanent lock, which, once reached, the hot copy gets too. The hot store decided
        first, so its temporary lock reaches the audit table (and the user's notice) here, with
        the failure. Then a refusal is raised."""
        f, uid = self.f, caller.uid
        status = reply.status
        if status == HotStatus.OK:
            device = ("trusted_device.added",) if trusted else ()
            entries = f.entries(req, sid, ("two_factor.verified", "otp"), *device)
            yield Rec(RecordOtpUse(uid, entries))
            f.emit_entries(uid, entries)
            return
        if status in (HotStatus.WRONG, HotStatus.EXHAUSTED, HotStatus.LOCKED):
            locked_now = "two_factor.locked" in reply.events  # this answer set the temporary lock
            temporary = f.entries(req, "", ("two_factor.locked", "temporary")) if locked_now else ()
            failure = RecordFailure(uid, FAILURE_CEILING, f.now_ms(),
                                    f.entries(req, "", ("two_factor.locked", "ceiling")), temporary)
            counted = yield Rec(failure)
            if counted.locked and caller.record is not None:
                if counted.locked_now:  # the lock's one two_factor.locked, audited with it
                    f.emit_entries(uid, failure.audit_on_lock)
                until = f.now_ms() + PERMANENT_LOCK_MS
                yield from f.write_copy(uid, "repair", caller.record, ("lock_until", str(until), "!"))
                raise f.locked_error(until)
        raise f.answer_error(reply)

    def _confirm(self, req: Request, caller: Caller, record: UserRecord, code: str) -> Flow[Response]:
        """Confirm an enrolment: the code sent to the new address is used up (R2), the address
        becomes a factor (S2), then the copy says 2FA is on and the session is rotated, by
        ``session_answer``: as an enrolment when 2FA was off (every other session ends: none of
        them passed the new factor), as a step-up when it was on.

        With 2FA on, adding an address is a factor change, whenever the enrolment began (R6-1: one
        begun with the password alone, before an import or an app turned 2FA on, must not finish):
        the session must have passed a second factor recently, as ``_confirm_authenticator``
        asks. Checked here, again in ``otp_enrol.lua`` with the code (the copy may say on by
        now), and, for an enrolment that began under "2FA off", by the record store, which writes
        the address only while the user still has no factor (``EnableOtp.while_off``)."""
        f, k, uid = self.f, self.f.keys, caller.uid
        was_on = record.two_factor_enabled
        session = caller.session or {}
        if was_on and (int(session.get("aal") or 1) < 2 or int(session.get("mfa") or 0)
                       < f.now_ms() - f.policies.factor_change_max_age * 1000):
            raise f.factor_change_error("FRESH_TWO_FACTOR")
        binding = "s:" + caller.sid
        lock = self._lock()
        _, max_age_ms = f.factor_change_args(caller)
        # A typo here counts toward the temporary lock only (no S2 follows), so the lock's row for
        # the outbox is appended after the script, on the failure that locks (SessionCore.commit).
        enrolled: OtpEnrolled = yield from f.commit(OtpEnrol(
            f.head(uid, req), otp_key=k.otp(uid), session_key=k.session(uid, caller.sid), binding=binding,
            code_hash=self._hash(caller, binding, code), lock_failures=lock[0], lock_ms=lock[1],
            max_age_ms=max_age_ms, on="1" if was_on else "0"), caller.sid,
            durable={"two_factor.locked": "temporary"})
        if enrolled.status == HotStatus.FRESH_TWO_FACTOR:
            raise f.factor_change_error(enrolled.status)
        if enrolled.status != HotStatus.OK:
            # A typo while confirming an address counts toward the temporary lock (otp_enrol.lua),
            # not toward the permanent ceiling of an account that may have no second factor yet (R4-8).
            raise f.answer_error(enrolled)
        channel, address = str(enrolled.channel), str(enrolled.address)
        if was_on and any(o.channel == channel and o.address != address for o in record.otp):
            # The channel's address is replaced: the old one stops being a factor, a removal by
            # another name (the owner moving away from a mailbox lost or taken over). As disable-otp
            # does, every trusted device is forgotten, here before the record changes (access taken
            # away first; a write refused below has forgotten them anyway, the safe direction).
            yield from f.forget_devices(req, caller)
        entries = f.entries(req, caller.sid, ("otp.enabled" if was_on else "two_factor.enabled", f"otp:{channel}"))
        status = yield Rec(EnableOtp(uid, channel, address, f.now_ms(), entries, while_off=not was_on))
        if status is Status.TAKEN:
            raise self._conflict()
        if status is Status.CHANGED:  # 2FA went on (an import, another enrolment) since the load
            raise f.factor_change_error("FRESH_TWO_FACTOR")
        f.emit_entries(uid, entries)
        token, sid = f.session_tokens.issue(uid)
        # A pending TOTP setup ends with an enrolment (the script's 'enrol' mode clears it): set it up again.
        reply: Answer = yield from f.commit(SessionAnswer(
            f.head(uid, req), session_key=k.session(uid, caller.sid), pending_codes_key=k.pending_backup_codes(uid),
            new_session_key=k.session(uid, sid), sessions_key=k.sessions(uid), otp_key=k.otp(uid),
            mode="stepup" if was_on else "enrol", method="otp", outcome="ok", sid=caller.sid, lock_failures=lock[0],
            lock_ms=lock[1], new_sid=sid, session_spec=f.session_spec(), amr=AMR_OTP,
            codes_kid=record.codes_key_id), sid)
        if reply.status != HotStatus.OK:
            raise f.answer_error(reply)
        caller.user["tfa"] = "1"
        remember = caller.session is not None and caller.session.get("remember") == "1"
        return f.signed_in(caller, token, remember=remember, status=True)

    def enable(self, req: Request, body: Body) -> Flow[Response]:
        """better-auth's ``enable``: ``method: "otp"`` starts an enrolment in codes by message (a
        code goes to the address; ``verify-otp`` with it turns them on); any other method is TOTP's.
        ``channel?`` ("email" by default) and ``to?`` (the address; default, for email, the
        account's) are ours. Needs what every factor change needs (``require_factor_change``)."""
        if body.data.get("method") != "otp":
            return (yield from self.f.enable(req, body))
        password = body.text("password", max_len=128)
        channel = self._channel(body, "email") or "email"
        raw = body.text("to", max_len=254, required=False)
        caller = yield from self.f.require_factor_change(req, password)
        if not raw and channel == "email":
            record = caller.record
            raw = caller.user.get("email") or (record.account.email if record and record.account else "")
        if not raw:
            raise AuthError(400, "VALIDATION_ERROR", f"'to' is needed: the address to send {channel} codes to")
        address = canonical_address(channel, raw)
        yield from self._send(req, caller, channel, address, "enrol", "s:" + caller.sid)
        return json_response(200, {"method": "otp", "status": True, "channel": channel,
                                   "to": mask_address(channel, address)})

    def enable_verified(self, uid: str, channel: str, to: str, origin: Request | None = None) -> Flow[None]:
        """``BanataAuth.enable_otp``: codes by message to an address the app verified itself (its
        own users), with no confirmation code. The record store first, then the copy says 2FA is on."""
        if channel not in self.otp.channels:
            raise AuthError(400, "VALIDATION_ERROR", f"channel must be one of {', '.join(self.otp.channels)}")
        f = self.f
        address = canonical_address(channel, to)
        record: UserRecord = yield Rec(LoadUser(uid))
        kind = "otp.enabled" if record.two_factor_enabled else "two_factor.enabled"
        entries = f.entries(origin, "", (kind, f"otp:{channel}"))
        # An administrator's change: it clears the user's factor-change lease (supersede), so that
        # the undo of a change of the user's still in flight puts nothing back over it (R9-3).
        status = yield Rec(EnableOtp(uid, channel, address, f.now_ms(), entries, supersede=True))
        if status is Status.TAKEN:
            raise self._conflict()
        f.emit_entries(uid, entries)
        # The copy follows as after an import (two_factor_import.lua): 2FA on, trusted devices void;
        # the sessions stay (the app vouched for the address, as an import vouches for a secret).
        yield from f.commit(TwoFactorImport(f.head(uid, origin), pending_codes_key=f.keys.pending_backup_codes(uid),
                                            otp_key=f.keys.otp(uid), codes_kid=record.codes_key_id))

    def _undo_remove(self, req: Request, caller: Caller, result: OtpRemoval, settling: Settling) -> Flow[None]:
        """Put back the addresses a refused (or unchecked) ``disable-otp`` removed, releasing its
        factor-change lease (``RestoreOtp``): no other change of the user's factors that takes
        the lease ran since the commit (they answered 409 while it was live), so nothing stands in
        the way but an enrolment of one of those channels meanwhile (that enrolment stands, and
        the other channels come back: R9-4), or a lease that is not this removal's any more (an
        administrator's change, or a request stalled past the lease and another change came:
        CHANGED, that change stands). Either way the caller's refusal is the answer. A record
        store that fails here is logged without the address (the user id and the error code) and
        raises; the lease then runs out by itself."""
        f, uid = self.f, caller.uid
        removed = result.gone
        audit = {channel: f.entries(req, caller.sid, ("otp.enabled", f"{channel}:restored"))
                 for channel, _, _ in removed}
        try:
            restored: OtpRestore = yield Rec(RestoreOtp(uid, removed, result.lease, audit))
        except AuthError as exc:
            settling.emit()
            log.warning("codes by message of user %s stay off: a disable-otp that was not confirmed could not be "
                        "undone in the record store (%s)", uid, exc.code)
            raise
        settling.emit()  # settled: the removal's rows, then the undo's
        f.emit_entries(uid, [e for channel in restored.put_back for e in audit[channel]])
        if restored.status is Status.CHANGED:
            log.warning("codes by message of user %s stay off: a disable-otp that was not confirmed was not undone, "
                        "another change of the user's factors came first", uid)

    def disable_otp(self, req: Request, body: Body) -> Flow[Response]:
        """Stop codes by message (``channel?``: one channel; default all). When no other factor is
        left, two-factor goes off, as ``disable`` turns it off (the backup codes go too). Which of
        the two it is, the record store decides (``DisableOtp``), under the locks every factor
        removal takes: a removal of the last authenticator app at the same time is decided before
        or after, never from the same rows, so the user never ends with 2FA on and no factor."""
        channel = self._channel(body, None)
        f = self.f
        caller = yield from f.require_factor_change(req, body.text("password", max_len=128))
        record = caller.record
        if record is None or not any(channel in (None, o.channel) for o in record.otp):
            raise self._not_enabled()
        uid, since = caller.uid, f.now_ms()
        entries = f.entries(req, caller.sid, ("otp.disabled", channel or "all"))
        off = f.entries(req, caller.sid, ("two_factor.disabled", "otp"))
        # The removal takes the user's factor-change lease (as disable's does), held until this
        # request settles it: while another change is in flight (whose undo would put back over
        # this one, or this one's over it: R8-2), nothing is removed and the answer is 409.
        result: OtpRemoval = yield Rec(DisableOtp(uid, channel, since, entries, off))
        if result.status is Status.BUSY:
            raise f.two_factor_changed()
        if result.status is not Status.OK:  # removed meanwhile
            raise self._not_enabled()
        # The sinks hear the removal once it is settled (R10-2: Settling).
        settling = Settling(f, uid, off if result.two_factor_off else entries)
        try:
            return (yield from self._settle_disable_otp(req, caller, result, since, settling))
        finally:
            settling.emit()

    def _settle_disable_otp(self, req: Request, caller: Caller, result: OtpRemoval, since: int,
                            settling: Settling) -> Flow[Response]:
        f, uid = self.f, caller.uid
        if not result.two_factor_off:
            # Another factor stays. Write order as for ``disable``: the address went from the
            # record store first, then factor_change.lua re-checks the factor-change rule (after
            # the commit, so that it holds at the moment of the change: a session revoked, signed
            # out or gone stale while this request was under way is refused, R6-3); a refusal,
            # or a hot store that fails so that it cannot be checked, puts the address back, so
            # that a 401 or a 503 means nothing changed; a pass releases the factor-change lease
            # (EndRemoval, one more SQL transaction). A crash between keeps the removal (the
            # request had passed the rule when loaded, an instant before), and the lease until it
            # runs out.
            # The same step forgets every trusted device of the user (forget_devices): a browser
            # trusted by a code sent to the address removed must ask for the second factor again;
            # a refusal, or a hot store that fails, forgets none, so the undo has no trust to put back.
            try:
                allowed: Verdict = yield from f.commit(f.factor_change(req, caller, "on", forget_devices=True),
                                                       caller.sid)
            except AuthError:
                with suppress(AuthError):  # logged by _undo_remove; the hot store's 503 is the answer
                    yield from self._undo_remove(req, caller, result, settling)
                raise
            if allowed.status != HotStatus.OK:
                yield from self._undo_remove(req, caller, result, settling)
                raise f.factor_change_error(allowed.status)
            yield from f.end_removal(uid, result.lease)
            settling.emit()
        else:
            # The last factor went, and two-factor with it: exactly as ``disable`` (finish_disable):
            # two_factor_disable.lua re-checks the factor-change rule and updates the copy; a
            # refusal, or a hot store that fails, puts everything back, so that a 401 or a 503
            # means nothing changed; a pass releases the factor-change lease. A crash between leaves a
            # copy saying on for a user without a factor, which the next flow that reads the
            # record repairs, and the lease until it runs out.
            session_key, max_age_ms = f.factor_change_args(caller)
            disable = TwoFactorDisable(
                f.head(uid, req), pending_codes_key=f.keys.pending_backup_codes(uid), session_key=session_key,
                sessions_key=f.keys.sessions(uid), sid=caller.sid, max_age_ms=max_age_ms, mode="confirmed")
            reply = yield from f.finish_disable(req, caller, result.removed, disable, since, settling)
            if reply.status != HotStatus.OK:
                raise f.factor_change_error(reply.status)
        return json_response(200, {"status": True, "twoFactorEnabled": not result.two_factor_off})

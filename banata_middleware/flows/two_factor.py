"""Two-factor authentication: enable, disable, the TOTP URI, backup codes, and verify-totp /
verify-backup-code with their answers (a pending sign-in's challenge, or enrolment and step-up in
a session)."""

from __future__ import annotations

import secrets
from contextlib import suppress
from dataclasses import replace
from typing import Any, Literal

from ..backup_codes import generate_codes, normalize_code
from ..crypto import UnreadableSecret
from ..effects import Compute, Flow, Rec
from ..errors import AuthError
from ..http import Body, Request, Response, json_response
from ..stores.hot_ops import (
    Answer,
    AuditEvent,
    BackupCodesReplace,
    ChallengeAnswer,
    Flag,
    HotStatus,
    OtpEnrolled,
    SessionAnswer,
    TwoFactorBegin,
    TwoFactorDisable,
    Verdict,
)
from ..stores.records import (
    DEFAULT_NAME,
    AcceptAnyTotpStep,
    ActivateBackupCodes,
    AddAuthenticator,
    ConfirmAuthenticator,
    ConsumeBackupCode,
    DisabledSecondFactor,
    DisableSecondFactor,
    DiscardBackupCodes,
    EnableTotp,
    LeasedChange,
    ProveSecondFactor,
    RecordFailure,
    RemoveTotpFactor,
    RestoreSecondFactor,
    StageBackupCodes,
    Status,
    TotpCandidate,
    TotpFactor,
    UserRecord,
)
from ..totp import matched_step, new_secret, totp_uri
from .authenticators import (
    MAX_AUTHENTICATORS,
    PENDING_TTL_MS,
    authenticator_name,
    default_name,
    name_taken,
    not_found,
    pending,
    public,
)
from .primary import PrimaryFlows
from .session import AMR_OTP, AMR_PASSWORD, PERMANENT_LOCK_MS, UNAUTHORIZED, Caller, Routes, Settling, log

__all__ = ["FAILURE_CEILING", "LOW_BACKUP_CODES", "TOTP_FACTOR_ID", "TwoFactorFlows", "confirmed_factors",
           "confirmed_totp"]

# The NIST SP 800-63B ceiling: after this many consecutive failed second-factor proofs (temporary
# locks do not end the streak, only a success does) the account stays locked until an
# administrator resets it. Counted in the record store (RecordFailure), so no Redis loss forgets it.
FAILURE_CEILING = 100
# The id of a user's first authenticator app (the others get ids of their own: ``_add_authenticator``).
TOTP_FACTOR_ID = "totp"
# A backup code used that leaves this many or fewer notifies the user ("backup_codes.low").
LOW_BACKUP_CODES = 2


def confirmed_factors(record: UserRecord) -> list[TotpFactor]:
    """The user's confirmed authenticator apps, oldest first."""
    return [f for f in record.totp if f.confirmed_at is not None]


def confirmed_totp(record: UserRecord) -> TotpFactor | None:
    """The user's oldest confirmed authenticator app."""
    return next((f for f in record.totp if f.confirmed_at is not None), None)


class TwoFactorFlows(PrimaryFlows):
    """The TOTP factor and backup codes: enrolment, management, and the second step of a sign-in.
    Built on ``PrimaryFlows``: changing a factor asks for the password (or a fresh second factor)."""

    def routes(self) -> Routes:
        routes = super().routes()
        if self.config.auth_methods.two_factor:
            routes.update({
                "/two-factor/enable": ("POST", self.enable),
                "/two-factor/verify-totp": ("POST", lambda r, b: self.verify(r, b, "totp")),
                "/two-factor/verify-backup-code": ("POST", lambda r, b: self.verify(r, b, "backup")),
                "/two-factor/disable": ("POST", self.disable),
                "/two-factor/get-totp-uri": ("POST", self.get_totp_uri),
                "/two-factor/generate-backup-codes": ("POST", self.generate_backup_codes),
            })
        return routes

    def account_label(self, caller: Caller) -> Flow[str]:
        """The account name in the otpauth label (what the authenticator app shows): the built-in
        user's email, else the host's ``account_name(user_id)`` (apps with their own users), else the id."""
        email: str | None = caller.user.get("email")
        hook = self.account_name_hook
        if email or hook is None:
            return email or caller.uid
        name = yield Compute(lambda: hook(caller.uid))  # the host may look it up in its database
        return str(name or caller.uid)

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
        yield from self.commit(AuditEvent(self.head(caller.uid, req), event="two_factor.secret_unreadable",
                                          sid=caller.sid, detail=reason), caller.sid)
        raise AuthError(409, "TWO_FACTOR_SECRET_UNREADABLE",
                        "the stored authenticator secret cannot be read; use a backup code or a passkey, "
                        "or ask an administrator to reset two-factor authentication")

    def _open_secret(self, caller: Caller, factor: TotpFactor) -> str | None:
        """One authenticator's secret in the clear, or None when it cannot be read (logged): a
        code is then checked against the user's other apps (``_decrypt_secret`` answers when
        none of them can be read)."""
        try:
            return self.keyring.decrypt(factor.secret, context=caller.uid).decode()
        except (UnreadableSecret, UnicodeDecodeError) as exc:
            reason = str(exc) if isinstance(exc, UnreadableSecret) else "not text"
        log.error("TOTP secret of user %s, authenticator %s, cannot be read: %s", caller.uid, factor.id, reason)
        return None

    # -- two-factor management ---------------------------------------------------------------
    def new_backup_codes(self, count: int | None = None) -> tuple[list[str], list[str]]:
        """New codes, and what the scripts store for them: the id of the key they are hashed under
        (``codes_kid``), then their keyed hashes."""
        codes = generate_codes(self.policies.backup_code_count if count is None else count, self.policies.backup_codes)
        # Hashed as typed back (normalize_code: no group dashes), shown as generated.
        return codes, [self.keyring.current_code_key_id,
                       *(self.keyring.hash_code(normalize_code(c) or c) for c in codes)]

    def enable(self, req: Request, body: Body) -> Flow[Response]:
        password = body.text("password", max_len=128)
        issuer = body.text("issuer", max_len=64, required=False) or self.config.app_name
        if body.data.get("method", "totp") != "totp":
            raise AuthError(400, "VALIDATION_ERROR", "only 'totp' is supported as 'method'")
        name = authenticator_name(body, required=False)
        caller = yield from self.require_factor_change(req, password)
        record = caller.record
        if record is not None and record.two_factor_enabled:
            # Another app, or (a user whose only factor is codes by message) the first: either way
            # 2FA is on already, so it is added, unconfirmed, and confirmed by its first code.
            added = yield from self._add_authenticator(caller, record, issuer, name)
            if added is not None:
                return added
            # Every factor was removed meanwhile: a first setup after all (two_factor_begin.lua
            # refuses it while the copy still says 2FA is on).
        secret = new_secret()
        codes, hashes = self.new_backup_codes()
        ct = self.keyring.encrypt(secret.encode(), context=caller.uid)
        # Pending (hot store) until a first code confirms it: the factor reaches the record store then.
        reply: Verdict = yield from self.commit(TwoFactorBegin(
            self.head(caller.uid, req), pending_codes_key=self.keys.pending_backup_codes(caller.uid), secret=ct,
            sid=caller.sid, codes_kid=hashes[0], name=name, hashes=tuple(hashes[1:])), caller.sid)
        if reply.status == HotStatus.ALREADY:
            raise self._already_enabled()
        uri = totp_uri(secret, issuer=issuer, account=(yield from self.account_label(caller)), policy=self.config.totp)
        return json_response(200, {"method": "totp", "totpURI": uri, "backupCodes": codes})

    def _add_authenticator(self, caller: Caller, record: UserRecord, issuer: str,
                           name: str) -> Flow[Response | None]:
        """``enable`` while two-factor is on: one more authenticator app, not active until a code
        from it confirms it (``verify-totp`` in a session: ``_confirm_authenticator``). Its secret
        goes to the record store now, unconfirmed (``AddAuthenticator``: the per-user cap and the
        names are decided there, with the user's apps locked). The backup codes stay as they are:
        ``backupCodes`` is empty. None when two-factor was turned off since the record was read."""
        uid, now = caller.uid, self.now_ms()
        name = name or default_name(record)
        factor_id = f"{TOTP_FACTOR_ID}-{secrets.token_hex(8)}"
        secret = new_secret()
        ct = self.keyring.encrypt(secret.encode(), context=uid)
        status = yield Rec(AddAuthenticator(uid, factor_id, ct, self.keyring.key_id_of(ct), now, name,
                                            MAX_AUTHENTICATORS, now - PENDING_TTL_MS))
        if status is Status.TAKEN:
            raise name_taken()
        if status is Status.FULL:
            raise AuthError(409, "TOO_MANY_AUTHENTICATORS",
                            f"at most {MAX_AUTHENTICATORS} authenticator apps; remove one first")
        if status is not Status.CREATED:
            return None
        uri = totp_uri(secret, issuer=issuer, account=(yield from self.account_label(caller)), policy=self.config.totp)
        return json_response(200, {"method": "totp", "totpURI": uri, "backupCodes": [], "id": factor_id,
                                   "name": name})

    @staticmethod
    def _already_enabled() -> AuthError:
        return AuthError(409, "TWO_FACTOR_ALREADY_ENABLED", "two-factor authentication is already on; disable it first")

    @staticmethod
    def _not_enabled() -> AuthError:
        return AuthError(400, "TWO_FACTOR_NOT_ENABLED", "two-factor authentication is not set up for this user")

    def disable(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.require_factor_change(req, body.text("password", max_len=128))
        uid, record = caller.uid, caller.record
        enabled = record is not None and record.two_factor_enabled
        if not enabled and "pending_secret" not in caller.user:
            raise self._not_enabled()
        session_key, max_age_ms = self.factor_change_args(caller)
        removed: DisabledSecondFactor | None = None
        since = self.now_ms()
        if enabled:
            # Write order: the factor and codes go from the record store first, then
            # two_factor_disable.lua re-checks the factor-change rule and, when it holds, updates the
            # copy (finish_disable). The re-check runs AFTER the commit (as passkey registration's
            # does), so that the rule holds at the moment of the change: a session revoked, signed
            # out, rotated or gone stale while this request was under way is refused, and the
            # removal undone. So is a removal whose re-check cannot run (the hot store failed): a
            # 503 means nothing changed. Only a crash between the commit and the re-check keeps the
            # removal (the request had passed the rule when loaded, an instant before) behind a
            # copy that still says 2FA is on: the next flow that reads the record repairs it.
            # The removal also takes the user's factor-change lease, held until this request
            # settles it (the undo releases it, and so does EndRemoval once the re-check passed):
            # one change a user may still see undone is in flight at a time, so that no undo puts
            # back over another change made in its window (R8-2, R9-2).
            entries = self.entries(req, caller.sid, "two_factor.disabled")
            removed = yield Rec(DisableSecondFactor(uid, since, audit=entries))
            if removed is None:
                # Loaded with 2FA on, and nothing removed: another request (a disable in another
                # tab, a removal of a factor, an app's confirmation) holds the lease, or took
                # everything meanwhile; it
                # may still be refused or fail and put it all back. So this one says nothing about
                # the outcome (R8-1: a 200 "off" here was reversed by the other's undo) and changes
                # nothing: the copy is that request's to update.
                raise self.two_factor_changed()
        # The sinks hear the removal once it is settled (R10-2: Settling).
        settling = Settling(self, uid, entries if removed is not None else ())
        disable = TwoFactorDisable(
            self.head(uid, req), pending_codes_key=self.keys.pending_backup_codes(uid), session_key=session_key,
            sessions_key=self.keys.sessions(uid), sid=caller.sid, max_age_ms=max_age_ms,
            mode="confirmed" if enabled else "pending")
        try:
            reply = yield from self.finish_disable(req, caller, removed, disable, since, settling)
        finally:
            settling.emit()
        if reply.status == HotStatus.OK:
            return json_response(200, {"status": True})
        if reply.status == HotStatus.NOT_ENABLED:
            raise self._not_enabled()
        raise self.factor_change_error(reply.status)

    def finish_disable(self, req: Request, caller: Caller, removed: DisabledSecondFactor | None,
                       disable: TwoFactorDisable, since: int, settling: Settling) -> Flow[Verdict]:
        """The hot half of every change that turned two-factor off in the record store (disable,
        removing the last authenticator app, stopping the last codes by message), ``removed``
        being what went: two_factor_disable.lua re-checks the factor-change rule and updates the
        copy. When it refuses, what went is put back (``undo_disable``) and its reply returned for
        the caller to answer. When the hot store fails, so that the rule cannot be checked, what
        went is put back too and the 503 raised: "503 = nothing changed", as for a regeneration
        or a passkey registration whose re-check cannot run. An undo that fails as well is logged
        (``undo_disable``), and the answer is still the 503. ``settling``: the removal's audit rows,
        handed to the sinks once it is settled (after ``EndRemoval``, or by the undo)."""
        try:
            reply: Verdict = yield from self.commit(disable, caller.sid)
        except AuthError:
            if removed is not None:
                with suppress(AuthError):  # logged by undo_disable; the hot store's 503 is the answer
                    yield from self.undo_disable(req, caller, removed, disable, since, settling)
            raise
        if removed is not None:
            if reply.status != HotStatus.OK:
                yield from self.undo_disable(req, caller, removed, disable, since, settling)
            else:
                yield from self.end_removal(caller.uid, removed.lease)
        settling.emit()
        return reply

    def undo_disable(self, req: Request, caller: Caller, removed: DisabledSecondFactor, disable: TwoFactorDisable,
                     since: int, settling: Settling) -> Flow[None]:
        """Put back what a refused (or unchecked) disable removed: the record first (removing
        what was enrolled meanwhile, in the same transaction: RestoreSecondFactor), then the copy,
        which also ends every session (but the caller's, whatever its aal) made while the factor
        was gone and voids the trusted devices (two_factor_disable.lua 'undo'): a sign-in from
        the record then needed the password alone. When the record's undo finds its lease gone
        (CHANGED: another change came first and stands, nothing is put back) the copy's undo still
        ends those sessions and voids the trusted devices (mode 'sessions', R10-5). A store that
        fails here is logged without a secret (the user id and the error code) and its 503 raised:
        if it was the record store, two-factor stays off though the user was told it failed; if the
        hot store, the record has the factor again (sign-in reads the record, so a password alone
        gets the challenge) but a session made meanwhile may live on, and the copy is repaired by
        the next flow that reads the record."""
        uid = caller.uid
        entries = self.entries(req, caller.sid, ("two_factor.enabled", "restored"))
        try:
            status = yield Rec(RestoreSecondFactor(uid, self._under_current_key(uid, removed), audit=entries))
        except AuthError as exc:
            settling.emit()
            log.warning("two-factor of user %s stays off: a disable that was not confirmed could not be undone "
                        "in the record store (%s)", uid, exc.code)
            raise
        if status is Status.CHANGED:
            # The removal's lease is not its own any more: an administrator's change cleared it,
            # or it ran out (a request stalled past REMOVAL_LEASE_MS) and another change took it.
            # That change stands; this removal stays too, as after a crash before the re-check.
            log.warning("two-factor of user %s stays off: a disable that was not confirmed was not undone, "
                        "another change of the user's factors came first", uid)
        settling.emit()  # settled: the removal's rows, then the undo's
        if status is Status.OK:
            self.emit_entries(uid, entries)
        # Whether or not the factors came back, the sessions made in the window (the record said
        # off: the password alone signed in) end and the trusted devices are voided (mode
        # 'sessions' when nothing was put back: the copy's 2FA is the later change's to set).
        # Ending sessions puts no factor back and contradicts no later change, so a window
        # session never outlives the 503 (R10-5: an administrator's change cleared the lease and
        # a thief's password-only session lived on with 2FA on).
        kid = min((c.key_id for c in removed.codes), default="")
        mode: Literal["undo", "sessions"] = "undo" if status is Status.OK else "sessions"
        try:
            yield from self.commit(disable._replace(head=self.head(uid, req), mode=mode, codes_kid=kid,
                                                    since_ms=since), caller.sid)
        except AuthError as exc:
            log.warning("two-factor of user %s: the hot store could not follow a disable's undo (%s): sessions made "
                        "while it was off are not ended", uid, exc.code)
            raise

    def _under_current_key(self, uid: str, removed: DisabledSecondFactor) -> DisabledSecondFactor:
        """What an undo puts back, its apps' secrets under the current key (R10-4: ``rotate_keys``
        lists the secrets in the table, and an app a change in flight took is not there; the undo
        put it back under the key the rotation had reported unused, and once that key was dropped
        the owner's app answered every code with 409 SECRET_UNREADABLE). The flow holds the keyring,
        as the rotation does. A secret that does not decrypt goes back as it was (logged without
        it: the user id and why); it was not readable before the disable either."""
        keyring, current = self.keyring, self.keyring.current_key_id
        if all(keyring.key_id_of(app.secret) == current for app in removed.totp):
            return removed
        apps: list[TotpFactor] = []
        for app in removed.totp:
            if keyring.key_id_of(app.secret) != current:
                try:
                    ct = keyring.encrypt(keyring.decrypt(app.secret, context=uid), context=uid)
                except UnreadableSecret as exc:
                    log.warning("an authenticator app of user %s goes back under its old key: its secret does not "
                                "decrypt (%s)", uid, exc)
                else:
                    app = replace(app, secret=ct, key_id=keyring.key_id_of(ct))
            apps.append(app)
        return replace(removed, taken={**removed.taken, "totp": tuple(apps)})

    def get_totp_uri(self, req: Request, body: Body) -> Flow[Response]:
        password = body.text("password", max_len=128)
        factor_id = body.text("id", max_len=64, required=False)
        caller = yield from self.require_factor_change(req, password)
        user, record = caller.user, caller.record
        factor: TotpFactor | None = None
        if record is not None and record.two_factor_enabled:
            # An app being added (the newest) before the confirmed ones: what ``enable`` just
            # showed, for a client that asks for the URI again before the first code. ``id``
            # names one of them (``list-authenticators``).
            shown = [*pending(record, self.now_ms()), *confirmed_factors(record)]
            factor = next((f for f in shown if f.id == factor_id), None) if factor_id else shown[0]
            if factor is None:
                raise not_found()
        elif factor_id:
            raise not_found()
        # A pending setup's secret is shown only to the session that started it (two_factor_begin.lua).
        ct = factor.secret if factor is not None else (
            user.get("pending_secret") if user.get("pending_sid") == caller.sid else None)
        if not ct:
            raise self._not_enabled()
        secret = yield from self._decrypt_secret(req, caller, ct)
        # Recorded before the secret leaves: a store that cannot record it refuses (fail closed).
        detail = "" if factor is not None and factor.confirmed_at is not None else "pending"
        yield from self.commit(AuditEvent(self.head(caller.uid, req), event="two_factor.secret_viewed",
                                          sid=caller.sid, detail=detail), caller.sid)
        uri = totp_uri(secret, issuer=self.config.app_name, account=(yield from self.account_label(caller)),
                       policy=self.config.totp)
        return json_response(200, {"totpURI": uri})

    def generate_backup_codes(self, req: Request, body: Body) -> Flow[Response]:
        caller = yield from self.require_factor_change(req, body.text("password", max_len=128))
        codes, hashes = self.new_backup_codes()
        uid = caller.uid
        session_key, max_age_ms = self.factor_change_args(caller)
        if caller.record is not None and caller.record.two_factor_enabled:
            # Two phases, so that no crash leaves the user with codes nobody saw. Write order:
            # 1. StageBackupCodes commits the new set staged, beside the set in use: no read or
            #    consume sees it, and the old codes keep working.
            # 2. factor_change.lua re-checks the factor-change rule (after the commit, as passkey
            #    registration does, so it holds at the moment of the change: see disable) and,
            #    when it holds, moves the copy's codes_kid in the same step.
            # 3. ActivateBackupCodes puts the staged set in use and deletes the old one, in one
            #    transaction, with its audit row; only then are the codes shown.
            # A crash before 3 leaves the old set working and the staged rows inert (the next
            # activation, a disable, an enable or a reset removes them); a copy whose codes_kid
            # moved in 2 is repaired by the next flow that reads the record. A refusal in 2, or a
            # hot store that fails so that the rule cannot be checked, drops the staged set
            # (DiscardBackupCodes): nothing changed, and the 401/503 says so. A crash after 3 is a
            # lost response, the new set in use: as any change whose answer never arrived. SQL:
            # two write transactions (plus the caller's lookup); before, one, and a crash between
            # it and the re-check voided the old codes for a set nobody saw.
            # Stage and activate only while a factor still turns 2FA on, decided in SQL under the
            # locks the factor removals take: a disable that committed after the record read
            # leaves nothing to generate codes for (R7-1), and this request changed nothing.
            token = secrets.token_hex(16)
            if (yield Rec(StageBackupCodes(uid, token, hashes[1:], hashes[0], self.now_ms(),
                                           while_on=True))) is not Status.OK:
                raise self._backup_codes_changed()
            try:
                # No trusted device is forgotten: the backup codes stay a factor (a new set), as
                # when codes are used up and replaced; revoke-trusted-devices is there for a leak.
                allowed: Verdict = yield from self.commit(self.factor_change(
                    req, caller, "on", fields=("codes_kid", hashes[0])), caller.sid)
            except AuthError:
                yield from self._discard_staged(uid, token)
                raise
            if allowed.status != HotStatus.OK:
                yield from self._discard_staged(uid, token)
                raise self.factor_change_error(allowed.status)
            entries = self.entries(req, caller.sid, "two_factor.backup_codes_regenerated")
            if (yield Rec(ActivateBackupCodes(uid, token, audit=entries, while_on=True))) is not Status.OK:
                raise self._backup_codes_changed()
            self.emit_entries(uid, entries)
            return json_response(200, {"status": True, "backupCodes": codes})
        reply: Verdict = yield from self.commit(BackupCodesReplace(
            self.head(uid, req), pending_codes_key=self.keys.pending_backup_codes(uid), session_key=session_key,
            sid=caller.sid, max_age_ms=max_age_ms, codes_kid=hashes[0], hashes=tuple(hashes[1:])), caller.sid)
        if reply.status == HotStatus.NOT_ENABLED:
            raise self._not_enabled()
        if reply.status != HotStatus.OK:
            raise self.factor_change_error(reply.status)
        return json_response(200, {"status": True, "backupCodes": codes})

    def _discard_staged(self, uid: str, token: str) -> Flow[None]:
        """Drop a staged set that will never be shown. Best effort: the refusal (or the 503) the
        caller raises next is the answer either way, and rows left staged are inert (no read or
        consume sees them; the next activation, a disable or a reset removes them)."""
        try:
            yield Rec(DiscardBackupCodes(uid, token))
        except AuthError:
            log.warning("staged backup codes of user %s left to be removed later: record store unavailable", uid)

    @staticmethod
    def _backup_codes_changed() -> AuthError:
        return AuthError(409, "BACKUP_CODES_CHANGED",
                         "the backup codes were changed by another request meanwhile (a newer set, or two-factor "
                         "turned off); this one changed nothing: generate them again if you still need new ones")

    # -- verification ------------------------------------------------------------------------
    def verify(self, req: Request, body: Body, method: str) -> Flow[Response]:
        """verify-totp and verify-backup-code: one flow, three modes (contract: sign-in challenge,
        enrolment, step-up), decided by the caller's cookies.

        Two stores, four steps: R1 the hot state (``load``: the challenge or session, the
        temporary lock, a pending setup); S1 the record (``LoadUser``: factors, backup codes, the
        permanent lock); the proof is checked here; S2 ONE write transaction decides it: the step
        accepted or the code consumed by one conditional statement (the replay guard, across
        processes and across a Redis flush), or the enrolment's factor and codes written, or the
        failure counted toward the permanent lock, with the audit rows; R2 the hot store's script,
        told S2's verdict, atomically checks the challenge or session is still live, counts the
        attempt and the temporary lock, and makes the session. The proof is used up in S2 BEFORE
        the session exists in R2: a crash between leaves a code consumed without a session (sign
        in again), never a session without the code consumed.

        A user with several authenticator apps: the code is checked against each confirmed one
        here, and S2 accepts the step of the one it matched (``AcceptAnyTotpStep``: each app has
        its own replay guard), in the same one transaction. In a session, a code of an app being
        added (``enable`` while two-factor is on) confirms that app instead
        (``_confirm_authenticator``)."""
        code = body.text("code", max_len=64).strip()
        trust = body.flag("trustDevice")
        caller = yield from self.load_caller(req, want_challenge=True)  # R1
        if caller is None or (caller.challenge is None and caller.session is None):
            raise AuthError(401, *UNAUTHORIZED)
        record = yield from self.load_record(caller)  # S1
        self.refuse_locked(caller, record)
        user, uid = caller.user, caller.uid
        # Without 2FA on, only enrolment is left: in the session that set it up (two_factor_begin.lua;
        # the setup and its owner were read together, in R1). A challenge cookie still in the
        # browser (a sign-in abandoned before 2FA was turned off) plays no part.
        factors = confirmed_factors(record)
        # A user whose second factor is codes by message only (flows/otp.py) has backup codes but
        # no authenticator app: a TOTP code without a confirmed app is an enrolment's, or, in a
        # session, the first code of an app such a user is adding (``_add_authenticator``).
        adding = caller.challenge is None and method == "totp" and bool(pending(record, self.now_ms()))
        enrolling = not factors and method == "totp" and not adding
        if (method == "backup" and not record.two_factor_enabled) or (enrolling and (
                caller.session is None or "pending_secret" not in user or user.get("pending_sid") != caller.sid)):
            raise self._not_enabled()
        if method == "backup" and self.backup_codes_stale(caller):
            # Not a failed attempt: no code of this set can match, so trying one proves nothing.
            raise AuthError(409, "BACKUP_CODES_NEED_REGENERATION",
                            "these backup codes were issued under a key that is no longer configured and "
                            "can no longer be used; sign in another way and generate new ones")
        token, sid = self.session_tokens.issue(uid)
        now = self.now_ms()
        step: int | None = None
        candidates: list[TotpCandidate] = []
        if method == "totp" and enrolling:
            ct = user["pending_secret"]
            secret = yield from self._decrypt_secret(req, caller, ct)
            step = matched_step(secret, code, at=self.config.clock.now(), policy=self.config.totp)
        elif method == "totp":
            candidates, added = yield from self._match_code(req, caller, record, code,
                                                            in_session=caller.challenge is None)
            if added is not None:
                return (yield from self._confirm_authenticator(req, caller, *added))
        normalized = normalize_code(code) if method == "backup" else ""
        failure = RecordFailure(uid, FAILURE_CEILING, now, self.entries(req, "", ("two_factor.locked", "ceiling")))
        ok, remaining, locked = False, 0, False
        if enrolling and step is not None:  # S2: enrolment confirmed
            kid = user.get("pending_kid", "") if caller.pending_codes else ""
            entries = self.entries(req, caller.sid, "two_factor.enabled")
            status = yield Rec(EnableTotp(uid, TOTP_FACTOR_ID, ct, self.keyring.key_id_of(ct), now, step,
                                          caller.pending_codes, kid, audit=entries,
                                          name=user.get("pending_name") or DEFAULT_NAME, while_off=True))
            if status is not Status.CREATED:  # TAKEN, or CHANGED: 2FA went on meanwhile (R6-1)
                raise self._already_enabled()
            self.emit_entries(uid, entries)
            ok = True
        elif enrolling:
            # A typo while enrolling guesses at no factor that guards anything (the secret is the
            # user's own, shown a moment ago): no S2. R2 still counts it (the session's attempts,
            # the temporary lock), but not the permanent lock's streak, which would otherwise
            # lock out for good, at 100 typos, an account that has no second factor (R4-8).
            pass
        else:  # S2: the step accepted, the code consumed, or the failure counted
            # A sign-in that asks to remember its browser records the new trusted device with its
            # proof, in S2: R2 makes the trust record, and a row after it would be a third SQL
            # transaction on every such sign-in. When R2 then refuses (the challenge ended or a
            # lock began meanwhile, or Redis failed) the user is told of a device that was not
            # remembered: a notice too many, never one too few.
            trusted = ("trusted_device.added",) if trust and caller.challenge is not None else ()
            attempt: AcceptAnyTotpStep | ConsumeBackupCode | None = None
            if candidates:
                attempt = AcceptAnyTotpStep(uid, candidates, now,
                                            self.entries(req, sid, ("two_factor.verified", "totp"), *trusted))
            elif normalized:
                attempt = ConsumeBackupCode(uid, self.keyring.code_candidates(normalized),
                                            self.entries(req, sid, ("two_factor.verified", "backup"),
                                                         "two_factor.backup_code_used", *trusted),
                                            LOW_BACKUP_CODES, self.entries(req, sid, "backup_codes.low"))
            proof = yield Rec(ProveSecondFactor(attempt, failure))
            if proof.status in (Status.CHANGED, Status.NOT_FOUND) and isinstance(attempt, AcceptAnyTotpStep):
                # The app the code belongs to was removed or replaced meanwhile: not a wrong guess.
                if len(factors) == 1:
                    raise self._not_enabled()
                raise AuthError(401, "INVALID_CODE", "the code is invalid, expired or already used")
            ok, remaining = proof.ok, proof.remaining
            if ok and attempt is not None:
                rows = [*attempt.audit]
                if isinstance(attempt, ConsumeBackupCode) and remaining <= attempt.low_at:
                    rows += attempt.audit_when_low  # written with them, in S2
                self.emit_entries(uid, rows)
            locked = proof.failure is not None and proof.failure.locked
            if proof.failure is not None and proof.failure.locked_now:  # audited with the lock, in S2
                self.emit_entries(uid, failure.audit_on_lock)
        # A failure that reached the ceiling locks the hot copy too, without end (R2 counts it with
        # a lock of one failure): every script that checks the hot lock then refuses. Its
        # two_factor.locked event is S2's, so R2 writes none (one event per lock, not two).
        lock: tuple[int, int, Flag] = (1, PERMANENT_LOCK_MS, "1") if locked else (
            self.policies.user_lock_failures, self.policies.user_lock_seconds * 1000, "0")
        outcome: Literal["ok", "wrong"] = "ok" if ok else "wrong"
        if caller.challenge is not None and not enrolling:
            return (yield from self._answer_challenge(req, caller, method, outcome, lock, trust, token, sid,
                                                      remaining))
        return (yield from self._answer_in_session(req, caller, method, outcome, lock, enrolling, token, sid,
                                                   remaining))

    def _match_code(self, req: Request, caller: Caller, record: UserRecord, code: str,
                    *, in_session: bool) -> Flow[tuple[list[TotpCandidate], tuple[TotpFactor, int] | None]]:
        """The user's confirmed apps whose code is ``code`` (with the matched step each), and, in
        a session, the app being added that it confirms, if any. Every app is checked, matched or
        not, so the time taken does not tell which one matched. An app whose secret cannot be read
        is left out; when no app can be read the answer is ``_decrypt_secret``'s refusal (a code
        then cannot be checked, so it is not counted as a wrong one)."""
        at, policy = self.config.clock.now(), self.config.totp
        candidates: list[TotpCandidate] = []
        readable = 0
        for factor in confirmed_factors(record):
            secret = self._open_secret(caller, factor)
            if secret is None:
                continue
            readable += 1
            step = matched_step(secret, code, at=at, policy=policy)
            if step is not None:
                candidates.append(TotpCandidate(factor.id, factor.secret, step))
        added: tuple[TotpFactor, int] | None = None
        if in_session:
            for factor in pending(record, self.now_ms()):
                secret = self._open_secret(caller, factor)
                step = matched_step(secret, code, at=at, policy=policy) if secret is not None else None
                if step is not None and added is None:
                    added = (factor, step)
        confirmed = confirmed_factors(record)
        if confirmed and not readable and added is None:
            yield from self._decrypt_secret(req, caller, confirmed[0].secret)  # raises
        return candidates, added

    def _confirm_authenticator(self, req: Request, caller: Caller, factor: TotpFactor, step: int) -> Flow[Response]:
        """A first code from an app added while two-factor is on: the app is confirmed (its replay
        guard starts at that code's step). Adding a factor is a factor change: the session must
        have passed a second factor recently, checked now and again in the hot store after the
        record store committed it (``factor_change.lua``; the confirmation is undone when that
        refuses), as passkey registration does. The session is not rotated: nothing it could do
        changes, and other sessions keep going. Answers better-auth's ``{status, token, user}``
        (the caller's own token) and the app.

        The confirmation may be undone after its commit, so it holds the user's factor-change
        lease until this request settles it, as a removal does (``ConfirmAuthenticator``): while
        another change of the user's factors is in flight it confirms nothing (409), and no
        removal or other change runs in its window, whose undo would compose with this one's
        (R9-1: a removal the app kept from being the last went through, and this undo then
        removed the user's last factor; R9-2: a disable's undo put the app back, confirmed)."""
        uid, session = caller.uid, caller.session or {}
        oldest = self.now_ms() - self.policies.factor_change_max_age * 1000
        if int(session.get("aal") or 1) < 2 or int(session.get("mfa") or 0) < oldest:
            raise self.factor_change_error("FRESH_TWO_FACTOR")
        added = self.entries(req, caller.sid, ("two_factor.authenticator_added", factor.id))
        held: LeasedChange = yield Rec(ConfirmAuthenticator(uid, factor.id, factor.secret, step, self.now_ms(),
                                                            audit=added))
        if held.status is Status.BUSY:
            raise self.two_factor_changed()
        if held.status is not Status.ACCEPTED:  # confirmed by a concurrent request, or removed meanwhile
            raise AuthError(401, "INVALID_CODE", "the code is invalid, expired or already used")
        settling = Settling(self, uid, added)  # the sinks hear it once settled (R10-2)
        try:
            return (yield from self._settle_confirmation(req, caller, factor, step, held, settling))
        finally:
            settling.emit()

    def _settle_confirmation(self, req: Request, caller: Caller, factor: TotpFactor, step: int, held: LeasedChange,
                             settling: Settling) -> Flow[Response]:
        uid = caller.uid
        # Write order: the confirmation first, then factor_change.lua re-checks the rule; a refusal
        # or a hot store that fails undoes it (the undo releases the lease in its transaction), a
        # pass releases the lease (EndRemoval). A crash between keeps the app confirmed (the
        # request had passed the rule when loaded, an instant before), and the lease until it
        # runs out.
        try:  # an app added: it trusted no device yet, none is forgotten
            reply: Verdict = yield from self.commit(self.factor_change(req, caller, "on"), caller.sid)
        except AuthError:  # the hot store is down: the rule cannot be checked, so the app goes again
            with suppress(AuthError):  # logged by _undo_confirm; the hot store's 503 is the answer
                yield from self._undo_confirm(req, caller, factor, held.lease, settling)
            raise
        if reply.status != HotStatus.OK:
            yield from self._undo_confirm(req, caller, factor, held.lease, settling)
            raise self.factor_change_error(reply.status)
        yield from self.end_removal(uid, held.lease)
        settling.emit()
        confirmed = replace(factor, confirmed_at=self.now_ms(), last_step=step, last_used_at=self.now_ms())
        return json_response(200, {"status": True, "token": caller.token, "user": self.user_json(caller),
                                   "authenticator": public(confirmed)})

    def _undo_confirm(self, req: Request, caller: Caller, factor: TotpFactor, lease: int,
                      settling: Settling) -> Flow[None]:
        """Remove an app whose confirmation was refused (or unchecked), releasing its lease in the
        same transaction (``RemoveTotpFactor`` with ``lease``). When the lease is not its own any
        more (a request stalled past it and another change came, or an administrator's change
        cleared it) and the app is the user's last factor, the app stays (a change made since may
        have counted on it: logged). A record store that fails here is logged and raises; the app
        then stays confirmed, the safe direction, and the lease runs out by itself."""
        uid = caller.uid
        removed = self.entries(req, caller.sid, ("two_factor.authenticator_removed", factor.id))
        try:
            status = yield Rec(RemoveTotpFactor(uid, factor.id, audit=removed, lease=lease))
        except AuthError as exc:
            settling.emit()
            log.warning("an authenticator app of user %s stays confirmed: a confirmation that was not confirmed "
                        "could not be undone in the record store (%s)", uid, exc.code)
            raise
        settling.emit()  # settled: the confirmation's rows, then the undo's
        if status is Status.OK:
            self.emit_entries(uid, removed)
        elif status is Status.CHANGED:
            log.warning("an authenticator app of user %s stays confirmed: a confirmation that was not confirmed "
                        "was not undone, another change of the user's factors came first and counts on it", uid)

    def _answer_challenge(self, req: Request, caller: Caller, method: str, outcome: Literal["ok", "wrong"],
                          lock: tuple[int, int, Flag],
                          trust: bool, token: str, sid: str, remaining: int) -> Flow[Response]:
        uid, p, k = caller.uid, self.policies, self.keys
        trust_token, trust_id = self.trust_tokens.issue(uid) if trust else ("", "-")
        reply: Answer = yield from self.commit(ChallengeAnswer(  # R2
            self.head(uid, req), challenge_key=k.challenge(uid, caller.cid), new_session_key=k.session(uid, sid),
            sessions_key=k.sessions(uid), trust_key=k.trust(uid, trust_id), devices_key=k.trusted_devices(uid),
            otp_key=k.otp(uid), method=method, outcome=outcome, new_sid=sid, session_spec=self.session_spec(),
            trust="1" if trust else "0", trust_ttl_ms=p.trust_device_ttl * 1000, lock_failures=lock[0],
            lock_ms=lock[1], amr=f"{AMR_PASSWORD} {AMR_OTP}", lock_audited=lock[2],
            record_generation=caller.record.generation if caller.record is not None else 0), sid,
            durable=self._durable_lock(lock))
        if reply.status == HotStatus.OK:
            remember = caller.challenge is not None and caller.challenge.get("remember") == "1"
            trusted = [self.cookie_header(self.trust_cookie, trust_token, p.trust_device_ttl)] if trust else []
            caller.user["tfa"] = "1"
            return self.signed_in(caller, token, remember=remember, clear_challenge=True, cookies=trusted,
                                  fields=self._remaining(method, remaining))
        raise self.answer_error(reply)

    def _answer_in_session(self, req: Request, caller: Caller, method: str, outcome: Literal["ok", "wrong"],
                           lock: tuple[int, int, Flag],
                           enrolling: bool, token: str, sid: str, remaining: int) -> Flow[Response]:
        uid, k = caller.uid, self.keys
        # The session is rotated (new id, old one ended) in the script that takes the verdict; made
        # by the session spec, so it keeps rememberMe:false's short lifetime and counts toward the cap.
        kid = caller.user.get("pending_kid", "") if caller.pending_codes else ""
        reply: Answer = yield from self.commit(SessionAnswer(  # R2
            self.head(uid, req), session_key=k.session(uid, caller.sid), pending_codes_key=k.pending_backup_codes(uid),
            new_session_key=k.session(uid, sid), sessions_key=k.sessions(uid), otp_key=k.otp(uid),
            mode="enrol" if enrolling else "stepup", method=method, outcome=outcome, sid=caller.sid,
            lock_failures=lock[0], lock_ms=lock[1], new_sid=sid, session_spec=self.session_spec(), amr=AMR_OTP,
            codes_kid=kid, lock_audited=lock[2]), sid, durable=self._durable_lock(lock))
        if reply.status != HotStatus.OK:
            raise self.answer_error(reply)
        caller.user["tfa"] = "1"
        remember = caller.session is not None and caller.session.get("remember") == "1"
        # better-auth's verifyTotp always answers {token, user}; the contract's {status} is kept too.
        return self.signed_in(caller, token, remember=remember, status=True, fields=self._remaining(method, remaining))

    @staticmethod
    def _durable_lock(lock: tuple[int, int, str]) -> dict[str, str] | None:
        """The temporary lock R2 may set is decided in the hot store, so it reaches the audit table
        (and the user's notice) by a row appended after R2: one more SQL transaction, only on the
        failure that locks (while locked, a verification is refused before S2). The permanent lock
        is there already, written with the failure that reached the ceiling (S2)."""
        return None if lock[1] == PERMANENT_LOCK_MS else {"two_factor.locked": "temporary"}

    @staticmethod
    def _remaining(method: str, remaining: int) -> dict[str, Any]:
        """What a verify answer adds to ``{token, user}``: the backup codes left, after one is used."""
        return {"backupCodesRemaining": remaining} if method == "backup" else {}

    def answer_error(self, reply: Answer | OtpEnrolled) -> AuthError:
        """The refusal a verifying script's reply names (challenge_answer, session_answer, otp_enrol)."""
        status = reply.status
        if status == HotStatus.LOCKED:
            return self.locked_error(int(reply.lock_until))
        if status == HotStatus.WRONG and isinstance(reply, Answer) and reply.attempts_left is not None:
            return AuthError(401, "INVALID_CODE", "the code is invalid, expired or already used",
                             extra={"attemptsRemaining": int(reply.attempts_left)})
        if status == HotStatus.WRONG:
            return AuthError(401, "INVALID_CODE", "the code is invalid, expired or already used")
        if status == HotStatus.EXHAUSTED:
            cleared = self.clear_cookie(self.challenge_cookie)
            return AuthError(401, "TOO_MANY_ATTEMPTS", "too many wrong codes for this sign-in; sign in again",
                             headers={cleared[0]: cleared[1]})
        if status == HotStatus.NOT_ENABLED:
            return self._not_enabled()
        if status == HotStatus.ALREADY:
            return self._already_enabled()
        return AuthError(401, *UNAUTHORIZED)


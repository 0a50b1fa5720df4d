"""What the host app and its administrators call (``BanataAuth``, the CLI), not an endpoint: import
a TOTP secret, reset a user's second factor, revoke a user's sessions. ``origin`` is the
administrator's request as the host describes it (address and user agent, for the audit trail and
the user's notice), or None (the command line, a script)."""

from __future__ import annotations

from typing import Literal

from ..effects import Flow, Rec
from ..http import Request
from ..stores.hot_ops import TwoFactorImport, UserReset
from ..stores.records import EnableTotp, ListPasskeys, Passkey, RemoveSecondFactor, RevokeSessions
from ..totp import totp_uri
from .two_factor import TOTP_FACTOR_ID, TwoFactorFlows

__all__ = ["AdminFlows"]


class AdminFlows(TwoFactorFlows):
    """Operations on a user by id, with no request: the record store first, then the hot store."""

    def import_totp(self, uid: str, secret: str, *, email: str | None, backup_codes: bool,
                    origin: Request | None = None) -> Flow[tuple[str, list[str]]]:
        """2FA on with a known base32 secret as the user's one authenticator app, replacing every
        earlier app and the backup codes; returns (totpURI, new backup codes or []). The record
        store first, then the copy."""
        codes, hashes = self.new_backup_codes(None if backup_codes else 0)
        kid = hashes[0] if codes else ""
        ct = self.keyring.encrypt(secret.encode(), context=uid)
        entries = self.entries(origin, "", ("two_factor.enabled", "import"))
        yield Rec(EnableTotp(uid, TOTP_FACTOR_ID, ct, self.keyring.key_id_of(ct), self.now_ms(), 0, hashes[1:], kid,
                             replace=True, audit=entries))
        self.emit_entries(uid, entries)
        yield from self.commit(TwoFactorImport(self.head(uid, origin),
                                               pending_codes_key=self.keys.pending_backup_codes(uid),
                                               otp_key=self.keys.otp(uid), codes_kid=kid))
        uri = totp_uri(secret, issuer=self.config.app_name, account=email or uid, policy=self.config.totp)
        return uri, codes

    def reset_user(self, uid: str, mode: Literal["revoke", "reset"], origin: Request | None = None) -> Flow[None]:
        """'revoke': end every session of the user; 'reset': that, and remove their second factor
        and passkeys and lift the permanent lock. Access is taken away first, where it is enforced
        (the hot store: sessions, challenges, remembered devices end), then the record store keeps
        it durable (revoked_at, the factors' removal). A failure or crash between them leaves the
        user signed out with the factor still in place (safe; the administrator repeats the
        command); the other order would leave a thief's session alive behind a 503 (review R4-1)."""
        now = self.now_ms()
        yield from self.commit(UserReset(self.head(uid, origin),
                                         pending_codes_key=self.keys.pending_backup_codes(uid), mode=mode))
        if mode == "reset":
            # Each passkey's removal is audited by its id (a passkey added between this read and
            # the removal goes too, unnamed in the trail: the reset's own row still records it).
            passkeys: tuple[Passkey, ...] = yield Rec(ListPasskeys(uid))
            entries = self.entries(origin, "", "two_factor.reset_by_admin",
                                   *(("passkey.deleted", p.credential_id) for p in passkeys))
            yield Rec(RemoveSecondFactor(uid, now, passkeys=True, audit=entries))
            self.emit_entries(uid, entries)
        else:
            # The durable trail records the revocation too (the sinks heard it from user_reset above).
            yield Rec(RevokeSessions(uid, now, audit=self.entries(origin, "", ("session.revoked", "all"))))

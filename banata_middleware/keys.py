"""Every store key, built in one place.

All keys of one user carry the hash tag ``{u:<id>}`` so that every script touches one Redis
Cluster slot (DESIGN rule 4). Ids inside key names are hashes, never the tokens in cookies.
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _u(self, uid: str) -> str:
        return f"{self.prefix}:{{u:{uid}}}"

    def for_load(self, uid: str, sid_hash: str, cid_hash: str) -> tuple[str, str, str, str]:
        """The keys the ``Load`` read reads, built from one prefix (this runs on every request)."""
        u = f"{self.prefix}:{{u:{uid}}}"
        return u + ":user", u + ":s:" + sid_hash, u + ":ch:" + cid_hash, u + ":bcp"

    def for_guard(self, uid: str, sid_hash: str, cid_hash: str) -> tuple[str, str, str]:
        """The keys the ``Guard`` read reads (every protected request)."""
        u = f"{self.prefix}:{{u:{uid}}}"
        return u + ":user", u + ":s:" + sid_hash, u + ":ch:" + cid_hash

    def user(self, uid: str) -> str:
        """Hash: the read-through copy of the durable record (profile, 2FA on, generation), and hot
        fields (failure count, temporary lock, pending enrolment). Never a password hash."""
        return self._u(uid) + ":user"

    def audit(self, uid: str) -> str:
        return self._u(uid) + ":audit"

    def session(self, uid: str, sid_hash: str) -> str:
        return self._u(uid) + ":s:" + sid_hash

    def sessions(self, uid: str) -> str:
        """Set of the user's session hashes (for revocation)."""
        return self._u(uid) + ":sessions"

    def sessions_by_age(self, uid: str) -> str:
        """Sorted set: session hash -> creation time, for the cap of sessions per user. Built inside
        ``new_session`` (``lua/_prelude.lua``) as the index key + ``:age``; named here for tests and tools."""
        return self.sessions(uid) + ":age"

    def challenge(self, uid: str, cid_hash: str) -> str:
        return self._u(uid) + ":ch:" + cid_hash

    def trust(self, uid: str, tid_hash: str) -> str:
        return self._u(uid) + ":td:" + tid_hash

    def trusted_devices(self, uid: str) -> str:
        """Sorted set: the user's trust record ids -> last use, for their list of trusted devices
        (bounded: ``index_device`` in ``lua/_prelude.lua``)."""
        return self._u(uid) + ":tds"

    def pending_backup_codes(self, uid: str) -> str:
        """Set: the hashes of the codes handed out by ``enable``; they go to the record store (SQL)
        with the factor when enrolment is confirmed. Confirmed codes live only there."""
        return self._u(uid) + ":bcp"

    def otp(self, uid: str) -> str:
        """Hash: the user's one live code sent by message (its keyed hash, what it is bound to and
        for, its expiry, the channel and address): one per user, so a new one voids the last."""
        return self._u(uid) + ":otp"

    def otp_sends(self, uid: str) -> str:
        """Sorted set: the user's recent code sends (id -> time), for the resend throttle."""
        return self._u(uid) + ":otps"

    def ceremony(self, rid_hash: str) -> str:
        """The single-use mark of a WebAuthn challenge (the ceremony itself is in its cookie); its
        own slot, since sign-in ceremonies start before a user is known."""
        return f"{self.prefix}:{{pc:{rid_hash}}}:ceremony"

    def account_failures(self, email_index: str) -> str:
        return f"{self.prefix}:{{e:{email_index}}}:fails"

    def account_address_failures(self, email_index: str, address_index: str) -> str:
        """Failed passwords for one account from one client address."""
        return f"{self.prefix}:{{e:{email_index}}}:fails:{address_index}"

    def known_addresses(self, email_index: str) -> str:
        """Sorted set: client addresses (hashed) that signed in to the account -> when they last did."""
        return f"{self.prefix}:{{e:{email_index}}}:known"

    def address_failures(self, address_index: str) -> str:
        return f"{self.prefix}:{{a:{address_index}}}:fails"

    def address_hashes(self, address_index: str) -> str:
        """Password hashes one client address caused in the current window (sign-in, re-checks)."""
        return f"{self.prefix}:{{a:{address_index}}}:hashes"

    def anonymous_records(self) -> str:
        """How many records anonymous requests added in the current window, all addresses together."""
        return f"{self.prefix}:{{anon}}:records"

    def address_sign_ups(self, address_index: str) -> str:
        """Sign-up attempts from one client address (counted whatever their outcome)."""
        return f"{self.prefix}:{{a:{address_index}}}:signups"

    def address_passkey_sign_ins(self, address_index: str) -> str:
        """Passkey sign-ins that verified, from one client address."""
        return f"{self.prefix}:{{a:{address_index}}}:pksignins"

"""Administration: re-encrypting TOTP secrets under the newest key (rotation): the confirmed ones in
the record store, a pending setup's in the hot store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .crypto import UnreadableSecret
from .effects import Flow, Rec
from .service import BanataAuth
from .stores.hot_ops import SecretReencrypt
from .stores.records import ListTotpSecrets, RewrapTotpSecret, Status, TotpFactor

__all__ = ["RotationReport", "rotate_keys"]


class _ListsUsers(Protocol):
    def user_ids(self, prefix: str) -> list[str]: ...


@dataclass
class RotationReport:
    users: int = 0
    reencrypted: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    #: users whose backup codes are hashed under an older key: hashes cannot be re-keyed, so these
    #: codes stop matching when that key's secret is dropped; ask these users to regenerate first
    backup_codes_old_key: int = 0
    #: (user id, field, why) for each stored secret that could not be decrypted, left as it is
    skipped: list[tuple[str, str, str]] = field(default_factory=list)


def _rotate_user(auth: BanataAuth, uid: str, report: RotationReport) -> Flow[None]:
    """The hot store's part of one user: a pending setup's secret."""
    caller = yield from auth.flows.load(uid)
    keyring = auth.keyring
    codes_kid = caller.user.get("codes_kid")
    if codes_kid and codes_kid != keyring.current_code_key_id:
        report.backup_codes_old_key += 1
    old = caller.user.get("pending_secret")
    if not old:
        return
    new = _reencrypt(auth, uid, "pending_secret", old, report)
    if new is not None:
        swapped = yield SecretReencrypt(user_key=auth.flows.keys.user(uid), now_ms=auth.flows.now_ms(), old_secret=old,
                                        new_secret=new)
        _count(report, bool(swapped))


def _reencrypt(auth: BanataAuth, uid: str, name: str, old: str, report: RotationReport) -> str | None:
    """``old`` under the newest key, or None (already current, or unreadable: noted in ``report``)."""
    keyring = auth.keyring
    if keyring.key_id_of(old) == keyring.current_key_id:
        report.current += 1
        return None
    try:
        plain = keyring.decrypt(old, context=uid)
    except UnreadableSecret as exc:
        # One bad record (copied between users, corrupted, or made with a key no longer
        # configured) must not leave every record after it unrotated: note it and go on.
        report.skipped.append((uid, name, str(exc)))
        return None
    return keyring.encrypt(plain, context=uid)


def _count(report: RotationReport, swapped: bool) -> None:
    if swapped:
        report.reencrypted += 1
    else:
        report.changed_meanwhile += 1


def _rotate_factors(auth: BanataAuth, report: RotationReport) -> Flow[None]:
    """The record store's TOTP secrets not under the newest key, page by page: each swap is
    compare-and-set (``RewrapTotpSecret``), so a factor re-enrolled or removed meanwhile is left as is."""
    keyring = auth.keyring
    after = ("", "")
    while True:
        page: tuple[TotpFactor, ...] = yield Rec(ListTotpSecrets(keyring.current_key_id, after))
        if not page:
            return
        for factor in page:
            after = (factor.user_id, factor.id)
            new = _reencrypt(auth, factor.user_id, "secret", factor.secret, report)
            if new is not None:
                status = yield Rec(RewrapTotpSecret(factor.user_id, factor.id, factor.secret, new,
                                                    keyring.key_id_of(new)))
                _count(report, status is Status.OK)


def rotate_keys(auth: BanataAuth) -> RotationReport:
    """Re-encrypt every stored TOTP secret made with an older key (``previous_secrets``) under the
    current one. Safe to run while serving: each swap is compare-and-set. Afterwards the old
    secret can be dropped from ``previous_secrets`` (cookies signed with it then stop working).
    A secret that cannot be decrypted is skipped and listed in ``report.skipped``."""
    store = auth.store
    if not hasattr(store, "user_ids"):
        raise TypeError("this store cannot list its users")
    lister: _ListsUsers = store  # type: ignore[assignment]
    report = RotationReport()
    for uid in lister.user_ids(auth.config.key_prefix):
        report.users += 1
        auth.run(_rotate_user(auth, uid, report))
    auth.run(_rotate_factors(auth, report))
    return report

"""Administration: re-encrypting TOTP secrets under the newest key (rotation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .crypto import UnreadableSecret
from .effects import Flow, Op
from .service import BanataAuth

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
    caller = yield from auth.flows.load(uid)
    keyring = auth.keyring
    codes_kid = caller.user.get("codes_kid")
    if caller.backup_codes and codes_kid and codes_kid != keyring.current_code_key_id:
        report.backup_codes_old_key += 1
    for name in ("secret", "pending_secret"):
        old = caller.user.get(name)
        if not old:
            continue
        if keyring.key_id_of(old) == keyring.current_key_id:
            report.current += 1
            continue
        try:
            plain = keyring.decrypt(old, context=uid)
        except UnreadableSecret as exc:
            # One bad record (copied between users, corrupted, or made with a key no longer
            # configured) must not leave every record after it unrotated: note it and go on.
            report.skipped.append((uid, name, str(exc)))
            continue
        new = keyring.encrypt(plain, context=uid)
        swapped = yield Op("secret_reencrypt", (auth.flows.keys.user(uid),), (auth.flows.now_ms(), name, old, new))
        if swapped:
            report.reencrypted += 1
        else:
            report.changed_meanwhile += 1


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
    return report

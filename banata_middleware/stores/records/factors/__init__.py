"""One module per second factor: its table (``define_table``), its record type, its operations,
and ``FACTOR``: what it contributes to the shared parts (``factor.Factor``: its tables, its part of
``LoadUser``, whether it turns two-factor on, its ``twoFactorMethods`` names, how disable and an
administrator's reset take, remove and put back its rows).

``FACTORS`` lists them, once; its order is the order a pending sign-in offers their methods in.
A new factor is a new module here, one line below and a migration (docs/storage.md, "Adding a factor").
"""

from __future__ import annotations

from ..factor import Factor
from . import backup_codes, otp, passkeys, totp

__all__ = ["FACTORS", "by_name"]

FACTORS: tuple[Factor, ...] = (totp.FACTOR, otp.FACTOR, backup_codes.FACTOR, passkeys.FACTOR)


def _check(factors: tuple[Factor, ...]) -> None:
    """What the shared code relies on, checked at import (a new factor's mistake fails at once)."""
    names = [f.name for f in factors]
    if len(set(names)) != len(names):
        raise ValueError(f"two factors of one name: {names}")
    if sum(f.joined is not None for f in factors) > 1:
        raise ValueError("LoadUser joins the rows of one factor at most")
    for f in factors:
        if (f.on_in_sql is None) != (f.turns_on is None):
            raise ValueError(f"factor {f.name}: turns_on and on_in_sql go together")
        if not f.kept_by_disable and (f.take is None or f.put_back is None):
            raise ValueError(f"factor {f.name}: disable removes it, so it needs take and put_back")


_check(FACTORS)


def by_name(name: str) -> Factor:
    return next(f for f in FACTORS if f.name == name)

"""A virtual phone authenticator app: scan ``otpauth://totp/`` URIs, read codes (RFC 6238).

Codes are computed here with ``hmac`` rather than through pyotp, so the simulator is a second,
independent implementation of the algorithm the server runs (and is checked against RFC 6238
Appendix B and ``oathtool`` in the tests).
"""

from __future__ import annotations

import hashlib
import hmac

from banata_middleware.clock import SYSTEM_CLOCK, Clock

from .otpauth import TotpParameters, parse_otpauth_uri

__all__ = ["Account", "VirtualAuthenticator", "hotp", "time_step"]

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def hotp(key: bytes, counter: int, *, digits: int = 6, algorithm: str = "SHA1") -> str:
    """The HOTP value of ``counter`` under ``key`` (RFC 4226 section 5.3, hash per RFC 6238).

    ``digits`` is the code length; ``algorithm`` is SHA1, SHA256 or SHA512.
    """
    if not 0 <= counter < 2**64:
        raise ValueError(f"counter {counter} does not fit the 8-byte moving factor")
    mac = hmac.new(key, counter.to_bytes(8, "big"), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F  # dynamic truncation, RFC 4226 section 5.4
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(at: float, period: int = 30) -> int:
    """T = floor((at - T0) / X) with T0 = 0 (RFC 6238 section 4.2); ``at`` in Unix seconds."""
    # Floor division is exact for floats too, where floor(at / period) can round up.
    return int(at // period)


class Account:
    """One entry in the app: a TOTP secret for one account at one issuer, read on ``clock``."""

    def __init__(self, parameters: TotpParameters, *, clock: Clock) -> None:
        self.parameters = parameters
        self.clock = clock

    def __repr__(self) -> str:
        return f"Account(issuer={self.issuer!r}, name={self.name!r})"

    @property
    def secret(self) -> str:
        """The shared secret, upper-case base32 without padding."""
        return self.parameters.secret

    @property
    def issuer(self) -> str:
        return self.parameters.issuer

    @property
    def name(self) -> str:
        return self.parameters.name

    @property
    def algorithm(self) -> str:
        return self.parameters.algorithm

    @property
    def digits(self) -> int:
        return self.parameters.digits

    @property
    def period(self) -> int:
        return self.parameters.period

    def step(self, at: float | None = None) -> int:
        """The RFC 6238 time-step counter T at ``at`` (Unix seconds; default: this clock's now)."""
        return time_step(self.clock.now() if at is None else at, self.period)

    def code(self, at: float | None = None, steps: int = 0) -> str:
        """The code shown at instant ``at`` (default: the clock's now), ``steps`` periods later
        (negative: earlier) -- what a user would type."""
        return hotp(
            self.parameters.key,
            self.step(at) + steps,
            digits=self.digits,
            algorithm=self.algorithm,
        )

    def remaining(self, at: float | None = None) -> float:
        """Seconds until the code shown at ``at`` changes (the app's countdown)."""
        t = self.clock.now() if at is None else at
        return (self.step(t) + 1) * self.period - t


class VirtualAuthenticator:
    """A phone authenticator app holding several accounts, all reading the phone's ``clock``.

    ``clock`` is the phone's time (default: the real clock); give it an ``OffsetClock`` or
    ``DriftingClock`` from :mod:`.clocks` to model a phone that is off. With exactly one
    account, the app itself answers ``code()``, ``secret``, ``issuer``... for it.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = SYSTEM_CLOCK if clock is None else clock
        self._accounts: list[Account] = []

    @classmethod
    def from_uri(cls, uri: str, *, clock: Clock | None = None) -> VirtualAuthenticator:
        """An app that has scanned ``uri`` (an ``otpauth://totp/`` URI) and nothing else."""
        app = cls(clock=clock)
        app.add_uri(uri)
        return app

    def __repr__(self) -> str:
        return f"VirtualAuthenticator({len(self._accounts)} accounts, clock={self._clock!r})"

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def accounts(self) -> tuple[Account, ...]:
        return tuple(self._accounts)

    def add_uri(self, uri: str) -> Account:
        """Scan ``uri``; raises ``ValueError`` for a bad one.

        Scanning an issuer and account name already held replaces that entry, as apps offer
        on re-enrolment, so a test can re-enrol without the old secret lingering.
        """
        account = Account(parse_otpauth_uri(uri), clock=self._clock)
        self._accounts = [
            a for a in self._accounts if (a.issuer, a.name) != (account.issuer, account.name)
        ]
        self._accounts.append(account)
        return account

    def remove(self, account: Account) -> None:
        """Delete an entry, as a user does after disabling 2FA."""
        self._accounts.remove(account)

    def account(self, *, issuer: str | None = None, name: str | None = None) -> Account:
        """The one account matching the given ``issuer`` and/or ``name``; ``LookupError`` when
        none or several match."""
        found = [
            a
            for a in self._accounts
            if (issuer is None or a.issuer == issuer) and (name is None or a.name == name)
        ]
        if len(found) != 1:
            raise LookupError(
                f"{len(found)} accounts match issuer={issuer!r} name={name!r};"
                f" the app holds {[(a.issuer, a.name) for a in self._accounts]}"
            )
        return found[0]

    def _only(self) -> Account:
        if len(self._accounts) != 1:
            raise LookupError(
                f"the app holds {len(self._accounts)} accounts;"
                " pick one with .account(issuer=..., name=...)"
            )
        return self._accounts[0]

    # The single-account form: ``VirtualAuthenticator.from_uri(uri).code()``.

    @property
    def secret(self) -> str:
        return self._only().secret

    @property
    def issuer(self) -> str:
        return self._only().issuer

    @property
    def name(self) -> str:
        return self._only().name

    @property
    def algorithm(self) -> str:
        return self._only().algorithm

    @property
    def digits(self) -> int:
        return self._only().digits

    @property
    def period(self) -> int:
        return self._only().period

    def step(self, at: float | None = None) -> int:
        """The only account's time-step counter at ``at`` (default: now)."""
        return self._only().step(at)

    def code(self, at: float | None = None, steps: int = 0) -> str:
        """The only account's code at ``at`` (default: now), shifted by ``steps`` periods."""
        return self._only().code(at, steps)

    def remaining(self, at: float | None = None) -> float:
        """Seconds until the only account's code changes."""
        return self._only().remaining(at)

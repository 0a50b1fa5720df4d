"""TOTP (RFC 6238) secrets, URIs and verification that reports the matched time step.

The verifier never decides replay on its own: it returns the step it matched, and the store's
atomic commit refuses any step at or before the user's last accepted one (RFC 6238 section 5.2).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import quote, urlencode

import pyotp
from pyotp.utils import strings_equal

from .config import TotpPolicy

__all__ = ["matched_step", "new_secret", "totp_uri"]

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def new_secret() -> str:
    """160 random bits (RFC 4226 recommends at least 128), base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def totp_uri(secret: str, *, issuer: str, account: str, policy: TotpPolicy) -> str:
    """``otpauth://totp/<issuer>:<account>?secret=...&issuer=...&algorithm=...&digits=...&period=...``."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": policy.algorithm,
            "digits": policy.digits,
            "period": policy.period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def matched_step(secret: str, code: str, *, at: float, policy: TotpPolicy) -> int | None:
    """The time step whose code equals ``code`` within +-``policy.window`` steps of ``at``, else None.

    When several steps match (a 1-in-a-million collision) the latest wins, so the replay guard
    is never tricked into refusing a fresh code because an older step also matched.
    """
    if len(code) != policy.digits or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=policy.digits, digest=_DIGESTS[policy.algorithm], interval=policy.period)
    now_step = int(at) // policy.period
    found: int | None = None
    for step in range(now_step - policy.window, now_step + policy.window + 1):
        # Compare every candidate, matched or not, so timing does not reveal which step matched.
        if strings_equal(code, totp.generate_otp(step)):
            found = step
    return found

"""TOTP (RFC 6238) secrets, URIs and verification that reports the matched time step.

The verifier never decides replay on its own: it returns the step it matched, and the store's
atomic commit refuses any step at or before the user's last accepted one (RFC 6238 section 5.2).

Codes are computed here with ``hmac`` on the raw key (RFC 4226 HOTP with the RFC 6238 counter),
not through pyotp: pyotp >= 2.12 refuses keys under 112 bits, but the 80- and 96-bit secrets older
systems issued are exactly what ``import_totp`` migrates, and decoding the base32 secret once per
verification instead of once per candidate step is also faster.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import quote, urlencode

from .config import TotpPolicy

__all__ = ["hotp", "matched_step", "new_secret", "totp_uri"]

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


def _key(secret: str) -> bytes:
    """The raw key of a base32 secret (case and padding as any authenticator app accepts them)."""
    cleaned = secret.replace(" ", "").upper().rstrip("=")
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(key: bytes, counter: int, *, digits: int, algorithm: str) -> str:
    """RFC 4226 section 5.3: HMAC of the 8-byte counter, dynamic truncation (section 5.4), the
    low ``digits`` decimal digits. RFC 6238 only swaps the hash and makes the counter a time step."""
    mac = hmac.new(key, counter.to_bytes(8, "big"), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFF_FFFF
    return str(binary % 10**digits).zfill(digits)


def matched_step(secret: str, code: str, *, at: float, policy: TotpPolicy) -> int | None:
    """The time step whose code equals ``code`` within +-``policy.window`` steps of ``at``, else None.

    When several steps match (a 1-in-a-million collision) the latest wins, so the replay guard
    is never tricked into refusing a fresh code because an older step also matched.
    """
    if len(code) != policy.digits or not (code.isascii() and code.isdigit()):
        return None
    key = _key(secret)
    digits, algorithm = policy.digits, policy.algorithm
    now_step = int(at) // policy.period
    found: int | None = None
    for step in range(max(0, now_step - policy.window), now_step + policy.window + 1):
        # Compare every candidate, matched or not, so timing does not reveal which step matched.
        if hmac.compare_digest(code, hotp(key, step, digits=digits, algorithm=algorithm)):
            found = step
    return found

"""Reading ``otpauth://totp/...`` provisioning URIs the way an authenticator app does.

The format is Google Authenticator's "Key Uri Format" (there is no RFC for the URI itself);
the parameters it carries are those of TOTP, RFC 6238: a shared secret, the HMAC hash, the
number of digits and the time-step length.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["TotpParameters", "decode_base32_secret", "parse_otpauth_uri"]

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
_BASE32 = re.compile(r"[A-Z2-7]+")


@dataclass(frozen=True)
class TotpParameters:
    """One account's TOTP setup as carried by an ``otpauth://totp/`` URI.

    ``secret`` is the shared key as upper-case base32 without padding and ``key`` its bytes;
    ``issuer`` names the service ("" when the URI gives none) and ``name`` the account at that
    service; ``algorithm`` is the HMAC hash (RFC 6238 section 1.2: SHA1, SHA256 or SHA512),
    ``digits`` the code length and ``period`` the time step X in seconds (section 4.1).
    """

    secret: str = field(repr=False)
    key: bytes = field(repr=False)
    issuer: str
    name: str
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30


def decode_base32_secret(secret: str) -> tuple[str, bytes]:
    """Normalise a base32 secret (any case, padding optional, spaces ignored) and decode it.

    Returns ``(upper-case unpadded base32, key bytes)``; raises ``ValueError`` when it is not
    base32 (RFC 4648 section 6).
    """
    text = secret.replace(" ", "").rstrip("=").upper()
    if not text:
        raise ValueError("the secret is empty")
    if not _BASE32.fullmatch(text):
        raise ValueError("the secret is not base32 (RFC 4648 letters A-Z and digits 2-7)")
    padded = text + "=" * (-len(text) % 8)
    try:
        key = base64.b32decode(padded)
    except binascii.Error as exc:
        # Lengths 1, 3 and 6 mod 8 cannot come from whole bytes.
        raise ValueError(f"the secret is not valid base32 ({len(text)} characters)") from exc
    return text, key


def parse_otpauth_uri(uri: str) -> TotpParameters:
    """Parse ``otpauth://totp/[Issuer:]account?secret=...[&issuer=...&algorithm=...&digits=...&period=...]``.

    The label is percent-decoded; when both the label prefix and the ``issuer`` parameter name
    an issuer they must agree. Unknown parameters (``image``...) are ignored, as apps do.
    Raises ``ValueError`` saying what is wrong: not otpauth, ``hotp`` (counter-based, RFC 4226,
    not simulated), no or bad secret, unknown algorithm, digits outside 6-8, bad period.
    """
    parts = urlsplit(uri.strip())
    if parts.scheme.lower() != "otpauth":
        raise ValueError(f"not an otpauth:// URI: {uri!r}")
    kind = parts.netloc.lower()
    if kind == "hotp":
        raise ValueError("otpauth://hotp/ (counter-based HOTP) is not supported; only totp")
    if kind != "totp":
        raise ValueError(f"unknown OTP type {parts.netloc!r}; expected otpauth://totp/")

    issuer_in_label, name = _split_label(unquote(parts.path.lstrip("/")))
    params = _single_valued(parts.query)

    if "secret" not in params:
        raise ValueError("the URI has no secret= parameter")
    secret, key = decode_base32_secret(params["secret"])

    issuer = params.get("issuer", issuer_in_label or "")
    if issuer_in_label is not None and "issuer" in params and issuer_in_label != issuer:
        raise ValueError(
            f"label issuer {issuer_in_label!r} differs from issuer parameter {params['issuer']!r}"
        )

    algorithm = params.get("algorithm", "SHA1").upper()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm {params['algorithm']!r} is not one of SHA1, SHA256, SHA512")

    return TotpParameters(
        secret=secret,
        key=key,
        issuer=issuer,
        name=name,
        algorithm=algorithm,
        digits=_integer(params, "digits", default=6, low=6, high=8),
        period=_integer(params, "period", default=30, low=1, high=None),
    )


def _split_label(label: str) -> tuple[str | None, str]:
    """``"Issuer:alice"`` -> ``("Issuer", "alice")``; ``"alice"`` -> ``(None, "alice")``."""
    issuer, sep, name = label.partition(":")
    if not sep:
        return None, label
    # The Key Uri Format allows spaces after the colon.
    return issuer, name.lstrip(" ")


def _single_valued(query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        # Two different secrets in one URI would make the app's choice a guess.
        if key.lower() in params:
            raise ValueError(f"parameter {key!r} given more than once")
        params[key.lower()] = value
    return params


def _integer(params: dict[str, str], key: str, *, default: int, low: int, high: int | None) -> int:
    if key not in params:
        return default
    text = params[key].strip()
    if not text.isdigit():
        raise ValueError(f"{key}={params[key]!r} is not a whole number")
    value = int(text)
    if value < low or (high is not None and value > high):
        bounds = f"{low}-{high}" if high is not None else f">= {low}"
        raise ValueError(f"{key}={value} is outside {bounds}")
    return value

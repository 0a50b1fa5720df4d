"""Backup (recovery) codes: 8 characters of A-Z0-9, single use, stored only as keyed hashes."""

from __future__ import annotations

import secrets
import string

__all__ = ["generate_codes", "normalize_code"]

_ALPHABET = string.ascii_uppercase + string.digits
CODE_LENGTH = 8


def generate_codes(count: int) -> list[str]:
    """``count`` distinct codes (about 41 bits each)."""
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH)))
    return sorted(codes)


def normalize_code(raw: str) -> str | None:
    """Upper-case and drop spaces and dashes, as a person types it; None if it cannot be a code."""
    code = raw.upper().replace(" ", "").replace("-", "")
    if len(code) != CODE_LENGTH or any(c not in _ALPHABET for c in code):
        return None
    return code

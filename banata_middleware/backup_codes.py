"""Backup (recovery) codes: single use, stored only as keyed hashes. Their length, alphabet and
grouping are a ``BackupCodePolicy``; the default is the product docs' 8 characters of A-Z0-9."""

from __future__ import annotations

import secrets

from .config import BackupCodePolicy

__all__ = ["generate_codes", "normalize_code"]

DEFAULT_POLICY = BackupCodePolicy()
CODE_LENGTH = DEFAULT_POLICY.length
_ALPHABET = frozenset(DEFAULT_POLICY.alphabet)
# What a code may be once normalized, whatever the policy: codes issued under an earlier policy
# (say 8 characters, before a switch to 13) stay usable; their hashes decide, not their length.
MIN_LENGTH, MAX_LENGTH = 6, 32


def generate_codes(count: int, policy: BackupCodePolicy = DEFAULT_POLICY) -> list[str]:
    """``count`` distinct codes as shown to the user (grouped with '-' if the policy says so);
    ``normalize_code`` gives what is hashed."""
    codes: set[str] = set()
    while len(codes) < count:
        codes.add("".join(secrets.choice(policy.alphabet) for _ in range(policy.length)))
    if policy.group:
        n = policy.group
        return sorted("-".join(c[i:i + n] for i in range(0, len(c), n)) for c in codes)
    return sorted(codes)


def normalize_code(raw: str) -> str | None:
    """Upper-case and drop whitespace and dashes, as a person types it (``abcde-fghij klm``); None
    if it cannot be a code."""
    code = "".join(raw.upper().replace("-", "").split())
    if not MIN_LENGTH <= len(code) <= MAX_LENGTH or any(c not in _ALPHABET for c in code):
        return None
    return code

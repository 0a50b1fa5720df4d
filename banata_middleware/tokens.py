"""Signed cookie values: ``<user id>.<random id>`` plus an HMAC (itsdangerous).

The user id travels in the cookie so the store key (with the user's hash tag) can be built
without a lookup; the random id is stored only as its SHA-256. Each cookie kind has its own salt,
so a pending-challenge cookie can never be replayed as a session cookie.
"""

from __future__ import annotations

import hashlib
import re

from itsdangerous import BadSignature, Signer

from .crypto import new_token

__all__ = ["TokenSigner", "valid_user_id"]

_USER_ID = re.compile(r"[A-Za-z0-9_.@:+\-]{1,128}")


def valid_user_id(user_id: str) -> bool:
    """User ids go into key names and cookies: no braces (hash tags), no cookie separators."""
    return bool(_USER_ID.fullmatch(user_id))


class TokenSigner:
    def __init__(self, keys: list[bytes], kind: str) -> None:
        # itsdangerous signs with the last key and accepts any: oldest first.
        self._signer = Signer(
            list(reversed(keys)),
            salt=f"banata.{kind}",
            key_derivation="none",
            digest_method=hashlib.sha256,
        )

    def issue(self, user_id: str) -> tuple[str, str]:
        """A new (token, random id) for ``user_id``."""
        rid = new_token()
        return self._signer.sign(f"{user_id}.{rid}").decode(), rid

    def read(self, token: str | None) -> tuple[str, str] | None:
        """(user id, random id) from a token, or None if it is absent, malformed or forged."""
        if not token or len(token) > 512:
            return None
        try:
            value = self._signer.unsign(token).decode()
        except (BadSignature, UnicodeError, ValueError):
            return None
        user_id, _, rid = value.rpartition(".")
        if not rid or not valid_user_id(user_id):
            return None
        return user_id, rid

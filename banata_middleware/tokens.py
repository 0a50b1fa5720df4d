"""Signed cookie values: ``<user id>.<random id>`` plus an HMAC (itsdangerous).

The user id travels in the cookie so the store key (with the user's hash tag) can be built
without a lookup; the random id is stored only as its SHA-256. Each cookie kind has its own signing
key (derived from the app's keys and the kind), so a pending-challenge cookie can never be replayed
as a session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from itsdangerous import BadSignature, Signer

from .crypto import hash_token, new_token

__all__ = ["SealSigner", "TokenSigner", "valid_user_id"]

_USER_ID = re.compile(r"[A-Za-z0-9_.@:+\-]{1,128}")


def valid_user_id(user_id: str) -> bool:
    """User ids go into key names and cookies: no braces (hash tags), no cookie separators."""
    return bool(_USER_ID.fullmatch(user_id))


class TokenSigner:
    # Verified tokens are remembered (the HMAC check is most of an authenticated request's cost).
    # Only tokens whose signature passed enter the cache, so it cannot be filled by forgeries;
    # whether the session is still live is always asked of the store.
    CACHE_SIZE = 8192

    def __init__(self, keys: list[bytes], kind: str) -> None:
        self._verified: dict[str, tuple[str, str]] = {}
        # One key per kind, derived once: with key_derivation="none" itsdangerous ignores the salt,
        # so the kinds must be told apart by the key itself (a pending-challenge token must not
        # verify as a session token).
        salt = f"banata.{kind}".encode()
        kind_keys = [hmac.new(key, salt, hashlib.sha256).digest() for key in keys]
        # itsdangerous signs with the last key and accepts any: oldest first.
        self._signer = Signer(
            list(reversed(kind_keys)),
            salt=salt,
            key_derivation="none",
            digest_method=hashlib.sha256,
        )

    def issue(self, user_id: str) -> tuple[str, str]:
        """A new (token, stored id) for ``user_id``: the store keeps only the id's SHA-256."""
        rid = new_token()
        return self._signer.sign(f"{user_id}.{rid}").decode(), hash_token(rid)

    def read(self, token: str | None) -> tuple[str, str] | None:
        """(user id, stored id) from a token, or None if it is absent, malformed or forged."""
        if not token or len(token) > 512:
            return None
        hit = self._verified.get(token)
        if hit is not None:
            return hit
        try:
            value = self._signer.unsign(token).decode()
        except (BadSignature, UnicodeError, ValueError):
            return None
        user_id, _, rid = value.rpartition(".")
        if not rid or not valid_user_id(user_id):
            return None
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()  # pop(next(iter(d))) races across WSGI threads (KeyError, RuntimeError)
        ids = (user_id, hash_token(rid))
        self._verified[token] = ids
        return ids


class SealSigner:
    """A small JSON record carried, signed, in a cookie instead of the store (nothing written per
    request). Not encrypted: use it only for values the browser may read. ``kind`` gets its own
    key, as with ``TokenSigner``, so no other cookie verifies as a seal and vice versa."""

    MAX_LENGTH = 2048

    def __init__(self, keys: list[bytes], kind: str) -> None:
        salt = f"banata.seal.{kind}".encode()
        kind_keys = [hmac.new(key, salt, hashlib.sha256).digest() for key in keys]
        self._signer = Signer(list(reversed(kind_keys)), salt=salt, key_derivation="none",
                              digest_method=hashlib.sha256)

    def seal(self, record: dict[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(record, separators=(",", ":")).encode()).rstrip(b"=")
        return self._signer.sign(payload).decode()

    def open(self, token: str | None) -> dict[str, Any] | None:
        """The record, or None if the token is absent, too long, malformed or forged."""
        if not token or len(token) > self.MAX_LENGTH:
            return None
        try:
            payload = self._signer.unsign(token)
            record = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (BadSignature, ValueError, UnicodeError):
            return None
        return record if isinstance(record, dict) else None

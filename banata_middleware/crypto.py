"""Keys and the operations on secrets: encryption at rest, keyed hashes, token hashes, passwords.

Every key is derived from the app secret with HKDF-SHA256 under its own label, so a key used to
hash backup codes can never decrypt a TOTP secret. Rotation: the newest secret encrypts, every
configured secret decrypts; a ciphertext names the key id that made it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .config import PasswordHashing

__all__ = ["Keyring", "PasswordHasher", "UnreadableSecret", "hash_token", "new_token"]


def _derive(secret: str, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"banata/" + label.encode()).derive(
        secret.encode()
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_token(nbytes: int = 32) -> str:
    """A random URL-safe token (no dots, so it can follow a user id in a cookie)."""
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """How session, challenge and trust ids are stored: SHA-256, so a store dump is not a cookie."""
    return hashlib.sha256(token.encode()).hexdigest()


class UnreadableSecret(ValueError):
    """A ciphertext that does not decrypt here; the message says why (never any of its content)."""


class Keyring:
    """Keys derived from the app secret (first) and previous secrets (decrypt/verify only)."""

    def __init__(self, secret: str, previous: tuple[str, ...] = ()) -> None:
        self._enc: dict[str, AESGCM] = {}
        self.encryption_key_ids: list[str] = []
        for s in (secret, *previous):
            key = _derive(s, "totp-secret-encryption/v1")
            kid = hashlib.sha256(key).hexdigest()[:8]
            self._enc.setdefault(kid, AESGCM(key))
            self.encryption_key_ids.append(kid)
        self.current_key_id = self.encryption_key_ids[0]
        # Keyed hashes cannot be re-keyed without the plaintext, so every configured secret's key
        # stays usable for matching; the current one is tried first and used for new values.
        self._code_keys = [_derive(s, "backup-code-hash/v1") for s in (secret, *previous)]
        # Stored next to a user's codes: once that key is no longer configured the codes can never
        # match, and the flows stop offering them instead of counting every try as a failure.
        self.code_key_ids = [hashlib.sha256(k).hexdigest()[:8] for k in self._code_keys]
        self.current_code_key_id = self.code_key_ids[0]
        self._index_keys = [_derive(s, "lookup-index/v1") for s in (secret, *previous)]
        # One-time codes by message live minutes: only the current secret's key (a code sent just
        # before a rotation fails, and the user asks for another).
        self._otp_key = _derive(secret, "otp-code-hash/v1")
        self.cookie_keys = [_derive(s, "cookie-signing/v1") for s in (secret, *previous)]

    def encrypt(self, plaintext: bytes, *, context: str) -> str:
        """AES-256-GCM; ``context`` (the user id) is bound as associated data so a ciphertext
        copied onto another user's record does not decrypt."""
        nonce = secrets.token_bytes(12)
        ct = self._enc[self.current_key_id].encrypt(nonce, plaintext, context.encode())
        return f"v1.{self.current_key_id}.{_b64(nonce + ct)}"

    def decrypt(self, blob: str, *, context: str) -> bytes:
        """Raises ``UnreadableSecret`` for a ciphertext made with a key that is not configured, a
        malformed one, or one that fails authentication: bound to another user id (a record copied
        onto another user) or corrupted."""
        version, kid, payload = [*blob.split(".", 2), "", ""][:3]
        if version != "v1" or not payload:
            raise UnreadableSecret("not a ciphertext of this library")
        if kid not in self._enc:
            raise UnreadableSecret(f"made with key {kid}, which is not configured")
        try:
            raw = _unb64(payload)
            return self._enc[kid].decrypt(raw[:12], raw[12:], context.encode())
        except (InvalidTag, ValueError):
            raise UnreadableSecret("fails authentication for this user: copied from another user, or corrupted") \
                from None

    def key_id_of(self, blob: str) -> str:
        return blob.split(".", 2)[1]

    def hash_code(self, code: str) -> str:
        """Keyed hash of a normalized backup code: a dump cannot be brute-forced without the secret."""
        return hmac.new(self._code_keys[0], code.encode(), hashlib.sha256).hexdigest()

    def code_candidates(self, code: str) -> list[str]:
        """The code's hash under every configured key (codes issued before a rotation still match)."""
        return [hmac.new(k, code.encode(), hashlib.sha256).hexdigest() for k in self._code_keys]

    def hash_otp(self, code: str, *, user_id: str, binding: str) -> str:
        """Keyed hash of a one-time code sent by message, bound to the user and to the challenge
        or session that asked for it: a store dump cannot be brute-forced without the secret, and
        a hash moved to another user or another challenge matches nothing."""
        message = f"{user_id}\x00{binding}\x00{code}".encode()
        return hmac.new(self._otp_key, message, hashlib.sha256).hexdigest()

    def index(self, value: str) -> str:
        """Keyed hash used to look up an email or a client address without storing it in a key name."""
        return self.index_candidates(value)[0]

    def index_candidates(self, value: str) -> list[str]:
        """``index`` under every configured key, current first (entries made before a rotation)."""
        return [hmac.new(k, value.encode(), hashlib.sha256).hexdigest()[:32] for k in self._index_keys]


class PasswordHasher:
    """scrypt (memory-hard). The stored form names its parameters so they can be raised later."""

    def __init__(self, params: PasswordHashing) -> None:
        self.params = params
        # Unknown emails are checked against this so that timing does not reveal which accounts exist.
        self._dummy = self.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        n, r, p = self.params.n, self.params.r, self.params.p
        digest = self._scrypt(password, salt, n, r, p)
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"

    def verify(self, password: str, stored: str | None) -> bool:
        """Constant-time check; ``stored=None`` (unknown user) spends the same time and fails."""
        candidate = stored or self._dummy
        try:
            scheme, n, r, p, salt, digest = candidate.split("$")
            if scheme != "scrypt":
                return False
            ok = hmac.compare_digest(self._scrypt(password, _unb64(salt), int(n), int(r), int(p)), _unb64(digest))
        except ValueError:
            return False
        return ok and stored is not None

    @staticmethod
    def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=32)

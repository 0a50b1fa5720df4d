"""The key pair behind one WebAuthn credential: generation, COSE encoding, signing.

COSE_Key layouts follow RFC 9053 / RFC 8230 as WebAuthn section 5.8.5 uses them:
ES256 (P-256, alg -7), EdDSA (Ed25519, alg -8), RS256 (RSASSA-PKCS1-v1_5 with SHA-256, alg -257).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

__all__ = ["COSE_ALGORITHMS", "Algorithm", "CredentialKey"]

Algorithm = Literal["ES256", "EdDSA", "RS256"]
COSE_ALGORITHMS: dict[Algorithm, int] = {"ES256": -7, "EdDSA": -8, "RS256": -257}

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CredentialKey:
    """A credential's private key and the algorithm it signs with."""

    algorithm: Algorithm
    private_key: PrivateKey

    @classmethod
    def generate(cls, algorithm: Algorithm) -> CredentialKey:
        """A fresh key for ``algorithm`` (RSA keys are 2048-bit with e = 65537)."""
        if algorithm == "ES256":
            return cls(algorithm, ec.generate_private_key(ec.SECP256R1()))
        if algorithm == "EdDSA":
            return cls(algorithm, ed25519.Ed25519PrivateKey.generate())
        if algorithm == "RS256":
            return cls(algorithm, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        raise ValueError(f"unsupported algorithm {algorithm!r}; use ES256, EdDSA or RS256")

    @property
    def cose_algorithm(self) -> int:
        return COSE_ALGORITHMS[self.algorithm]

    def sign(self, data: bytes) -> bytes:
        """The signature WebAuthn expects: DER ECDSA, raw 64-byte Ed25519, PKCS#1 v1.5 RSA."""
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def cose_public_key(self) -> bytes:
        """The public key as a CTAP2-canonical CBOR COSE_Key (keys ordered 1, 3, -1, -2, -3)."""
        key = self.private_key
        cose: dict[int, int | bytes]
        if isinstance(key, ec.EllipticCurvePrivateKey):
            numbers = key.public_key().public_numbers()
            cose = {
                1: 2,  # kty EC2
                3: -7,
                -1: 1,  # crv P-256; coordinates are fixed-width
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            cose = {1: 1, 3: -8, -1: 6, -2: raw}  # kty OKP, crv Ed25519
        else:
            rsa_numbers = key.public_key().public_numbers()
            cose = {
                1: 3,  # kty RSA
                3: -257,
                -1: rsa_numbers.n.to_bytes((rsa_numbers.n.bit_length() + 7) // 8, "big"),
                -2: rsa_numbers.e.to_bytes((rsa_numbers.e.bit_length() + 7) // 8, "big"),
            }
        return cbor2.dumps(cose, canonical=True)

    def spki_public_key(self) -> bytes:
        """DER SubjectPublicKeyInfo: what a browser's ``getPublicKey()`` returns."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

"""Byte layouts an authenticator emits (W3C WebAuthn Level 3, sections 6.1 and 6.5).

authenticatorData = SHA-256(rpId) || flags || signCount (4 bytes, big-endian)
                    [|| AAGUID (16) || credentialIdLength (2) || credentialId || COSE_Key]
attestationObject = CBOR {"fmt", "attStmt", "authData"}
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cbor2

__all__ = ["Flags", "build_attestation_object", "build_authenticator_data"]

_UP, _UV, _BE, _BS, _AT = 0x01, 0x04, 0x08, 0x10, 0x40


@dataclass(frozen=True)
class Flags:
    """The authenticatorData flag bits this simulator can set.

    ``user_present`` (UP): someone touched it; ``user_verified`` (UV): PIN or biometric;
    ``backup_eligible`` (BE): a synced, multi-device passkey; ``backed_up`` (BS): currently
    synced. BS without BE is invalid, and allowed here so a test can send it.
    """

    user_present: bool = True
    user_verified: bool = True
    backup_eligible: bool = False
    backed_up: bool = False

    def byte(self, *, attested: bool) -> int:
        """The flags byte; ``attested`` sets AT, meaning credential data follows."""
        return (
            (_UP if self.user_present else 0)
            | (_UV if self.user_verified else 0)
            | (_BE if self.backup_eligible else 0)
            | (_BS if self.backed_up else 0)
            | (_AT if attested else 0)
        )


def build_authenticator_data(
    *,
    rp_id: str,
    flags: Flags,
    sign_count: int,
    aaguid: bytes | None = None,
    credential_id: bytes | None = None,
    cose_public_key: bytes | None = None,
) -> bytes:
    """authenticatorData for ``rp_id``; pass ``aaguid``, ``credential_id`` and
    ``cose_public_key`` together (registration) or none of them (assertion)."""
    if not 0 <= sign_count < 2**32:
        raise ValueError(f"sign count {sign_count} does not fit the 4-byte field")
    attested = credential_id is not None
    head = (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags.byte(attested=attested)])
        + sign_count.to_bytes(4, "big")
    )
    if not attested:
        return head
    if aaguid is None or cose_public_key is None or credential_id is None:
        raise ValueError("attested credential data needs aaguid, credential_id and cose_public_key")
    if len(aaguid) != 16:
        raise ValueError("an AAGUID is 16 bytes")
    return head + aaguid + len(credential_id).to_bytes(2, "big") + credential_id + cose_public_key


def build_attestation_object(fmt: str, att_stmt: dict[str, object], auth_data: bytes) -> bytes:
    """CBOR attestationObject; ``fmt`` ``"none"`` takes an empty ``att_stmt``, ``"packed"``
    self attestation takes ``{"alg": <COSE alg>, "sig": <signature>}``."""
    # Insertion order is the CTAP2 canonical order (shorter keys first).
    return cbor2.dumps({"fmt": fmt, "attStmt": att_stmt, "authData": auth_data})

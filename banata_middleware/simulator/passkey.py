"""A software WebAuthn authenticator with real keys, playing browser and authenticator at once.

It takes the options JSON a relying party sends (as py_webauthn's ``options_to_json`` writes
it) and returns the JSON a browser would post back (W3C WebAuthn Level 3, sections 5.1 and 5.2:
``RegistrationResponseJSON`` / ``AuthenticationResponseJSON``). Signatures are real (ES256,
EdDSA, RS256), so py_webauthn's verifiers accept what is honest and refuse what is not.

It never refuses on a browser's behalf over origin, rpId or user verification: a test needs
to send exactly what a buggy or hostile client would, and see the server refuse it. It does
refuse what an authenticator itself would: an excluded credential, no usable credential, an
algorithm the relying party did not offer.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .authenticator_data import Flags, build_attestation_object, build_authenticator_data
from .credential_key import COSE_ALGORITHMS, Algorithm, CredentialKey

__all__ = ["Algorithm", "CeremonyRefused", "PasskeyCredential", "VirtualPasskey"]

AttestationFormat = Literal["none", "packed"]
Attachment = Literal["platform", "cross-platform"]
Options = str | Mapping[str, Any]


class CeremonyRefused(Exception):
    """What a browser reports as a DOMException; ``name`` is that exception's name
    (``NotAllowedError``, ``InvalidStateError``, ``NotSupportedError``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass
class PasskeyCredential:
    """One credential held by the authenticator.

    ``user_handle`` is the relying party's ``user.id`` from registration; ``discoverable``
    says whether it is a resident credential usable with an empty ``allowCredentials`` and
    returning ``userHandle``. ``sign_count`` is the counter last reported.
    """

    credential_id: bytes
    rp_id: str
    key: CredentialKey = dataclasses.field(repr=False)
    user_handle: bytes
    user_name: str
    discoverable: bool
    backup_eligible: bool
    backed_up: bool
    sign_count: int = 0

    @property
    def algorithm(self) -> Algorithm:
        return self.key.algorithm

    @property
    def public_key_cose(self) -> bytes:
        """The credential public key as CBOR COSE_Key, as the server stores it."""
        return self.key.cose_public_key()


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 4648 section 5): every binary field of WebAuthn JSON."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class VirtualPasskey:
    """A passkey provider (phone, laptop, password manager) with its own key store.

    Constructor arguments are this authenticator's behaviour; each ``create``/``get`` call can
    override them for one ceremony.

    - ``algorithm``: the key type it makes: "ES256" (P-256), "EdDSA" (Ed25519), "RS256".
    - ``attestation``: "none", or "packed" self attestation (signed with the credential key).
    - ``user_present`` / ``user_verified``: the UP and UV flags it reports.
    - ``backup_eligible`` / ``backed_up``: BE and BS of new credentials (synced passkeys: both).
    - ``sign_count_increment``: added to the counter per assertion; 0 models synced passkeys,
      which always report 0.
    - ``discoverable``: make resident credentials (True, what passkey providers do), never
      (False, a plain security key), or follow the options' ``residentKey`` (None).
    - ``aaguid``: 16 bytes naming the model; zeros, as "none" attestation reports.
    - ``attachment`` and ``transports``: reported as browsers do.
    """

    def __init__(
        self,
        *,
        algorithm: Algorithm = "ES256",
        attestation: AttestationFormat = "none",
        user_present: bool = True,
        user_verified: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        sign_count_increment: int = 1,
        discoverable: bool | None = True,
        aaguid: bytes = bytes(16),
        attachment: Attachment = "platform",
        transports: Sequence[str] = ("internal", "hybrid"),
    ) -> None:
        if algorithm not in COSE_ALGORITHMS:
            raise ValueError(f"unsupported algorithm {algorithm!r}; use ES256, EdDSA or RS256")
        if len(aaguid) != 16:
            raise ValueError("an AAGUID is 16 bytes")
        self.algorithm: Algorithm = algorithm
        self.attestation: AttestationFormat = attestation
        self.user_present = user_present
        self.user_verified = user_verified
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.sign_count_increment = sign_count_increment
        self.discoverable = discoverable
        self.aaguid = aaguid
        self.attachment: Attachment = attachment
        self.transports = tuple(transports)
        self._credentials: list[PasskeyCredential] = []
        self._current: PasskeyCredential | None = None

    def __repr__(self) -> str:
        return f"VirtualPasskey({self.algorithm}, {len(self._credentials)} credentials)"

    # -- what it holds -------------------------------------------------------------------

    @property
    def credentials(self) -> tuple[PasskeyCredential, ...]:
        return tuple(self._credentials)

    def credentials_for(self, rp_id: str) -> tuple[PasskeyCredential, ...]:
        """The credentials registered with relying party ``rp_id``, oldest first."""
        return tuple(c for c in self._credentials if c.rp_id == rp_id)

    def credential(self, credential_id: bytes | None = None) -> PasskeyCredential:
        """The credential with ``credential_id``; ``None``: the one of the latest ceremony."""
        if credential_id is None:
            if self._current is None:
                raise LookupError("this passkey has not registered any credential yet")
            return self._current
        for held in self._credentials:
            if held.credential_id == credential_id:
                return held
        raise LookupError(f"no credential {b64url(credential_id)} on this passkey")

    @property
    def credential_id(self) -> bytes:
        """The id of the credential used by the latest ceremony."""
        return self.credential().credential_id

    @property
    def public_key_cose(self) -> bytes:
        """The COSE public key of the credential used by the latest ceremony."""
        return self.credential().public_key_cose

    @property
    def user_handle(self) -> bytes:
        return self.credential().user_handle

    @property
    def sign_count(self) -> int:
        """The counter of the latest ceremony's credential; set it to make the next assertion
        report ``sign_count + sign_count_increment`` (lower than before: a cloned key)."""
        return self.credential().sign_count

    @sign_count.setter
    def sign_count(self, value: int) -> None:
        self.credential().sign_count = value

    def clone(self) -> VirtualPasskey:
        """A copy with the same keys but its own counters: an extracted, duplicated
        authenticator (WebAuthn section 6.1.1), which the sign count exists to expose."""
        twin = copy.copy(self)
        twin._credentials = [dataclasses.replace(c) for c in self._credentials]
        index = self._credentials.index(self._current) if self._current is not None else None
        twin._current = twin._credentials[index] if index is not None else None
        return twin

    def remove(self, credential_id: bytes) -> None:
        """Delete a credential, as a user does in the provider's settings."""
        self._credentials.remove(self.credential(credential_id))
        if self._current is not None and self._current.credential_id == credential_id:
            self._current = None

    # -- registration: navigator.credentials.create() ---------------------------------------

    def create(
        self,
        options: Options,
        *,
        origin: str,
        rp_id: str | None = None,
        cross_origin: bool = False,
        top_origin: str | None = None,
        algorithm: Algorithm | None = None,
        attestation: AttestationFormat | None = None,
        discoverable: bool | None = None,
        user_present: bool | None = None,
        user_verified: bool | None = None,
        backup_eligible: bool | None = None,
        backed_up: bool | None = None,
        sign_count: int = 0,
        credential_id: bytes | None = None,
        tamper_signature: bool = False,
        ignore_exclude_credentials: bool = False,
    ) -> dict[str, Any]:
        """Register a new credential; returns ``RegistrationResponseJSON`` as a dict.

        ``options``: ``PublicKeyCredentialCreationOptionsJSON`` (str or dict; a
        ``{"publicKey": ...}`` wrapper is accepted). ``origin``: the page's origin, written
        into clientDataJSON as given, right or wrong. ``rp_id``: hash this rpId into
        authenticatorData instead of the options' ``rp.id`` (a wrong-rpId attack).
        ``cross_origin``/``top_origin``: clientDataJSON ``crossOrigin``/``topOrigin`` (an
        iframe). ``sign_count``: the initial counter reported. ``credential_id``: force the new
        credential's id (e.g. one another user already registered). ``tamper_signature``: flip
        a bit of the packed attestation signature. ``ignore_exclude_credentials``: create even
        when ``excludeCredentials`` names a credential held here. The other arguments override
        the constructor's for this ceremony only.
        """
        opts = _public_key_options(options)
        rp = opts.get("rp") or {}
        real_rp_id = rp.get("id") or _host(origin)
        user = opts.get("user") or {}
        if "id" not in user:
            raise ValueError("creation options have no user.id")

        if not ignore_exclude_credentials:
            excluded = {from_b64url(d["id"]) for d in opts.get("excludeCredentials") or []}
            if any(c.credential_id in excluded for c in self.credentials_for(real_rp_id)):
                raise CeremonyRefused(
                    "InvalidStateError", "a credential in excludeCredentials is on this passkey"
                )

        chosen = algorithm or self.algorithm
        offered = [p.get("alg") for p in opts.get("pubKeyCredParams") or []]
        if offered and COSE_ALGORITHMS[chosen] not in offered:
            raise CeremonyRefused(
                "NotSupportedError", f"the relying party offers {offered}, not {chosen}"
            )

        fmt = attestation or self.attestation
        if tamper_signature and fmt != "packed":
            raise ValueError("tamper_signature at registration needs attestation='packed'")

        credential = PasskeyCredential(
            credential_id=secrets.token_bytes(32) if credential_id is None else credential_id,
            rp_id=real_rp_id,
            key=CredentialKey.generate(chosen),
            user_handle=from_b64url(user["id"]),
            user_name=str(user.get("name", "")),
            discoverable=_resident(discoverable, self.discoverable, opts),
            backup_eligible=self.backup_eligible if backup_eligible is None else backup_eligible,
            backed_up=self.backed_up if backed_up is None else backed_up,
            sign_count=sign_count,
        )
        flags = Flags(
            user_present=self.user_present if user_present is None else user_present,
            user_verified=self.user_verified if user_verified is None else user_verified,
            backup_eligible=credential.backup_eligible,
            backed_up=credential.backed_up,
        )
        client_data = _client_data(
            "webauthn.create", opts["challenge"], origin, cross_origin, top_origin
        )
        public_key_cose = credential.public_key_cose
        auth_data = build_authenticator_data(
            rp_id=real_rp_id if rp_id is None else rp_id,
            flags=flags,
            sign_count=sign_count,
            aaguid=self.aaguid,
            credential_id=credential.credential_id,
            cose_public_key=public_key_cose,
        )
        att_stmt: dict[str, object] = {}
        if fmt == "packed":
            signature = credential.key.sign(auth_data + hashlib.sha256(client_data).digest())
            att_stmt = {
                "alg": credential.key.cose_algorithm,
                "sig": _flip_last_bit(signature) if tamper_signature else signature,
            }

        self._store(credential)
        extension_results: dict[str, Any] = {}
        if (opts.get("extensions") or {}).get("credProps"):
            extension_results["credProps"] = {"rk": credential.discoverable}
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(build_attestation_object(fmt, att_stmt, auth_data)),
                "authenticatorData": b64url(auth_data),
                "transports": list(self.transports),
                "publicKeyAlgorithm": credential.key.cose_algorithm,
                "publicKey": b64url(credential.key.spki_public_key()),
            },
            "clientExtensionResults": extension_results,
            "authenticatorAttachment": self.attachment,
        }

    # -- authentication: navigator.credentials.get() ----------------------------------------

    def get(
        self,
        options: Options,
        *,
        origin: str,
        credential_id: bytes | None = None,
        rp_id: str | None = None,
        cross_origin: bool = False,
        top_origin: str | None = None,
        user_present: bool | None = None,
        user_verified: bool | None = None,
        backup_eligible: bool | None = None,
        backed_up: bool | None = None,
        sign_count: int | None = None,
        user_handle: bytes | None = None,
        tamper_signature: bool = False,
    ) -> dict[str, Any]:
        """Sign an assertion; returns ``AuthenticationResponseJSON`` as a dict.

        ``options``: ``PublicKeyCredentialRequestOptionsJSON`` (str or dict). ``origin``: the
        page's origin, written into clientDataJSON as given. ``credential_id``: use this held
        credential even if ``allowCredentials`` does not name it; otherwise the first held
        credential that ``allowCredentials`` names, or with an empty list the newest
        discoverable credential for the rpId (the account a user would tap). ``rp_id``: hash
        this rpId into authenticatorData instead. ``sign_count``: report exactly this counter
        (and keep it), e.g. lower than before to look cloned. ``user_handle``: report this
        userHandle instead of the stored one (someone else's account). ``tamper_signature``:
        flip a bit of the signature. The flag arguments override the constructor's and the
        credential's for this ceremony only.
        """
        opts = _public_key_options(options)
        real_rp_id = opts.get("rpId") or _host(origin)
        credential = self._choose(opts, real_rp_id, credential_id)

        if sign_count is None:
            sign_count = credential.sign_count + self.sign_count_increment
        credential.sign_count = sign_count
        self._current = credential

        flags = Flags(
            user_present=self.user_present if user_present is None else user_present,
            user_verified=self.user_verified if user_verified is None else user_verified,
            backup_eligible=(
                credential.backup_eligible if backup_eligible is None else backup_eligible
            ),
            backed_up=credential.backed_up if backed_up is None else backed_up,
        )
        client_data = _client_data(
            "webauthn.get", opts["challenge"], origin, cross_origin, top_origin
        )
        auth_data = build_authenticator_data(
            rp_id=real_rp_id if rp_id is None else rp_id, flags=flags, sign_count=sign_count
        )
        signature = credential.key.sign(auth_data + hashlib.sha256(client_data).digest())

        response: dict[str, Any] = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(_flip_last_bit(signature) if tamper_signature else signature),
        }
        # Only resident credentials return the user handle (CTAP2 authenticatorGetAssertion).
        if user_handle is not None:
            response["userHandle"] = b64url(user_handle)
        elif credential.discoverable:
            response["userHandle"] = b64url(credential.user_handle)
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": self.attachment,
        }

    # -- internals --------------------------------------------------------------------------

    def _store(self, credential: PasskeyCredential) -> None:
        # A resident credential for the same account overwrites the old one (CTAP2
        # authenticatorMakeCredential step 17), and an id is never held twice.
        self._credentials = [
            c
            for c in self._credentials
            if c.credential_id != credential.credential_id
            and not (
                credential.discoverable
                and c.discoverable
                and (c.rp_id, c.user_handle) == (credential.rp_id, credential.user_handle)
            )
        ]
        self._credentials.append(credential)
        self._current = credential

    def _choose(
        self, opts: Mapping[str, Any], rp_id: str, credential_id: bytes | None
    ) -> PasskeyCredential:
        if credential_id is not None:
            return self.credential(credential_id)
        allowed = [from_b64url(d["id"]) for d in opts.get("allowCredentials") or []]
        held = self.credentials_for(rp_id)
        if allowed:
            for candidate in held:
                if candidate.credential_id in allowed:
                    return candidate
            raise CeremonyRefused("NotAllowedError", "no credential in allowCredentials is here")
        discoverable = [c for c in held if c.discoverable]
        if not discoverable:
            raise CeremonyRefused("NotAllowedError", f"no discoverable credential for {rp_id!r}")
        return discoverable[-1]


def _public_key_options(options: Options) -> Mapping[str, Any]:
    parsed: Any = json.loads(options) if isinstance(options, str) else options
    if not isinstance(parsed, Mapping):
        raise TypeError("options must be the JSON object from options_to_json(), or its dict")
    inner = parsed.get("publicKey", parsed)
    if not isinstance(inner, Mapping) or "challenge" not in inner:
        raise ValueError("options have no challenge")
    return inner


def _host(origin: str) -> str:
    """The rpId a browser defaults to: the origin's host."""
    host = urlsplit(origin).hostname
    if not host:
        raise ValueError(f"origin {origin!r} has no host")
    return host


def _resident(call: bool | None, default: bool | None, opts: Mapping[str, Any]) -> bool:
    choice = default if call is None else call
    if choice is not None:
        return choice
    selection = opts.get("authenticatorSelection") or {}
    if selection.get("requireResidentKey"):
        return True
    return selection.get("residentKey") in ("required", "preferred")


def _client_data(
    kind: str, challenge: str, origin: str, cross_origin: bool, top_origin: str | None
) -> bytes:
    """CollectedClientData, serialised the way browsers do (WebAuthn section 5.8.1.1): compact,
    members in this order, the challenge re-encoded as unpadded base64url."""
    data: dict[str, Any] = {
        "type": kind,
        "challenge": b64url(from_b64url(challenge)),
        "origin": origin,
        "crossOrigin": cross_origin,
    }
    if top_origin is not None:
        data["topOrigin"] = top_origin
    return json.dumps(data, separators=(",", ":")).encode()


def _flip_last_bit(signature: bytes) -> bytes:
    return signature[:-1] + bytes([signature[-1] ^ 0x01])

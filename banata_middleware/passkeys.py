"""WebAuthn ceremonies through py_webauthn, plus the relying-party checks it leaves to us.

py_webauthn checks signatures, origin, rpId, challenge equality, flags and attestation. It does
not make challenges single-use, bind them to a browser, check who owns a credential, match
``userHandle``, refuse duplicate credential ids or decide sign-count policy: the flows do that,
the atomic parts in the store (``lua/passkey_*.lua``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ._extras import missing_extra

try:
    from webauthn import (
        generate_authentication_options,
        generate_registration_options,
        options_to_json,
        verify_authentication_response,
        verify_registration_response,
    )
    from webauthn.helpers.exceptions import WebAuthnException
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "passkeys", exc) from exc

from .config import PasskeyConfig
from .errors import AuthError

__all__ = [
    "RegisteredPasskey",
    "authentication_options",
    "b64url",
    "credential_id_of",
    "registration_options",
    "unb64url",
    "verify_authentication",
    "verify_registration",
]


# What the browser is told; the server-side record lives as long (Policies.passkey_ceremony_ttl).
CEREMONY_TIMEOUT_MS = 300_000


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class RegisteredPasskey:
    credential_id: str  # base64url
    public_key: str  # base64url COSE key
    sign_count: int
    device_type: str  # "single_device" | "multi_device"
    backed_up: bool
    aaguid: str
    user_verified: bool


def _uv(config: PasskeyConfig) -> UserVerificationRequirement:
    return UserVerificationRequirement(config.user_verification)


def registration_options(
    config: PasskeyConfig, *, rp_name: str, user_id: str, user_name: str, display_name: str,
    exclude: list[str],
) -> tuple[str, str]:
    """(options JSON for ``navigator.credentials.create``, challenge base64url)."""
    options = generate_registration_options(
        rp_id=config.rp_id,
        rp_name=rp_name,
        user_id=user_id.encode(),
        user_name=user_name,
        user_display_name=display_name,
        exclude_credentials=[PublicKeyCredentialDescriptor(id=unb64url(c)) for c in exclude],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=_uv(config)
        ),
        timeout=CEREMONY_TIMEOUT_MS,
    )
    return options_to_json(options), b64url(options.challenge)


def authentication_options(config: PasskeyConfig, *, allow: list[str]) -> tuple[str, str]:
    """(options JSON for ``navigator.credentials.get``, challenge base64url). An empty ``allow``
    asks the browser for any discoverable credential of this rpId."""
    options = generate_authentication_options(
        rp_id=config.rp_id,
        allow_credentials=[PublicKeyCredentialDescriptor(id=unb64url(c)) for c in allow],
        user_verification=_uv(config),
        timeout=CEREMONY_TIMEOUT_MS,
    )
    return options_to_json(options), b64url(options.challenge)


def credential_id_of(response: Any) -> str:
    """The credential id a browser response claims (base64url), or a 400."""
    cred_id = response.get("id") if isinstance(response, dict) else None
    if not isinstance(cred_id, str) or not cred_id or len(cred_id) > 1400:
        raise AuthError(400, "VALIDATION_ERROR", "'response' must be a WebAuthn credential in JSON form")
    try:
        return b64url(unb64url(cred_id))
    except ValueError:
        raise AuthError(400, "VALIDATION_ERROR", "'response.id' is not base64url") from None


def _embedding_refusal(config: PasskeyConfig, response: dict[str, Any]) -> str | None:
    """Why a ceremony run inside a cross-origin iframe is refused, or None. py_webauthn parses
    ``crossOrigin`` and checks neither it nor ``topOrigin`` (WebAuthn L3 section 7.2 leaves that to
    the relying party): a page of ours framed by another site must not sign anyone in unless the
    config names that site in ``allowed_top_origins``. Called after py_webauthn accepted the
    response, so clientDataJSON is well-formed and signed."""
    try:
        data = json.loads(unb64url(response["response"]["clientDataJSON"]))
    except (ValueError, TypeError, KeyError, RecursionError):
        return "clientDataJSON is not readable"
    if not isinstance(data, dict):
        return "clientDataJSON is not an object"
    top = data.get("topOrigin")
    if data.get("crossOrigin") in (None, False) and top is None:
        return None
    if not config.allowed_top_origins:
        return "it was made in a cross-origin iframe, which this site does not allow"
    if not isinstance(top, str) or top not in config.allowed_top_origins:
        return f"it was made in an iframe on {str(top)[:100]!r}, which is not an allowed top origin"
    return None


def verify_registration(config: PasskeyConfig, response: dict[str, Any], challenge: str) -> RegisteredPasskey:
    try:
        verified = verify_registration_response(
            credential=json.dumps(response),
            expected_challenge=unb64url(challenge),
            expected_rp_id=config.rp_id,
            expected_origin=list(config.origins),
            require_user_verification=config.user_verification == "required",
        )
    # Any malformed part is a refusal. RecursionError: a body nested just shallow enough for the
    # middleware's own parse fails py_webauthn's second parse, which runs deeper in the stack.
    except (WebAuthnException, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise AuthError(400, "FAILED_TO_VERIFY_REGISTRATION", f"the passkey registration was refused: {exc}") from None
    refusal = _embedding_refusal(config, response)
    if refusal is not None:
        raise AuthError(400, "FAILED_TO_VERIFY_REGISTRATION", f"the passkey registration was refused: {refusal}")
    return RegisteredPasskey(
        credential_id=b64url(verified.credential_id),
        public_key=b64url(verified.credential_public_key),
        sign_count=verified.sign_count,
        device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up,
        aaguid=verified.aaguid,
        user_verified=verified.user_verified,
    )


def verify_authentication(
    config: PasskeyConfig, response: dict[str, Any], challenge: str, public_key: str
) -> tuple[int, bool]:
    """(new sign count, user verified). The sign count is judged by the store, atomically, so a
    count of 0 is passed here and py_webauthn does not judge it."""
    try:
        verified = verify_authentication_response(
            credential=json.dumps(response),
            expected_challenge=unb64url(challenge),
            expected_rp_id=config.rp_id,
            expected_origin=list(config.origins),
            credential_public_key=unb64url(public_key),
            credential_current_sign_count=0,
            require_user_verification=config.user_verification == "required",
        )
    except (WebAuthnException, ValueError, TypeError, KeyError, RecursionError) as exc:
        raise AuthError(401, "AUTHENTICATION_FAILED", f"the passkey was refused: {exc}") from None
    refusal = _embedding_refusal(config, response)
    if refusal is not None:
        raise AuthError(401, "AUTHENTICATION_FAILED", f"the passkey was refused: {refusal}")
    return verified.new_sign_count, verified.user_verified

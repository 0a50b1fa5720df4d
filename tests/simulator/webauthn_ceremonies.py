"""Relying-party side for the passkey tests: py_webauthn's own option builders and verifiers."""

from __future__ import annotations

from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    PublicKeyCredentialDescriptor,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from banata_middleware.simulator import VirtualPasskey

RP_ID = "example.com"
ORIGIN = "https://example.com"


def registration_options(
    user_id: bytes = b"user-alice", user_name: str = "alice", **kwargs: Any
) -> tuple[str, bytes]:
    """(options JSON, challenge) as the server would send them."""
    options = generate_registration_options(
        rp_id=RP_ID,
        rp_name="Example",
        user_id=user_id,
        user_name=user_name,
        attestation=kwargs.pop("attestation", AttestationConveyancePreference.NONE),
        **kwargs,
    )
    return options_to_json(options), options.challenge


def authentication_options(allow: list[bytes] | None = None) -> tuple[str, bytes]:
    options = generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=[PublicKeyCredentialDescriptor(id=i) for i in allow or []],
    )
    return options_to_json(options), options.challenge


def register(
    passkey: VirtualPasskey,
    *,
    user_id: bytes = b"user-alice",
    require_user_verification: bool = False,
    expected_origin: str = ORIGIN,
    **knobs: Any,
) -> VerifiedRegistration:
    options, challenge = registration_options(user_id=user_id)
    response = passkey.create(options, origin=knobs.pop("origin", ORIGIN), **knobs)
    return verify_registration_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=expected_origin,
        require_user_verification=require_user_verification,
    )


def authenticate(
    passkey: VirtualPasskey,
    *,
    public_key: bytes,
    current_sign_count: int = 0,
    allow: list[bytes] | None = None,
    require_user_verification: bool = False,
    **knobs: Any,
) -> VerifiedAuthentication:
    options, challenge = authentication_options(allow)
    response = passkey.get(options, origin=knobs.pop("origin", ORIGIN), **knobs)
    return verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=public_key,
        credential_current_sign_count=current_sign_count,
        require_user_verification=require_user_verification,
    )

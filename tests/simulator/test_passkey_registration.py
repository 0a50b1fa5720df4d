"""VirtualPasskey.create() against py_webauthn's verify_registration_response."""

from __future__ import annotations

import base64
import json

import cbor2
import pytest
from webauthn import verify_registration_response
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
)

from banata_middleware.simulator import CeremonyRefused, VirtualPasskey
from banata_middleware.simulator.passkey import Algorithm, from_b64url

from .webauthn_ceremonies import ORIGIN, RP_ID, register, registration_options

ALGORITHMS: list[Algorithm] = ["ES256", "EdDSA", "RS256"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_none_attestation_verifies_for_each_algorithm(algorithm: Algorithm) -> None:
    passkey = VirtualPasskey(algorithm=algorithm)
    verified = register(passkey, require_user_verification=True)
    assert verified.fmt == AttestationFormat.NONE
    assert verified.credential_id == passkey.credential_id
    assert verified.credential_public_key == passkey.public_key_cose
    assert verified.sign_count == passkey.sign_count == 0
    assert verified.user_verified


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_packed_self_attestation_verifies_for_each_algorithm(algorithm: Algorithm) -> None:
    passkey = VirtualPasskey(algorithm=algorithm, attestation="packed")
    verified = register(passkey)
    assert verified.fmt == AttestationFormat.PACKED
    assert verified.credential_public_key == passkey.public_key_cose


def test_tampered_packed_attestation_signature_is_refused() -> None:
    passkey = VirtualPasskey(attestation="packed")
    with pytest.raises(InvalidRegistrationResponse, match="signature"):
        register(passkey, tamper_signature=True)


def test_tampering_needs_a_signature_to_tamper_with() -> None:
    with pytest.raises(ValueError, match="packed"):
        register(VirtualPasskey(attestation="none"), tamper_signature=True)


def test_missing_user_verification_is_refused_when_required() -> None:
    passkey = VirtualPasskey(user_verified=False)
    with pytest.raises(InvalidRegistrationResponse, match="User verification is required"):
        register(passkey, require_user_verification=True)
    assert register(passkey, require_user_verification=False).user_verified is False


def test_missing_user_presence_is_refused() -> None:
    with pytest.raises(InvalidRegistrationResponse, match="presence"):
        register(VirtualPasskey(), user_present=False)


def test_wrong_origin_is_refused() -> None:
    with pytest.raises(InvalidRegistrationResponse, match="origin"):
        register(VirtualPasskey(), origin="https://examp1e.com")


def test_wrong_rp_id_hash_is_refused() -> None:
    with pytest.raises(InvalidRegistrationResponse, match="RP ID hash"):
        register(VirtualPasskey(), rp_id="evil.example")


def test_synced_passkey_reports_backup_flags() -> None:
    verified = register(VirtualPasskey(backup_eligible=True, backed_up=True))
    assert verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
    assert verified.credential_backed_up


def test_device_bound_passkey_reports_single_device() -> None:
    verified = register(VirtualPasskey())
    assert verified.credential_device_type == CredentialDeviceType.SINGLE_DEVICE
    assert not verified.credential_backed_up


def test_response_has_the_w3c_registration_json_shape() -> None:
    options, _ = registration_options()
    response = VirtualPasskey(algorithm="EdDSA").create(options, origin=ORIGIN)
    assert set(response) == {
        "id", "rawId", "type", "response", "clientExtensionResults", "authenticatorAttachment",
    }  # fmt: skip
    assert response["id"] == response["rawId"] and "=" not in response["id"]
    assert response["type"] == "public-key"
    assert response["authenticatorAttachment"] == "platform"
    assert response["response"]["publicKeyAlgorithm"] == -8
    client_data = json.loads(from_b64url(response["response"]["clientDataJSON"]))
    assert client_data == {
        "type": "webauthn.create",
        "challenge": json.loads(options)["challenge"],
        "origin": ORIGIN,
        "crossOrigin": False,
    }
    attestation = cbor2.loads(from_b64url(response["response"]["attestationObject"]))
    assert attestation["fmt"] == "none" and attestation["attStmt"] == {}
    assert attestation["authData"] == from_b64url(response["response"]["authenticatorData"])


def test_algorithm_the_relying_party_did_not_offer_is_refused() -> None:
    options, _ = registration_options(supported_pub_key_algs=[COSEAlgorithmIdentifier.ECDSA_SHA_256])
    with pytest.raises(CeremonyRefused) as refused:
        VirtualPasskey(algorithm="RS256").create(options, origin=ORIGIN)
    assert refused.value.name == "NotSupportedError"
    VirtualPasskey(algorithm="RS256").create(options, origin=ORIGIN, algorithm="ES256")


def test_excluded_credential_refuses_a_second_registration() -> None:
    passkey = VirtualPasskey()
    register(passkey)
    options, _ = registration_options(
        exclude_credentials=[PublicKeyCredentialDescriptor(id=passkey.credential_id)]
    )
    with pytest.raises(CeremonyRefused) as refused:
        passkey.create(options, origin=ORIGIN)
    assert refused.value.name == "InvalidStateError"
    passkey.create(options, origin=ORIGIN, ignore_exclude_credentials=True)


def test_forced_credential_id_is_reported() -> None:
    passkey = VirtualPasskey()
    verified = register(passkey, credential_id=b"someone-else's-id")
    assert verified.credential_id == passkey.credential_id == b"someone-else's-id"


def test_json_string_and_public_key_wrapper_options_are_accepted() -> None:
    options, challenge = registration_options()
    wrapped = {"publicKey": json.loads(options)}
    for response in (
        VirtualPasskey().create(wrapped, origin=ORIGIN),
        VirtualPasskey().create(json.loads(options), origin=ORIGIN),
    ):
        verify_registration_response(
            credential=json.dumps(response),
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )


def test_padded_challenge_is_re_encoded_as_a_browser_would() -> None:
    options, challenge = registration_options(challenge=b"x")
    padded = json.loads(options)
    padded["challenge"] = base64.urlsafe_b64encode(challenge).decode()
    assert padded["challenge"].endswith("=")
    response = VirtualPasskey().create(padded, origin=ORIGIN)
    verify_registration_response(
        credential=response, expected_challenge=b"x", expected_rp_id=RP_ID, expected_origin=ORIGIN
    )


def test_cred_props_reports_whether_the_credential_is_resident() -> None:
    options, _ = registration_options()
    asked = {**json.loads(options), "extensions": {"credProps": True}}
    assert VirtualPasskey().create(asked, origin=ORIGIN)["clientExtensionResults"] == {
        "credProps": {"rk": True}
    }
    assert VirtualPasskey().create(options, origin=ORIGIN)["clientExtensionResults"] == {}


@pytest.mark.parametrize(
    ("requirement", "resident"),
    [
        (ResidentKeyRequirement.REQUIRED, True),
        (ResidentKeyRequirement.PREFERRED, True),
        (ResidentKeyRequirement.DISCOURAGED, False),
    ],
)
def test_discoverable_none_follows_the_resident_key_requirement(
    requirement: ResidentKeyRequirement, resident: bool
) -> None:
    options, _ = registration_options(
        authenticator_selection=AuthenticatorSelectionCriteria(resident_key=requirement)
    )
    passkey = VirtualPasskey(discoverable=None)
    passkey.create(options, origin=ORIGIN)
    assert passkey.credential().discoverable is resident


def test_credentials_are_kept_per_rp_id() -> None:
    passkey = VirtualPasskey()
    options, _ = registration_options()
    passkey.create(options, origin=ORIGIN)
    other = {**json.loads(options), "rp": {"id": "other.example", "name": "Other"}}
    passkey.create(other, origin="https://other.example")
    assert [c.rp_id for c in passkey.credentials] == [RP_ID, "other.example"]
    assert len(passkey.credentials_for(RP_ID)) == len(passkey.credentials_for("other.example")) == 1


def test_new_resident_credential_for_the_same_user_replaces_the_old_one() -> None:
    passkey = VirtualPasskey()
    first = register(passkey).credential_id
    second = register(passkey).credential_id
    assert [c.credential_id for c in passkey.credentials_for(RP_ID)] == [second]
    assert first != second
    register(passkey, user_id=b"user-bob")
    assert len(passkey.credentials_for(RP_ID)) == 2

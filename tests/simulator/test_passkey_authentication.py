"""VirtualPasskey.get() against py_webauthn's verify_authentication_response."""

from __future__ import annotations

import json

import pytest
from webauthn import verify_authentication_response
from webauthn.helpers.exceptions import InvalidAuthenticationResponse
from webauthn.helpers.structs import CredentialDeviceType

from banata_middleware.simulator import CeremonyRefused, VirtualPasskey
from banata_middleware.simulator.passkey import Algorithm, b64url, from_b64url

from .webauthn_ceremonies import ORIGIN, authenticate, authentication_options, register

ALGORITHMS: list[Algorithm] = ["ES256", "EdDSA", "RS256"]


def enrolled(**settings: object) -> tuple[VirtualPasskey, bytes]:
    passkey = VirtualPasskey(**settings)  # type: ignore[arg-type]
    return passkey, register(passkey).credential_public_key


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_assertion_verifies_for_each_algorithm(algorithm: Algorithm) -> None:
    passkey, public_key = enrolled(algorithm=algorithm)
    verified = authenticate(passkey, public_key=public_key, require_user_verification=True)
    assert verified.credential_id == passkey.credential_id
    assert verified.new_sign_count == passkey.sign_count == 1
    assert verified.user_verified


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_tampered_signature_is_refused(algorithm: Algorithm) -> None:
    passkey, public_key = enrolled(algorithm=algorithm)
    with pytest.raises(InvalidAuthenticationResponse, match="signature"):
        authenticate(passkey, public_key=public_key, tamper_signature=True)


def test_sign_count_increments_per_assertion() -> None:
    passkey, public_key = enrolled()
    counts = []
    for _ in range(3):
        verified = authenticate(passkey, public_key=public_key, current_sign_count=passkey.sign_count)
        counts.append(verified.new_sign_count)
    assert counts == [1, 2, 3]


def test_sign_count_going_backwards_is_refused() -> None:
    passkey, public_key = enrolled()
    for _ in range(5):
        authenticate(passkey, public_key=public_key, current_sign_count=passkey.sign_count)
    passkey.sign_count = 2  # next assertion reports 3, the server has seen 5
    with pytest.raises(InvalidAuthenticationResponse, match="sign count of 3 was not greater than"):
        authenticate(passkey, public_key=public_key, current_sign_count=5)


def test_explicit_sign_count_is_reported_exactly_and_kept() -> None:
    passkey, public_key = enrolled()
    verified = authenticate(passkey, public_key=public_key, sign_count=41)
    assert verified.new_sign_count == 41
    assert passkey.sign_count == 41
    assert authenticate(passkey, public_key=public_key, current_sign_count=41).new_sign_count == 42


def test_repeated_counter_is_refused_like_a_replay() -> None:
    passkey, public_key = enrolled()
    authenticate(passkey, public_key=public_key)
    with pytest.raises(InvalidAuthenticationResponse, match="not greater"):
        authenticate(passkey, public_key=public_key, sign_count=1, current_sign_count=1)


def test_a_clone_exposes_itself_through_a_stale_counter() -> None:
    original, public_key = enrolled()
    authenticate(original, public_key=public_key)
    thief = original.clone()
    server_count = authenticate(original, public_key=public_key, current_sign_count=1).new_sign_count
    assert thief.credential_id == original.credential_id
    with pytest.raises(InvalidAuthenticationResponse, match="not greater"):
        authenticate(thief, public_key=public_key, current_sign_count=server_count)


def test_synced_passkey_keeps_sign_count_zero_and_verifies() -> None:
    passkey, public_key = enrolled(sign_count_increment=0, backup_eligible=True, backed_up=True)
    for _ in range(2):
        verified = authenticate(passkey, public_key=public_key, current_sign_count=0)
        assert verified.new_sign_count == 0
        assert verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE
        assert verified.credential_backed_up


def test_backup_state_can_change_per_assertion() -> None:
    passkey, public_key = enrolled(backup_eligible=True)
    assert not authenticate(passkey, public_key=public_key).credential_backed_up
    assert authenticate(passkey, public_key=public_key, current_sign_count=1, backed_up=True).credential_backed_up


def test_missing_user_verification_is_refused_when_required() -> None:
    passkey, public_key = enrolled()
    with pytest.raises(InvalidAuthenticationResponse, match="User verification is required"):
        authenticate(passkey, public_key=public_key, user_verified=False, require_user_verification=True)
    verified = authenticate(passkey, public_key=public_key, current_sign_count=1, user_verified=False)
    assert not verified.user_verified


def test_missing_user_presence_is_refused() -> None:
    passkey, public_key = enrolled()
    with pytest.raises(InvalidAuthenticationResponse, match="not present"):
        authenticate(passkey, public_key=public_key, user_present=False)


def test_wrong_origin_is_refused() -> None:
    passkey, public_key = enrolled()
    with pytest.raises(InvalidAuthenticationResponse, match="origin"):
        authenticate(passkey, public_key=public_key, origin="https://example.com.evil.test")


def test_wrong_rp_id_hash_is_refused() -> None:
    passkey, public_key = enrolled()
    with pytest.raises(InvalidAuthenticationResponse, match="RP ID hash"):
        authenticate(passkey, public_key=public_key, rp_id="evil.test")


def test_cross_origin_is_reported_in_client_data_for_the_server_to_judge() -> None:
    passkey, _ = enrolled()
    options, _ = authentication_options()
    response = passkey.get(options, origin=ORIGIN, cross_origin=True, top_origin="https://evil.test")
    client_data = json.loads(from_b64url(response["response"]["clientDataJSON"]))
    assert client_data["crossOrigin"] is True
    assert client_data["topOrigin"] == "https://evil.test"
    assert client_data["type"] == "webauthn.get"


def test_resident_credential_answers_an_empty_allow_list_with_its_user_handle() -> None:
    passkey, public_key = enrolled()
    options, _ = authentication_options(allow=[])
    response = passkey.get(options, origin=ORIGIN)
    assert from_b64url(response["response"]["userHandle"]) == b"user-alice"
    assert authenticate(passkey, public_key=public_key, current_sign_count=1).new_sign_count == 2


def test_non_discoverable_credential_needs_an_allow_list_and_returns_no_user_handle() -> None:
    passkey, _ = enrolled(discoverable=False)
    options, _ = authentication_options(allow=[])
    with pytest.raises(CeremonyRefused) as refused:
        passkey.get(options, origin=ORIGIN)
    assert refused.value.name == "NotAllowedError"
    options, _ = authentication_options(allow=[passkey.credential_id])
    assert "userHandle" not in passkey.get(options, origin=ORIGIN)["response"]


def test_allow_list_picks_the_named_credential() -> None:
    passkey = VirtualPasskey()
    alice = register(passkey, user_id=b"user-alice")
    register(passkey, user_id=b"user-bob")
    verified = authenticate(passkey, public_key=alice.credential_public_key, allow=[alice.credential_id])
    assert verified.credential_id == alice.credential_id == passkey.credential_id


def test_allow_list_naming_nothing_held_is_refused() -> None:
    passkey, _ = enrolled()
    options, _ = authentication_options(allow=[b"not-here"])
    with pytest.raises(CeremonyRefused, match="NotAllowedError"):
        passkey.get(options, origin=ORIGIN)


def test_explicit_credential_choice_overrides_the_allow_list() -> None:
    passkey = VirtualPasskey()
    alice = register(passkey, user_id=b"user-alice")
    bob = register(passkey, user_id=b"user-bob")
    options, _ = authentication_options(allow=[alice.credential_id])
    response = passkey.get(options, origin=ORIGIN, credential_id=bob.credential_id)
    assert response["rawId"] == b64url(bob.credential_id)
    assert from_b64url(response["response"]["userHandle"]) == b"user-bob"


def test_user_handle_can_claim_another_account() -> None:
    passkey, _ = enrolled()
    options, _ = authentication_options()
    response = passkey.get(options, origin=ORIGIN, user_handle=b"user-mallory")
    assert from_b64url(response["response"]["userHandle"]) == b"user-mallory"


def test_no_credential_for_the_rp_id_is_refused() -> None:
    with pytest.raises(CeremonyRefused, match="no discoverable credential"):
        VirtualPasskey().get(authentication_options()[0], origin=ORIGIN)
    with pytest.raises(LookupError):
        _ = VirtualPasskey().credential_id


def test_response_has_the_w3c_authentication_json_shape() -> None:
    passkey, _ = enrolled()
    response = passkey.get(authentication_options()[0], origin=ORIGIN)
    assert set(response) == {
        "id", "rawId", "type", "response", "clientExtensionResults", "authenticatorAttachment",
    }  # fmt: skip
    assert set(response["response"]) == {
        "clientDataJSON", "authenticatorData", "signature", "userHandle",
    }  # fmt: skip
    assert response["id"] == response["rawId"] == b64url(passkey.credential_id)


def test_removed_credential_can_no_longer_sign() -> None:
    passkey, _ = enrolled()
    passkey.remove(passkey.credential_id)
    with pytest.raises(CeremonyRefused):
        passkey.get(authentication_options()[0], origin=ORIGIN)


def test_options_without_rp_id_use_the_origin_host_as_browsers_do() -> None:
    passkey, public_key = enrolled()
    options, challenge = authentication_options()
    bare = {k: v for k, v in json.loads(options).items() if k != "rpId"}
    response = passkey.get(bare, origin=ORIGIN)
    verify_authentication_response(
        credential=response,
        expected_challenge=challenge,
        expected_rp_id="example.com",
        expected_origin=ORIGIN,
        credential_public_key=public_key,
        credential_current_sign_count=0,
    )

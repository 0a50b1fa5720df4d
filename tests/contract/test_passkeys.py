"""Passkeys (WebAuthn) through the real endpoints, answered by the simulator's VirtualPasskey."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from harness import SITE, Api, Stack

from banata_middleware.simulator import VirtualPasskey

BASE = "/api/auth/passkey"


def cid(key: VirtualPasskey) -> str:
    return base64.urlsafe_b64encode(key.credential_id).rstrip(b"=").decode()


def register(api: Api, key: VirtualPasskey, name: str = "Laptop", **knobs: Any) -> Any:
    options = api.get(f"{BASE}/generate-register-options").json()
    response = key.create(options, origin=SITE, **knobs)
    return api.post(f"{BASE}/verify-registration", {"response": response, "name": name})


def assertion(api: Api, key: VirtualPasskey, **knobs: Any) -> dict[str, Any]:
    options = api.get(f"{BASE}/generate-authenticate-options").json()
    return key.get(options, origin=SITE, **knobs)


def sign_in(api: Api, key: VirtualPasskey, **knobs: Any) -> Any:
    return api.post(f"{BASE}/verify-authentication", {"response": assertion(api, key, **knobs)})


def user_with_passkey(stack: Stack, email: str = "pk@example.com", algorithm: str = "ES256",
                      two_factor: bool = False) -> tuple[Api, VirtualPasskey]:
    api = stack.client()
    api.sign_up(email)
    if two_factor:
        api.enable_2fa()
    key = VirtualPasskey(algorithm=algorithm)  # type: ignore[arg-type]
    r = register(api, key)
    assert r.status_code == 200, r.text
    return api, key


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
def test_register_then_sign_in_passwordless(stack: Stack, algorithm: str) -> None:
    owner, key = user_with_passkey(stack, algorithm=algorithm)
    listed = owner.get(f"{BASE}/list-user-passkeys").json()
    assert len(listed) == 1 and listed[0]["name"] == "Laptop" and listed[0]["id"] == cid(key)
    assert set(listed[0]) >= {"id", "name", "createdAt", "deviceType", "backedUp"}
    api = stack.client()
    r = sign_in(api, key)
    assert r.status_code == 200, r.text
    assert r.json()["token"] == api.http.cookies["banata.session_token"]
    assert api.get("/api/me").json()["aal"] == 2  # user-verified passkey


def test_passkey_without_user_verification_is_aal1(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    assert sign_in(api, key, user_verified=False).status_code == 200
    assert api.get("/api/me").json()["aal"] == 1


def test_passkey_without_user_verification_still_faces_the_second_factor(stack: Stack) -> None:
    _, key = user_with_passkey(stack, two_factor=True)
    api = stack.client()
    r = sign_in(api, key, user_verified=False)
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")
    assert api.get("/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"


def test_passkey_answers_the_sign_in_challenge(stack: Stack) -> None:
    _owner, key = user_with_passkey(stack, two_factor=True)
    api = stack.client()
    r = api.sign_in("pk@example.com")
    assert r.status_code == 403 and "passkey" in r.json()["twoFactorMethods"]
    r = sign_in(api, key, user_verified=False)  # possession is the second factor here
    assert r.status_code == 200, r.text
    assert api.get("/api/me").json()["aal"] == 2
    assert "banata.two_factor" not in api.http.cookies


def test_someone_elses_passkey_cannot_answer_my_challenge(stack: Stack) -> None:
    victim = stack.client()
    victim.sign_up("victim@example.com")
    victim.enable_2fa()
    _, attacker_key = user_with_passkey(stack, "attacker@example.com")
    api = stack.client()
    assert api.sign_in("victim@example.com").status_code == 403
    r = sign_in(api, attacker_key)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert api.get("/api/me").status_code == 403


def test_replayed_challenge_is_refused(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    response = assertion(api, key)
    assert api.post(f"{BASE}/verify-authentication", {"response": response}).status_code == 200
    r = api.post(f"{BASE}/verify-authentication", {"response": response})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")


def test_challenge_of_the_other_ceremony_is_refused(stack: Stack) -> None:
    owner, key = user_with_passkey(stack)
    options = owner.get(f"{BASE}/generate-register-options").json()  # cookie now names a registration
    response = key.get({"challenge": options["challenge"], "rpId": "testserver"}, origin=SITE)
    r = owner.post(f"{BASE}/verify-authentication", {"response": response})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")


def test_a_challenge_is_bound_to_the_browser_that_asked_for_it(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    asker = stack.client()
    response = assertion(asker, key)
    r = stack.client().post(f"{BASE}/verify-authentication", {"response": response})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")


@pytest.mark.parametrize("knobs", [
    {"origin": "https://evil.example"},
    {"rp_id": "evil.example"},
    {"tamper_signature": True},
    {"user_present": False},
])
def test_bad_assertions_are_refused(stack: Stack, knobs: dict[str, Any]) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    options = api.get(f"{BASE}/generate-authenticate-options").json()
    response = key.get(options, **{"origin": SITE, **knobs})
    r = api.post(f"{BASE}/verify-authentication", {"response": response})
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert api.get("/api/me").status_code == 401


def test_unknown_credential_is_not_found(stack: Stack) -> None:
    stranger = VirtualPasskey()
    api = stack.client()
    options = api.get(f"{BASE}/generate-register-options")  # no session: 401, so make a credential locally
    assert options.status_code == 401
    stranger.create({"challenge": "AAAA", "rp": {"id": "testserver", "name": "x"},
                     "user": {"id": "dXNlcg", "name": "u", "displayName": "u"},
                     "pubKeyCredParams": [{"type": "public-key", "alg": -7}]}, origin=SITE)
    r = sign_in(api, stranger)
    assert (r.status_code, r.json()["code"]) == (401, "PASSKEY_NOT_FOUND")


def test_user_handle_must_name_the_owner(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    r = sign_in(api, key, user_handle=b"someone-else")
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")


def test_sign_count_going_backwards_is_refused_as_a_clone(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    _, key = user_with_passkey(stack)
    assert sign_in(stack.client(), key, sign_count=10).status_code == 200
    r = sign_in(stack.client(), key, sign_count=5)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert "passkey.clone_suspected" in [e["type"] for e in events]
    assert sign_in(stack.client(), key, sign_count=10).status_code == 401  # equal is not growth
    assert sign_in(stack.client(), key, sign_count=11).status_code == 200


def test_synced_passkeys_that_always_report_zero_pass(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("synced@example.com")
    key = VirtualPasskey(sign_count_increment=0, backup_eligible=True, backed_up=True)
    assert register(api, key).json()["backedUp"] is True
    for _ in range(3):
        assert sign_in(stack.client(), key).status_code == 200


def test_user_verification_required_refuses_passkeys_without_it(stack_factory) -> None:  # type: ignore[no-untyped-def]
    from banata_middleware import PasskeyConfig

    stack = stack_factory(passkey=PasskeyConfig(rp_id="testserver", origins=(SITE,), user_verification="required"))
    api = stack.client()
    api.sign_up("uv@example.com")
    key = VirtualPasskey()
    r = register(api, key, user_verified=False)
    assert (r.status_code, r.json()["code"]) == (400, "FAILED_TO_VERIFY_REGISTRATION")
    assert register(api, key).status_code == 200
    r = sign_in(stack.client(), key, user_verified=False)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")


def test_a_credential_registers_once(stack: Stack) -> None:
    owner, key = user_with_passkey(stack)
    r = register(owner, key, ignore_exclude_credentials=True, credential_id=key.credential_id)
    assert (r.status_code, r.json()["code"]) == (409, "PASSKEY_ALREADY_REGISTERED")
    other = stack.client()
    other.sign_up("other@example.com")
    r = register(other, key, ignore_exclude_credentials=True, credential_id=key.credential_id)
    assert (r.status_code, r.json()["code"]) == (409, "PASSKEY_ALREADY_REGISTERED")


def test_registration_options_exclude_existing_credentials(stack: Stack) -> None:
    owner, key = user_with_passkey(stack)
    options = owner.get(f"{BASE}/generate-register-options").json()
    assert [c["id"] for c in options["excludeCredentials"]] == [cid(key)]


def test_rename_and_delete_own_passkeys_only(stack: Stack) -> None:
    owner, key = user_with_passkey(stack)
    credential = cid(key)
    r = owner.post(f"{BASE}/update-passkey", {"id": credential, "name": "Phone"})
    assert r.status_code == 200 and r.json()["passkey"]["name"] == "Phone"
    intruder = stack.client()
    intruder.sign_up("intruder@example.com")
    assert intruder.post(f"{BASE}/delete-passkey", {"id": credential}).json()["code"] == "PASSKEY_NOT_FOUND"
    r = intruder.post(f"{BASE}/update-passkey", {"id": credential, "name": "x"})
    assert r.json()["code"] == "PASSKEY_NOT_FOUND"
    assert owner.post(f"{BASE}/delete-passkey", {"id": credential}).json() == {"status": True}
    assert owner.get(f"{BASE}/list-user-passkeys").json() == []
    assert sign_in(stack.client(), key).json()["code"] == "PASSKEY_NOT_FOUND"
    assert register(owner, key, ignore_exclude_credentials=True).status_code == 200  # the id is free again


def test_passkey_endpoints_need_a_session_where_the_contract_says(stack: Stack) -> None:
    api = stack.client()
    assert api.get(f"{BASE}/generate-register-options").status_code == 401
    assert api.get(f"{BASE}/list-user-passkeys").status_code == 401
    assert api.post(f"{BASE}/delete-passkey", {"id": "x"}).status_code == 401
    assert api.get(f"{BASE}/generate-authenticate-options").status_code == 200
    r = api.post(f"{BASE}/verify-authentication", {"response": "nope"})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")

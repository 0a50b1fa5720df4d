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
                      two_factor: bool = False, user_verified: bool = True) -> tuple[Api, VirtualPasskey]:
    api = stack.client()
    api.sign_up(email)
    if two_factor:
        api.enable_2fa()
    key = VirtualPasskey(algorithm=algorithm, user_verified=user_verified)  # type: ignore[arg-type]
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


@pytest.mark.parametrize("two_factor", [True, False], ids=["with-2fa", "without-2fa"])
def test_a_passkey_without_user_verification_cannot_sign_in_on_its_own(stack: Stack, two_factor: bool) -> None:
    # Issue 17 section 1: a security key without a PIN is one factor, something you have. It once
    # opened a pending sign-in by itself (403 listing "passkey") and then answered that same
    # challenge: one possession factor counted twice, aal 2 without any password.
    _, key = user_with_passkey(stack, two_factor=two_factor, user_verified=False)  # a key without a PIN
    api = stack.client()  # a fresh browser, no password
    for _ in range(2):
        r = sign_in(api, key)
        assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED"), r.text
        assert "did not verify you" in r.json()["message"]
        assert "banata.two_factor" not in api.http.cookies  # no pending challenge was opened
        assert "banata.session_token" not in api.http.cookies
    assert api.get("/api/me").json()["code"] == "UNAUTHORIZED"


def test_a_user_verified_passkey_signs_a_two_factor_user_in_at_aal2(stack: Stack) -> None:
    _, key = user_with_passkey(stack, two_factor=True)
    api = stack.client()
    r = sign_in(api, key)
    assert r.status_code == 200, r.text
    assert api.get("/api/me").json()["aal"] == 2


def test_passkey_answers_the_sign_in_challenge(stack: Stack) -> None:
    _owner, key = user_with_passkey(stack, two_factor=True, user_verified=False)
    api = stack.client()
    r = api.sign_in("pk@example.com")
    assert r.status_code == 403 and "passkey" in r.json()["twoFactorMethods"]
    r = sign_in(api, key)  # without user verification: possession is the second factor here
    assert r.status_code == 200, r.text
    assert api.get("/api/me").json()["aal"] == 2
    assert "banata.two_factor" not in api.http.cookies


def pending_challenge_key(stack: Stack, api: Api) -> str:
    flows = stack.auth.flows
    read = flows.challenge_tokens.read(api.http.cookies[flows.challenge_cookie])
    assert read is not None
    return flows.keys.challenge(read[0], read[1])


def test_a_challenge_that_does_not_say_what_opened_it_is_not_answered_by_a_passkey(stack: Stack) -> None:
    # Challenges from before 'opened_by' was recorded may have been opened by a passkey without
    # user verification: one factor must not count twice, so a passkey cannot answer them.
    owner, key = user_with_passkey(stack, two_factor=True)
    api = stack.client()
    assert api.sign_in("pk@example.com").status_code == 403
    challenge = pending_challenge_key(stack, api)
    if stack.redis is not None:
        with stack.redis.client() as r:
            assert r.hget(challenge, "opened_by") == "pwd"
            r.hdel(challenge, "opened_by")
    else:
        assert stack.auth.store.data[challenge].pop("opened_by") == "pwd"
    r = sign_in(api, key, user_verified=False)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert "cannot answer this sign-in" in r.json()["message"]
    stack.clock.advance(30)  # the authenticator app still answers it
    assert api.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200
    assert api.get("/api/me").json()["aal"] == 2


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


def test_revoke_sessions_leaves_no_pending_challenge_answerable_by_a_passkey(stack: Stack) -> None:
    # Issue 17 section 4: the passkey path checked only the challenge's expiry, never revoked_at.
    owner, key = user_with_passkey(stack, two_factor=True)
    uid = owner.get("/api/me").json()["userId"]
    by_code, by_passkey = stack.client(), stack.client()
    assert by_code.sign_in("pk@example.com").status_code == 403
    assert by_passkey.sign_in("pk@example.com").status_code == 403
    stack.clock.advance(1)
    stack.auth.revoke_sessions(uid)
    stack.clock.advance(30)
    r = by_code.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    r = sign_in(by_passkey, key, user_verified=False)
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED"), r.text
    assert by_passkey.get("/api/me").status_code == 401


IFRAMES = [
    {"cross_origin": True, "top_origin": "http://evil.example"},
    {"cross_origin": True},  # a Level 2 browser: no topOrigin to check
    {"top_origin": "http://evil.example"},  # only a hostile client sends one without crossOrigin
]


@pytest.mark.parametrize("iframe", IFRAMES, ids=["top-evil", "no-top", "top-only"])
def test_an_assertion_made_in_a_cross_origin_iframe_is_refused(stack: Stack, iframe: dict[str, Any]) -> None:
    # Issue 17 section 5: py_webauthn parses crossOrigin and checks neither it nor topOrigin.
    _, key = user_with_passkey(stack)
    api = stack.client()
    r = sign_in(api, key, **iframe)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED"), r.text
    assert "iframe" in r.json()["message"]
    assert api.get("/api/me").status_code == 401


@pytest.mark.parametrize("iframe", IFRAMES, ids=["top-evil", "no-top", "top-only"])
def test_a_registration_made_in_a_cross_origin_iframe_is_refused(stack: Stack, iframe: dict[str, Any]) -> None:
    owner = stack.client()
    owner.sign_up("framed@example.com")
    r = register(owner, VirtualPasskey(), **iframe)
    assert (r.status_code, r.json()["code"]) == (400, "FAILED_TO_VERIFY_REGISTRATION"), r.text
    assert owner.get(f"{BASE}/list-user-passkeys").json() == []


def test_cross_origin_iframes_pass_only_on_the_allowed_top_origins(stack_factory) -> None:  # type: ignore[no-untyped-def]
    from banata_middleware import PasskeyConfig

    portal = "https://portal.example"
    stack = stack_factory(passkey=PasskeyConfig(rp_id="testserver", origins=(SITE,), allowed_top_origins=(portal,)))
    owner = stack.client()
    owner.sign_up("embedded@example.com")
    key = VirtualPasskey()
    assert register(owner, key, cross_origin=True, top_origin="http://evil.example").status_code == 400
    assert register(owner, key, cross_origin=True, top_origin=portal).status_code == 200
    api = stack.client()
    for refused in IFRAMES:
        assert sign_in(api, key, **refused).status_code == 401
    r = sign_in(api, key, cross_origin=True, top_origin=portal)
    assert r.status_code == 200, r.text
    assert sign_in(stack.client(), key).status_code == 200  # not framed at all: as ever

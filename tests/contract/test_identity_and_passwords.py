"""Identities, password checks and session lifetimes (third security review, issue 19 §2-4, §6;
second review, issue 17 §7): one account per address, normalized passwords, throttled re-checks,
a throttle that a guesser cannot turn against the owner, short non-remembered sessions, a cap on
sessions per user."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import pytest
from harness import PASSWORD, Stack, count_scrypt

from banata_middleware import Policies
from banata_middleware.emails import canonical_email
from banata_middleware.stores.records import GetAccount, GetAccountByEmail

RECHECKS = ["/two-factor/enable", "/two-factor/disable", "/two-factor/get-totp-uri",
            "/two-factor/generate-backup-codes"]


# -- issue 19 §2: password re-checks on a session are throttled -----------------------------------------

@pytest.mark.parametrize("path", RECHECKS)
def test_ten_wrong_password_rechecks_make_the_eleventh_429_without_hashing(stack: Stack, path: str) -> None:
    api = stack.client(ip="198.51.100.9")
    api.sign_up("recheck@example.com")
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    for _ in range(10):
        r = api.auth(path, {"password": "wrong password"})
        assert (r.status_code, r.json()["code"]) == (400, "INVALID_PASSWORD"), r.text
    scrypt = count_scrypt(stack)
    r = api.auth(path, {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert 0 < int(r.headers["retry-after"]) <= 900
    assert scrypt[0] == 0
    assert [e["type"] for e in events].count("password.check_failed") == 10
    # the same account throttle as sign-in: the guesser's address cannot switch to sign-in either
    assert stack.client(ip="198.51.100.9").sign_in("recheck@example.com").status_code == 429
    stack.clock.advance(15 * 60 + 1)
    assert api.auth("/two-factor/enable", {"password": PASSWORD}).status_code == 200


# -- issue 17 §7: ten wrong passwords must not lock out the right one ----------------------------------

def test_an_attacker_at_one_address_cannot_lock_the_owner_out(stack: Stack) -> None:
    stack.client().sign_up("owner@example.com")
    for _ in range(10):
        assert stack.client(ip="203.0.113.66").sign_in("owner@example.com", "guess").status_code == 401
    assert stack.client(ip="203.0.113.66").sign_in("owner@example.com").status_code == 429
    r = stack.client(ip="192.0.2.10").sign_in("owner@example.com")
    assert r.status_code == 200, r.text


def test_failures_from_many_addresses_raise_the_bar_for_unknown_addresses_only(
        stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(sign_in_failures_per_account_all_addresses=20))
    stack.client(ip="192.0.2.10").sign_up("owner@example.com")
    assert stack.client(ip="192.0.2.10").sign_in("owner@example.com").status_code == 200  # a known address
    for i in range(20):  # a guesser spread over many addresses
        assert stack.client(ip=f"203.0.113.{i}").sign_in("owner@example.com", "guess").status_code == 401
    scrypt = count_scrypt(stack)
    r = stack.client(ip="203.0.113.200").sign_in("owner@example.com")
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert scrypt[0] == 0
    assert stack.client(ip="192.0.2.10").sign_in("owner@example.com").status_code == 200
    stack.clock.advance(15 * 60 + 1)
    assert stack.client(ip="203.0.113.200").sign_in("owner@example.com").status_code == 200


# -- issue 19 §3: one account per address ----------------------------------------------------------------

SAME_ADDRESS = [
    ("cafe@example.com", "CAFE@Example.com"),
    ("x@bücher.example", "x@xn--bcher-kva.example"),
    ("x@example.com", "x@example.com."),
    ("x@example.com", "x@ｅxample.com"),  # a fullwidth letter in the domain folds (IDNA/UTS 46)
]


@pytest.mark.parametrize(("first", "second"), SAME_ADDRESS)
def test_two_spellings_of_one_address_give_one_account(stack: Stack, first: str, second: str) -> None:
    uid = stack.client().sign_up(first).json()["user"]["id"]
    r = stack.client().auth("/sign-up/email", {"email": second, "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (422, "USER_ALREADY_EXISTS"), r.text
    for spelling in (first, second):
        r = stack.client().sign_in(spelling)
        assert r.status_code == 200 and r.json()["user"]["id"] == uid, r.text
    # one row in SQL, under the canonical form (the unique index is what refuses the second spelling)
    canonical = canonical_email(second)
    account = stack.auth.records.execute(GetAccountByEmail(canonical))
    assert account is not None and account.id == uid and account.email == canonical


REFUSED = [
    "café@example.com", "cafe\u0301@example.com",   # non-ASCII local parts: composed and decomposed
    "alice\u200b@example.com", "al\u00adice@example.com", "al\x01ice@example.com", "x@exa\u200bmple.com",
    "\u0430lice@example.com", "ａlice@example.com",   # Cyrillic а, fullwidth a
    '"a b"@example.com', "a@evil.com@example.com", "<script>@example.com", "Bob <b@example.com>",
    "a@[192.0.2.1]", "a@localhost", "x@example.com..", "\ufeffvictim@example.com",
]


@pytest.mark.parametrize("email", REFUSED)
def test_unsafe_or_look_alike_addresses_are_refused(stack: Stack, email: str) -> None:
    for path in ("/sign-up/email", "/sign-in/email"):
        r = stack.client().auth(path, {"email": email, "password": PASSWORD})
        assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), (path, r.text)


def test_the_canonical_address_is_stored_and_labels_the_totp_uri(stack: Stack) -> None:
    api = stack.client()
    assert api.sign_up("Ada@Bücher.Example.").json()["user"]["email"] == "ada@xn--bcher-kva.example"
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    assert unquote(r.json()["totpURI"]).startswith("otpauth://totp/Banata Demo:ada@xn--bcher-kva.example?")


# -- issue 19 §4: passwords are NFKC-normalized --------------------------------------------------------

COMPOSED = unicodedata.normalize("NFC", "pässwörd-Käse-1")
DECOMPOSED = unicodedata.normalize("NFD", COMPOSED)


def test_a_password_signs_in_composed_or_decomposed(stack: Stack) -> None:
    assert COMPOSED != DECOMPOSED
    stack.client().sign_up("nfc@example.com", password=COMPOSED)
    assert stack.client().sign_in("nfc@example.com", DECOMPOSED).status_code == 200
    assert stack.client().sign_in("nfc@example.com", COMPOSED).status_code == 200
    api = stack.client()
    api.sign_up("nfd@example.com", password=DECOMPOSED)
    assert stack.client().sign_in("nfd@example.com", COMPOSED).status_code == 200
    assert api.auth("/two-factor/enable", {"password": COMPOSED}).status_code == 200


def test_the_stored_hash_is_of_the_normalized_password(stack: Stack) -> None:
    uid = stack.client().sign_up("stored-nfc@example.com", password=DECOMPOSED).json()["user"]["id"]
    account = stack.auth.records.execute(GetAccount(uid))
    assert account is not None
    hasher = stack.auth.flows.hasher
    assert hasher.verify(COMPOSED, account.password_hash) and not hasher.verify(DECOMPOSED, account.password_hash)


# -- issue 19 §6: cookies and session lifetimes ------------------------------------------------------

def test_remember_me_false_sessions_end_after_a_day_on_the_server(stack: Stack) -> None:
    stack.client().sign_up("short@example.com")
    api = stack.client()
    token = api.sign_in("short@example.com", rememberMe=False).json()["token"]
    session = api.get("/api/auth/get-session").json()["session"]
    remembered = stack.client()
    remembered.sign_in("short@example.com")
    stack.clock.advance(24 * 3600 + 1)
    assert api.get("/api/me").status_code == 401
    bearer = stack.client(origin=None)
    assert bearer.get("/api/me", headers={"authorization": f"Bearer {token}"}).status_code == 401
    assert remembered.get("/api/me").status_code == 200
    assert session["expiresAt"] < remembered.get("/api/auth/get-session").json()["session"]["expiresAt"]


def test_remember_me_false_through_the_second_factor_gives_a_short_session(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("short2fa@example.com")
    device = api.enable_2fa()
    browser = stack.client()
    assert browser.sign_in("short2fa@example.com", rememberMe=False).status_code == 403
    stack.clock.advance(30)
    assert browser.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    stack.clock.advance(24 * 3600 + 1)
    assert browser.get("/api/me").status_code == 401

    # and from a trusted device, whose sign-in skips the code
    r = browser.sign_in("short2fa@example.com")
    assert r.status_code == 403
    stack.clock.advance(30)
    assert browser.auth("/two-factor/verify-totp", {"code": device.code(), "trustDevice": True}).status_code == 200
    assert browser.auth("/sign-out").status_code == 200
    assert browser.sign_in("short2fa@example.com", rememberMe=False).status_code == 200
    assert browser.get("/api/me").status_code == 200
    stack.clock.advance(24 * 3600 + 1)
    assert browser.get("/api/me").status_code == 401


def test_past_the_cap_of_sessions_per_user_the_oldest_is_revoked(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(max_sessions_per_user=3))
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    first = stack.client()
    first.sign_up("many@example.com")
    others = []
    for _ in range(3):
        stack.clock.advance(1)
        api = stack.client()
        assert api.sign_in("many@example.com").status_code == 200
        others.append(api)
    assert first.get("/api/me").status_code == 401
    assert [api.get("/api/me").status_code for api in others] == [200, 200, 200]
    assert [e["type"] for e in events].count("session.revoked") == 1



def test_ended_sessions_do_not_count_toward_the_cap(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(max_sessions_per_user=3))
    keeper = stack.client()
    keeper.sign_up("ended@example.com")
    for _ in range(5):  # sessions that were signed out
        stack.clock.advance(1)
        api = stack.client()
        assert api.sign_in("ended@example.com").status_code == 200
        assert api.auth("/sign-out").status_code == 200
    live = [stack.client() for _ in range(2)]
    for api in live:
        stack.clock.advance(1)
        assert api.sign_in("ended@example.com").status_code == 200
    assert [api.get("/api/me").status_code for api in (keeper, *live)] == [200, 200, 200]

"""Round-2 adversarial review of the identity/throttle/session fixes (issues 13, 17 §2, §6, §7, 19).

Each test reproduces one way past a fix. Findings not fixed on this branch are marked
``xfail(strict=True)``: the test fails today (as an XFAIL) and turns the suite red (XPASS) the day
the finding is fixed, so whoever fixes it removes the marker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from harness import PASSWORD, Stack, count_scrypt

from banata_middleware import Policies
from banata_middleware.addresses import throttle_group

DAY = 24 * 3600


def _expires_in(api: Any, stack: Stack) -> float:
    """Seconds until the caller's session ends on the server (get-session's expiresAt)."""
    session = api.get("/api/auth/get-session").json()["session"]
    expires = datetime.fromisoformat(session["expiresAt"].replace("Z", "+00:00")).timestamp()
    return expires - stack.clock.now()


# -- R2-1: a step-up or an enrolment turns a rememberMe:false session into a 7-day one ---------------------

def test_step_up_keeps_a_not_remembered_session_short(stack: Stack) -> None:
    """issue 19 §6 promised rememberMe:false sessions end after a day on the server (bearer token
    included). The session rotated by verify-totp inside a session (session_answer) is made with
    the plain ``session_ttl`` instead of the session spec, so it lives 7 days again."""
    owner = stack.client()
    owner.sign_up("stepup@example.com")
    device = owner.enable_2fa()
    browser = stack.client()
    assert browser.sign_in("stepup@example.com", rememberMe=False).status_code == 403
    stack.clock.advance(30)
    r = browser.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text
    assert _expires_in(browser, stack) <= DAY
    stack.clock.advance(30)
    r = browser.auth("/two-factor/verify-totp", {"code": device.code()})  # a step-up: the session rotates
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert _expires_in(browser, stack) <= DAY
    stack.clock.advance(DAY + 1)
    bearer = stack.client(origin=None)
    assert bearer.get("/api/me", headers={"authorization": f"Bearer {token}"}).status_code == 401


def test_enrolment_keeps_a_not_remembered_session_short(stack: Stack) -> None:
    stack.client().sign_up("enrol-short@example.com")
    api = stack.client()
    assert api.sign_in("enrol-short@example.com", rememberMe=False).status_code == 200
    api.enable_2fa()  # confirmation by verify-totp in the session rotates it
    assert _expires_in(api, stack) <= DAY
    stack.clock.advance(DAY + 1)
    assert api.get("/api/me").status_code == 401


def test_sessions_rotated_by_a_step_up_still_count_toward_the_cap(stack_factory: Callable[..., Stack]) -> None:
    """The rotated session is made without the cap (spec '<ttl>' means cap 0) and never enters the
    cap's age index, so each sign-in + step-up leaves one session the cap can never evict."""
    stack = stack_factory(policies=Policies(max_sessions_per_user=2))
    owner = stack.client()
    owner.sign_up("cap-stepup@example.com")
    device = owner.enable_2fa()
    clients = []
    for _ in range(4):
        api = stack.client()
        stack.clock.advance(30)
        assert api.sign_in("cap-stepup@example.com").status_code == 403
        assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
        stack.clock.advance(30)
        assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200  # step-up
        clients.append(api)
    live = [api.get("/api/me").status_code for api in (owner, *clients)].count(200)
    assert live <= 2


# -- R2-2: a known address is never refreshed, so the owner's everyday address expires -----------------------

def test_an_address_in_daily_use_stays_known(stack_factory: Callable[..., Stack]) -> None:
    """sign_in recorded an address as known only when it was not known yet, so its time was that of
    the FIRST sign-in. ``known_address_ttl`` (30 days) after it, the owner's everyday
    address is unknown again, and a guesser who keeps the account's all-addresses limit tripped
    (100 failures per 15 min from 10 addresses) then shuts the owner out everywhere, with no
    way to become known again (the 429 comes before the password is checked)."""
    stack = stack_factory(policies=Policies(sign_in_failures_per_account_all_addresses=20))
    home = "192.0.2.10"
    stack.client(ip=home).sign_up("daily@example.com")
    assert stack.client(ip=home).sign_in("daily@example.com").status_code == 200  # home becomes known
    for _ in range(29):  # the owner signs in from home every day
        stack.clock.advance(DAY)
        assert stack.client(ip=home).sign_in("daily@example.com").status_code == 200
    stack.clock.advance(2 * DAY)  # two days after the owner's last sign-in from home
    for i in range(20):  # a guesser spread over addresses
        assert stack.client(ip=f"203.0.113.{i}").sign_in("daily@example.com", "guess").status_code == 401
    r = stack.client(ip=home).sign_in("daily@example.com")
    assert r.status_code == 200, r.text


# -- R2-3: whoever knows the password (2FA protects the account) can evict the owner's known addresses ------

def test_a_password_holder_cannot_push_the_owner_out_of_the_known_addresses(
        stack_factory: Callable[..., Stack]) -> None:
    """An address becomes known after the password alone, before the second factor. A thief with
    the password but not the TOTP device signs in (to the challenge) from 100 addresses: the
    known list keeps the 100 most recent, the owner's is gone, and 100 wrong guesses then lock
    the owner out of password sign-in from everywhere, while the thief can never pass 2FA."""
    stack = stack_factory(policies=Policies(sign_in_failures_per_account_all_addresses=20))
    home = "192.0.2.10"
    owner = stack.client(ip=home)
    owner.sign_up("evict@example.com")
    device = owner.enable_2fa()
    at_home = stack.client(ip=home)
    assert at_home.sign_in("evict@example.com").status_code == 403
    stack.clock.advance(30)
    assert at_home.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200  # home is known
    stack.clock.advance(1)
    for i in range(100):  # password only: each stops at the second-factor challenge
        assert stack.client(ip=f"198.51.{i // 250}.{i % 250}").sign_in("evict@example.com").status_code == 403
    for i in range(20):
        assert stack.client(ip=f"203.0.113.{i}").sign_in("evict@example.com", "guess").status_code == 401
    owner_again = stack.client(ip=home)
    r = owner_again.sign_in("evict@example.com")
    assert r.status_code == 403, r.text  # reaches the challenge
    stack.clock.advance(30)
    assert owner_again.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


# -- R2-4: IPv4 clients seen through an IPv6 translator all share one throttle group --------------------------

EMBEDDED = [
    ("64:ff9b::c000:20a", "64:ff9b::cb00:7142", "192.0.2.10", "203.0.113.66"),  # NAT64/SIIT well-known prefix
    ("2002:c000:20a::1", "2002:cb00:7142::1", "192.0.2.10", "203.0.113.66"),   # 6to4: the /48 is the IPv4
    # Teredo (RFC 4380's example, and the same server for another client): one /64 per Teredo server
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:34ff:8ebd", "192.0.2.45", "203.0.113.66"),
]


@pytest.mark.parametrize(("one", "other", "one_v4", "other_v4"), EMBEDDED)
def test_ipv4_embedded_in_ipv6_is_throttled_as_its_ipv4(one: str, other: str, one_v4: str, other_v4: str) -> None:
    """Behind SIIT-DC/NAT64 (RFC 6052 well-known prefix 64:ff9b::/96) the server sees every IPv4
    client inside one /64: the per-address throttle becomes global (50 failures from anyone shut
    sign-in for every IPv4 user) and every IPv4 client shares the owner's known address. A 6to4
    client owns a whole /48 (2002:<ipv4>::/48) and can rotate through 65536 /64 groups."""
    policies = Policies()
    assert throttle_group(one, policies) == one_v4
    assert throttle_group(other, policies) == other_v4
    assert throttle_group(one.replace("::1", ":1::1") if one.startswith("2002") else one, policies) == one_v4


def test_two_ipv4_clients_behind_nat64_do_not_share_a_throttle(stack: Stack) -> None:
    stack.client().sign_up("nat64@example.com")
    for _ in range(10):  # a guesser (IPv4 203.0.113.66 as the translator writes it)
        assert stack.client(ip="64:ff9b::cb00:7142").sign_in("nat64@example.com", "guess").status_code == 401
    assert stack.client(ip="64:ff9b::cb00:7142").sign_in("nat64@example.com").status_code == 429
    r = stack.client(ip="64:ff9b::c000:20a").sign_in("nat64@example.com")  # the owner, IPv4 192.0.2.10
    assert r.status_code == 200, r.text


# -- R2-5: sign-up is still unthrottled and hashes before it checks (issue 19 §1) -----------------------------

def test_sign_up_of_a_taken_email_is_refused_before_hashing(stack: Stack) -> None:
    """Every 422 USER_ALREADY_EXISTS cost one scrypt (about 0.1 CPU-s at the default cost), so one
    client posting a taken email back to back kept a core busy."""
    stack.client().sign_up("taken@example.com")
    scrypt = count_scrypt(stack)
    api = stack.client(ip="203.0.113.99")
    for email in ("taken@example.com", "TAKEN@example.com."):
        r = api.auth("/sign-up/email", {"email": email, "password": PASSWORD})
        assert (r.status_code, r.json()["code"]) == (422, "USER_ALREADY_EXISTS"), r.text
    assert scrypt[0] == 0


def test_sign_ups_from_one_address_are_throttled(stack: Stack) -> None:
    """New addresses: each sign-up is one scrypt and one account stored for good, without limit."""
    api = stack.client(ip="203.0.113.99")
    statuses = [api.auth("/sign-up/email", {"email": f"bulk{i}@example.com", "password": PASSWORD}).status_code
                for i in range(60)]
    assert 429 in statuses, statuses



# -- R2-6: a password that NFKC changes costs two scrypt runs, known account or not ---------------------------

def test_a_wrong_password_costs_one_hash_whatever_its_form(stack: Stack) -> None:
    """_password_matches tries the raw form whenever NFKC changed the password, also against hashes
    made after normalization (and the dummy hash of unknown emails), where the raw form can never
    match: any guess containing e.g. U+FB01 doubles the server's cost of every throttled attempt."""
    stack.client().sign_up("cost@example.com")
    scrypt = count_scrypt(stack)
    for email in ("cost@example.com", "nobody@example.com"):
        assert stack.client().sign_in(email, "\ufb01-wrong-password").status_code == 401
    assert scrypt[0] == 2


# -- R2-7: the minimum length is counted after NFKC expansion ------------------------------------------------

@pytest.mark.parametrize("password", ["\ufdfa", "\u3392\u3392\u3392", "\ufb03\ufb03\ufb03"])
def test_a_one_character_password_is_too_short(stack: Stack, password: str) -> None:
    """NFKC turns U+FDFA into 18 characters and U+3392 (a 'MHz' square) into 3: a password the user
    typed as 1-3 characters passed the 8-character minimum."""
    r = stack.client().auth("/sign-up/email", {"email": "short-pw@example.com", "password": password})
    assert (r.status_code, r.json()["code"]) == (400, "PASSWORD_TOO_SHORT"), r.text


# -- R2-8: right passwords are never throttled, so one's own account is an unbounded hashing oracle ----------

def test_one_client_cannot_make_the_server_hash_without_bound(stack: Stack) -> None:
    """Failures are throttled before hashing, successes never are: an attacker signs up once and then
    signs in to their own account back to back (or re-checks its password on get-totp-uri), one
    scrypt each, from one address. Measured here: 60 sign-ins, 60 scrypt runs, no 429."""
    attacker = stack.client(ip="203.0.113.99")
    attacker.sign_up("mine@example.com")
    scrypt = count_scrypt(stack)
    statuses = [attacker.sign_in("mine@example.com").status_code for _ in range(100)]
    assert 429 in statuses, f"{scrypt[0]} scrypt runs, statuses {set(statuses)}"
    limit = stack.auth.config.policies.password_hashes_per_address
    assert scrypt[0] == limit and statuses.count(200) == limit  # the budget, then 429 before any hash
    r = attacker.auth("/sign-in/email", {"email": "mine@example.com", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0

"""The phone app: several accounts, each read on the phone's clock."""

from __future__ import annotations

import time

import pytest

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock, OffsetClock

ALICE = "otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP&issuer=ACME"
ALICE_AGAIN = "otpauth://totp/ACME:alice?secret=KRSXG5CTMVRXEZLU&issuer=ACME"
BOB = "otpauth://totp/ACME:bob?secret=KRSXG5CTMVRXEZLU&issuer=ACME"
GITHUB = "otpauth://totp/GitHub:alice?secret=GEZDGNBVGY3TQOJQ&issuer=GitHub&digits=8"


def test_code_defaults_to_the_clock_now() -> None:
    clock = FrozenClock(1_700_000_000)
    app = VirtualAuthenticator.from_uri(ALICE, clock=clock)
    assert app.code() == app.code(1_700_000_000)
    clock.advance(30)
    assert app.code() == app.code(1_700_000_030) != app.code(1_700_000_000)


def test_default_clock_is_the_real_time() -> None:
    app = VirtualAuthenticator.from_uri(ALICE)
    before = time.time()
    code = app.code()
    assert code in {app.code(before), app.code(time.time())}


def test_phone_behind_the_server_shows_the_previous_code() -> None:
    server = FrozenClock(1_700_000_010)
    phone = VirtualAuthenticator.from_uri(ALICE, clock=OffsetClock(server, -30))
    assert phone.code() == phone.code(server.now(), steps=-1)


def test_app_holds_several_accounts_each_with_its_own_code() -> None:
    app = VirtualAuthenticator(clock=FrozenClock(1_700_000_000))
    alice, bob, github = app.add_uri(ALICE), app.add_uri(BOB), app.add_uri(GITHUB)
    assert app.accounts == (alice, bob, github)
    assert app.account(issuer="ACME", name="bob") is bob
    assert app.account(issuer="GitHub") is github
    assert len(github.code()) == 8
    assert alice.code() != bob.code()


def test_ambiguous_or_missing_account_lookup_is_an_error() -> None:
    app = VirtualAuthenticator()
    app.add_uri(ALICE)
    app.add_uri(BOB)
    with pytest.raises(LookupError, match="2 accounts match"):
        app.account(issuer="ACME")
    with pytest.raises(LookupError, match="0 accounts match"):
        app.account(name="carol")


def test_single_account_shortcuts_refuse_when_the_app_holds_several() -> None:
    app = VirtualAuthenticator()
    app.add_uri(ALICE)
    app.add_uri(BOB)
    with pytest.raises(LookupError, match=r"pick one with \.account"):
        app.code()


def test_rescanning_the_same_account_replaces_the_old_secret() -> None:
    app = VirtualAuthenticator()
    app.add_uri(ALICE)
    app.add_uri(ALICE_AGAIN)
    assert len(app.accounts) == 1
    assert app.secret == "KRSXG5CTMVRXEZLU"


def test_removed_account_is_gone() -> None:
    app = VirtualAuthenticator()
    alice = app.add_uri(ALICE)
    app.add_uri(BOB)
    app.remove(alice)
    assert app.name == "bob"


def test_single_account_exposes_its_parameters() -> None:
    app = VirtualAuthenticator.from_uri(GITHUB)
    assert (app.secret, app.issuer, app.name, app.algorithm, app.digits, app.period) == (
        "GEZDGNBVGY3TQOJQ",
        "GitHub",
        "alice",
        "SHA1",
        8,
        30,
    )
    assert app.step(95) == 3


def test_remaining_counts_down_to_the_next_step() -> None:
    app = VirtualAuthenticator.from_uri(ALICE, clock=FrozenClock(1_700_000_010))
    assert app.remaining() == 30  # 1_700_000_010 is a step boundary
    assert app.remaining(1_700_000_039.5) == 0.5

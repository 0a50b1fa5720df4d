"""Round-8 review (an attacker's brief) of r7a/r7b: the undo of a refused or failed disable,
remove-last-app or disable-otp (RestoreSecondFactor removes what is in the factor tables and the
passkeys registered since, two_factor_disable.lua 'undo' ends the sessions made since but the
caller's and voids trusted devices; RestoreOtp and the two phases of a generation write only while
2FA is on). Each finding (R8-n) is pinned by a test that failed before its fix (R8-1; R8-2, fixed by
one removal of a user's factors in flight at a time: the removal lease, 0009); the others pin
attacks that held. Setup of test_r7_review.py; every test runs on each adapter x
store (memory + SQLite, Redis + PostgreSQL).

Two requests interleave here as two tabs of one browser do: the first runs in a thread that is
held just before a chosen record operation (or hot script), the second runs to a chosen point and
releases it, then waits for it to finish. One request runs at a time: the stores see them in turn."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from harness import PASSWORD, FailAfter, PausingStore, Stack
from sqlalchemy import select
from test_r6_review import (
    EMAIL,
    otp_enrolled,
    otp_rows,
    otp_stack,  # noqa: F401 (a fixture)
    request_of,
    session_of,
)
from test_r7_review import THIEF_IP

from banata_middleware.effects import run_sync
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import REMOVAL_LEASE_MS, DisableOtp, DisableSecondFactor, LoadUser


class HeldRecords:
    """The stack's record store, holding the request (its thread) just before its first op of class
    ``kind`` until ``go`` is set: loaded and checked, its SQL change not yet begun."""

    def __init__(self, records: Any, kind: type) -> None:
        self.records, self.kind = records, kind
        self.ready, self.go = threading.Event(), threading.Event()

    def execute(self, op: Any) -> Any:
        if isinstance(op, self.kind) and not self.go.is_set():
            self.ready.set()
            assert self.go.wait(30)
        return self.records.execute(op)


def lease_of(stack: Stack, uid: str) -> int | None:
    """The user's removal lease as the record store holds it (None: no removal in flight)."""
    t = stack.records.schema.user_state
    with stack.records.engine.connect() as conn:
        return conn.execute(select(t.c.removing_until).where(t.c.user_id == uid)).scalar_one_or_none()


def add_phone(stack: Stack, owner: Any, name: str = "Phone") -> str:
    """Another authenticator app for a user with 2FA on, confirmed; its id."""
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "name": name})
    assert r.status_code == 200, r.text
    app = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    assert owner.auth("/two-factor/verify-totp", {"code": app.code()}).status_code == 200
    return str(r.json()["id"])


class Background:
    """``run`` in a thread; ``finish`` waits for it and gives its answer (or raises its error)."""

    def __init__(self, run: Callable[[], Any]) -> None:
        self.answer: list[Any] = []
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(run,), daemon=True)
        self.thread.start()

    def _run(self, run: Callable[[], Any]) -> None:
        try:
            self.answer.append(run())
        except BaseException as exc:  # re-raised in the test's thread by finish
            self.error.append(exc)

    def finish(self) -> Any:
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error[0]
        return self.answer[0]


# == findings ======================================================================================

# -- R8-1: a disable answered 200 is reverted by the undo of a disable that overlapped it -------------
def test_r8_1_a_disable_answered_200_is_not_undone_by_an_overlapping_disables_undo(stack: Stack) -> None:
    """Two tabs of the owner disable at once, both loaded with 2FA on. A's DisableSecondFactor
    commits first (takes the app and codes); B's then finds nothing (None). It used to answer 200
    "status: true" (the copy said off), and then A's hot half failed (503: "nothing changed"), A's
    undo put the app and codes back: B's "off" did not hold. Fixed: B, loaded with 2FA on and
    finding nothing, answers 409 TWO_FACTOR_CHANGED and changes nothing; A's undo stands, and
    both answers hold (2FA on)."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    held = HeldRecords(stack.auth.records, DisableSecondFactor)
    req_b = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    tab_b = Background(lambda: run_sync(stack.auth.gateway.handle(req_b), stack.auth.store, held))
    assert held.ready.wait(30)  # B is loaded (2FA on) and checked

    def b_runs() -> None:
        held.go.set()
        answers.append(tab_b.finish())

    answers: list[Any] = []
    req_a = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(stack.auth.gateway.handle(req_a), FailAfter(stack.auth.store, "two_factor_disable", b_runs),
                        stack.auth.records)
    assert response.status == 503, response.body
    assert answers[0].status == 409, answers[0].body  # B: "changed meanwhile", not "off"
    assert b"TWO_FACTOR_CHANGED" in answers[0].body
    record = stack.records.execute(LoadUser(uid))
    assert record.two_factor_enabled, "A answered 503 'nothing changed'"
    assert owner.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is True  # the copy agrees


# -- R8-2 (fixed): a disable-otp answered 503 lost its address for good under an overlapping disable's undo
def test_r8_2_two_requests_answered_503_leave_the_owners_address_in_place(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """App + codes by email. Tab C: disable-otp (email; not the last, the app stays) commits, then
    its re-check (factor_change.lua) cannot run: 503, "nothing changed", so the address is to go
    back (RestoreOtp). Tab A: disable, loaded meanwhile. Found: A committed (the app and codes
    went), then its hot half failed too; C's RestoreOtp ran in A's window and, no factor turning
    2FA on (R7-2's rule), wrote nothing; A's undo put back what A took, not the address it never
    saw. Both answered 503 and the address was gone: with the phone (the app) lost, a lockout.
    Fixed: one removal of a user's factors in flight at a time. C's DisableOtp took the user's
    removal lease in its transaction and holds it until C is settled; A's DisableSecondFactor
    meets it, removes nothing and A answers 409 TWO_FACTOR_CHANGED; C's undo puts the address
    back and releases the lease. Both answers hold."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    phone_id = add_phone(otp_stack, owner)
    c_paused, c_go = threading.Event(), threading.Event()

    def c_held() -> None:  # C's SQL committed; its re-check is about to fail
        c_paused.set()
        assert c_go.wait(30)

    req_c = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    tab_c = Background(lambda: run_sync(otp_stack.auth.gateway.handle(req_c),
                                        FailAfter(otp_stack.auth.store, "factor_change", c_held),
                                        otp_stack.auth.records))
    assert c_paused.wait(30)
    assert otp_rows(otp_stack, uid) == [] and lease_of(otp_stack, uid) is not None  # C is in flight
    req_a = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(otp_stack.auth.gateway.handle(req_a), otp_stack.auth.store, otp_stack.auth.records)
    assert response.status == 409, response.body
    assert b"TWO_FACTOR_CHANGED" in response.body
    assert [f.id for f in otp_stack.records.execute(LoadUser(uid)).totp] == [phone_id]  # A removed nothing
    c_go.set()
    assert tab_c.finish().status == 503
    # Both said "nothing changed": the app and the address stand, two-factor is on, in both stores.
    record = otp_stack.records.execute(LoadUser(uid))
    assert record.two_factor_enabled and [f.id for f in record.totp] == [phone_id]
    assert otp_rows(otp_stack, uid) == [("email", EMAIL)]
    assert owner.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is True
    assert lease_of(otp_stack, uid) is None  # released by C's undo: the owner's disable goes through now
    assert owner.auth("/two-factor/disable", {"password": PASSWORD}).status_code == 200


def test_r8_2_reversed_a_disable_in_flight_and_a_disable_otp_that_arrives_both_answers_hold(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """The other order. Tab C (disable-otp, email) is loaded with the address in place; tab A's
    disable commits (the app, the codes and the address go) and its hot half is about to fail.
    C's DisableOtp meets A's lease: 409, nothing removed (before the lease: 400 OTP_NOT_ENABLED,
    as if the address were gone, then A's undo put it back). A's 503 puts everything back."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    phone_id = add_phone(otp_stack, owner)
    held = HeldRecords(otp_stack.auth.records, DisableOtp)
    req_c = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    tab_c = Background(lambda: run_sync(otp_stack.auth.gateway.handle(req_c), otp_stack.auth.store, held))
    assert held.ready.wait(30)  # C is loaded (the address there) and checked
    answers: list[Any] = []

    def c_runs() -> None:  # A's SQL committed; its hot half is about to fail
        assert otp_rows(otp_stack, uid) == [] and lease_of(otp_stack, uid) is not None
        held.go.set()
        answers.append(tab_c.finish())

    req_a = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(otp_stack.auth.gateway.handle(req_a),
                        FailAfter(otp_stack.auth.store, "two_factor_disable", c_runs), otp_stack.auth.records)
    assert response.status == 503, response.body
    assert answers[0].status == 409, answers[0].body
    assert b"TWO_FACTOR_CHANGED" in answers[0].body
    record = otp_stack.records.execute(LoadUser(uid))
    assert record.two_factor_enabled and [f.id for f in record.totp] == [phone_id]
    assert otp_rows(otp_stack, uid) == [("email", EMAIL)]
    assert owner.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is True
    assert lease_of(otp_stack, uid) is None


def test_r8_2_every_removal_meets_the_lease_of_one_in_flight_and_goes_through_once_it_is_settled(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """While a disable-otp is between its commit and its re-check, every removal the user can ask
    for answers 409 and removes nothing: disable, disable-otp of the other channel, removing an
    app (another remains, or the last, with the password). Its re-check passes: 200, the lease is
    released (EndRemoval), and the same removals go through at once, one after the other."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                          "to": "+15551234567"})
    assert r.status_code == 200, r.text
    assert owner.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    phone_id, tablet_id = add_phone(otp_stack, owner), add_phone(otp_stack, owner, "Tablet")
    refused: list[Any] = []

    def others_try() -> None:  # C's SQL committed; its re-check comes next, and passes
        for path, body in (("/two-factor/disable", {"password": PASSWORD}),
                           ("/two-factor/disable-otp", {"password": PASSWORD, "channel": "sms"}),
                           ("/two-factor/remove-authenticator", {"id": tablet_id}),
                           ("/two-factor/remove-authenticator", {"id": phone_id, "password": PASSWORD})):
            refused.append(owner.auth(path, body))

    req_c = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    response = run_sync(otp_stack.auth.gateway.handle(req_c), PausingStore(otp_stack.auth.store, "factor_change",
                                                                           others_try), otp_stack.auth.records)
    assert response.status == 200, response.body
    assert [(a.status_code, a.json()["code"]) for a in refused] == [(409, "TWO_FACTOR_CHANGED")] * 4
    record = otp_stack.records.execute(LoadUser(uid))
    assert sorted(f.id for f in record.totp) == sorted([phone_id, tablet_id])
    assert otp_rows(otp_stack, uid) == [("sms", "+15551234567")]  # only C's removal
    assert lease_of(otp_stack, uid) is None
    assert owner.auth("/two-factor/remove-authenticator", {"id": tablet_id}).json() == {
        "status": True, "twoFactorEnabled": True}
    assert owner.auth("/two-factor/disable-otp", {"password": PASSWORD}).json() == {
        "status": True, "twoFactorEnabled": True}
    assert owner.auth("/two-factor/remove-authenticator", {"id": phone_id, "password": PASSWORD}).json() == {
        "status": True, "twoFactorEnabled": False}


def test_r8_2_two_removals_in_a_row_by_the_same_user_both_succeed(stack: Stack) -> None:
    """A removal confirmed releases its lease in one more SQL write (EndRemoval), so the user's next
    removal, a moment later (the clock does not move), is not refused: here a second app removed,
    then two-factor turned off. The lease is NULL after each."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    tablet_id = add_phone(stack, owner, "Tablet")
    r = owner.auth("/two-factor/remove-authenticator", {"id": tablet_id, "password": PASSWORD})
    assert r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    assert lease_of(stack, uid) is None
    r = owner.auth("/two-factor/disable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    assert lease_of(stack, uid) is None
    assert not stack.records.execute(LoadUser(uid)).two_factor_enabled


class Crash(Exception):
    """The process dies: nothing after this point of the request runs (no undo, no release)."""


def test_r8_2_the_lease_of_a_crashed_removal_blocks_removals_only_until_it_runs_out(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """A process that died between a removal's commit and its re-check leaves the lease behind:
    the user's removals answer 409 until it runs out (REMOVAL_LEASE_MS, two minutes), not longer."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    add_phone(otp_stack, owner)

    def crash() -> None:
        raise Crash

    req_c = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    with pytest.raises(Crash):
        run_sync(otp_stack.auth.gateway.handle(req_c), PausingStore(otp_stack.auth.store, "factor_change", crash),
                 otp_stack.auth.records)
    assert otp_rows(otp_stack, uid) == []  # the crash kept the removal (its re-check never ran)
    r = owner.auth("/two-factor/disable", {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (409, "TWO_FACTOR_CHANGED"), r.text
    otp_stack.clock.advance(REMOVAL_LEASE_MS / 1000 - 1)
    assert owner.auth("/two-factor/disable", {"password": PASSWORD}).status_code == 409
    otp_stack.clock.advance(2)
    r = owner.auth("/two-factor/disable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    assert not otp_stack.records.execute(LoadUser(uid)).two_factor_enabled


# == attacks that held =============================================================================

def test_held_a_thiefs_window_session_ends_and_the_owners_older_sessions_stay(stack: Stack) -> None:
    """The undo ends what was made in the window, not the owner's other sessions made before it,
    and keeps the caller's."""
    owner = stack.client()
    owner.sign_up(EMAIL)
    device = owner.enable_2fa()
    stack.clock.advance(31)
    laptop = stack.client()
    assert laptop.sign_in(EMAIL).status_code == 403
    assert laptop.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    stack.clock.advance(1)  # the laptop's session is older than the removal
    thief = stack.client(ip=THIEF_IP)

    def thief_signs_in() -> None:
        assert thief.sign_in(EMAIL).status_code == 200  # the record says off

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(stack.auth.gateway.handle(req), FailAfter(stack.auth.store, "two_factor_disable",
                                                                  thief_signs_in), stack.auth.records)
    assert response.status == 503, response.body
    assert session_of(thief) is None
    assert session_of(laptop) is not None
    assert session_of(owner) is not None


def test_held_accepted_a_passkey_the_owner_registers_in_the_window_goes_but_nothing_locks_them_out(
        stack: Stack) -> None:
    """Was an accepted trade-off (R7-3): the undo cannot tell the owner's enrolment in the window
    from a thief's, so a passkey the owner registered in another tab then went, though that
    registration answered 200. From R9 to R10 a passkey registration held the factor-change lease
    (its own undo may follow its re-check), so in the disable's window it registered nothing and
    answered 409; since R10-3 it takes the lease only while a factor turns 2FA on (with 2FA off it
    guarded nothing, answered 409 for stale leases, and, taken expired, voided a stalled disable's
    undo: R10-1), and the record says off in the window: 200 again, and the passkey goes with the
    undo (the trade-off of R7-3, accepted again). No lockout: the
    factors the owner had (and just proved, in a fresh aal 2 session) come back, and the caller's
    session (the owner's) stays."""
    from harness import SITE

    from banata_middleware.simulator import VirtualPasskey

    owner = stack.client()
    owner.sign_up(EMAIL)
    device = owner.enable_2fa()
    key = VirtualPasskey(user_verified=True)
    answers: list[Any] = []

    def owner_registers() -> None:
        options = owner.get("/api/auth/passkey/generate-register-options").json()
        answers.append(owner.post("/api/auth/passkey/verify-registration",
                                  {"response": key.create(options, origin=SITE)}))

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(stack.auth.gateway.handle(req), FailAfter(stack.auth.store, "two_factor_disable",
                                                                  owner_registers), stack.auth.records)
    assert response.status == 503, response.body
    assert answers[0].status_code == 200, answers[0].text
    assert session_of(owner) is not None
    stranger = stack.client()
    options = stranger.get("/api/auth/passkey/generate-authenticate-options").json()
    assert stranger.post("/api/auth/passkey/verify-authentication",
                         {"response": key.get(options, origin=SITE)}).status_code == 401
    stack.clock.advance(31)
    other = stack.client()
    assert other.sign_in(EMAIL).status_code == 403
    assert other.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200

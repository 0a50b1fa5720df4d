"""Round-9 review (an attacker's brief) of the removal lease (r8fix: ``user_state.removing_until``,
0009): one removal of a user's second factors in flight at a time (disable, disable-otp,
remove-authenticator), held from the removal's commit until its request is settled (the undo
releases it, or EndRemoval once the hot re-check passed), running out after REMOVAL_LEASE_MS,
cleared by an administrator's reset. Each ``test_r9_n`` test reproduced a finding (R9-n) as a
strict xfail on that code and passes since r9fix (the lease became the factor-change lease:
taken also by an added app's confirmation and a passkey's registration, cleared by every
administrator's change of the factors, written only by a change about to be made, its token a
counter that never repeats; RestoreOtp puts back the channels still free); the others pin
attacks that held. R9-1 to R9-4 are changes the lease
leaves outside it (an added app's confirmation and its undo, an administrator's import, the app's
enable_otp, a channel enrolled again), older than the lease, which is the tool to fix them; R9-5
and R9-6 come with the lease itself. Setup and helpers of test_r6_review.py,
test_r7_review.py and test_r8_review.py; every test runs on each adapter x store (memory + SQLite,
Redis + PostgreSQL), the MariaDB one on a scratch database of its own.

Two requests interleave as two tabs of one browser do (or a tab and an administrator): the first
runs to a chosen hot script (its SQL change committed) and stops there while the other runs; one
request runs at a time, so the stores see them in turn. A request "stalled" past its lease is
the frozen clock moved on while it stands there."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from harness import PASSWORD, FailAfter, PausingStore, Stack, scratch_database
from sqlalchemy import text
from test_r6_review import (
    BASE32,
    EMAIL,
    otp_enrolled,
    otp_rows,
    otp_stack,  # noqa: F401 (a fixture)
    request_of,
    session_of,
)
from test_r7_review import THIEF_IP
from test_r8_review import Background, add_phone, lease_of

from banata_middleware.effects import run_sync
from banata_middleware.errors import AuthError
from banata_middleware.http import Request
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import (
    REMOVAL_LEASE_MS,
    DisableOtp,
    DisableSecondFactor,
    EnableOtp,
    EnableTotp,
    EndRemoval,
    LoadUser,
    RecordStore,
    RemoveSecondFactor,
    RestoreOtp,
    Status,
)

NEW_MAIL = "new-address@example.com"
NEW_PHONE = "+15557654321"


class Paused:
    """``request`` run in a thread, its hot store stopping just before script ``name`` (its SQL
    change committed by then) until ``release``; with ``fail`` that script then fails as an
    unreachable Redis does (503), else it runs."""

    def __init__(self, stack: Stack, request: Request, name: str, *, fail: bool) -> None:
        self.paused, self.go = threading.Event(), threading.Event()
        store = (FailAfter if fail else PausingStore)(stack.auth.store, name, self._hold)
        self.tab = Background(lambda: run_sync(stack.auth.gateway.handle(request), store, stack.auth.records))

    def _hold(self) -> None:
        self.paused.set()
        assert self.go.wait(30)

    def reached(self) -> bool:
        """True once it stands before the script; False when it answered without reaching it (a
        removal refused before its hot half, as one that meets another's lease is)."""
        while not self.paused.wait(0.02):
            if not self.tab.thread.is_alive():
                return False
        return True

    def release(self) -> Any:
        self.go.set()
        return self.tab.finish()


def app_ids(stack: Stack, uid: str) -> list[str]:
    return [f.id for f in stack.records.execute(LoadUser(uid)).totp]


def add_tablet(owner: Any, stack: Stack) -> tuple[str, VirtualAuthenticator]:
    """``enable`` while 2FA is on: another app, not confirmed yet; its id and the app itself."""
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "name": "Tablet"})
    assert r.status_code == 200, r.text
    return str(r.json()["id"]), VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)


def add_sms(owner: Any, inbox: Inbox, uid: str, number: str = "+15551234567") -> None:
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                          "to": number})
    assert r.status_code == 200, r.text
    assert owner.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200


# == findings ======================================================================================

# -- R9-1: an app's confirmation undone after a removal it kept from being the last: 2FA off unsaid -
@pytest.mark.parametrize("removal", ["remove-authenticator", "disable-otp"])
def test_r9_1_an_app_confirmation_undone_after_a_removal_it_made_possible_leaves_2fa_on(
        otp_stack: Stack, inbox: Inbox, removal: str) -> None:  # noqa: F811
    """Attack: the owner has one factor (an app, or codes by email) and adds a tablet (``enable``
    while 2FA is on). C, the tablet's first code (verify-totp), commits the confirmation (then a
    record operation that took no lease); its re-check (factor_change.lua) is next. Meanwhile the
    owner's other tab removes the old factor: the record store sees the tablet confirmed, so not
    the last, and the removal goes through (200 ``twoFactorEnabled: true``; a removal that is not
    the last holds no lease beyond its transaction, and the confirmation takes none). Then C's
    re-check fails (Redis times out: 503; or refuses, 401, when the session was revoked meanwhile)
    and C's undo (``_undo_confirm``: RemoveTotpFactor) deletes the tablet: an undo that takes no
    lease and asks nothing of what is left.

    Consequence: the user has no factor left. Two-factor is off in the record store (and in the
    copy at the next read) though no answer said so, with no ``two_factor.disabled`` event or
    notice, and the backup codes stay behind, orphaned: the password alone signs in. The removal's
    200 said two-factor stays on; C's 503 said nothing changed. Same class as R8-2: two changes
    with an undo in flight at once, one of them outside the lease.

    Fix: the confirmation of an added app is a change its request may undo, so it takes the
    user's removal lease in ConfirmAuthenticator (BUSY, 409, while another is live), holds it until
    the re-check settles it, and releases it in RemoveTotpFactor's transaction or with EndRemoval.
    Then the removal in its window answers 409 and changes nothing. (Deciding in RemoveTotpFactor,
    under ``lock_user_factors``, whether the tablet is the last factor would not do: the
    confirmation must be undone all the same.)"""
    if removal == "disable-otp":
        owner, uid = otp_enrolled(otp_stack, inbox)  # codes by email only: the first app is added
        path, body = "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"}
    else:
        owner = otp_stack.client()
        uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
        owner.enable_2fa()
        path, body = "/two-factor/remove-authenticator", {"id": "totp"}
    tablet_id, tablet = add_tablet(owner, otp_stack)
    answers: list[Any] = []

    def old_factor_goes() -> None:  # C's confirmation committed; its re-check is about to fail
        assert tablet_id in app_ids(otp_stack, uid)
        answers.append(owner.auth(path, body))

    req = request_of(owner, "/two-factor/verify-totp", {"code": tablet.code()})
    response = run_sync(otp_stack.auth.gateway.handle(req),
                        FailAfter(otp_stack.auth.store, "factor_change", old_factor_goes), otp_stack.auth.records)
    assert response.status == 503, response.body
    assert tablet_id not in app_ids(otp_stack, uid)  # C: nothing changed, the tablet was not added
    said_off = answers[0].status_code == 200 and answers[0].json()["twoFactorEnabled"] is False
    record = otp_stack.records.execute(LoadUser(uid))
    assert record.two_factor_enabled or said_off, (answers[0].text, record)
    r = otp_stack.client().sign_in(EMAIL)
    assert said_off or (r.status_code, r.json().get("code")) == (403, "TWO_FACTOR_REQUIRED"), r.text


# -- R9-2: a disable's undo puts back, confirmed, an app whose confirmation was undone in its window -
def test_r9_2_an_app_whose_confirmation_answered_503_is_not_put_back_by_a_disables_undo(stack: Stack) -> None:
    """Attack: a tablet is being added (as R9-1). C, its first code, commits the confirmation;
    before C's re-check, B (a disable, another tab) commits: the apps, the tablet confirmed among
    them, and the codes go, under B's lease. C's re-check fails (503; or refuses, 401, a session
    revoked meanwhile: the case the re-check is there for) and its undo, RemoveTotpFactor, finds
    no tablet (NOT_FOUND) and does nothing. B's hot half fails too (the same Redis blip; or the
    same revocation) and B's undo (RestoreSecondFactor) puts back what B took: the tablet,
    confirmed, with the rest.

    Consequence: the tablet is a confirmed second factor though C answered "nothing changed"
    (503), or was refused (401). Whoever holds it (a thief whose stolen session the owner revoked
    while the thief confirmed their own app: both requests refused by that revocation) signs in
    with the password and the tablet's codes after the revocation that was to cut them off.

    Fix: as R9-1, the confirmation holds the removal lease until settled, so B meets it (409,
    nothing removed) and C's undo removes the tablet from a record nobody else is undoing."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    tablet_id, tablet = add_tablet(owner, stack)
    req_b = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    tabs: list[Paused] = []

    def disable_meanwhile() -> None:  # C's confirmation committed; its re-check is about to fail
        tabs.append(Paused(stack, req_b, "two_factor_disable", fail=True))
        tabs[0].reached()  # B committed (the tablet went with the rest), or answered without a hot half

    req_c = request_of(owner, "/two-factor/verify-totp", {"code": tablet.code()})
    response = run_sync(stack.auth.gateway.handle(req_c),
                        FailAfter(stack.auth.store, "factor_change", disable_meanwhile), stack.auth.records)
    assert response.status == 503, response.body
    answer = tabs[0].release()
    assert answer.status in (409, 503), answer.body
    assert app_ids(stack, uid) == ["totp"], tablet_id  # both said nothing changed: the owner's app, no tablet
    stack.clock.advance(31)
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/verify-totp", {"code": tablet.code()}).status_code == 401


# -- R9-3: an administrator's import (or the app's enable_otp) in a disable's window is overturned ----
@pytest.mark.parametrize("change", ["import_totp", "enable_otp"])
def test_r9_3_an_administrators_change_in_a_disables_window_is_not_undone_by_its_undo(
        otp_stack: Stack, inbox: Inbox, change: str) -> None:  # noqa: F811
    """Attack: the owner's phone (an app) is lost or stolen. The owner (or a thief with the phone,
    a fresh session and the password, making its own disable be refused by signing that session
    out as it runs) has a disable in flight: its SQL committed, its hot half comes next. The
    administrator re-provisions the user meanwhile: ``import_totp`` of a new secret (a new phone;
    every earlier app and the backup codes replaced), or, for an app with its own users,
    ``enable_otp`` of a new address it verified itself. Both answer success. The disable's hot
    half fails (or is refused) and its undo (RestoreSecondFactor) removes every app, address and
    code it finds, the administrator's with them, and puts back what the disable took.

    Consequence: the imported secret (and its new backup codes) do not work, the lost phone's
    codes (and the old backup codes, the old address) do again: the owner is locked out of the new
    phone, and a thief holding the old one is let back in, though every answer said the
    re-provisioning was done. An administrator's reset is protected (it clears the lease, so the
    undo puts nothing back over it); these two, just as authoritative, are not.

    Fix: ``import_totp`` clears the removal lease in EnableTotp(replace) as RemoveSecondFactor
    does (it replaces every app and code and moves the generation on), and ``enable_otp`` waits
    for a live lease (BUSY, retried for up to its length) or clears it too; either way no undo in
    flight puts back over them."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    phone_id = add_phone(otp_stack, owner)
    done: list[Any] = []
    refused: list[AuthError] = []

    def administrator_acts() -> None:  # the disable's SQL committed; its hot half is about to fail
        try:
            if change == "import_totp":
                done.append(otp_stack.auth.import_totp(uid, BASE32, email=EMAIL, backup_codes=True))
            else:
                otp_stack.auth.enable_otp(uid, to=NEW_MAIL, channel="email")
        except AuthError as exc:  # refused while a removal is in flight: the administrator is told so
            refused.append(exc)

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(otp_stack.auth.gateway.handle(req),
                        FailAfter(otp_stack.auth.store, "two_factor_disable", administrator_acts),
                        otp_stack.auth.records)
    assert response.status == 503, response.body
    if refused:  # the administrator was told it did not happen: the disable's undo put everything back
        assert app_ids(otp_stack, uid) == [phone_id] and otp_rows(otp_stack, uid) == [("email", EMAIL)]
    elif change == "import_totp":
        assert app_ids(otp_stack, uid) == ["totp"], (phone_id, app_ids(otp_stack, uid))  # the imported one alone
        new_phone = VirtualAuthenticator.from_uri(done[0][0], clock=otp_stack.clock)
        otp_stack.clock.advance(31)
        api = otp_stack.client()
        assert api.sign_in(EMAIL).status_code == 403
        assert api.auth("/two-factor/verify-totp", {"code": new_phone.code()}).status_code == 200
    else:
        assert ("email", NEW_MAIL) in otp_rows(otp_stack, uid), otp_rows(otp_stack, uid)
        assert ("email", EMAIL) not in otp_rows(otp_stack, uid)


# -- R9-4: a disable-otp of every channel answered 503 loses the channels nobody enrolled again -------
@pytest.mark.parametrize("by", ["owner", "administrator"])
def test_r9_4_a_disable_otp_answered_503_puts_back_the_channels_nobody_enrolled_again(
        otp_stack: Stack, inbox: Inbox, by: str) -> None:  # noqa: F811
    """Attack: app + codes by email + codes by SMS. The owner stops codes by message on every
    channel (``disable-otp`` without ``channel``; the app stays, so not the last): DisableOtp
    commits (both addresses go, under its lease); its re-check (factor_change.lua) is next.
    Meanwhile the SMS channel is enrolled again (the owner's other tab, or the app's
    ``enable_otp`` with a number it verified). The re-check fails (503, "nothing changed") and the
    undo, RestoreOtp, reads that one of its channels is taken and answers TAKEN for all of them:
    nothing is put back (the lease is released).

    Consequence: the email address is gone though the removal answered 503 "nothing changed" and
    nothing else touched email: a factor the owner counts on is lost (with the app lost too, a
    lockout by the email channel's absence). Before the lease the primary key made the same
    all-or-nothing answer; the read under the state lock kept it.

    Fix: put back, in RestoreOtp's transaction, the channels that are free and leave the ones
    enrolled again (OK, or a status that says which were kept).

    Since R9-3's fix the administrator's ``enable_otp`` is an administrator's change of the
    factors, which clears the lease as a reset does: the undo in flight then puts nothing back
    over it (CHANGED), so with ``by="administrator"`` the email address stays removed, the
    administrator's number alone is there (the expected answer changed for that case, by design:
    an administrator's change stands over a user's change still in flight, as a crash would have
    left it). The owner's own enrolment takes no lease, and the undo puts email back beside it."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    add_sms(owner, inbox, uid)
    add_phone(otp_stack, owner)

    def sms_enrolled_again() -> None:  # the removal committed; its re-check is about to fail
        assert otp_rows(otp_stack, uid) == []
        if by == "owner":
            add_sms(owner, inbox, uid, NEW_PHONE)
        else:
            otp_stack.auth.enable_otp(uid, to=NEW_PHONE, channel="sms")

    req = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD})
    response = run_sync(otp_stack.auth.gateway.handle(req),
                        FailAfter(otp_stack.auth.store, "factor_change", sms_enrolled_again), otp_stack.auth.records)
    assert response.status == 503, response.body
    if by == "owner":
        assert sorted(otp_rows(otp_stack, uid)) == [("email", EMAIL), ("sms", NEW_PHONE)]
    else:
        assert otp_rows(otp_stack, uid) == [("sms", NEW_PHONE)]
    assert lease_of(otp_stack, uid) is None  # released by the undo, or cleared by the administrator


# -- R9-5: after a lease ran out, a request that removes nothing voids the stalled removal's undo -----
def test_r9_5_a_request_that_removes_nothing_does_not_void_a_stalled_removals_undo(stack: Stack) -> None:
    """Attack: the owner's disable commits (the app and codes go, under its lease) and its undo
    comes more than REMOVAL_LEASE_MS after the lease's ``at``: a paused process, or no more than
    the documented timeouts, since ``at`` is read before the removal's own transaction (SQLAlchemy's
    pool wait, 30 s, and a connect, 5 s), then come the hot re-check (1 s, one retry) and the undo's
    own pool wait and connect (35 s): about 71 s, where the docs' bound counts only what follows
    the commit. In that window the record says 2FA is off, so a thief with the
    password alone signs in, and (no removal of the user's can go while the lease is live, but it
    ran out) sends ``remove-authenticator`` with any id: RemoveAuthenticator takes the user's
    expired lease, finds no such app (404) and releases the lease, in one transaction. A
    ``disable`` that finds nothing (409 "changed nothing") or a ``disable-otp`` does the same.

    Consequence: the owner's request then fails (503) and its undo (RestoreSecondFactor) finds
    its lease gone: CHANGED, nothing put back, and no copy's undo, so the thief's password-only
    session made in the window lives on and the owner's app and codes stay removed, though the
    owner was told "nothing changed" and though no other change of the factors came: the 404
    (or the 409 "changed nothing") changed the outcome. The design lets a later *removal* stand
    over a stalled undo; this one removed nothing.

    Fix: a removal that removes nothing must not write the lease: read it under the locks and
    answer BUSY from the read when it is live, and write it (take it) only when it is about to
    remove something. (Ending, in the superseded undo, the sessions made since the removal would
    help too: nothing else ends the thief's session.)"""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    device = owner.enable_2fa()
    thief = stack.client(ip=THIEF_IP)
    answers: list[Any] = []

    def stalled_then_thief() -> None:  # the disable committed; its hot half is about to fail
        stack.clock.advance(REMOVAL_LEASE_MS / 1000 + 1)
        assert thief.sign_in(EMAIL).status_code == 200  # the record says off
        answers.append(thief.auth("/two-factor/remove-authenticator", {"id": "totp-0000000000000000"}))

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(stack.auth.gateway.handle(req),
                        FailAfter(stack.auth.store, "two_factor_disable", stalled_then_thief), stack.auth.records)
    assert response.status == 503, response.body
    assert answers[0].status_code in (404, 409), answers[0].text  # it removed nothing
    assert app_ids(stack, uid) == ["totp"]  # 503: nothing changed, the owner's app is back
    assert session_of(thief) is None
    other = stack.client()
    assert other.sign_in(EMAIL).status_code == 403
    assert other.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


# -- R9-6: the lease's value is not unique: a stale undo owns a later removal's lease -----------------
def test_r9_6_an_undo_whose_lease_a_reset_cleared_does_not_own_a_later_removals_lease(stack: Stack) -> None:
    """Attack (record store, as the flows call it): disable-otp A (email; an app stays) commits at
    ``at`` with the lease ``at + 60 s``, its re-check in flight. An administrator's reset clears
    the lease and every factor (A's undo is to put nothing back over it). The user enrols again
    (an app and an address: the password alone, 2FA being off) and a removal B of the new
    address commits in the same millisecond as A (frozen or coarse clocks; or B's server's clock
    behind A's by the time between them): B's lease has A's value. A's undo (RestoreOtp) then
    matches it, releases B's lease and puts A's pre-reset address back.

    Consequence: the reset is overturned (an address the administrator removed, possibly a
    thief's, receives codes again), and B, still in flight, no longer holds the lease: another
    removal may run in its window (R8-2 again). The docs say a later lease "always ends later,
    since it is taken only once the earlier one ended": a lease cleared or released ended without
    its time running out.

    Fix: a token that no later lease can repeat: a counter in the state row moved on by every
    take (and by the reset), compared by the releases, or a random token column beside the end.
    (Fixed with the counter, ``lease_seq``: a removal's ``lease`` is now that token, 1 for the
    user's first lease, no longer the lease's end, which the assertions read from the row.)"""
    uid, at = "r9-6-user", 1_800_000_000_000
    email, sms = ("email", "ann@example.com", at), ("sms", "+15551234567", at)
    records = stack.records
    records.execute(EnableOtp(uid, *email))
    records.execute(EnableOtp(uid, *sms))
    a = records.execute(DisableOtp(uid, "email", at))  # the SMS number stays: not the last
    assert (a.status, a.gone, a.lease) == (Status.OK, (email,), 1)  # the user's first lease
    assert lease_of(stack, uid) == at + REMOVAL_LEASE_MS
    assert records.execute(RemoveSecondFactor(uid, at, passkeys=True)) is Status.OK  # the reset
    assert lease_of(stack, uid) is None
    # Enrolled again after the reset: an app, and a number for codes by SMS.
    assert records.execute(EnableTotp(uid, "totp", "ct", "k1", at, 1, [], "")) is Status.CREATED
    records.execute(EnableOtp(uid, "sms", NEW_PHONE, at))
    b = records.execute(DisableOtp(uid, "sms", at))  # in flight, in the same millisecond as A
    assert b.status is Status.OK and lease_of(stack, uid) == at + REMOVAL_LEASE_MS  # ends as A's did
    assert b.lease == 3  # the counter: A's take, the reset's clear, B's take
    assert records.execute(RestoreOtp(uid, a.gone, a.lease)).status is Status.CHANGED  # the reset came between
    assert otp_rows(stack, uid) == []  # the address the reset removed stays removed
    assert records.execute(EndRemoval(uid, b.lease)) is Status.OK  # B's lease was B's until B settled it


# == attacks that held =============================================================================

def test_held_a_password_alone_cannot_take_or_hold_the_lease_of_a_user_with_2fa(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """With 2FA on, the password alone gives a pending challenge, no session: every removal
    endpoint refuses it before the record store, so the lease stays free and the owner's removals
    go through at once (the docs' claim that an attacker cannot use the lease to block the owner)."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    phone_id = add_phone(otp_stack, owner)
    thief = otp_stack.client(ip=THIEF_IP)
    assert thief.sign_in(EMAIL).status_code == 403  # a challenge, no session
    for path, body in (("/two-factor/disable", {"password": PASSWORD}),
                       ("/two-factor/disable-otp", {"password": PASSWORD}),
                       ("/two-factor/remove-authenticator", {"id": phone_id, "password": PASSWORD}),
                       ("/two-factor/remove-authenticator", {"id": "nope", "password": PASSWORD})):
        r = thief.auth(path, body)
        assert r.status_code == 401, (path, r.text)
        assert lease_of(otp_stack, uid) is None
    r = owner.auth("/two-factor/disable-otp", {"password": PASSWORD})
    assert r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    assert owner.auth("/two-factor/remove-authenticator", {"id": phone_id, "password": PASSWORD}).json() == {
        "status": True, "twoFactorEnabled": False}


def test_held_an_administrators_reset_in_a_removals_window_stands_and_frees_the_user(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """disable-otp (email; the app stays) commits; before its re-check the administrator resets the
    user (sessions end in the hot store, then every factor and the lease go in SQL). The re-check
    then refuses (its session ended), and the undo, its lease gone, puts nothing back over the
    reset (CHANGED). The user starts again from nothing, and nothing holds their removals."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    add_phone(otp_stack, owner)

    def reset() -> None:
        assert lease_of(otp_stack, uid) is not None
        otp_stack.auth.reset_two_factor(uid)
        assert lease_of(otp_stack, uid) is None

    req = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    response = run_sync(otp_stack.auth.gateway.handle(req), PausingStore(otp_stack.auth.store, "factor_change", reset),
                        otp_stack.auth.records)
    assert response.status == 401, response.body
    record = otp_stack.records.execute(LoadUser(uid))
    assert (record.totp, record.otp, record.backup_codes, record.two_factor_enabled) == ((), (), 0, False)
    assert session_of(owner) is None
    otp_stack.clock.advance(1)  # a session of the reset's millisecond counts as revoked by it
    again = otp_stack.client()
    assert again.sign_in(EMAIL).status_code == 200  # 2FA off: the password alone
    r = again.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"})
    assert r.status_code == 200, r.text
    assert again.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    r = again.auth("/two-factor/disable-otp", {"password": PASSWORD})
    assert r.json() == {"status": True, "twoFactorEnabled": False}, r.text


class FailingEndRemoval:
    """The stack's record store, failing (503) on EndRemoval: the record store gone right after the
    hot re-check passed."""

    def __init__(self, records: Any) -> None:
        self.records = records

    def execute(self, op: Any) -> Any:
        if isinstance(op, EndRemoval):
            raise AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")
        return self.records.execute(op)


def test_held_a_release_that_fails_keeps_the_answer_and_blocks_removals_only_until_the_lease_ends(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """The re-check passed, EndRemoval fails: the change stands and is answered 200 (it holds: the
    address is gone, 2FA on by the app), the lease runs out by itself, and the user's removals
    answer 409 "changed nothing" (and change nothing) until then, not longer."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    add_sms(owner, inbox, uid)
    phone_id = add_phone(otp_stack, owner)
    req = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    response = run_sync(otp_stack.auth.gateway.handle(req), otp_stack.auth.store,
                        FailingEndRemoval(otp_stack.auth.records))
    assert response.status == 200, response.body
    assert otp_rows(otp_stack, uid) == [("sms", "+15551234567")]
    assert lease_of(otp_stack, uid) is not None
    for path, body in (("/two-factor/disable-otp", {"password": PASSWORD}),
                       ("/two-factor/remove-authenticator", {"id": phone_id, "password": PASSWORD})):
        r = owner.auth(path, body)
        assert (r.status_code, r.json()["code"]) == (409, "TWO_FACTOR_CHANGED"), r.text
    assert otp_rows(otp_stack, uid) == [("sms", "+15551234567")] and app_ids(otp_stack, uid) == [phone_id]
    otp_stack.clock.advance(REMOVAL_LEASE_MS / 1000 + 1)
    assert owner.auth("/two-factor/disable-otp", {"password": PASSWORD}).json() == {
        "status": True, "twoFactorEnabled": True}


def test_held_additions_in_a_removals_window_survive_its_undo_and_the_address_comes_back(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """disable-otp (email; the app stays) commits and its re-check will fail. In its window the
    owner's other tab adds (no addition takes the lease): a number for codes by SMS, and a new set
    of backup codes (two phases). Each answers 200. The undo (RestoreOtp) puts the email address
    back beside them and touches nothing it did not take: every answer holds."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    add_phone(otp_stack, owner)
    codes: list[str] = []

    def owner_adds() -> None:
        add_sms(owner, inbox, uid)
        r = owner.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
        assert r.status_code == 200, r.text
        codes.extend(r.json()["backupCodes"])

    req = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    response = run_sync(otp_stack.auth.gateway.handle(req),
                        FailAfter(otp_stack.auth.store, "factor_change", owner_adds), otp_stack.auth.records)
    assert response.status == 503, response.body
    assert sorted(otp_rows(otp_stack, uid)) == [("email", EMAIL), ("sms", "+15551234567")]
    assert lease_of(otp_stack, uid) is None
    api = otp_stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/verify-backup-code", {"code": codes[0]}).status_code == 200


def test_held_a_server_whose_clock_is_ahead_by_less_than_the_lease_meets_it(stack: Stack) -> None:
    """Clock skew (record store, as two servers call it): a removal from a server 30 s ahead (more
    than TOTP's tolerance would let it serve codes with) still meets a lease taken a moment
    before on a server in time, and so does one at the lease's last millisecond; the next one
    after it takes it. The docs ask for clocks within well under the bound (REMOVAL_LEASE_MS)."""
    uid, at = "r9-skew-user", 1_800_000_000_000
    records = stack.records
    records.execute(EnableOtp(uid, "email", "ann@example.com", at))
    records.execute(EnableOtp(uid, "sms", "+15551234567", at))
    held = records.execute(DisableOtp(uid, "sms", at))
    assert held.status is Status.OK
    assert records.execute(DisableSecondFactor(uid, at + 30_000)) is None
    assert records.execute(DisableOtp(uid, "email", at + REMOVAL_LEASE_MS)).status is Status.BUSY
    assert records.execute(LoadUser(uid)).otp[0].channel == "email"
    later = records.execute(DisableSecondFactor(uid, at + REMOVAL_LEASE_MS + 1))
    assert later is not None and later.lease == 2  # the token: the user's second lease
    assert lease_of(stack, uid) == at + 2 * REMOVAL_LEASE_MS + 1


@pytest.fixture
def mariadb_without_found_rows(tmp_path: Any) -> Any:
    """A migrated record store on a scratch MariaDB database whose connections do NOT ask for
    CLIENT_FOUND_ROWS (SQLAlchemy's MySQL dialects always do; a host's ``connect_args`` replacing
    ``client_flag`` would not): an UPDATE's rowcount is then the rows it changed, not those it matched."""
    with scratch_database("mariadb", str(tmp_path)) as url:
        store = RecordStore(url, connect_args={"client_flag": 0, "connect_timeout": 5})
        try:
            store.upgrade()
            yield store
        finally:
            store.dispose()


def test_held_on_mariadb_the_lease_does_not_rest_on_found_rows(mariadb_without_found_rows: RecordStore) -> None:
    """The lease's conditional UPDATEs read their rowcount, which MariaDB reports as rows changed
    unless the client asks for rows matched. Every one of them writes a value other than the one
    it matched (the counter moved on by a take, or NULL from a lease by a release), so the answers
    are the same either way: taken once, BUSY while live, released once, taken again after its
    end; and RestoreOtp's conditional INSERTs count the rows they insert."""
    store = mariadb_without_found_rows
    with store.engine.begin() as conn:  # the connection really reports rows changed
        conn.execute(text("INSERT INTO banata_user_state (user_id, failure_streak, generation) VALUES ('x', 0, 0)"))
        assert conn.execute(text("UPDATE banata_user_state SET generation = 0 WHERE user_id = 'x'")).rowcount == 0
    uid, at = "maria", 1_800_000_000_000
    store.execute(EnableOtp(uid, "email", "ann@example.com", at))
    store.execute(EnableOtp(uid, "sms", "+15551234567", at))
    first = store.execute(DisableOtp(uid, "sms", at))
    assert (first.status, first.lease) == (Status.OK, 1)
    assert store.execute(DisableOtp(uid, "email", at + 1)).status is Status.BUSY
    assert store.execute(EndRemoval(uid, first.lease)) is Status.OK
    assert store.execute(EndRemoval(uid, first.lease)) is Status.NOT_FOUND
    second = store.execute(DisableOtp(uid, "email", at + 2))
    assert (second.status, second.two_factor_off) == (Status.OK, True)
    assert store.execute(DisableOtp(uid, None, at + REMOVAL_LEASE_MS + 3)).status is Status.NOT_FOUND  # ran out
    assert store.execute(RestoreOtp(uid, first.gone, first.lease)).status is Status.CHANGED
    store.execute(EnableOtp(uid, "email", "ann@example.com", at))
    store.execute(EnableOtp(uid, "sms", "+15551234567", at))
    store.execute(EnableTotp(uid, "totp", "ct", "k1", at, 1, [], ""))
    third = store.execute(DisableOtp(uid, None, at + 3 * REMOVAL_LEASE_MS))  # both go, the app stays
    assert (third.status, third.lease, len(third.gone)) == (Status.OK, 3, 2)
    store.execute(EnableOtp(uid, "sms", "+15557654321", at))  # enrolled again in its window
    restored = store.execute(RestoreOtp(uid, third.gone, third.lease))
    assert (restored.status, restored.put_back, restored.kept) == (Status.OK, ("email",), ("sms",))


"""Round-10 review (an attacker's brief) of the factor-change lease (r8fix + r9fix:
``user_state.removing_until`` + ``lease_seq``, 0009): one change of a user's second factors that its
request may still undo in flight at a time. Removals (disable, disable-otp, remove-authenticator)
and the additions with a post-commit hot re-check (an added app's confirmation,
``ConfirmAuthenticator``; a passkey's registration, ``RegisterPasskey``) take it under the row
locks; the undos release it in their own transaction; ``EndRemoval`` after a passed re-check; an
administrator's change clears it; it runs out after REMOVAL_LEASE_MS. Each ``test_r10_n`` test
reproduces a finding (R10-n) as a strict xfail on current code; the others pin attacks that held.
R10-1: after a stall past the lease, a password-only holder's change (a passkey registration, or
an app confirmed after enrolling one in the window, the record saying 2FA off) takes the expired
lease and voids the disable's undo (R9-5 again, now with a real change): 2FA stays off or becomes
the thief's. R10-2: the host's audit callbacks run inside the window and the lease's bound does not
count them. R10-3: with 2FA off a passkey registration answers 409 for a lease that guards nothing.
R10-4: key rotation misses the apps a change in flight took; the undo puts back old ciphertext.
R10-5: an undo superseded by an administrator's change skips the copy's undo, so a password-only
session made in the window outlives it on a 2FA account.
Setup and helpers of test_r6_review.py .. test_r9_review.py; every test runs on each adapter x
store (memory + SQLite, Redis + PostgreSQL).

Two requests interleave as two tabs of one browser do (or a tab and a thief): the first runs to a
chosen hot script (its SQL change committed) and stops there while the other runs; one request
runs at a time, so the stores see them in turn. A request "stalled" past its lease is the frozen
clock moved on while it stands there."""

from __future__ import annotations

from typing import Any

import pytest
from harness import PASSWORD, SITE, FailAfter, FailOn, PausingStore, Stack
from test_r6_review import (
    EMAIL,
    otp_enrolled,
    otp_rows,
    otp_stack,  # noqa: F401 (a fixture)
    request_of,
    session_of,
)
from test_r7_review import THIEF_IP
from test_r8_review import lease_of
from test_r9_review import FailingEndRemoval, app_ids

from banata_middleware.effects import run_sync
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator, VirtualPasskey
from banata_middleware.stores.records import REMOVAL_LEASE_MS, ListPasskeys, LoadUser

PK = "/api/auth/passkey"


def register(api: Any, key: VirtualPasskey) -> Any:
    """A passkey registration, options and answer: the answer of verify-registration."""
    options = api.get(f"{PK}/generate-register-options").json()
    return api.post(f"{PK}/verify-registration", {"response": key.create(options, origin=SITE)})


def passkey_sign_in(api: Any, key: VirtualPasskey) -> Any:
    options = api.get(f"{PK}/generate-authenticate-options").json()
    return api.post(f"{PK}/verify-authentication", {"response": key.get(options, origin=SITE)})


def passkeys_of(stack: Stack, uid: str) -> int:
    return len(stack.records.execute(ListPasskeys(uid)))


# == findings ======================================================================================

# -- R10-1: a passkey registration (by the password alone, in a stalled disable's window) voids its undo -
@pytest.mark.parametrize("change", [
    "passkey",
    pytest.param("app", marks=pytest.mark.xfail(
        strict=True, reason="R10-1 (a known limit, docs/storage.md 'Bound'): after a disable stalled past "
                            "REMOVAL_LEASE_MS, an app the password alone enrolled (2FA off) lets a second app's "
                            "confirmation take the expired lease; the undo puts nothing back (its window sessions "
                            "end since R10-5)")),
])
def test_r10_1_a_password_only_change_in_a_stalled_disables_window_does_not_void_its_undo(
        stack: Stack, change: str) -> None:
    """Attack: R9-5 with the one change r9fix added to the lease that the password alone can make.
    The owner's ``disable`` commits (the app and codes go, under its lease) and its hot half comes
    more than REMOVAL_LEASE_MS after the lease's ``at`` (a paused process; or a slow audit
    callback, R10-2). In that window the record says 2FA is off, so a thief with the password
    alone signs in (a session with a fresh password check) and registers a passkey of their own:
    ``require_factor_change`` asks nothing more of a user without a factor, and RegisterPasskey
    takes the user's lease, which ran out (and moves the counter on). Whether the registration's
    re-check then passes (the copy was repaired to "off" by the thief's loads) or refuses (and
    RemovePasskey undoes it: "nothing changed"), the counter moved. The owner's disable then fails
    (503) and its undo (RestoreSecondFactor) finds its lease gone: CHANGED, nothing put back, no
    copy's undo.

    Consequence: as R9-5: the owner's app and backup codes stay removed though the owner was told
    "nothing changed" (503), the thief's password-only session made in the window lives on (only
    the copy's undo would end it), and, when its re-check passed, the thief's passkey stays on the
    account and signs in by itself. R9-5's fix ("a request that changes nothing never takes the
    lease") left this way open: passkey registration is a change, it takes the lease since
    r9fix, and a password-only holder can make it exactly when the stalled change has turned
    2FA off. Worse, ``change="app"``: the thief enrols an app of their own in the window (the
    record says off: ``enable`` + its first code, EnableTotp, no lease; the session is now aal 2
    by the thief's own factor), adds a second one and confirms it (ConfirmAuthenticator takes the
    expired lease). The disable's undo puts nothing back, so the user's factors are the thief's
    two apps and backup codes: the owner, told "nothing changed", is locked out of their own
    account (their app answers nothing, the thief's apps do), the thief is in for good.

    Fix (any of): (a) a change authorised under "2FA off" (``require_factor_change`` with no
    factor: the password, or a fresh password session) does not take a lease that is recorded
    but ran out (``removing_until IS NOT NULL``): it answers 409 and the stalled change's undo
    still owns it; a crashed request's lease is then cleared by the next change authorised with
    a second factor, an administrator, or a sweep; (b) an undo whose lease another change took
    still runs the copy's undo (ending the sessions made since its ``since`` and voiding the
    trusted devices), so a window session cannot outlive it, and puts back the factors when what
    was added since is only passkeys (which do not turn 2FA on and the undo removes anyway, R7-3).
    (a) alone for passkeys (RegisterPasskey takes the lease only while a factor turns 2FA on,
    ``only_if=on_condition``: with 2FA off no other change takes it, so its undo composes with
    every other; this also ends R10-3's 409s) does not close ``change="app"``, whose confirmation
    is authorised by a factor enrolled in the window: the lease's own rule must not depend on how
    the later change was authorised, so (a) as stated (an expired, unreleased lease is not taken
    by a change authorised by 2FA off or by a factor younger than the lease) or (b) is needed.

    ``change="passkey"`` holds since R10-3's fix (the registration, with the record saying off,
    takes no lease: the disable's undo still owns it, puts the app back, removes the passkey and
    ends the window's sessions). ``change="app"`` stays a strict xfail, a documented limit
    (docs/storage.md, "Bound"): since R10-5 the thief's window session ends with the undo, but
    the owner's app is not put back and the thief's apps stay. No simple sound fix: a lease that
    ran out must stay takeable (a crashed request's, or one whose release failed after a passed
    re-check, would otherwise block the user's changes for good), and whether the change taking it
    was authorised by a factor enrolled in the window is not known to the lease's statement. What
    is left needs a request stalled past REMOVAL_LEASE_MS (120 s) between its commit and its undo;
    since R10-2's fix no host callback runs there, only the stores' calls, whose documented
    timeouts add up to 88 s."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    device = owner.enable_2fa()
    thief = stack.client(ip=THIEF_IP)
    key = VirtualPasskey(user_verified=True)
    answers: list[Any] = []

    def stalled_then_thief() -> None:  # the disable committed; its hot half is about to fail
        stack.clock.advance(REMOVAL_LEASE_MS / 1000 + 1)
        assert thief.sign_in(EMAIL).status_code == 200  # the record says off: the password alone
        if change == "passkey":
            answers.append(register(thief, key))
            return
        thief.enable_2fa()  # an app of the thief's: 2FA on, the thief's session aal 2 by it
        r = thief.auth("/two-factor/enable", {"password": PASSWORD, "name": "Second"})
        assert r.status_code == 200, r.text
        second = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
        answers.append(thief.auth("/two-factor/verify-totp", {"code": second.code()}))

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(stack.auth.gateway.handle(req),
                        FailAfter(stack.auth.store, "two_factor_disable", stalled_then_thief), stack.auth.records)
    assert response.status == 503, response.body
    assert answers[0].status_code in (200, 401, 403, 409), answers[0].text
    # 503: nothing changed. The owner's app is back, the thief's session and passkey are gone.
    assert len(app_ids(stack, uid)) == 1, (answers[0].text, app_ids(stack, uid))
    assert session_of(thief) is None
    assert passkey_sign_in(stack.client(), key).status_code == 401
    stack.clock.advance(31)
    other = stack.client()
    assert other.sign_in(EMAIL).status_code == 403
    assert other.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200  # the owner's app


# -- R10-2: the lease's window holds the host's audit callbacks, which its bound does not count -------
def test_r10_2_a_slow_audit_callback_does_not_outlast_the_lease_of_the_change_it_reports(stack: Stack) -> None:
    """Attack (no thief needed): the host subscribes an audit callback (``on_event`` /
    ``auth.audit.subscribe``, README "Audit events") that does real work inline, say an SMTP
    notice or a webhook without a short timeout. ``disable`` commits (the app and codes go, under
    its lease) and then, before its hot half, hands ``two_factor.disabled`` to the sinks
    (``emit_entries``): the callback takes longer than REMOVAL_LEASE_MS. Meanwhile the owner's
    other tab registers a passkey (RegisterPasskey takes the lease, which ran out: 200). The
    disable's hot half then fails (503) and its undo finds its lease gone: nothing put back.
    (Since R10-3's fix a passkey registration takes no lease while 2FA is off, so the other tab's
    change here is the one that still does with the record saying off: an app enrolled, then a
    second one confirmed, ``ConfirmAuthenticator``; run after the disable is settled, the tab
    meets a challenge, 403.)

    Consequence: the disable answered 503 "nothing changed" and two-factor is off, its app and
    backup codes gone. The lease's bound (``REMOVAL_LEASE_MS``, docs/storage.md "Bound") is sized
    against "the sum of the documented timeouts" between ``at`` and a settled undo, but every
    change that takes the lease (disable, disable-otp, the last app's removal, the confirmation,
    the registration) calls the host's callbacks, synchronously and without any timeout, inside
    that window: the first thing after its commit. The same stall opens R10-1 to a thief.

    Fix: hand the entries to the in-process sinks after the change is settled (after the re-check
    and ``EndRemoval`` or the undo: an undone change's sinks then hear both rows, or neither),
    so that only store calls with documented timeouts lie inside the window; or bound the
    callbacks (run them off the request path) and say so in the docs."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    device = owner.enable_2fa()
    answers: list[Any] = []

    def slow_sink(event: Any) -> None:  # the host's callback: an inline notice that hangs for 2 min
        if event["type"] == "two_factor.disabled" and not answers:
            stack.clock.advance(REMOVAL_LEASE_MS / 1000 + 1)
            answers.append(other_tab())  # the owner's other tab, meanwhile

    def other_tab() -> Any:  # while the record says off: an app, then a second one confirmed (takes the lease)
        tab = stack.client()
        r = tab.sign_in(EMAIL)
        if r.status_code != 200:  # 2FA on: the disable was settled (undone) before this callback
            return r
        tab.enable_2fa()
        r = tab.auth("/two-factor/enable", {"password": PASSWORD, "name": "Second"})
        assert r.status_code == 200, r.text
        second = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
        return tab.auth("/two-factor/verify-totp", {"code": second.code()})

    stack.auth.audit.subscribe(slow_sink)
    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(stack.auth.gateway.handle(req), FailOn(stack.auth.store, "two_factor_disable"),
                        stack.auth.records)
    assert response.status == 503, response.body
    assert answers and answers[0].status_code in (200, 403, 409), answers
    assert app_ids(stack, uid) == ["totp"], app_ids(stack, uid)  # 503: nothing changed
    stack.clock.advance(31)
    other = stack.client()
    assert other.sign_in(EMAIL).status_code == 403
    assert other.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


# -- R10-3: a user without a second factor is refused passkey registrations by a lease that guards nothing
@pytest.mark.parametrize("holder", ["registration", "stale"])
def test_r10_3_a_user_without_a_factor_registers_a_passkey_whatever_lease_is_held(stack: Stack, holder: str) -> None:
    """Attack (a reliability one, and what the brief asked): a user with two-factor off (no
    factor) registers passkeys. ``holder="registration"``: two at once (two tabs, or a script
    enrolling a laptop and a phone): the first holds the factor-change lease from its commit to its
    ``EndRemoval``, and the second answers 409 ``TWO_FACTOR_CHANGED`` ("another request changed your
    second factors", of a user who has none) with its ceremony spent. ``holder="stale"``: the
    user's ``disable`` passed its re-check but ``EndRemoval`` failed (the record store blinked: R9's
    held case), so the lease stays for two minutes: the now 2FA-off user's registrations answer 409
    all that time. The same for a user whose registration crashed after its commit.

    Consequence: 409s with a false message, spent ceremonies, and a two-minute lockout of passkey
    enrolment, for nothing: with no factor turning 2FA on, no other change that takes the lease
    can run for this user (nothing to remove, no app to confirm: ``AddAuthenticator`` needs 2FA on),
    except another registration, and two registrations' undos compose (each removes its own
    passkey). Taking the lease here is also what lets R10-1's thief void a stalled undo.

    Fix: RegisterPasskey takes (and holds) the lease only while a factor turns two-factor on
    (``only_if=on_condition(...)`` in the same statement, read under the state lock); with 2FA off
    it neither waits for nor takes it, and the flow skips ``EndRemoval`` (``lease`` 0)."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    if holder == "stale":
        owner.enable_2fa()
        req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
        response = run_sync(stack.auth.gateway.handle(req), stack.auth.store, FailingEndRemoval(stack.auth.records))
        assert response.status == 200, response.body  # 2FA off; the lease left to run out
        assert not stack.records.execute(LoadUser(uid)).two_factor_enabled
        assert lease_of(stack, uid) is not None
        r = register(owner, VirtualPasskey(user_verified=True))
        assert r.status_code == 200, r.text
        return
    first, second = VirtualPasskey(user_verified=True), VirtualPasskey(user_verified=True)
    answers: list[Any] = []
    options = owner.get(f"{PK}/generate-register-options").json()

    def other_tab() -> None:  # the other tab registers while the first stands before its re-check
        answers.append(register(owner, second))

    req = request_of(owner, "/passkey/verify-registration", {"response": first.create(options, origin=SITE)})
    response = run_sync(stack.auth.gateway.handle(req), PausingStore(stack.auth.store, "factor_change", other_tab),
                        stack.auth.records)
    assert response.status == 200, response.body
    assert answers[0].status_code == 200, answers[0].text
    assert passkeys_of(stack, uid) == 2


# -- R10-4: key rotation does not see the apps a change in flight holds, and the undo puts back old ciphertext
NEW_SECRET = "rotated-secret-" + "y" * 40


def test_r10_4_an_app_put_back_by_an_undo_after_a_key_rotation_is_readable_under_the_new_key_alone(
        stack_factory: Any) -> None:
    """Attack (an operator's race, no thief): the operator rotates the encryption key
    (``previous_secrets``, then ``banata-mfa rotate-keys``) while a user's ``disable`` is in
    flight: its SQL took the app (the secret's ciphertext under the old key) and holds the
    factor-change lease; its hot half comes next. ``rotate_keys`` lists the secrets not under the
    newest key (``ListTotpSecrets``): this user's is not in the table, so it reports nothing left
    to do (``reencrypted`` 0, nothing skipped), and the docs say the old secret can then be dropped.
    The disable's hot half fails (503) and its undo (RestoreSecondFactor) puts the app back as it
    was taken: under the old key. The operator drops the old secret.

    Consequence: the owner's app is back in the record but cannot be read: every code answers 409
    ``TWO_FACTOR_SECRET_UNREADABLE`` ("ask an administrator to reset"): the owner, told "nothing
    changed", cannot sign in with their app (backup codes under the old code key are counted in
    ``backup_codes_old_key`` by the copy; the app is not counted anywhere). docs/storage.md says
    key rotation "changes no factor and leaves" the lease, but the undo it leaves running
    reinstates ciphertext the rotation never saw.

    Fix: the undo re-encrypts the apps it puts back under the current key in the flow
    (``undo_disable`` holds the keyring: decrypt and encrypt each ``removed.totp`` secret before
    RestoreSecondFactor; one that does not decrypt is put back as it was and logged); or
    ``rotate_keys`` reports the users whose factor-change lease is live (taken apps may come back)
    as "in flight, run again" and the docs say to drop the old secret only after a run that
    reports none."""
    from banata_middleware.admin import rotate_keys

    old = stack_factory()
    owner = old.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    device = owner.enable_2fa()
    new = stack_factory(secret=NEW_SECRET, previous_secrets=(old.auth.config.secret,))
    new.auth.records = old.auth.records  # one record store (SQL) behind both configurations
    if old.store_kind == "memory":  # the memory store lives in the app: share it
        new.auth.store = old.auth.store
    reports: list[Any] = []

    def rotation() -> None:  # the disable's SQL committed; its hot half is about to fail
        reports.append(rotate_keys(new.auth))

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(new.auth.gateway.handle(req), FailAfter(new.auth.store, "two_factor_disable", rotation),
                        new.auth.records)
    assert response.status == 503, response.body
    assert reports[0].skipped == [] and reports[0].reencrypted == 0  # nothing left under the old key, it said
    assert app_ids(new, uid) == ["totp"]  # put back
    only_new = stack_factory(secret=NEW_SECRET)
    only_new.auth.records = old.auth.records
    if old.store_kind == "memory":
        only_new.auth.store = old.auth.store
    old.clock.advance(31)
    c = only_new.client()
    assert c.sign_in(EMAIL).status_code == 403
    r = c.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text


# == attacks that held =============================================================================

class CountingRecords:
    """The stack's record store, counting the operations (SQL transactions) run through it."""

    def __init__(self, records: Any) -> None:
        self.records = records
        self.ops: list[str] = []

    def execute(self, op: Any) -> Any:
        self.ops.append(type(op).__name__)
        return self.records.execute(op)


def test_held_a_thiefs_app_confirmed_as_the_owner_revokes_does_not_survive_and_the_owner_removes_it_after(
        stack: Stack) -> None:
    """A thief holding the owner's fresh aal 2 session adds an app and sends its first code: the
    confirmation commits (the lease taken). Before its re-check the owner signs out everywhere
    (the administrator's revoke: sessions end in the hot store first), and the owner's own
    attempt to remove the thief's app in that window answers 409 (nothing removed, the lease
    is the thief's). The re-check refuses (401) and the undo, its lease still its own, removes the
    app. Nothing of the thief's stays; the owner's removals go through at once afterwards."""
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    device = owner.enable_2fa()
    thief = stack.client(ip=THIEF_IP)
    thief.http.cookies.update(owner.http.cookies)  # the stolen session (aal 2, fresh)
    r = thief.auth("/two-factor/enable", {"password": PASSWORD, "name": "Thief"})
    assert r.status_code == 200, r.text
    tablet_id = str(r.json()["id"])
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    stack.clock.advance(31)
    owner_tab = stack.client()
    assert owner_tab.sign_in(EMAIL).status_code == 403
    assert owner_tab.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    answers: list[Any] = []

    def owner_reacts() -> None:  # the confirmation committed; its re-check comes next
        answers.append(owner_tab.auth("/two-factor/remove-authenticator", {"id": tablet_id}))
        stack.auth.revoke_sessions(uid)

    req = request_of(thief, "/two-factor/verify-totp", {"code": tablet.code()})
    response = run_sync(stack.auth.gateway.handle(req), PausingStore(stack.auth.store, "factor_change", owner_reacts),
                        stack.auth.records)
    assert response.status == 401, response.body
    assert (answers[0].status_code, answers[0].json()["code"]) == (409, "TWO_FACTOR_CHANGED"), answers[0].text
    assert app_ids(stack, uid) == ["totp"] and lease_of(stack, uid) is None
    stack.clock.advance(31)
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/verify-totp", {"code": tablet.code()}).status_code == 401
    assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


def test_held_a_password_alone_cannot_take_the_lease_by_a_registration_or_a_confirmation(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """With 2FA on, the password alone gives a pending challenge, no session: the two additions
    that take the lease since r9fix refuse it before the record store (no lease, no passkey)."""
    _owner, uid = otp_enrolled(otp_stack, inbox)
    thief = otp_stack.client(ip=THIEF_IP)
    assert thief.sign_in(EMAIL).status_code == 403  # a challenge, no session
    assert thief.get(f"{PK}/generate-register-options").status_code == 401
    assert thief.post(f"{PK}/verify-registration", {"response": {"id": "x", "response": {}}}).status_code == 401
    # a TOTP code answers a challenge (no app: 400), never confirms anything
    assert thief.auth("/two-factor/verify-totp", {"code": "123456"}).status_code in (400, 401)
    assert lease_of(otp_stack, uid) is None and passkeys_of(otp_stack, uid) == 0
    assert otp_rows(otp_stack, uid) == [("email", EMAIL)]


def test_held_only_the_confirming_verify_pays_the_third_transaction_and_a_step_up_ignores_the_lease(
        otp_stack: Stack, inbox: Inbox) -> None:  # noqa: F811
    """The round-trip budget: a step-up with a confirmed app's code, by a user who has an app
    being added, is 2 SQL transactions (LoadUser, ProveSecondFactor), takes no lease and answers
    200 while another change holds it (a disable-otp in flight); only the code of the app being
    added (the confirmation) pays a third (EndRemoval)."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "name": "Phone"})
    phone = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=otp_stack.clock)
    counting = CountingRecords(otp_stack.auth.records)
    confirm = request_of(owner, "/two-factor/verify-totp", {"code": phone.code()})
    assert run_sync(otp_stack.auth.gateway.handle(confirm), otp_stack.auth.store, counting).status == 200
    assert counting.ops == ["LoadUser", "ConfirmAuthenticator", "EndRemoval"], counting.ops
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "name": "Tablet"})
    assert r.status_code == 200, r.text  # an app being added: its code would confirm it
    otp_stack.clock.advance(31)
    counted: list[CountingRecords] = []
    answers: list[Any] = []

    def step_up_meanwhile() -> None:  # disable-otp committed (the app stays): its lease is live
        held = lease_of(otp_stack, uid)
        assert held is not None
        counting = CountingRecords(otp_stack.auth.records)
        counted.append(counting)
        step_up = request_of(owner, "/two-factor/verify-totp", {"code": phone.code()})
        answers.append(run_sync(otp_stack.auth.gateway.handle(step_up), otp_stack.auth.store, counting))
        assert lease_of(otp_stack, uid) == held

    req = request_of(owner, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    response = run_sync(otp_stack.auth.gateway.handle(req),
                        PausingStore(otp_stack.auth.store, "factor_change", step_up_meanwhile), otp_stack.auth.records)
    assert answers[0].status == 200, answers[0].body
    assert counted[0].ops == ["LoadUser", "ProveSecondFactor"], counted[0].ops
    assert response.status in (200, 401), response.body  # the step-up rotated the session it re-checks
    assert lease_of(otp_stack, uid) is None


def test_held_the_lease_counter_works_at_the_top_of_its_range(stack: Stack) -> None:
    """``lease_seq`` is a BIGINT moved on by one per take or clear: near 2**63 (a value no user
    reaches, one per factor change) the take, the BUSY read, the release and the stale undo still
    decide as at 1, on each backend (no Python/driver overflow, no wrap to a repeated token)."""
    from sqlalchemy import update

    from banata_middleware.stores.records import DisableOtp, EnableOtp, EnableTotp, EndRemoval, RestoreOtp, Status

    uid, at = "r10-top", 1_800_000_000_000
    records = stack.records
    records.execute(EnableTotp(uid, "totp", "ct", "k1", at, 1, [], ""))  # 2FA stays on by the app
    records.execute(EnableOtp(uid, "email", "ann@example.com", at))
    records.execute(EnableOtp(uid, "sms", "+15551234567", at))
    top = 2**63 - 3
    t = records.schema.user_state
    with records.engine.begin() as conn:
        conn.execute(update(t).where(t.c.user_id == uid).values(lease_seq=top))
    a = records.execute(DisableOtp(uid, "sms", at))
    assert (a.status, a.lease) == (Status.OK, top + 1)
    assert records.execute(DisableOtp(uid, "email", at + 1)).status is Status.BUSY
    assert records.execute(EndRemoval(uid, a.lease)) is Status.OK
    b = records.execute(DisableOtp(uid, "email", at + 2))
    assert (b.status, b.two_factor_off, b.lease) == (Status.OK, False, top + 2)  # 2**63 - 1: the column's top
    assert records.execute(RestoreOtp(uid, a.gone, a.lease)).status is Status.CHANGED  # a stale token
    assert records.execute(RestoreOtp(uid, b.gone, b.lease)).status is Status.OK
    assert otp_rows(stack, uid) == [("email", "ann@example.com")]


# -- R10-5: a password-only session made in a disable's window outlives an administrator's change ------
@pytest.mark.parametrize("change", ["enable_otp", "import_totp"])
def test_r10_5_a_window_session_ends_when_an_administrators_change_supersedes_the_undo(
        otp_stack: Stack, inbox: Inbox, change: str) -> None:  # noqa: F811
    """Attack: the owner's ``disable`` commits (the app and codes go, under its lease); the
    record says 2FA is off, so a thief with the password alone signs in (a session at aal 1,
    R7-3's window session). Before the disable's hot half, the administrator re-provisions the
    user (``enable_otp`` of an address the app verified, or ``import_totp`` of a new phone): an
    administrator's change, which clears the lease (R9-3's fix). The disable's hot half fails
    (503) and its undo finds its lease gone (CHANGED): it puts nothing back, as designed, but it
    also skips the copy's undo (``two_factor_disable.lua`` 'undo'), the one step that ends the
    sessions made in the window (R7-3) and voids the trusted devices.

    Consequence: two-factor is on again (the administrator's factor), yet the thief's session,
    made with the password alone while the record said off, lives on: a signed-in session of a
    2FA user that no second factor ever passed, which no answer or event reports (the disable said
    503, the administrator's change succeeded). Neither ``enable_otp`` nor ``import_totp`` ends
    sessions (their hot half sets ``tfa`` and bumps ``gen``, which ends trusted devices only).

    Fix: an undo that finds its lease gone still runs the session part of the copy's undo (end
    every session but the caller's made since ``since``, void the trusted devices): that part puts
    no factor back and contradicts no later change; or an administrator's change that clears a
    live lease ends the sessions made since that lease was taken."""
    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    thief = otp_stack.client(ip=THIEF_IP)

    def thief_then_administrator() -> None:  # the disable committed; its hot half is about to fail
        assert thief.sign_in(EMAIL).status_code == 200  # the record says off: the password alone
        assert session_of(thief) is not None
        if change == "enable_otp":
            otp_stack.auth.enable_otp(uid, to="admin-verified@example.com", channel="email")
        else:
            otp_stack.auth.import_totp(uid, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", email=EMAIL, backup_codes=True)

    req = request_of(owner, "/two-factor/disable", {"password": PASSWORD})
    response = run_sync(otp_stack.auth.gateway.handle(req),
                        FailAfter(otp_stack.auth.store, "two_factor_disable", thief_then_administrator),
                        otp_stack.auth.records)
    assert response.status == 503, response.body
    assert otp_stack.records.execute(LoadUser(uid)).two_factor_enabled  # the administrator's factor
    r = thief.get("/api/auth/get-session")
    assert session_of(thief) is None, r.text  # the window session ended with the window

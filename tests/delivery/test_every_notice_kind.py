"""Issues 14 and 15's "done": every notice kind, triggered through the real endpoints (and the
administrator's API) on both adapters and both storage setups, reaches the notifier from the
durable outbox: one notice per kind, each with the user id, the kind, the time, the address and
the user agent of the request that caused it, and never a secret.

``pytest tests/delivery/test_every_notice_kind.py -s`` prints the notices, one line per kind.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from harness import PASSWORD, SITE, Api, Stack

from banata_middleware import OtpConfig
from banata_middleware.config import Policies
from banata_middleware.delivery import NOTICE_KINDS, DeliveryPolicy, Notice, Outbox
from banata_middleware.errors import AuthError
from banata_middleware.flows.two_factor import FAILURE_CEILING
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator, VirtualPasskey
from banata_middleware.stores.records import AppendAudit, ListAudit, RecordFailure

#: Challenges as long as the lock, so one sign-in reaches it; three backup codes, so using one
#: leaves two ("2 or fewer left"). Delivery by hand (``deliver_pending``): no thread to wait for.
POLICIES = Policies(challenge_attempts=10, user_lock_failures=10, backup_code_count=3)
NO_THREAD = DeliveryPolicy(background=False)

#: Where each request comes from: (client address, user agent).
ANN = ("203.0.113.7", "Firefox/128.0 (Ann's desktop)")
ANN_LAPTOP = ("203.0.113.8", "Safari/17.5 (Ann's laptop)")
THIEF = ("198.51.100.66", "curl/8.5.0")
BOB = ("192.0.2.20", "Chrome/126.0 (Bob's phone)")
BOB_THIEF = ("198.51.100.99", "python-requests/2.32")
ADMIN = ("10.0.0.5", "AdminConsole/2.0")


def client(stack: Stack, origin: tuple[str, str]) -> Api:
    api = stack.client(ip=origin[0])
    api.http.headers["user-agent"] = origin[1]
    return api


def wrong_code(api: Api) -> str:
    """A code the authenticator does not show in the accepted window (previous, current, next step)."""
    shown = {api.code(steps=s) for s in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in shown)


def answer_challenge(api: Api, code: str, **extra: Any) -> Any:
    return api.auth("/two-factor/verify-totp", {"code": code, **extra})


def test_every_notice_kind_reaches_the_notifier_with_who_when_and_where(
        stack_factory: Callable[..., Stack], mfa_outbox: Outbox) -> None:
    inbox = Inbox()
    stack = stack_factory(policies=POLICIES, notifier=mfa_outbox, delivery=NO_THREAD, otp=OtpConfig(sender=inbox))
    clock = stack.clock
    expected: list[tuple[str, str, tuple[str, str], float]] = []  # (user, kind, origin, time), in order
    shown: list[str] = [PASSWORD]  # every secret a response or a cookie carried

    def happened(user: str, kind: str, origin: tuple[str, str]) -> None:
        expected.append((user, kind, origin, clock.now()))
        clock.advance(1)  # each notice at its own second

    # Ann: 2FA on, a passkey added and removed, new backup codes, one used.
    ann = client(stack, ANN)
    ann_id = ann.sign_up("ann@example.com").json()["user"]["id"]
    device = ann.enable_2fa()
    shown += [device.secret, *ann.backup_codes]
    happened(ann_id, "two_factor.enabled", ANN)
    # Codes by email added while 2FA is on, then stopped while the app keeps it on.
    assert ann.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    code = inbox.latest(user_id=ann_id).code
    shown.append(code)
    r = ann.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code == 200, r.text
    happened(ann_id, "otp.enabled", ANN)
    r = ann.auth("/two-factor/disable-otp", {"password": PASSWORD})
    assert r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    happened(ann_id, "otp.disabled", ANN)
    key = VirtualPasskey()
    options = ann.get("/api/auth/passkey/generate-register-options").json()
    r = ann.post("/api/auth/passkey/verify-registration", {"response": key.create(options, origin=SITE)})
    assert r.status_code == 200, r.text
    happened(ann_id, "passkey.added", ANN)
    credential = base64.urlsafe_b64encode(key.credential_id).rstrip(b"=").decode()
    assert ann.post("/api/auth/passkey/delete-passkey", {"id": credential}).json() == {"status": True}
    happened(ann_id, "passkey.removed", ANN)
    r = ann.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    codes = r.json()["backupCodes"]
    shown += codes
    happened(ann_id, "backup_codes.regenerated", ANN)
    r = ann.auth("/two-factor/verify-backup-code", {"code": codes[0]})  # a step-up
    assert (r.status_code, r.json()["backupCodesRemaining"]) == (200, 2), r.text
    happened(ann_id, "backup_codes.low", ANN)

    # Ann signs in on her laptop and has it remembered.
    laptop = client(stack, ANN_LAPTOP)
    laptop.device = device
    assert laptop.sign_in("ann@example.com").status_code == 403
    clock.advance(30)  # the next time step: enrolment used this one
    r = answer_challenge(laptop, laptop.code(), trustDevice=True)
    assert r.status_code == 200, r.text
    happened(ann_id, "trusted_device.added", ANN_LAPTOP)

    # Someone with Ann's password guesses codes until the temporary lock.
    thief = client(stack, THIEF)
    thief.device = device  # only to pick codes that are wrong
    assert thief.sign_in("ann@example.com").status_code == 403
    for _ in range(POLICIES.user_lock_failures - 1):
        assert answer_challenge(thief, wrong_code(thief)).json()["code"] == "INVALID_CODE"
    r = answer_challenge(thief, wrong_code(thief))
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED"), r.text
    happened(ann_id, "two_factor.locked", THIEF)

    # The lock over, Ann confirms a fresh code and turns 2FA off.
    clock.advance(POLICIES.user_lock_seconds + 30)
    assert answer_challenge(ann, ann.code()).status_code == 200  # a step-up: the change needs a fresh factor
    assert ann.auth("/two-factor/disable", {"password": PASSWORD}).json() == {"status": True}
    happened(ann_id, "two_factor.disabled", ANN)

    # Bob: 2FA on; far into a streak of failures (each earlier lock was notified at its time), one
    # more wrong code reaches the ceiling: the permanent lock, until an administrator resets him.
    bob = client(stack, BOB)
    bob_id = bob.sign_up("bob@example.com").json()["user"]["id"]
    bob_device = bob.enable_2fa()
    shown += [bob_device.secret, *bob.backup_codes]
    happened(bob_id, "two_factor.enabled", BOB)
    r = bob.auth("/two-factor/enable", {"password": PASSWORD, "name": "Tablet"})  # another app
    assert r.status_code == 200, r.text
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=clock)
    shown.append(tablet.secret)
    assert bob.auth("/two-factor/verify-totp", {"code": tablet.code()}).status_code == 200
    happened(bob_id, "authenticator.added", BOB)
    r = bob.auth("/two-factor/remove-authenticator", {"id": r.json()["id"]})
    assert r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    happened(bob_id, "authenticator.removed", BOB)
    at = int(clock.now() * 1000)
    for _ in range(FAILURE_CEILING - 1):
        stack.records.execute(RecordFailure(bob_id, FAILURE_CEILING, at))  # as the verify flow counts them
    bob_thief = client(stack, BOB_THIEF)
    bob_thief.device = bob_device
    assert bob_thief.sign_in("bob@example.com").status_code == 403
    r = answer_challenge(bob_thief, wrong_code(bob_thief))
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED"), r.text
    happened(bob_id, "two_factor.locked", BOB_THIEF)
    stack.auth.reset_two_factor(bob_id, ip=ADMIN[0], user_agent=ADMIN[1])
    happened(bob_id, "two_factor.reset_by_admin", ADMIN)

    for api in stack.clients:
        shown += [c.value for c in api.cookies.jar]  # sessions, challenges, the trusted device
    assert stack.auth.deliver_pending() == len(expected)
    notices = mfa_outbox.notices
    details = {e.id: e.detail.get("detail", "") for e in stack.records.execute(ListAudit())}
    print(f"\nnotices delivered ({stack.adapter}, {stack.store_kind}):")
    for n in notices:
        lock = f" ({'permanent' if details[n.event_id] == 'ceiling' else details[n.event_id]})" \
            if n.kind == "two_factor.locked" else ""
        print(f"  {n.kind + lock:36} user={n.user_id} at={n.at.isoformat()} ip={n.ip} ua={n.user_agent!r}"
              f" event={n.event_id}")

    assert [(n.user_id, n.kind, (n.ip, n.user_agent), n.at.timestamp()) for n in notices] == expected
    assert set(mfa_outbox.kinds(ann_id)) | set(mfa_outbox.kinds(bob_id)) == set(NOTICE_KINDS.values())
    assert len(set(mfa_outbox.kinds(ann_id))) == len(mfa_outbox.kinds(ann_id))  # one notice per kind
    locks = [details[n.event_id] for n in notices if n.kind == "two_factor.locked"]
    assert locks == ["temporary", "ceiling"]
    assert [f.name for f in Notice.__dataclass_fields__.values()] == [
        "event_id", "user_id", "kind", "at", "ip", "user_agent"]
    text = repr(notices)
    assert all(s and s not in text for s in shown), "a secret reached a notice"
    assert stack.auth.deliver_pending() == 0  # each once


def test_wrong_codes_in_a_session_that_lock_notify_too(stack_factory: Callable[..., Stack],
                                                       mfa_outbox: Outbox) -> None:
    """The other place a temporary lock is made: a signed-in user's step-up (``session_answer``)."""
    stack = stack_factory(policies=POLICIES, notifier=mfa_outbox, delivery=NO_THREAD)
    ann = client(stack, ANN)
    ann_id = ann.sign_up("ann@example.com").json()["user"]["id"]
    ann.enable_2fa()
    for _ in range(POLICIES.user_lock_failures - 1):
        assert answer_challenge(ann, wrong_code(ann)).json()["code"] == "INVALID_CODE"
    r = answer_challenge(ann, wrong_code(ann))
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED"), r.text
    stack.clock.advance(1)
    r = answer_challenge(ann, wrong_code(ann))  # refused while locked: no second lock, no second notice
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED"), r.text
    stack.auth.deliver_pending()
    assert mfa_outbox.kinds(ann_id) == ["two_factor.enabled", "two_factor.locked"]
    lock = mfa_outbox.notices[-1]
    assert (lock.ip, lock.user_agent, lock.at.timestamp()) == (*ANN, stack.clock.now() - 1)


def test_a_lock_whose_row_cannot_be_written_still_locks_and_logs_the_lost_notice(
        stack_factory: Callable[..., Stack], mfa_outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    """The lock is the hot store's, set before its row is appended: SQL failing right then loses the
    notice (said in the log), never the lock or the answer."""
    stack = stack_factory(policies=POLICIES, notifier=mfa_outbox, delivery=NO_THREAD)
    records = stack.records
    execute, aexecute = records.execute, records.aexecute

    def refuse(op: Any) -> None:
        if isinstance(op, AppendAudit):
            raise AuthError(503, "STORE_UNAVAILABLE", "the record store is unavailable")

    def failing(op: Any) -> Any:
        refuse(op)
        return execute(op)

    async def afailing(op: Any) -> Any:
        refuse(op)
        return await aexecute(op)

    ann = client(stack, ANN)
    ann_id = ann.sign_up("ann@example.com").json()["user"]["id"]
    ann.enable_2fa()
    records.execute, records.aexecute = failing, afailing  # type: ignore[method-assign]
    for _ in range(POLICIES.user_lock_failures - 1):
        assert answer_challenge(ann, wrong_code(ann)).json()["code"] == "INVALID_CODE"
    r = answer_challenge(ann, wrong_code(ann))
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED"), r.text
    records.execute, records.aexecute = execute, aexecute  # type: ignore[method-assign]
    stack.clock.advance(60)
    assert answer_challenge(ann, ann.code()).status_code == 429  # locked all the same
    assert f"two_factor.locked of user {ann_id} is not in the audit table" in caplog.text
    stack.auth.deliver_pending()
    assert mfa_outbox.kinds(ann_id) == ["two_factor.enabled"]


def test_codes_by_message_give_the_same_notices(stack_factory: Callable[..., Stack], mfa_outbox: Outbox) -> None:
    """Codes by message (the hot store answers first, then S2): the remembered device is written
    with the success, the temporary lock with the failure that set it; a typo while confirming an
    address (no S2 there) appends the lock's row after the script."""
    inbox = Inbox()
    stack = stack_factory(policies=POLICIES, notifier=mfa_outbox, delivery=NO_THREAD, otp=OtpConfig(sender=inbox))
    clock = stack.clock
    ann = client(stack, ANN)
    ann_id = ann.sign_up("ann@example.com").json()["user"]["id"]
    assert ann.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    assert ann.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=ann_id).code}).status_code == 200

    laptop = client(stack, ANN_LAPTOP)
    assert laptop.sign_in("ann@example.com").status_code == 403
    assert laptop.auth("/two-factor/send-otp", {}).status_code == 200
    r = laptop.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=ann_id).code, "trustDevice": True})
    assert r.status_code == 200, r.text
    clock.advance(60)  # past the resend throttle

    thief = client(stack, THIEF)
    assert thief.sign_in("ann@example.com").status_code == 403
    assert thief.auth("/two-factor/send-otp", {}).status_code == 200
    wrong = next(c for c in ("000000", "111111") if c != inbox.latest(user_id=ann_id).code)
    answers = [thief.auth("/two-factor/verify-otp", {"code": wrong}) for _ in range(POLICIES.user_lock_failures)]
    assert [a.status_code for a in answers] == [401] * (POLICIES.user_lock_failures - 1) + [429]

    bob = client(stack, BOB)
    bob_id = bob.sign_up("bob@example.com").json()["user"]["id"]
    assert bob.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    wrong = next(c for c in ("000000", "111111") if c != inbox.latest(user_id=bob_id).code)
    answers = [bob.auth("/two-factor/verify-otp", {"code": wrong}) for _ in range(POLICIES.user_lock_failures)]
    assert [a.status_code for a in answers] == [401] * (POLICIES.user_lock_failures - 1) + [429]

    stack.auth.deliver_pending()
    assert [(n.kind, n.ip, n.user_agent) for n in mfa_outbox.notices if n.user_id == ann_id] == [
        ("two_factor.enabled", *ANN), ("trusted_device.added", *ANN_LAPTOP), ("two_factor.locked", *THIEF)]
    assert [(n.kind, n.ip, n.user_agent) for n in mfa_outbox.notices if n.user_id == bob_id] == [
        ("two_factor.locked", *BOB)]
    details = {e.id: e.detail.get("detail") for e in stack.records.execute(ListAudit())}
    assert [details[n.event_id] for n in mfa_outbox.notices if n.kind == "two_factor.locked"] == ["temporary"] * 2

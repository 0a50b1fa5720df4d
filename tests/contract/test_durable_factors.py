"""The second factor's durable state lives in the record store (SQL), so losing every key of the hot
store (a Redis FLUSHALL, a restart without persistence) ends sessions and nothing else: a TOTP step
once accepted stays used, a backup code once consumed stays consumed, the permanent lock at the
failure ceiling stays on, and a password alone (here: the host's own first factor) never passes a
user with a second factor. The users are the host's own (``begin_second_factor``), whose first
factor has no state in the hot store at all."""

from __future__ import annotations

import pytest
from harness import Api, Stack

from banata_middleware.errors import AuthError
from banata_middleware.simulator import VirtualAuthenticator

SECRET_B32 = "KRSXG5CTMVRXEZLUKN2XAZLSKNSWG4TF"


def lose_hot_store(stack: Stack) -> None:
    """Every key of the hot store gone, as after a FLUSHALL."""
    if stack.redis is not None:
        with stack.redis.client() as c:
            c.flushall()
        return
    store = stack.auth.store
    with store._lock:  # type: ignore[attr-defined]
        for table in (store.data, store._expiry, store._queued, store._expiry_heap):  # type: ignore[attr-defined]
            table.clear()


def challenged(stack: Stack, uid: str) -> Api:
    """A browser past the host's own first factor, holding the pending challenge."""
    result = stack.auth.begin_second_factor(uid)
    assert result.two_factor_required, "a second factor is due (decided from the record store)"
    api = stack.client()
    for cookie in result.set_cookies:
        name, _, rest = cookie.partition("=")
        api.http.cookies.set(name, rest.split(";")[0])
    return api


def test_an_accepted_totp_code_stays_used_across_a_flush(stack: Stack) -> None:
    uri, _ = stack.auth.import_totp("host-flush-1", SECRET_B32)
    device = VirtualAuthenticator.from_uri(uri, clock=stack.clock)
    stack.clock.advance(30)
    code = device.code()
    assert challenged(stack, "host-flush-1").auth("/two-factor/verify-totp", {"code": code}).status_code == 200
    lose_hot_store(stack)
    r = challenged(stack, "host-flush-1").auth("/two-factor/verify-totp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE"), r.text
    stack.clock.advance(30)
    assert challenged(stack, "host-flush-1").auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


def test_a_consumed_backup_code_stays_consumed_across_a_flush(stack: Stack) -> None:
    _, codes = stack.auth.import_totp("host-flush-2", SECRET_B32, backup_codes=True)
    r = challenged(stack, "host-flush-2").auth("/two-factor/verify-backup-code", {"code": codes[0]})
    assert r.status_code == 200 and r.json()["backupCodesRemaining"] == len(codes) - 1, r.text
    lose_hot_store(stack)
    api = challenged(stack, "host-flush-2")
    r = api.auth("/two-factor/verify-backup-code", {"code": codes[0]})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE"), r.text
    r = api.auth("/two-factor/verify-backup-code", {"code": codes[1]})
    assert r.status_code == 200 and r.json()["backupCodesRemaining"] == len(codes) - 2, r.text


def test_the_permanent_lock_at_the_failure_ceiling_survives_a_flush(stack: Stack) -> None:
    stack.auth.import_totp("host-flush-3", SECRET_B32)
    streak = 0
    last = None
    while streak < 100:
        stack.clock.advance(15 * 60 + 1)  # wait out each temporary lock
        api = challenged(stack, "host-flush-3")
        while True:
            last = api.auth("/two-factor/verify-totp", {"code": "000000"})
            streak += 1
            if last.status_code == 429:
                break
            if last.json()["code"] == "TOO_MANY_ATTEMPTS":
                api = challenged(stack, "host-flush-3")
    assert streak == 100 and last is not None and last.status_code == 429
    lose_hot_store(stack)  # the temporary lock and the attempt counts go; the permanent lock stays
    stack.clock.advance(365 * 24 * 3600)
    with pytest.raises(AuthError) as refused:
        stack.auth.begin_second_factor("host-flush-3")
    assert (refused.value.status, refused.value.code) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    stack.auth.reset_two_factor("host-flush-3")  # the administrator lifts it
    result = stack.auth.begin_second_factor("host-flush-3")
    assert not result.two_factor_required  # and the second factor is gone with it


def test_a_copy_left_saying_2fa_is_off_is_repaired_from_the_record(stack: Stack) -> None:
    """A crash between the record change (2FA on) and the copy's update: the next sign-in reads the
    record, asks for the second factor, and repairs the copy for the pass-through."""
    stack.auth.import_totp("host-flush-4", SECRET_B32)
    key = stack.auth.flows.keys.user("host-flush-4")
    if stack.redis is not None:
        with stack.redis.client() as c:
            c.hset(key, "tfa", "0")
    else:
        stack.auth.store.data[key]["tfa"] = "0"  # type: ignore[attr-defined]
    challenged(stack, "host-flush-4")
    caller = stack.auth.run(stack.auth.flows.load("host-flush-4"))
    assert caller.user["tfa"] == "1"

"""Issue 18, invariant 1: losing all hot-store data (a Redis restart without persistence, a
FLUSHALL, a failover to an empty replica; for the memory store, a restart) ends sessions and
pending challenges, and nothing more. No factor is lost, no used code counts again, and a password
alone never gets through for a user with a second factor. Every case runs on both adapters and both
setups (SQLite + memory, PostgreSQL + Redis)."""

from __future__ import annotations

from harness import PASSWORD, Api, Stack

from banata_middleware.stores import MemoryStore


def lose_hot_state(stack: Stack) -> None:
    """Everything the hot store held is gone; the record store is untouched."""
    store = stack.auth.store
    if isinstance(store, MemoryStore):
        with store._lock:
            store.data.clear()
            store._expiry.clear()
            store._expiry_heap.clear()
            store._queued.clear()
    else:
        assert stack.redis is not None
        with stack.redis.client() as client:
            client.flushall()


def two_factor_user(stack: Stack, email: str = "keep@example.com") -> Api:
    api = stack.client()
    api.sign_up(email)
    api.enable_2fa()
    return api


def test_a_password_alone_never_gets_through_after_the_loss(stack: Stack) -> None:
    owner = two_factor_user(stack)
    lose_hot_state(stack)
    # The old session ended with the hot store...
    assert owner.get("/api/auth/get-session").json() is None
    # ...and the password alone gets a challenge, not a session.
    other = stack.client()
    r = other.sign_in("keep@example.com")
    assert r.status_code == 403, r.text
    assert r.json()["twoFactorRedirect"] is True
    assert other.get("/api/auth/get-session").json() is None
    assert other.get("/protected").status_code in (401, 403)
    # The factor itself survived: a fresh code from the same authenticator app answers it.
    other.device = owner.device
    stack.clock.advance(30)
    r = other.auth("/two-factor/verify-totp", {"code": other.code()})
    assert r.status_code == 200, r.text
    session = other.get("/api/auth/get-session").json()
    assert session["user"]["twoFactorEnabled"] is True and session["session"]["aal"] == 2


def test_a_code_used_before_the_loss_is_not_accepted_after_it(stack: Stack) -> None:
    owner = two_factor_user(stack)
    first = stack.client()
    assert first.sign_in("keep@example.com").status_code == 403
    first.device = owner.device
    stack.clock.advance(30)
    code = first.code()
    assert first.auth("/two-factor/verify-totp", {"code": code}).status_code == 200
    lose_hot_state(stack)
    again = stack.client()
    assert again.sign_in("keep@example.com").status_code == 403
    r = again.auth("/two-factor/verify-totp", {"code": code})  # the same step: the replay guard is durable
    assert r.status_code == 401 and r.json()["code"] == "INVALID_CODE", r.text
    assert again.get("/api/auth/get-session").json() is None


def test_a_backup_code_used_before_the_loss_stays_used(stack: Stack) -> None:
    owner = two_factor_user(stack)
    code = owner.backup_codes[0]
    first = stack.client()
    assert first.sign_in("keep@example.com").status_code == 403
    r = first.auth("/two-factor/verify-backup-code", {"code": code})
    assert r.status_code == 200, r.text
    left = r.json()["backupCodesRemaining"]
    lose_hot_state(stack)
    again = stack.client()
    assert again.sign_in("keep@example.com").status_code == 403
    r = again.auth("/two-factor/verify-backup-code", {"code": code})
    assert r.status_code == 401 and r.json()["code"] == "INVALID_CODE", r.text
    r = again.auth("/two-factor/verify-backup-code", {"code": owner.backup_codes[1]})
    assert r.status_code == 200 and r.json()["backupCodesRemaining"] == left - 1, r.text


def test_a_host_app_user_with_2fa_still_gets_the_challenge_after_the_loss(stack: Stack) -> None:
    """The review's fail-open case: an app with its own users, begin_second_factor after a flush."""
    stack.auth.import_totp("host-7", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    lose_hot_state(stack)
    result = stack.auth.begin_second_factor("host-7")
    assert result.two_factor_required is True and result.token is None


def test_an_account_survives_the_loss(stack: Stack) -> None:
    api = stack.client()
    created = api.sign_up("stays@example.com").json()["user"]
    lose_hot_state(stack)
    r = stack.client().sign_in("stays@example.com", PASSWORD)
    assert r.status_code == 200, r.text
    user = r.json()["user"]
    assert (user["id"], user["createdAt"], user["email"]) == (created["id"], created["createdAt"], created["email"])
    assert stack.client().sign_in("stays@example.com", "not the password").status_code == 401

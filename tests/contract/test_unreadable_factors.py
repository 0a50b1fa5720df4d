"""Factors that can no longer be used fail closed with a clear code, never a 500, and never count
as the user's failed attempt: a TOTP ciphertext that fails its user-id binding (a record copied
onto another user, or corrupted), and backup codes hashed under a secret no longer configured."""

from __future__ import annotations

from typing import Any

from harness import PASSWORD, SECRET, Api, Stack, set_totp_secret, totp_secret

from banata_middleware.admin import rotate_keys


def user_field(stack: Stack, uid: str, field: str) -> str | None:
    key = stack.auth.flows.keys.user(uid)
    if stack.redis is not None:
        with stack.redis.client() as c:
            value: str | None = c.hget(key, field)
            return value
    return stack.auth.store.data[key].get(field)  # type: ignore[attr-defined,no-any-return]


def stored_events(stack: Stack, uid: str) -> list[dict[str, str]]:
    key = stack.auth.flows.keys.audit(uid)
    if stack.redis is not None:
        with stack.redis.client() as c:
            return [fields for _, fields in c.xrange(key)]
    return stack.auth.store.audit_events(key)  # type: ignore[attr-defined,no-any-return]


def enrolled(stack: Stack, email: str) -> tuple[Api, str]:
    api = stack.client()
    uid = api.sign_up(email).json()["user"]["id"]
    api.enable_2fa()
    return api, uid


def test_a_totp_secret_copied_onto_another_user_is_refused_clearly_and_not_counted(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    alice, alice_id = enrolled(stack, "alice@example.com")
    bob, bob_id = enrolled(stack, "bob@example.com")
    # Someone with write access to the store gives Bob Alice's secret (so Alice's phone would pass)
    set_totp_secret(stack, bob_id, totp_secret(stack, alice_id))
    stack.clock.advance(30)
    browser = stack.client()
    browser.backup_codes = bob.backup_codes
    assert browser.sign_in("bob@example.com").status_code == 403
    for _ in range(3):
        r = browser.auth("/two-factor/verify-totp", {"code": alice.code()})
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "TWO_FACTOR_SECRET_UNREADABLE"
    # not a failed attempt: no failure counted, the challenge keeps its attempts
    assert user_field(stack, bob_id, "fails") in (None, "0")
    assert "two_factor.failed" not in [e["type"] for e in events]
    unreadable = [e for e in stored_events(stack, bob_id) if e["type"] == "two_factor.secret_unreadable"]
    assert len(unreadable) == 3 and "copied" in unreadable[0]["detail"]
    assert [e["type"] for e in events].count("two_factor.secret_unreadable") == 3
    # a backup code still answers the same challenge; then the URI cannot be shown either
    r = browser.auth("/two-factor/verify-backup-code", {"code": bob.backup_codes[0]})
    assert r.status_code == 200, r.text
    r = browser.auth("/two-factor/get-totp-uri", {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (409, "TWO_FACTOR_SECRET_UNREADABLE")
    # and a step-up with TOTP in the session is refused the same way
    r = browser.auth("/two-factor/verify-totp", {"code": alice.code(1)})
    assert (r.status_code, r.json()["code"]) == (409, "TWO_FACTOR_SECRET_UNREADABLE")
    assert user_field(stack, bob_id, "fails") in (None, "0")
    # Alice's own record is untouched
    stack.clock.advance(30)
    fresh = stack.client()
    assert fresh.sign_in("alice@example.com").status_code == 403
    assert fresh.auth("/two-factor/verify-totp", {"code": alice.code()}).status_code == 200


def test_a_corrupted_totp_secret_is_refused_clearly(stack: Stack) -> None:
    owner, uid = enrolled(stack, "carol@example.com")
    ct = totp_secret(stack, uid)
    set_totp_secret(stack, uid, ct[:-4] + ("AAAA" if not ct.endswith("AAAA") else "BBBB"))
    stack.clock.advance(30)
    browser = stack.client()
    assert browser.sign_in("carol@example.com").status_code == 403
    r = browser.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert (r.status_code, r.json()["code"]) == (409, "TWO_FACTOR_SECRET_UNREADABLE")


NEW_SECRET = "rotated-secret-" + "z" * 40


def test_backup_codes_under_a_dropped_secret_are_no_longer_offered_and_not_counted(stack_factory: Any) -> None:
    old = stack_factory()
    owner = old.client()
    uid = owner.sign_up("dora@example.com").json()["user"]["id"]
    device = owner.enable_2fa()
    # rotation: the new secret encrypts, rotate-keys moves the TOTP secret; the codes cannot move
    rotating = stack_factory(secret=NEW_SECRET, previous_secrets=(SECRET,))
    rotating.auth.records = old.auth.records  # one record store (SQL) behind every configuration
    if old.store_kind == "memory":  # the memory store lives in the app: share it
        rotating.auth.store = old.auth.store
    report = rotate_keys(rotating.auth)
    assert (report.reencrypted, report.backup_codes_old_key) == (1, 1)
    old.clock.advance(30)
    still = rotating.client()  # while the old secret is configured the codes still work
    r = still.sign_in("dora@example.com")
    assert r.json()["twoFactorMethods"] == ["totp", "backup_code"]
    assert still.auth("/two-factor/verify-backup-code", {"code": owner.backup_codes[0]}).status_code == 200
    assert still.get("/api/auth/get-session").json()["user"]["backupCodesNeedRegeneration"] is False

    dropped = stack_factory(secret=NEW_SECRET)  # the old secret is gone
    dropped.auth.records = old.auth.records  # one record store (SQL) behind every configuration
    if old.store_kind == "memory":
        dropped.auth.store = old.auth.store
    api = dropped.client()
    r = api.sign_in("dora@example.com")
    assert r.status_code == 403 and r.json()["twoFactorMethods"] == ["totp"], r.text
    for code in owner.backup_codes[1:]:  # more tries than the lock allows: none is counted
        r = api.auth("/two-factor/verify-backup-code", {"code": code})
        assert (r.status_code, r.json()["code"]) == (409, "BACKUP_CODES_NEED_REGENERATION"), r.text
    assert user_field(dropped, uid, "fails") in (None, "0")
    old.clock.advance(30)
    assert api.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    user = api.get("/api/auth/get-session").json()["user"]
    assert user["backupCodesNeedRegeneration"] is True
    r = api.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    new_codes = r.json()["backupCodes"]
    assert api.get("/api/auth/get-session").json()["user"]["backupCodesNeedRegeneration"] is False
    fresh = dropped.client()
    assert fresh.sign_in("dora@example.com").json()["twoFactorMethods"] == ["totp", "backup_code"]
    assert fresh.auth("/two-factor/verify-backup-code", {"code": new_codes[0]}).status_code == 200

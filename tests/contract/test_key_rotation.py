"""Key rotation: a new secret encrypts, old secrets still decrypt, rotate_keys moves old ones."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from harness import SECRET, RedisServer, Stack, set_totp_secret, totp_secret

from banata_middleware import BanataAuth
from banata_middleware.admin import rotate_keys

NEW_SECRET = "rotated-secret-" + "y" * 40


def _secret_key_id(stack: Stack, auth: BanataAuth, uid: str) -> str:
    return auth.keyring.key_id_of(totp_secret(stack, uid))


def test_new_key_encrypts_old_key_still_decrypts_and_rotation_moves_secrets(stack_factory) -> None:  # type: ignore[no-untyped-def]
    old = stack_factory()
    api = old.client()
    uid = api.sign_up("rot@example.com").json()["user"]["id"]
    device = api.enable_2fa()
    new = stack_factory(secret=NEW_SECRET, previous_secrets=(SECRET,))
    new.auth.records = old.auth.records  # one record store (SQL) behind both configurations
    if old.store_kind == "memory":  # the memory store lives in the app: share it
        new.auth.store = old.auth.store
    assert _secret_key_id(new, new.auth, uid) != new.auth.keyring.current_key_id
    old.clock.advance(30)
    fresh = new.client()
    assert fresh.sign_in("rot@example.com").status_code == 403  # old cookies and secrets still work
    assert fresh.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    report = rotate_keys(new.auth)
    assert (report.users, report.reencrypted) == (1, 1)
    assert _secret_key_id(new, new.auth, uid) == new.auth.keyring.current_key_id
    assert rotate_keys(new.auth).reencrypted == 0
    # after rotation the old secret can go: a config with only the new one still verifies
    only_new = stack_factory(secret=NEW_SECRET)
    only_new.auth.records = old.auth.records
    if old.store_kind == "memory":
        only_new.auth.store = old.auth.store
    old.clock.advance(30)
    c = only_new.client()
    assert c.sign_in("rot@example.com").status_code == 403
    assert c.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


def test_cli_rotate_keys_and_admin_reset(redis_server: RedisServer, redis_url: str, database_url: str,
                                        stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory()
    if stack.store_kind != "redis":
        return
    stack.clock.set(int(time.time()) - 60)  # the CLI process reads the real clock
    api = stack.client()
    uid = api.sign_up("cli@example.com").json()["user"]["id"]
    api.enable_2fa()
    env = {"BANATA_AUTH_SECRET": NEW_SECRET, "BANATA_AUTH_PREVIOUS_SECRETS": SECRET, "PATH": "/usr/bin:/bin",
           "BANATA_DATABASE_URL": database_url}
    run = [sys.executable, "-m", "banata_middleware.cli"]
    out = subprocess.run([*run, "rotate-keys", "--redis-url", redis_url], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "re-encrypted: 1" in out
    out = subprocess.run([*run, "admin", "reset-2fa", f"--user={uid}", "--redis-url", redis_url], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert uid in out
    assert api.get("/api/me").status_code == 401
    rotated = stack_factory(secret=NEW_SECRET, previous_secrets=(SECRET,))  # the app after the rotation
    assert rotated.client().sign_in("cli@example.com").json()["user"]["twoFactorEnabled"] is False


def test_cli_rotate_keys_skips_an_unreadable_record_reports_it_and_exits_non_zero(
        redis_server: RedisServer, redis_url: str, database_url: str, stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory()
    if stack.store_kind != "redis" or stack.adapter != "asgi":
        pytest.skip("the CLI works on Redis; one adapter is enough")
    stack.clock.set(int(time.time()) - 60)  # the CLI process reads the real clock
    uids = []
    for n in range(6):
        api = stack.client()
        uids.append(api.sign_up(f"user{n}@example.com").json()["user"]["id"])
        api.enable_2fa()
    bad = uids[3]
    # one record copied onto another user: it no longer decrypts
    set_totp_secret(stack, bad, totp_secret(stack, uids[0]))
    env = {"BANATA_AUTH_SECRET": NEW_SECRET, "BANATA_AUTH_PREVIOUS_SECRETS": SECRET, "PATH": "/usr/bin:/bin",
           "BANATA_DATABASE_URL": database_url}
    run = subprocess.run([sys.executable, "-m", "banata_middleware.cli", "rotate-keys", "--redis-url", redis_url],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "re-encrypted: 5" in run.stdout and "skipped: 1" in run.stdout
    assert f"skipped: user {bad}, secret: cannot be decrypted" in run.stderr
    assert "copied from another user" in run.stderr
    rotated = stack_factory(secret=NEW_SECRET, previous_secrets=(SECRET,))
    current = rotated.auth.keyring.current_key_id
    for uid in uids:
        key_id = _secret_key_id(rotated, rotated.auth, uid)
        assert (key_id == current) == (uid != bad), uid

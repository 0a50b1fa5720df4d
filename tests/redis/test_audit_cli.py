"""``banata-mfa audit`` reads the per-user Redis Streams the store scripts write."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import PASSWORD, Stack


def test_audit_cli_prints_the_users_events_without_secrets(stack: Stack, database_url: str) -> None:
    if stack.store_kind != "redis":
        return
    assert stack.redis is not None
    api = stack.client()
    uid = api.sign_up("audit@example.com").json()["user"]["id"]
    device = api.enable_2fa()
    api.auth("/two-factor/verify-totp", {"code": "000000"})
    api.auth("/two-factor/disable", {"password": PASSWORD})
    other = stack.client().sign_up("other@example.com").json()["user"]["id"]
    run = [sys.executable, "-m", "banata_middleware.cli", "audit", "--redis-url", stack.redis.url,
           "--database-url", database_url]  # the record changes (2FA on and off) are audited in SQL
    mine = [json.loads(line) for line in subprocess.run([*run, f"--user={uid}"], capture_output=True, text=True,
                                                          check=True).stdout.splitlines()]
    # enrolment rotates the session: the sign-up's ends, a new one starts
    # Both stores' events, in time order; events of one instant (the test's clock is frozen) come
    # from two stores, whose order within a millisecond nobody can know, so compare them as a set.
    assert sorted(e["type"] for e in mine) == sorted(["session.created", "two_factor.enabled", "session.revoked",
                                                      "session.created", "two_factor.failed", "two_factor.disabled"])
    assert [e["atMs"] for e in mine] == sorted(e["atMs"] for e in mine)
    assert all(e["userId"] == uid and e["ip"] == "127.0.0.1" for e in mine)
    everyone = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert other in everyone and uid in everyone
    for secret in (device.account().secret, PASSWORD, *api.backup_codes, api.http.cookies["banata.session_token"]):
        assert secret not in everyone

"""``banata-mfa``: help that documents every option, the demo validating before it says where to go,
a store that cannot be reached failing fast, administrator commands refusing unknown users, and
audit times in ISO 8601."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from harness import SECRET, RedisServer, free_port

from banata_middleware.cli import _audit_line, main

CLI = [sys.executable, "-m", "banata_middleware.cli"]


def help_text(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The help of one option: its line and the indented lines under it, up to the next option."""
    match = re.search(rf"^  {re.escape(option)}\b.*?(?=^  -|\Z)", text, re.M | re.S)
    assert match, f"{option} is not in:\n{text}"
    return " ".join(match.group(0).split())


@pytest.mark.parametrize("command", [[], ["demo"], ["code"], ["audit"], ["admin"], ["rotate-keys"]])
def test_help_has_no_rst_backticks(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    assert "``" not in help_text(capsys, *command)


@pytest.mark.parametrize(("command", "option"), [
    (["demo"], "--host"), (["demo"], "--port"), (["demo"], "--redis-url"), (["demo"], "--framework"),
    (["demo"], "--database-url"), (["admin"], "--database-url"), (["rotate-keys"], "--database-url"),
    (["audit"], "--user"), (["audit"], "--follow"), (["audit"], "--redis-url"), (["admin"], "--user"),
])
def test_every_option_has_help_text(capsys: pytest.CaptureFixture[str], command: list[str], option: str) -> None:
    described = option_help(help_text(capsys, *command), option)
    bare = re.fullmatch(rf"{re.escape(option)}( \S+)?", described)  # the option and its metavar, nothing else
    assert not bare, f"{option} has no help text: {described!r}"


@pytest.mark.parametrize("command", ["audit", "admin", "rotate-keys"])
def test_redis_url_help_shows_its_default(capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert "default: redis://127.0.0.1:6379/0" in option_help(help_text(capsys, command), "--redis-url")


@pytest.mark.parametrize("argv", [["--secret", "short"], ["--site-url", "ftp://nowhere"]])
def test_demo_validates_its_options_before_saying_where_to_open_it(argv: list[str]) -> None:
    out = subprocess.run([*CLI, "demo", "--port", "0", *argv], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "banata-mfa demo: BanataAuthConfig." in out.stderr
    assert "in a browser" not in out.stderr  # not "open ... in a browser" before failing


def test_demo_with_an_unreachable_redis_fails_fast_naming_the_server_and_the_error(database_url: str) -> None:
    port = free_port()  # nothing listens there
    out = subprocess.run([*CLI, "demo", "--port", "0", "--secret", SECRET, "--redis-url",
                          f"redis://127.0.0.1:{port}/0", "--database-url", database_url],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"banata-mfa demo: the authentication store is unreachable: Redis at 127.0.0.1:{port}: " \
           "ConnectionError:" in out.stderr
    assert "refused" in out.stderr.lower()
    assert "in a browser" not in out.stderr


def test_audit_line_writes_at_in_iso_8601_and_keeps_the_milliseconds() -> None:
    line = _audit_line({"type": "session.created", "userId": "u1", "at": "1800000010123", "ip": "", "sessionId": ""})
    assert line == {"type": "session.created", "userId": "u1", "at": "2027-01-15T08:00:10.123Z",
                    "atMs": 1800000010123}


@pytest.mark.redis
@pytest.mark.parametrize("command", ["revoke-sessions", "reset-2fa"])
def test_admin_commands_refuse_an_unknown_user_and_write_nothing(redis_server: RedisServer, redis_url: str,
                                                                 database_url: str, command: str) -> None:
    env = {**os.environ, "BANATA_AUTH_SECRET": SECRET, "BANATA_DATABASE_URL": database_url}
    out = subprocess.run([*CLI, "admin", command, "--user=nobody", "--redis-url", redis_url], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "no such user: 'nobody'" in out.stderr
    assert out.stdout == ""
    with redis_server.client() as c:
        assert c.keys("*") == []  # no record and no audit event for the typo


@pytest.mark.redis
def test_admin_revoke_sessions_of_a_signed_up_user_succeeds_and_audit_prints_iso_times(
        redis_server: RedisServer, redis_url: str, database_url: str) -> None:
    from banata_middleware import BanataAuth, BanataAuthConfig
    from banata_middleware.stores.redis import RedisStore

    auth = BanataAuth(BanataAuthConfig(app_name="A", site_url="http://localhost", secret=SECRET),
                      store=RedisStore.from_url(redis_url), records=database_url)
    auth.begin_second_factor("alice")  # an own-users app's user: a session, no record of ours
    env = {**os.environ, "BANATA_AUTH_SECRET": SECRET}
    out = subprocess.run([*CLI, "admin", "revoke-sessions", "--user=alice", "--redis-url", redis_url,
                          "--database-url", database_url], env=env,
                         capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "sessions ended for user alice\n"), out.stderr
    audit = subprocess.run([*CLI, "audit", "--user=alice", "--redis-url", redis_url], capture_output=True,
                           text=True, timeout=30, check=True).stdout
    events = [json.loads(line) for line in audit.splitlines()]
    assert [e["type"] for e in events] == ["session.created", "session.revoked"]
    for e in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["at"]), e
        assert isinstance(e["atMs"], int)
    # The durable trail (and a notice of a reset) says it came from the command line, with no address.
    from banata_middleware.stores.records import ListAudit

    [row] = [e for e in auth.records.execute(ListAudit("alice")) if e.type == "session.revoked"]
    assert (row.ip, row.user_agent) == ("", "banata-mfa admin revoke-sessions (command line)")

"""Redis round trips and SQL transactions per request, the budget of DESIGN rule 3: an authenticated
pass-through and get-session cost one round trip and no SQL, a second-factor verification (sign-in
challenge or step-up, with one authenticator app or among several, or the code confirming an app
added) at most two round trips and two SQL transactions (the record's lookup and one write). Other
request kinds are measured and printed, not asserted (``pytest tests/redis/test_round_trips.py -s``
shows the table). SQL transactions are counted by wrapping the
app's record store (``execute``/``aexecute``: one call, one transaction).

The one exception to the pass-through's one round trip: recording a session's last use ('seen').
The guard reads with plain commands in one MULTI/EXEC (``stores/redis.py`` ``READS``), decides from
what it read whether the last use is due, and only then sends the write (a script): a second round
trip at most once per ``SEEN_GRANULARITY_MS`` (a minute) per session, asserted below ("a minute
later" costs 2, the request after it 1 again). The script the guard used to be wrote it inside its
one round trip, at ~16 times a GET's cost in Redis on every request.

Two independent counts must agree: commands written to the app's Redis sockets (a counting redis-py
connection class, which also sees handshakes, health-check PINGs and any direct command), and the
EVALSHA/EVAL and EXEC calls Redis itself reports in ``INFO commandstats``. Agreement means every round
trip was one script or one transaction (MULTI, its commands and EXEC are written at once). The
scenario runs twice against a real server and only the second run is counted, so connection
handshakes and first-use script loading (EVALSHA, NOSCRIPT, EVAL) are left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio.connection
import redis.connection
from redis_support import PASSWORD, T0, Browser, build_app
from servers import SERVER_KINDS, serve

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores.records import RecordStore

pytestmark = pytest.mark.redis

#: A round trip as Redis counts it: one script, or one MULTI/EXEC transaction.
ROUND_TRIP_COMMANDS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_evalsha_ro", "cmdstat_eval_ro", "cmdstat_exec")


def counting_connections(sent: list[int]) -> tuple[type, type]:
    """redis-py connection classes (sync, asyncio) that count every command they write."""

    class Counting(redis.connection.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent[0] += 1
            super().send_packed_command(command, check_health)

    class AsyncCounting(redis.asyncio.connection.Connection):
        # Where every write ends (send_packed_command runs it, under a socket timeout, which the
        # store's clients always have; RedisStore's MULTI/EXEC exchange calls it directly).
        async def _send_packed_command(self, command: Any) -> None:
            sent[0] += 1
            await super()._send_packed_command(command)

    return Counting, AsyncCounting


def count_transactions(records: RecordStore, ran: list[int]) -> None:
    """Counts every transaction the record store runs (sync and async engines)."""
    execute, aexecute = records.execute, records.aexecute

    def counted(op: Any) -> Any:
        ran[0] += 1
        return execute(op)

    async def acounted(op: Any) -> Any:
        ran[0] += 1
        return await aexecute(op)

    records.execute = counted  # type: ignore[method-assign]
    records.aexecute = acounted  # type: ignore[method-assign]


@dataclass
class Meter:
    admin: redis.Redis
    sent: list[int]
    sql: list[int]
    rows: list[tuple[str, int, int, int]] = field(default_factory=list)

    def _scripts_run(self) -> int:
        stats = self.admin.info("commandstats")
        return sum(int(stats.get(name, {}).get("calls", 0)) for name in ROUND_TRIP_COMMANDS)

    def __call__(self, name: str, call: Callable[[], httpx.Response], status: int) -> httpx.Response:
        wire, scripts, sql = self.sent[0], self._scripts_run(), self.sql[0]
        r = call()
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        self.rows.append((name, self.sent[0] - wire, self._scripts_run() - scripts, self.sql[0] - sql))
        return r

    def cost(self, name: str) -> int:
        return next(wire for row, wire, _, _ in self.rows if row == name)

    def sql_cost(self, name: str) -> int:
        return next(sql for row, _, _, sql in self.rows if row == name)


def scenario(meter: Meter, browser: Callable[[], Browser], clock: FrozenClock) -> None:
    """Every request kind once, in the order a user meets them."""
    a, b, c = browser(), browser(), browser()
    email = f"trips-{uuid.uuid4().hex[:12]}@example.com"
    meter("sign-up", lambda: a.sign_up(email), 200)
    meter("authenticated pass-through GET /api/me (AAL1)", lambda: a.get("/api/me"), 200)
    meter("public path GET /", lambda: a.get("/"), 200)
    meter("no cookie: GET /api/me -> 401", lambda: c.get("/api/me"), 401)
    r = meter("enable", lambda: a.auth("/two-factor/enable", {"password": PASSWORD}), 200)
    a.backup_codes = r.json()["backupCodes"]
    a.device = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=clock)
    meter("verify-totp (enrolment)", lambda: a.verify_totp(a.code()), 200)
    meter("get-session", lambda: a.get("/api/auth/get-session"), 200)
    meter("sign-out", lambda: a.auth("/sign-out"), 200)
    meter("sign-in (2FA on: challenge)", lambda: a.sign_in(email), 403)
    clock.advance(30)
    meter("verify-totp (sign-in challenge, trustDevice)", lambda: a.verify_totp(a.code(), trustDevice=True), 200)
    meter("authenticated pass-through GET /api/me (AAL2)", lambda: a.get("/api/me"), 200)
    clock.advance(61)
    meter("pass-through a minute later (records the last use)", lambda: a.get("/api/me"), 200)
    meter("pass-through after that (last use recorded)", lambda: a.get("/api/me"), 200)
    meter("list-sessions", lambda: a.get("/api/auth/list-sessions"), 200)
    meter("list-trusted-devices", lambda: a.get("/api/auth/two-factor/list-trusted-devices"), 200)
    clock.advance(30)
    meter("verify-totp (step-up)", lambda: a.verify_totp(a.code()), 200)
    meter("fresh-second-factor POST /api/sensitive", lambda: a.http.post("/api/sensitive"), 200)
    meter("verify-backup-code (step-up)", lambda: a.verify_backup(a.backup_codes[0]), 200)
    r = meter("generate-backup-codes", lambda: a.auth("/two-factor/generate-backup-codes", {"password": PASSWORD}),
              200)
    fresh_codes = r.json()["backupCodes"]
    meter("sign-in (2FA on: challenge) #2", lambda: b.sign_in(email), 403)
    meter("verify-backup-code (sign-in challenge)", lambda: b.verify_backup(fresh_codes[0]), 200)
    # A second authenticator app: added, confirmed, then its code answers a sign-in among two apps.
    r = meter("enable (2FA on: adds an authenticator app)",
              lambda: a.auth("/two-factor/enable", {"password": PASSWORD, "name": "Tablet"}), 200)
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=clock)
    meter("verify-totp (confirms the app added)", lambda: a.verify_totp(tablet.code()), 200)
    meter("list-authenticators", lambda: a.get("/api/auth/two-factor/list-authenticators"), 200)
    meter("sign-in (2FA on: challenge) #3", lambda: b.sign_in(email), 403)
    clock.advance(30)
    meter("verify-totp (sign-in challenge, second of two apps)", lambda: b.verify_totp(tablet.code()), 200)
    meter("sign-out #2", lambda: a.auth("/sign-out"), 200)
    meter("sign-in (trusted device: session at once)", lambda: a.sign_in(email), 200)
    # B's second factor is the fresh one; removing an app forgets every trusted device (A's too).
    meter("remove-authenticator", lambda: b.auth("/two-factor/remove-authenticator", {"id": r.json()["id"]}), 200)
    meter("sign-out #3", lambda: a.auth("/sign-out"), 200)
    meter("sign-in (the device forgotten by the removal: challenge)", lambda: a.sign_in(email), 403)
    meter("sign-in (wrong password)", lambda: c.auth("/sign-in/email", {"email": email, "password": "x" * 12}), 401)


@pytest.fixture(params=SERVER_KINDS)
def metered(request: pytest.FixtureRequest, redis_url: str, database_url: str,
            redis_server: Any) -> Iterator[tuple[Meter, Any]]:
    clock = FrozenClock(T0)
    auth, store, app = build_app(request.param, redis_url=redis_url, database_url=database_url, clock=clock)
    sent, ran = [0], [0]
    count_transactions(auth.records, ran)
    sync_class, async_class = counting_connections(sent)
    # Before the first connection is made: the pools build every connection from these classes.
    store.sync.connection_pool.connection_class = sync_class
    store.aio.connection_pool.connection_class = async_class
    browsers: list[Browser] = []

    def browser() -> Browser:
        browsers.append(Browser.at(base_url, clock))
        return browsers[-1]

    with serve(app, request.param) as base_url, redis_server.client() as admin:
        yield Meter(admin, sent, ran), (browser, clock, request.param)
    for b in browsers:
        b.close()
    store.close()


def test_round_trips_per_request_kind_stay_within_the_budget(metered: tuple[Meter, Any]) -> None:
    meter, (browser, clock, kind) = metered
    scenario(meter, browser, clock)  # warm-up: connections made, scripts loaded
    meter.rows.clear()
    scenario(meter, browser, clock)

    print(f"\nRedis round trips per request ({kind}; wire count / EVALSHA+EVAL+EXEC in INFO commandstats"
          " / SQL transactions):")
    for name, wire, scripts, sql in meter.rows:
        print(f"  {wire} / {scripts} / {sql}  {name}")
    assert all(wire == scripts for _, wire, scripts, _ in meter.rows), \
        "a round trip that was not one script or one transaction"
    for warm in ("authenticated pass-through GET /api/me (AAL1)", "authenticated pass-through GET /api/me (AAL2)",
                 "pass-through after that (last use recorded)", "get-session"):
        assert (meter.cost(warm), meter.sql_cost(warm)) == (1, 0), warm
    # The read, then the last-use write it found due: once a minute per session at most.
    assert (meter.cost("pass-through a minute later (records the last use)"),
            meter.sql_cost("pass-through a minute later (records the last use)")) == (2, 0)
    for verify in ("verify-totp (sign-in challenge, trustDevice)", "verify-backup-code (sign-in challenge)",
                   "verify-totp (sign-in challenge, second of two apps)"):
        assert (meter.cost(verify), meter.sql_cost(verify)) == (2, 2), verify
    # Confirming an added app is a factor change, not a sign-in: it holds the factor-change lease
    # from its commit until factor_change.lua's re-check passed, then releases it (EndRemoval):
    # one more SQL transaction (R9-1, R9-2), as disable and disable-otp pay since R8-2.
    assert (meter.cost("verify-totp (confirms the app added)"),
            meter.sql_cost("verify-totp (confirms the app added)")) == (2, 3)
    for verify in ("verify-totp (step-up)", "verify-backup-code (step-up)"):
        assert meter.cost(verify) <= 2 and meter.sql_cost(verify) <= 2, verify
    # generate-backup-codes with 2FA on (issue 18, crash safety): the caller's lookup, then the new
    # set staged, then (after factor_change.lua's re-check) put in use: 3 SQL transactions, one more
    # than when the set was replaced before the re-check (and lost the old codes to a crash between).
    assert meter.sql_cost("generate-backup-codes") == 3

"""Races on a real Redis through a real HTTP server (uvicorn; Werkzeug's threaded server when the WSGI
adapter exists): one code sent to many sign-in challenges at once, and one challenge answered twice at
once, give exactly one session; two sign-ups with one email at once give one account.

Each race runs for several rounds with a fresh user. Even rounds take whatever schedule the server
gives; odd rounds force the worst one (every request reads before any commits, see
``RecordingRedisStore.race``). Every round checks how many requests read the code (or challenge) while
it was still unused: where that is two or more, a check-then-act done in Python instead of one atomic
Lua script would have let more than one through.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
from redis_support import PASSWORD, RACE_ROUNDS, Browser, Live, at_once, live_fixture, strong_sessions
from sqlalchemy import func, select

from banata_middleware.stores.records import GetAccountByEmail, LoadUser, RecordOp

pytestmark = pytest.mark.redis

CROWD = 25  # pending challenges of one user answered at once
ROUNDS = RACE_ROUNDS  # rounds of each many-challenge race
PAIR_ROUNDS = RACE_ROUNDS  # rounds of each one-challenge-twice race

LOSER_CODES = {"INVALID_CODE", "ACCOUNT_TEMPORARILY_LOCKED", "UNAUTHORIZED"}


class RacesLive(Live):
    def enrolled_user(self) -> tuple[Browser, str, str]:
        """A fresh user with TOTP on, signed out again (so its only sessions are the ones a race makes)."""
        owner, email, uid = self.user()
        owner.enable_2fa()
        assert owner.auth("/sign-out").status_code == 200
        return owner, email, uid

    def pending(self, email: str) -> Browser:
        """A browser that passed the password and holds a pending-challenge cookie."""
        b = self.browser()
        r = b.sign_in(email)
        assert r.status_code == 403 and r.json()["code"] == "TWO_FACTOR_REQUIRED", r.text
        assert "banata.two_factor" in b.http.cookies
        return b

    def crowd(self, email: str) -> list[Browser]:
        """``CROWD`` browsers of one user, each with its own pending challenge."""
        return [self.pending(email) for _ in range(CROWD)]

    def backup_codes_left(self, uid: str) -> int:
        return self.records.execute(LoadUser(uid)).backup_codes


live = live_fixture(RacesLive)


def _statuses(answers: list[httpx.Response]) -> list[int]:
    for r in answers:
        assert r.status_code in (200, 401, 429), f"{r.status_code} {r.text}"
        if r.status_code != 200:
            assert r.json()["code"] in LOSER_CODES, r.text
    return [r.status_code for r in answers]


def _sessions_set(answers: list[httpx.Response]) -> int:
    return sum(1 for r in answers for c in r.headers.get_list("set-cookie")
               if c.startswith("banata.session_token=") and "Max-Age=0" not in c)


def _check_window(saw_unused: list[int], size: int) -> None:
    """``saw_unused[i]``: requests of round i that read the code or challenge while still unused."""
    print(f"\nrequests that read the unused state, per round (odd rounds forced): {saw_unused}")
    assert saw_unused[1::2] == [size] * len(saw_unused[1::2]), "a forced round did not read before committing"


def test_one_totp_code_sent_to_25_pending_challenges_at_once_gives_one_session(live: RacesLive) -> None:
    saw_unused = []
    for round_no in range(ROUNDS):
        owner, email, uid = live.enrolled_user()
        crowd = live.crowd(email)
        live.clock.advance(30)  # the enrolment used the current step; this code is the next one
        code = owner.code()

        answers = live.race(round_no, [partial(b.verify_totp, code) for b in crowd])

        # The step is consumed in SQL (AcceptTotpStep) after this read: each request that read its
        # challenge live went on to offer the unused step.
        saw_unused.append(sum(1 for reply in live.store.loads if reply[2]))
        statuses = _statuses(answers)
        assert statuses.count(200) == 1, statuses
        assert _sessions_set(answers) == 1
        assert strong_sessions(live.redis, uid) == 1
        me = crowd[statuses.index(200)].get("/api/me")
        assert me.status_code == 200 and me.json() == {"userId": uid, "aal": 2}
    _check_window(saw_unused, CROWD)


def test_one_backup_code_sent_to_25_pending_challenges_at_once_is_used_once(live: RacesLive) -> None:
    saw_unused = []
    for round_no in range(ROUNDS):
        owner, email, uid = live.enrolled_user()
        crowd = live.crowd(email)
        code = owner.backup_codes[0]

        answers = live.race(round_no, [partial(b.verify_backup, code) for b in crowd])

        saw_unused.append(sum(1 for reply in live.store.loads if reply[2]))  # read its challenge while live
        statuses = _statuses(answers)
        assert statuses.count(200) == 1, statuses
        assert answers[statuses.index(200)].json()["backupCodesRemaining"] == 9
        assert _sessions_set(answers) == 1
        assert strong_sessions(live.redis, uid) == 1
        assert live.backup_codes_left(uid) == 9
    _check_window(saw_unused, CROWD)


def test_one_pending_challenge_answered_twice_at_once_with_a_valid_code_gives_one_session(live: RacesLive) -> None:
    saw_unused = []
    for round_no in range(PAIR_ROUNDS):
        owner, email, uid = live.enrolled_user()
        first = live.pending(email)
        second = live.twin(first)
        live.clock.advance(30)
        code = owner.code()

        answers = live.race(round_no, [partial(first.verify_totp, code), partial(second.verify_totp, code)])

        saw_unused.append(sum(1 for reply in live.store.loads if reply[2]))  # read the challenge while live
        assert sorted(_statuses(answers)) == [200, 401]
        assert _sessions_set(answers) == 1
        assert strong_sessions(live.redis, uid) == 1
    _check_window(saw_unused, 2)


def test_one_pending_challenge_answered_at_once_with_a_totp_and_a_backup_code_gives_one_session(
        live: RacesLive) -> None:
    """Two *different* valid proofs: the replay guard cannot stop the second one, only consuming the
    challenge atomically can. Each proof is used up in SQL before its answer reaches the challenge
    (Flows.verify): the loser's too, which is the safe side (a code used up without a session)."""
    saw_unused = []
    for round_no in range(PAIR_ROUNDS):
        owner, email, uid = live.enrolled_user()
        first = live.pending(email)
        second = live.twin(first)
        live.clock.advance(30)
        code, backup = owner.code(), owner.backup_codes[0]

        answers = live.race(round_no, [partial(first.verify_totp, code), partial(second.verify_backup, backup)])

        saw_unused.append(sum(1 for reply in live.store.loads if reply[2]))
        statuses = _statuses(answers)
        assert sorted(statuses) == [200, 401]
        assert _sessions_set(answers) == 1
        assert strong_sessions(live.redis, uid) == 1
        # 10 left when the TOTP answer was over before the other request read the challenge
        assert live.backup_codes_left(uid) in ((9,) if statuses[1] == 200 else (9, 10))
    _check_window(saw_unused, 2)


def _hold_email_lookups(live: RacesLive) -> Callable[[int], list[Any]]:
    """Records every sign-up's look-up of its email (``GetAccountByEmail``) in SQL; ``race(n)`` then
    answers each one only once ``n`` have been made (or after 2 s), so every sign-up has found the
    address free before any of them inserts: only the unique index can refuse all but one."""
    records, seen, held = live.auth.records, [], [0]
    sync_execute, async_execute = records.execute, records.aexecute

    def holding(deadline: float) -> bool:
        return len(seen) < held[0] and time.monotonic() < deadline

    def execute(op: RecordOp[Any]) -> Any:
        reply = sync_execute(op)
        if isinstance(op, GetAccountByEmail):
            seen.append(reply)
            deadline = time.monotonic() + 2
            while holding(deadline):
                time.sleep(0.001)
        return reply

    async def aexecute(op: RecordOp[Any]) -> Any:
        reply = await async_execute(op)
        if isinstance(op, GetAccountByEmail):
            seen.append(reply)
            deadline = time.monotonic() + 2
            while holding(deadline):
                await asyncio.sleep(0.001)
        return reply

    records.execute, records.aexecute = execute, aexecute  # type: ignore[method-assign]

    def race(n: int) -> list[Any]:
        seen.clear()
        held[0] = n
        return seen

    return race


def test_two_sign_ups_with_one_email_at_once_make_one_account(live: RacesLive) -> None:
    """The unique email index in SQL decides between sign-ups racing for one address (there is no
    index in Redis any more): exactly one 200, the other 422, one account in SQL, and a session only
    for the winner. Odd rounds force both to find the address free first."""
    race = _hold_email_lookups(live)
    saw_free = []
    for round_no in range(PAIR_ROUNDS):
        email = f"twin-{uuid.uuid4().hex[:12]}@example.com"
        pair = [live.browser(), live.browser()]
        for b in pair:
            assert b.get("/").status_code == 200  # connections open before the race
        seen = race(2 if round_no % 2 else 0)
        body = {"email": email, "password": PASSWORD}
        answers = at_once([partial(b.auth, "/sign-up/email", body) for b in pair])
        saw_free.append(sum(1 for reply in seen if reply is None))
        race(0)
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 422], [r.text for r in answers]
        loser = answers[[r.status_code for r in answers].index(422)]
        assert loser.json()["code"] == "USER_ALREADY_EXISTS"
        assert not any(c.startswith("banata.session_token=") for c in loser.headers.get_list("set-cookie"))
        winner = answers[[r.status_code for r in answers].index(200)].json()["user"]["id"]
        account = live.auth.records.execute(GetAccountByEmail(email))
        assert account is not None and account.id == winner
        # One session per round in all of Redis: the loser's sign-up made none.
        assert len(list(live.redis.scan_iter("banata:{u:*}:s:*"))) == round_no + 1
    print(f"\nsign-ups that found the address free, per round (odd rounds forced): {saw_free}")
    assert saw_free[1::2] == [2] * len(saw_free[1::2]), "a forced round did not look up before inserting"
    with live.auth.records.engine.connect() as conn:
        accounts = conn.execute(select(func.count()).select_from(live.auth.records.schema.accounts)).scalar_one()
    assert accounts == PAIR_ROUNDS

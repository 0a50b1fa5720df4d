"""Races of codes by message on a real Redis and PostgreSQL, through a real HTTP server (uvicorn; the
threaded Werkzeug server): one code sent twice at once to its challenge, or to its session for a
step-up, gives one session; a resend racing a verify never leaves two live codes, and a code is
never accepted after a resend replaced it.

As in test_races.py, odd rounds force the worst schedule (every request reads before any commits,
``RecordingRedisStore.race``); each round checks that the requests really read the unused state.
"""

from __future__ import annotations

from functools import partial

import httpx
import pytest
from redis_support import Browser, Live, live_fixture, strong_sessions, user_keys

pytestmark = pytest.mark.redis

ROUNDS = 20


class OtpLive(Live):
    def user(self, prefix: str = "otp-race") -> tuple[Browser, str, str]:
        """A user with codes by email on (an address the app vouches for), signed in; email, id."""
        owner, email, uid = super().user(prefix)
        self.auth.enable_otp(uid, to=email)
        return owner, email, uid

    def pending(self, email: str, uid: str) -> tuple[Browser, str]:
        """A browser at the pending sign-in, and the code sent for it."""
        b = self.browser()
        assert b.sign_in(email).status_code == 403
        assert b.auth("/two-factor/send-otp", {}).status_code == 200
        return b, self.inbox.latest_code(user_id=uid)

    def live_codes(self, uid: str) -> int:
        return sum(1 for key in user_keys(self.redis, uid) if key.endswith(":otp"))


live = live_fixture(OtpLive, otp=True)


def _verify(b: Browser, code: str) -> httpx.Response:
    return b.auth("/two-factor/verify-otp", {"code": code})


def _read_live(live: OtpLive) -> int:
    """How many of the round's requests read their challenge (or session) while it was live."""
    return sum(1 for reply in live.store.loads if reply[1] or reply[2])


def test_one_code_sent_twice_at_once_to_its_challenge_gives_one_session(live: OtpLive) -> None:
    saw_live = []
    for round_no in range(ROUNDS):
        _, email, uid = live.user()
        first, code = live.pending(email, uid)
        second = live.twin(first)

        answers = live.race(round_no, [partial(_verify, first, code), partial(_verify, second, code)])

        saw_live.append(_read_live(live))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200, 401], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 401)
        assert loser.json()["code"] in ("INVALID_CODE", "UNAUTHORIZED"), loser.text
        assert strong_sessions(live.redis, uid) == 1
        assert live.live_codes(uid) == 0
    print(f"\nrequests that read the live challenge, per round (odd rounds forced): {saw_live}")
    assert saw_live[1::2] == [2] * (ROUNDS // 2)


def test_one_step_up_code_sent_twice_at_once_rotates_the_session_once(live: OtpLive) -> None:
    saw_live = []
    for round_no in range(ROUNDS):
        owner, _, uid = live.user()
        assert owner.auth("/two-factor/send-otp", {}).status_code == 200
        code = live.inbox.latest_code(user_id=uid)
        other = live.twin(owner)

        answers = live.race(round_no, [partial(_verify, owner, code), partial(_verify, other, code)])

        saw_live.append(_read_live(live))
        assert sorted(r.status_code for r in answers) == [200, 401], [r.text for r in answers]
        assert strong_sessions(live.redis, uid) == 1  # one rotation: one aal 2 session
        assert live.live_codes(uid) == 0
    print(f"\nrequests that read the live session, per round (odd rounds forced): {saw_live}")
    assert saw_live[1::2] == [2] * (ROUNDS // 2)


def test_a_resend_racing_a_verify_never_leaves_two_live_codes(live: OtpLive) -> None:
    """The resend replaces the code in the step that stores the new one (otp_issue.lua), and the
    verify takes the code in the step that answers (challenge_answer.lua): whichever runs first,
    there is one live code at most, the old code is accepted only if the verify ran first, and the
    new one works afterwards whenever the sign-in is still pending."""
    outcomes: dict[str, int] = {}
    for round_no in range(ROUNDS):
        _, email, uid = live.user()
        first, old = live.pending(email, uid)
        second = live.twin(first)
        live.clock.advance(30)  # past the resend interval
        sent_before = len(live.inbox.for_user(uid))

        verify, resend = live.race(round_no, [partial(_verify, first, old),
                                              partial(second.auth, "/two-factor/send-otp", {})])

        assert live.live_codes(uid) <= 1
        resent = len(live.inbox.for_user(uid)) > sent_before
        assert resend.status_code == (200 if resent else 401), resend.text
        new = live.inbox.latest_code(user_id=uid) if resent else None
        if verify.status_code == 200:
            outcome = "verify first"
            assert strong_sessions(live.redis, uid) == 1
        else:
            # The resend came first: the old code was void when the verify read it.
            assert resent and verify.json()["code"] == "INVALID_CODE", verify.text
            outcome = "resend first"
            if new != old:
                assert _verify(first, old).status_code == 401  # never accepted after the resend
            assert _verify(first, new or "").status_code == 200
            assert strong_sessions(live.redis, uid) == 1
        assert live.live_codes(uid) <= 1
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"\noutcomes: {outcomes}")

"""The server's TOTP acceptance window, pinned through the real middleware (every adapter x store).

The rule (docs/http-api.md, TOTP policy): with period P and window W, a code typed at server time t
is accepted iff it is the code of a step s with |s - floor(t / P)| <= W that is later than the
user's last accepted step (the replay guard). A phone whose clock reads t + d shows the code of
step floor((t + d) / P). Every expectation below is computed from that rule (``window_rule``); the
codes come from the simulator's phone, and the server is asked through HTTP.

Each probe uses a fresh user enrolled ten steps before the probe instant, so the replay guard
(which spends the enrolment step) never decides a probe unless the test means it to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest
from harness import Stack

from banata_middleware import Policies, TotpPolicy
from banata_middleware.clock import Clock
from banata_middleware.simulator import VirtualAuthenticator, clocks
from banata_middleware.simulator.clocks import DriftingClock, OffsetClock
from banata_middleware.simulator.testing import MfaUser, enroll

DAY = 86_400


def step_of(at: float, period: int) -> int:
    return math.floor(at / period)


def window_rule(*, server_at: float, phone_at: float, last_step: int | None, policy: TotpPolicy) -> bool:
    """Accepted iff the phone's step is within the window around the server's step and not spent."""
    server_step, phone_step = step_of(server_at, policy.period), step_of(phone_at, policy.period)
    fresh = last_step is None or phone_step > last_step
    return abs(phone_step - server_step) <= policy.window and fresh


@dataclass
class Verdict:
    server_at: float
    phone_at: float
    expected: bool
    status: int
    body: str

    @property
    def accepted(self) -> bool:
        return self.status == 200

    def __str__(self) -> str:
        return (f"server {self.server_at} (step {step_of(self.server_at, 30)}, +{self.server_at % 30:g} s),"
                f" phone {self.phone_at:.3f} (step {step_of(self.phone_at, 30)}, +{self.phone_at % 30:.3f} s):"
                f" expected {'accept' if self.expected else 'refuse'}, got {self.status} {self.body[:120]}")


def expectation(user: MfaUser, code: str, *, server_at: float, policy: TotpPolicy) -> bool:
    """The rule for the phone's current reading, plus the one-in-a-million case where ``code`` also
    happens to be the code of an acceptable step (the server matches codes, not clocks)."""
    expected = window_rule(server_at=server_at, phone_at=user.account.clock.now(), last_step=user.last_step,
                           policy=policy)
    server_step = step_of(server_at, policy.period)
    for step in range(server_step - policy.window, server_step + policy.window + 1):
        if (user.last_step is None or step > user.last_step) and user.account.code(at=step * policy.period) == code:
            return True
    return expected


def fresh_user(stack: Stack, *, at: float, phone: Clock) -> MfaUser:
    """A user enrolled ten steps before ``at`` (server time) with a phone reading ``phone``; the
    server's clock is then set to ``at``."""
    period = stack.auth.config.totp.period
    stack.clock.set(at - 10 * period)
    user = enroll(stack.client().http, authenticator=VirtualAuthenticator(clock=phone), clock=stack.clock)
    stack.clock.set(at)
    return user


def sign_in_and_answer(stack: Stack, user: MfaUser) -> Verdict:
    """A new browser signs in with the password, then types what the phone shows now."""
    policy = stack.auth.config.totp
    browser = stack.client().http
    challenge = user.sign_in(client=browser)
    assert challenge.status_code == 403 and challenge.json()["code"] == "TWO_FACTOR_REQUIRED", challenge.text
    code = user.code()
    expected = expectation(user, code, server_at=stack.clock.now(), policy=policy)
    phone_at = user.account.clock.now()
    answer = user.verify_totp(code, client=browser)
    assert answer.status_code in (200, 401), answer.text
    if answer.status_code == 401:
        assert answer.json()["code"] == "INVALID_CODE", answer.text
    return Verdict(stack.clock.now(), phone_at, expected, answer.status_code, answer.text)


def assert_all_as_expected(verdicts: Iterable[Verdict]) -> list[Verdict]:
    verdicts = list(verdicts)
    wrong = [str(v) for v in verdicts if v.accepted != v.expected]
    assert not wrong, "\n".join(wrong)
    return verdicts


# -- the default window: +-1 step of 30 s ------------------------------------------------------

STEP = 60_000_100  # a step well after the suite's T0 (1_800_000_010 is in step 60_000_000)
BOUNDARY_INSTANTS = {"last second before a step": STEP * 30 - 1,
                     "first second of a step": STEP * 30,
                     "last second of a step": STEP * 30 + 29}
PHONE_OFFSETS = (-91, -90, -61, -60, -59, -31, -30, -29, -1, 0, 1, 29, 30, 31, 59, 60, 61, 90)


def test_the_rule_says_what_the_contract_says() -> None:
    """+-30 s is always exactly one step away; 60 s or more is always two steps or more."""
    policy = TotpPolicy()
    for at in BOUNDARY_INSTANTS.values():
        for offset in PHONE_OFFSETS:
            accepted = window_rule(server_at=at, phone_at=at + offset, last_step=None, policy=policy)
            if offset in (-30, 0, 30):
                assert accepted, (at, offset)
            if abs(offset) >= 60:
                assert not accepted, (at, offset)


@pytest.mark.parametrize("instant", list(BOUNDARY_INSTANTS), ids=lambda name: name.replace(" ", "-"))
def test_codes_from_phones_ahead_or_behind_at_step_boundaries(stack: Stack, instant: str) -> None:
    at = BOUNDARY_INSTANTS[instant]
    verdicts = []
    for offset in PHONE_OFFSETS:
        phone = OffsetClock(stack.clock, 0)
        user = fresh_user(stack, at=at, phone=phone)
        with clocks.skew(phone, seconds=offset):
            verdicts.append(sign_in_and_answer(stack, user))
    verdicts = assert_all_as_expected(verdicts)
    by_offset = {v.phone_at - v.server_at: v.accepted for v in verdicts}
    # The contract's headline, observed: 30 s either way in, 60 s or more out.
    assert by_offset[-30] and by_offset[0] and by_offset[30]
    assert not any(accepted for offset, accepted in by_offset.items() if abs(offset) >= 60)
    # And the window is counted in steps, not seconds: which of +-29/31/59 pass depends on the second.
    expected_edges = {offset: window_rule(server_at=at, phone_at=at + offset, last_step=None, policy=TotpPolicy())
                      for offset in (-59, -31, -29, 29, 31, 59)}
    assert {o: by_offset[o] for o in expected_edges} == expected_edges
    assert set(expected_edges.values()) == {True, False}  # every instant has both outcomes among these


def test_the_step_accepted_at_a_boundary_is_spent_for_the_next_one(stack: Stack) -> None:
    """At the last second of step s the next step's code (phone 1 s ahead) is accepted; one second
    later, now in step s+1, the current code is that same step's: refused as a replay, and so is
    the previous step's; the step after is accepted."""
    phone = OffsetClock(stack.clock, 0)
    user = fresh_user(stack, at=STEP * 30 + 29, phone=phone)
    with clocks.skew(phone, seconds=1):
        first = sign_in_and_answer(stack, user)
    stack.clock.advance(1)
    replay = sign_in_and_answer(stack, user)
    with clocks.skew(phone, seconds=-30):
        older = sign_in_and_answer(stack, user)
    with clocks.skew(phone, seconds=30):
        newer = sign_in_and_answer(stack, user)
    assert_all_as_expected([first, replay, older, newer])
    assert [first.accepted, replay.accepted, older.accepted, newer.accepted] == [True, False, False, True]


@pytest.mark.parametrize("window", [0, 2])
def test_the_window_follows_the_policy(stack_factory: Callable[..., Stack], window: int) -> None:
    # 48 sign-ups and sign-ins from the test client's one address under a frozen clock: past the sign-up
    # throttle and the password-hash budget.
    stack = stack_factory(totp=TotpPolicy(window=window), policies=Policies(sign_up_per_address=1000,
                                                                            password_hashes_per_address=1000))
    verdicts = []
    for at in BOUNDARY_INSTANTS.values():
        for offset in (-61, -60, -31, -30, -1, 0, 1, 30, 31, 60, 61, 90):
            phone = OffsetClock(stack.clock, 0)
            user = fresh_user(stack, at=at, phone=phone)
            with clocks.skew(phone, seconds=offset):
                verdicts.append(sign_in_and_answer(stack, user))
    verdicts = assert_all_as_expected(verdicts)
    assert {v.accepted for v in verdicts} == {True, False}


# -- skewed clocks ------------------------------------------------------------------------------

PHASES = (0, 1, 14, 15, 16, 29)  # seconds into the server's step


@pytest.mark.parametrize("phone_ahead_by", [45, -45], ids=["server-45s-behind-phone", "phone-45s-behind-server"])
def test_a_45_second_skew_passes_or_fails_by_the_second_within_the_step(stack: Stack, phone_ahead_by: int) -> None:
    """45 s is 1.5 steps: the phone is one step off for half of each server step and two for the
    other half. Phone ahead: accepted while the server is less than 15 s into its step. Phone
    behind: accepted from 15 s in."""
    verdicts = []
    for phase in PHASES:
        at = STEP * 30 + phase
        phone = OffsetClock(stack.clock, 0)
        user = fresh_user(stack, at=at, phone=phone)
        with clocks.skew(phone, seconds=phone_ahead_by):
            verdicts.append(sign_in_and_answer(stack, user))
    verdicts = assert_all_as_expected(verdicts)
    accepted_phases = {v.server_at % 30 for v in verdicts if v.accepted}
    halves = {p for p in PHASES if p < 15} if phone_ahead_by > 0 else {p for p in PHASES if p >= 15}
    assert accepted_phases == halves  # what the rule comes to, in words


def test_a_phone_set_50_seconds_slow_through_a_working_day(stack: Stack) -> None:
    """One user whose phone is 50 s slow signs in every 7 min 11 s, so the sign-ins land on every
    second of the server's step in turn. 50 s is one step and 20 s: by the rule the phone is one
    step behind (accepted) only in the last 10 s of each server step, two steps behind otherwise."""
    period = stack.auth.config.totp.period
    start = STEP * period + 3
    phone = OffsetClock(stack.clock, 0)
    user = fresh_user(stack, at=start, phone=phone)  # set right at enrolment (a slow phone could not enrol)
    phone.seconds = -50
    verdicts = []
    for n in range(60):  # 7 h; 431 = 14 * 30 + 11 moves 11 s through the step: short runs of refusals
        stack.clock.set(start + n * 431)
        verdicts.append(sign_in_and_answer(stack, user))
    verdicts = assert_all_as_expected(verdicts)
    by_rule = {p for p in range(period)
               if window_rule(server_at=STEP * period + p, phone_at=STEP * period + p - 50, last_step=None,
                              policy=stack.auth.config.totp)}
    assert {v.server_at % period for v in verdicts if v.accepted} == by_rule
    assert by_rule == set(range(20, 30))  # what the rule comes to, in words


# -- a drifting phone ---------------------------------------------------------------------------

@pytest.mark.parametrize("ppm", [50, -50, 200], ids=["gains-50ppm", "loses-50ppm", "gains-200ppm"])
def test_a_drifting_phone_fails_from_the_day_the_rule_predicts(stack: Stack, ppm: float) -> None:
    """A phone whose crystal runs ``ppm`` millionths fast (slow when negative), never resynchronised,
    signs in once a day at the same second of the server's step. Codes pass until the accumulated
    drift puts the phone two steps from the server; the rule predicts that day, the server agrees."""
    period = stack.auth.config.totp.period
    start = STEP * period + 10
    user = fresh_user(stack, at=start, phone=DriftingClock(stack.clock, ppm, start=start))
    policy = stack.auth.config.totp

    def predicted(day: int) -> bool:
        server_at = start + day * DAY
        return window_rule(server_at=server_at, phone_at=server_at + day * DAY * ppm / 1e6, last_step=None,
                           policy=policy)

    first_failure = next(day for day in range(1, 1000) if not predicted(day))
    assert all(not predicted(day) for day in range(first_failure, first_failure + 30))  # and never recovers
    verdicts = []
    for day in range(1, first_failure + 3):  # three failures: far from the 10-failure lock
        stack.clock.set(start + day * DAY)
        verdicts.append(sign_in_and_answer(stack, user))
    verdicts = assert_all_as_expected(verdicts)
    observed_first_failure = 1 + [v.accepted for v in verdicts].index(False)
    assert observed_first_failure == first_failure

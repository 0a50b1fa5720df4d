"""The load test's pool hands out TOTP users so that none verifies twice within a 30 s step."""

from __future__ import annotations

from loadtests.pool import PERIOD, Pool


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def _pool(users: int, challenges: int, clock: Clock) -> Pool:
    return Pool({"site_url": "http://localhost:1",
                 "totp": [{"uid": f"u{i}", "uri": "", "challenges": [f"c{i}-{j}" for j in range(challenges)]}
                          for i in range(users)]}, clock=clock)


def test_a_user_is_not_handed_out_twice_within_a_step() -> None:
    clock = Clock(PERIOD * 1000 + 1)
    pool = _pool(3, 2, clock)
    first = [pool.take_totp() for _ in range(3)]
    assert sorted(t[0]["uid"] for t in first if t) == ["u0", "u1", "u2"]
    assert pool.take_totp() is None  # every user has verified in this step
    clock.at += PERIOD  # next step: the same users, their second challenges
    second = [pool.take_totp() for _ in range(3)]
    assert sorted(t[0]["uid"] for t in second if t) == ["u0", "u1", "u2"]
    assert {t[1] for t in first if t}.isdisjoint({t[1] for t in second if t})
    clock.at += PERIOD
    assert pool.take_totp() is None  # out of challenges
    summary = pool.summary()
    assert summary["distinct_users"]["totp"] == 3
    assert summary["reused_within_step"] == 0


def test_backup_codes_and_challenges_are_used_once() -> None:
    pool = Pool({"site_url": "http://localhost:1",
                 "backup": [{"uid": "b0", "codes": ["A", "B"], "challenges": ["x", "y", "z"]}]})
    taken = [pool.take_backup() for _ in range(3)]
    assert taken[:2] == [("z", "B"), ("y", "A")] and taken[2] is None


def test_attackers_own_a_user_then_recycle_spent_ones() -> None:
    pool = Pool({"site_url": "http://localhost:1", "attack": [{"uid": "a0", "uri": "", "challenges": ["c1", "c2"]}]})
    first = pool.take_attack()
    assert first["uid"] == "a0" and first["challenges"] == ["c1", "c2"]
    first["challenges"].clear()
    again = pool.take_attack()
    assert again["uid"] == "a0" and again["challenges"] == ["c1", "c2"]
    assert pool.summary()["attacker_pool_recycled"] == 1

"""The seeded pool as the Locust users consume it (no Locust import here, so it is testable alone).

TOTP users are handed out so that no user verifies twice within one 30 s time step (the replay
guard would rightly refuse the second code): a user who verified in step ``s`` waits, with the
challenges it has left, until step ``s + 1``. Backup-code users hand out one code and one challenge
at a time; attacker users are owned by one attacker until locked, then handed out again.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

__all__ = ["PERIOD", "Pool"]

PERIOD = 30  # the demo's TOTP step


class Pool:
    """The seeded material, shared by all users of this locust process (gevent: no locks needed)."""

    def __init__(self, data: dict[str, Any], *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.site_url: str = data["site_url"]
        self.totp_ready: deque[dict[str, Any]] = deque(data.get("totp", []))
        self.totp_cooling: deque[tuple[int, dict[str, Any]]] = deque()
        self.backup: deque[dict[str, Any]] = deque(data.get("backup", []))
        self.attack: deque[dict[str, Any]] = deque(data.get("attack", []))
        self.attack_spent: list[dict[str, Any]] = []
        self.sessions: list[str] = data.get("sessions", [])
        self.challenge_sample: str = next((e["challenges"][0] for e in data.get("totp", []) if e["challenges"]), "")
        self.used: dict[str, set[str]] = {"totp": set(), "backup": set(), "attack": set()}
        self.last_step: dict[str, int] = {}
        self.reused_in_step = 0
        self.waits: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.attack_recycled = 0

    def take_totp(self) -> tuple[dict[str, Any], str, float] | None:
        """A (user, challenge cookie, instant) whose user has not verified in the current step."""
        now = self.clock()
        step = int(now // PERIOD)
        cooling = self.totp_cooling
        while cooling and cooling[0][0] < step:
            self.totp_ready.append(cooling.popleft()[1])
        while self.totp_ready:
            entry = self.totp_ready.popleft()
            if not entry["challenges"]:
                continue
            cookie = entry["challenges"].pop()
            uid = entry["uid"]
            if self.last_step.get(uid, -1) >= step:
                self.reused_in_step += 1  # never happens by construction; reported if it does
            self.last_step[uid] = step
            self.used["totp"].add(uid)
            if entry["challenges"]:
                cooling.append((step, entry))
            return entry, cookie, now
        return None

    def take_backup(self) -> tuple[str, str] | None:
        while self.backup:
            entry = self.backup.popleft()
            if entry["challenges"] and entry["codes"]:
                cookie, code = entry["challenges"].pop(), entry["codes"].pop()
                self.used["backup"].add(entry["uid"])
                if entry["challenges"] and entry["codes"]:
                    self.backup.append(entry)
                return cookie, code
        return None

    def take_attack(self) -> dict[str, Any]:
        """A user for one attacker to own until it is locked; when all are spent, spent ones again
        (their refusals then come from the lock or the gone challenge)."""
        if not self.attack:
            if not self.attack_spent:
                raise RuntimeError("the pool has no attacker users")
            self.attack_recycled += 1
            entry = random.choice(self.attack_spent)
            return {"uid": entry["uid"], "uri": entry["uri"], "challenges": list(entry["all"])}
        entry = self.attack.popleft()
        entry["all"] = list(entry["challenges"])
        self.attack_spent.append(entry)
        self.used["attack"].add(entry["uid"])
        return entry

    def summary(self) -> dict[str, Any]:
        return {
            "distinct_users": {k: len(v) for k, v in self.used.items()},
            "reused_within_step": self.reused_in_step,
            "pool_waits": dict(self.waits),
            "attacker_refusals": dict(self.refusals),
            "attacker_pool_recycled": self.attack_recycled,
            "left": {"totp_challenges": sum(len(e["challenges"]) for e in self.totp_ready)
                     + sum(len(e["challenges"]) for _, e in self.totp_cooling),
                     "backup_users": len(self.backup), "attack_users": len(self.attack)},
        }

"""In-memory store: the embedded default (demo, single process). Thread- and task-safe.

Each method here is the twin of the Lua script of the same name in ``lua/`` and returns the same
reply shape; one lock makes each one atomic, as Redis does for a script. The contract suite runs
against both stores so the twins cannot drift apart unnoticed.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Callable
from itertools import chain
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock
from ..effects import Op

__all__ = ["MemoryStore"]

Reply = Any
TRUSTED_DEVICES_CAP = 20  # as lua/_prelude.lua


class _Script:
    """What the Lua prelude gives a script: NOW, the user hash, audit(), the shared helpers."""

    def __init__(self, store: MemoryStore, keys: tuple[str, ...], args: tuple[str | int, ...]) -> None:
        self.s = store
        self.keys = keys
        self.argv = [str(a) for a in args]
        self.now = int(self.argv[0])
        self.events: list[str] = []

    def hash(self, key: str) -> dict[str, str]:
        value = self.s.get(key)
        return dict(value) if isinstance(value, dict) else {}

    def live(self, rec: dict[str, str]) -> bool:
        return "exp" in rec and int(float(rec["exp"])) > self.now

    def hset(self, key: str, **fields: object) -> None:
        self.s.data.setdefault(key, {}).update({k: _num(v) for k, v in fields.items()})

    def audit(self, kind: str, sid: str = "", detail: str = "") -> None:
        stream = self.s.data.setdefault(self.keys[1], deque(maxlen=int(self.argv[3])))
        stream.append(
            {"type": kind, "userId": self.argv[4], "at": self.argv[0], "ip": self.argv[1],
             "userAgent": self.argv[2], "sessionId": sid, "detail": detail}
        )
        self.events.append(kind)

    def new_session(
        self, skey: str, index: str, sid: str, spec: int | str, aal: object, mfa: object, remember: str, amr: str
    ) -> None:
        parts = str(spec).split(",")
        long, short, cap = (int(p) for p in parts) if len(parts) == 3 else (int(spec), int(spec), 0)
        ttl_ms = long if remember == "1" else short
        self.s.data[skey] = {"exp": str(self.now + ttl_ms), "created": str(self.now), "aal": _num(aal),
                             "mfa": _num(mfa), "remember": remember, "amr": amr}
        self.s.expire(skey, ttl_ms)
        self.hset(skey, ip=self.argv[1], ua=self.argv[2], seen=self.now)
        self.s.data.setdefault(index, set()).add(sid)
        self.s.expire(index, long)
        self.audit("session.created", sid, amr)
        self.cap_sessions(skey, index, sid, cap, long)

    def cap_sessions(self, skey: str, index: str, sid: str, cap: int, ttl_ms: int) -> None:
        if cap <= 0:
            return
        by_age = self.s.get(index + ":age")
        if not isinstance(by_age, dict):
            by_age = self.s.data[index + ":age"] = {}
        by_age[sid] = self.now
        self.s.expire(index + ":age", ttl_ms)
        if len(by_age) <= cap:
            return
        prefix = skey[: len(skey) - len(sid)]
        revoked = int(self.hash(self.keys[0]).get("revoked_at", "0"))
        index_set = self.s.get(index)
        ids = index_set if isinstance(index_set, set) else set()
        alive = []
        for other in sorted(by_age, key=lambda m: (by_age[m], m)):  # ZRANGE's order: score, then member
            if other == sid:
                continue
            rec = self.s.get(prefix + other) or {}
            if "exp" in rec and int(rec["exp"]) > self.now and int(rec["created"]) > revoked:
                alive.append(other)
            else:
                del by_age[other]
                ids.discard(other)
        for old in alive[: len(alive) - (cap - 1)]:
            self.s.delete(prefix + old)
            del by_age[old]
            ids.discard(old)
            self.audit("session.revoked", old, "cap")

    def index_device(self, index: str, tkey: str, ttl_ms: int, gen: str) -> None:
        """Twin of ``index_device`` in lua/_prelude.lua: the bounded index of trusted devices."""
        tid = _key_id(tkey)
        devices = self.s.get(index)
        if not isinstance(devices, dict):
            devices = self.s.data[index] = {}
        devices[tid] = self.now
        left = self.s._expiry.get(index)
        if left is None or (left - self.s.clock.now()) * 1000 < ttl_ms:
            self.s.expire(index, ttl_ms)
        if len(devices) <= TRUSTED_DEVICES_CAP:
            return
        prefix = tkey[: len(tkey) - len(tid)]
        for other in _by_score(devices):
            rec = self.hash(prefix + other)
            if not self.live(rec) or rec.get("gen") != gen:
                del devices[other]
        for old in _by_score(devices)[: len(devices) - TRUSTED_DEVICES_CAP]:
            self.s.delete(prefix + old)
            del devices[old]
            self.audit("trusted_device.revoked", "", "cap")

    @staticmethod
    def merge_amr(a: str, b: str) -> str:
        return " ".join(dict.fromkeys(f"{a} {b}".split()))

    def locked_until(self, u: dict[str, str]) -> int:
        lock = int(u.get("lock_until", "0"))
        return lock if lock > self.now else 0

    def challenge_refusal(self, ch: dict[str, str], u: dict[str, str], by: str) -> Reply:
        """Twin of ``challenge_refusal`` in lua/_prelude.lua: the one liveness rule for answering a
        pending sign-in challenge (None: ``by`` may answer it)."""
        if (not self.live(ch) or int(ch.get("created", "0")) <= int(u.get("revoked_at", "0"))
                or int(ch.get("attempts", "0")) <= 0):
            return ["GONE", self.events]
        lock = self.locked_until(u)
        if lock > 0:
            return ["LOCKED", self.events, lock]
        if ch.get("opened_by", "passkey").split(":", 1)[0] == by:
            return ["SAME_FACTOR", self.events]
        return None

    def second_factor_failed(self, lock_failures: int, lock_ms: int, detail: str, audited: str) -> int:
        u = self.s.data.setdefault(self.keys[0], {})
        fails = int(u.get("fails", "0")) + 1
        u["fails"] = str(fails)
        self.audit("two_factor.failed", "", detail)
        if fails >= lock_failures:
            lock = self.now + lock_ms
            u.update(lock_until=str(lock), fails="0")
            if audited != "1":
                self.audit("two_factor.locked", "", detail)
            return lock
        return 0

    def factor_change_refused(self, u: dict[str, str], skey: str, max_age_ms: str, password_given: str) -> str | None:
        s = self.hash(skey)
        if not self.live(s) or int(s.get("created", "0")) <= int(u.get("revoked_at", "0")):
            return "NO_SESSION"
        oldest = self.now - int(max_age_ms)
        if u.get("tfa") == "1":
            if int(s.get("aal", "1")) < 2 or int(s.get("mfa", "0")) < oldest:
                return "FRESH_TWO_FACTOR"
        elif password_given != "1" and max(int(s.get("pwd", "0")), int(s.get("mfa", "0"))) < oldest:
            return "FRESH_PASSWORD"
        return None

    def otp_take(self, key: str, bind: str, purpose: str, h: str) -> dict[str, str] | None:
        """Twin of ``otp_take`` in lua/_prelude.lua: the user's live code, used up, when it matches."""
        c = self.hash(key)
        if c.get("bind") != bind or c.get("purpose") != purpose or not self.live(c) or c.get("h") != h:
            return None
        self.s.delete(key)
        return c

    def scard(self, key: str) -> int:
        value = self.s.get(key)
        return len(value) if isinstance(value, set) else 0


def _key_id(key: str) -> str:
    """Twin of ``key_id`` in lua/_prelude.lua: the id (hash) at the end of a key."""
    return key.rpartition(":")[2]


def _by_score(members: dict[str, int]) -> list[str]:
    """A sorted set's members in ZRANGE's order: score, then member."""
    return sorted(members, key=lambda m: (members[m], m))


def _num(v: object) -> str:
    return str(int(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


class MemoryStore:
    """``MemoryStore(clock=...)``: expiry follows the given clock (the app's), like the records."""

    in_process = True

    #: Expired keys removed per operation at most (the sweep's bounded work per call).
    SWEEP_PER_OP = 8
    #: Seconds a key may be swept after its expiry (see ``expire``).
    SWEEP_SLACK = 1.0

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self.data: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        # Expiries ordered by time, (when, key): every key in _expiry has an entry no later than its
        # expiry. A key given a later expiry keeps its entry (the sweep moves it on when it comes due),
        # so re-expiring a key (a throttle counter on every hit) does not grow the heap. Each operation
        # pops up to SWEEP_PER_OP due entries, so records leave when they expire, even those never
        # read again (Redis's active expiry).
        self._expiry_heap: list[tuple[float, str]] = []
        # The time of each key's one live heap entry. A key re-expired a little earlier than before (a
        # clock that moved between two reads) gets a new entry, and the older one goes stale: popped,
        # it is dropped, never moved on, so one key cannot pile up entries (one address's sign-ups did).
        self._queued: dict[str, float] = {}
        self._lock = threading.Lock()
        self._scripts: dict[str, Callable[[_Script], Reply]] = {
            name[len("_op_"):]: getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }
        # The per-request guard skips the script machinery (it writes at most a session's last use).
        self._reads: dict[str, Callable[[tuple[str, ...], tuple[str | int, ...]], Reply]] = {
            "guard": self._read_guard,
        }

    # -- plumbing ---------------------------------------------------------------------------
    def execute(self, op: Op) -> Reply:
        with self._lock:
            if self._expiry_heap and self._expiry_heap[0][0] <= self.clock.now():
                self._sweep(self.SWEEP_PER_OP)
            read = self._reads.get(op.script)
            if read is not None:
                return read(op.keys, op.args)
            return self._scripts[op.script](_Script(self, op.keys, op.args))

    async def aexecute(self, op: Op) -> Reply:
        # No I/O and a short critical section: blocking the loop for microseconds beats a thread hop.
        return self.execute(op)

    def get(self, key: str) -> Any:
        exp = self._expiry.get(key)
        if exp is not None and exp <= self.clock.now():
            self.data.pop(key, None)
            self._expiry.pop(key, None)
        return self.data.get(key)

    def expire(self, key: str, ttl_ms: int) -> None:
        when = self.clock.now() + ttl_ms / 1000
        self._expiry[key] = when
        queued = self._queued.get(key)
        # An expiry brought forward by less than SWEEP_SLACK keeps its entry: the key is swept that
        # much late at most (a read still sees it expired on time). A throttle counter, re-expired to
        # the same instant on every hit, lands a fraction of a millisecond earlier whenever the clock
        # moved between the script's NOW and this read: no new entry for that.
        if queued is None or when < queued - self.SWEEP_SLACK:
            self._queued[key] = when
            heapq.heappush(self._expiry_heap, (when, key))

    def _sweep(self, budget: int) -> None:
        """Drop up to ``budget`` keys whose expiry has passed on the store's clock."""
        now, heap = self.clock.now(), self._expiry_heap
        while budget > 0 and heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            budget -= 1
            if self._queued.get(key) != when:
                continue  # stale: the key has an earlier entry of its own
            del self._queued[key]
            exp = self._expiry.get(key)
            if exp is not None and exp <= now:
                self.data.pop(key, None)
                del self._expiry[key]
            elif exp is not None:
                self._queued[key] = exp
                heapq.heappush(heap, (exp, key))  # given a later expiry since: check again then

    def delete(self, *keys: str) -> int:
        n = 0
        for key in keys:
            if self.get(key) is not None:
                n += 1
            self.data.pop(key, None)
            self._expiry.pop(key, None)
        return n

    def audit_events(self, stream_key: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self.data.get(stream_key) or [])

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    # -- twins of lua/*.lua -----------------------------------------------------------------
    def _op_load(self, x: _Script) -> Reply:
        k = x.keys

        def flat(key: str) -> list[str]:
            value = self.get(key)
            return list(chain.from_iterable(value.items())) if isinstance(value, dict) else []

        s = flat(k[1]) if x.argv[1] == "1" else []
        c = flat(k[2]) if x.argv[2] == "1" else []
        pending = self.get(k[3])
        return [flat(k[0]), s, c, sorted(pending) if isinstance(pending, set) else []]

    def _op_user_fill(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        user = self.data.setdefault(k[0], {})
        u = dict(user)
        filling = a[6] == "fill"
        if filling and "rec" in u:
            return ["OK", x.events, list(chain.from_iterable(user.items()))]
        sql_gen = int(a[7])
        newer = "sgen" not in u or int(u["sgen"]) < sql_gen
        bump = newer and not filling
        for field, value, seen in zip(a[8::3], a[9::3], a[10::3], strict=True):
            held = u.get(field)
            if held is None or seen == "!" or seen == "=" + held:
                if field == "tfa" and value == "1" and held == "0":  # an enrolment whose hot half failed
                    index = self.get(k[2])
                    for sid in list(index) if isinstance(index, set) else []:
                        if sid != u.get("pending_sid"):
                            if self.delete(k[4] + sid) == 1:
                                x.audit("session.revoked", sid, "enrolment")
                            index.discard(sid)
                    for pending in ("pending_secret", "pending_sid", "pending_kid"):
                        user.pop(pending, None)
                    self.delete(k[3])
                    bump = True
                user[field] = value
        if bump:
            user["gen"] = str(int(u.get("gen", a[5])) + 1)
        elif filling and "gen" not in u:
            user["gen"] = a[5]
        if newer:
            user["sgen"] = str(sql_gen)
        if filling:
            user["rec"] = "1"
        return ["OK", x.events, list(chain.from_iterable(user.items()))]

    def _read_guard(self, k: tuple[str, ...], args: tuple[str | int, ...]) -> Reply:
        """Twin of guard.lua (its coarse last-use write included). Records carry their own ``exp``
        (checked by the caller), so the garbage-collection expiry is not consulted here."""
        data = self.data
        u = data.get(k[0]) or {}
        s = (data.get(k[1]) or {}) if args[1] == "1" else {}
        c = (data.get(k[2]) or {}) if args[2] == "1" else {}
        reply = [u.get("tfa"), u.get("revoked_at"), s.get("exp"), s.get("created"), s.get("aal"), s.get("mfa"),
                 c.get("exp"), c.get("created"), s.get("amr"), s.get("auth"), s.get("seen"), u.get("rec")]
        if s:
            now = int(args[0])
            since = now - int(s.get("seen") or s.get("created") or now)
            if since >= int(args[3]) and int(s.get("exp") or 0) > now:
                idle = int(args[4])
                if not (idle > 0 and int(s.get("aal") or 1) >= 2 and since > idle):
                    s["seen"] = str(now)
        return reply

    def _op_throttle(self, x: _Script) -> Reply:
        rec = x.hash(x.keys[0])
        window, limit = int(x.argv[2]), int(x.argv[3])
        n, start = int(rec.get("n", "0")), int(rec.get("start", "0"))
        if start + window <= x.now:
            n, start = 0, x.now
        if x.argv[1] == "hit":
            n += 1
            self.data[x.keys[0]] = {"n": str(n), "start": str(start)}
            self.expire(x.keys[0], start + window - x.now)
        return start + window - x.now if n >= limit else 0

    def _op_password_gate(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        window, addr, known_ttl = int(a[2]), a[5], int(a[6])
        known_set = self.get(k[2])
        if not isinstance(known_set, dict):
            known_set = {}
        if a[1] == "known":
            fresh = {m: t for m, t in known_set.items() if t > x.now - known_ttl}
            if addr in fresh or len(fresh) < 100:  # a full list keeps its addresses (see the script)
                fresh[addr] = x.now
            self.data[k[2]] = fresh
            self.expire(k[2], known_ttl)
            return [0, 1]

        def count(key: str, hit: bool) -> tuple[int, int]:
            rec = x.hash(key)
            n, start = int(rec.get("n", "0")), int(rec.get("start", "0"))
            if start + window <= x.now:
                n, start = 0, x.now
            if hit:
                n += 1
                self.data[key] = {"n": str(n), "start": str(start)}
                self.expire(key, start + window - x.now)
            return n, start + window - x.now

        hit = a[1] == "hit"
        seen = int(known_set.get(addr, 0))
        known = seen > 0 and seen + known_ttl > x.now
        pair_n, pair_left = count(k[0], hit)
        all_n, all_left = count(k[1], hit)
        retry = pair_left if pair_n >= int(a[3]) else 0
        if not known and all_n >= int(a[4]) and all_left > retry:
            retry = all_left
        return [retry, 1 if known else 0]

    def _op_password_failed(self, x: _Script) -> Reply:
        x.audit("password.check_failed", x.argv[5])
        return ["OK", x.events]

    def _op_session_create(self, x: _Script) -> Reply:
        a = x.argv
        if int(a[7]) < 2 and x.hash(x.keys[0]).get("tfa") == "1":
            return ["TWO_FACTOR_ON", x.events]
        x.new_session(x.keys[2], x.keys[3], a[5], a[6], a[7], a[8], a[9], a[11])
        if a[10] == "1":
            x.hset(x.keys[2], pwd=x.now)
        return ["OK", x.events]

    def _op_session_revoke(self, x: _Script) -> Reply:
        k, sid = x.keys, x.argv[5]
        if sid != "" and self.delete(k[2]) == 1:
            index = self.get(k[3])
            if isinstance(index, set):
                index.discard(sid)
            x.audit("session.revoked", sid)
        self.delete(k[4])
        return ["OK", x.events]

    def _op_challenge_create(self, x: _Script) -> Reply:
        ttl = int(x.argv[5])
        self.data[x.keys[2]] = {"exp": str(x.now + ttl), "attempts": x.argv[6], "remember": x.argv[7],
                                "created": str(x.now), "opened_by": "pwd"}
        self.expire(x.keys[2], ttl)
        return ["OK", x.events]

    def _op_challenge_answer(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        ch, u = x.hash(k[2]), x.hash(k[0])
        refusal = x.challenge_refusal(ch, u, a[5])
        if refusal is not None:
            return refusal
        outcome = a[6]
        if outcome == "otp":
            outcome = "ok" if x.otp_take(k[7], a[14], "sign_in", a[15]) is not None else "wrong"
        if outcome == "ok":
            self.delete(k[2])
            x.hset(k[0], fails=0)
            x.new_session(k[3], k[4], a[7], a[8], 2, x.now, ch.get("remember", "0"), a[13])
            if a[9] == "1":
                ttl = int(a[10])
                self.data[k[5]] = {"exp": str(x.now + ttl), "gen": u.get("gen", "0"), "mfa": str(x.now),
                                   "created": str(x.now), "ip": a[1], "ua": a[2]}
                self.expire(k[5], ttl)
                x.index_device(k[6], k[5], ttl, u.get("gen", "0"))
            return ["OK", x.events]
        lock = x.second_factor_failed(int(a[11]), int(a[12]), a[5], a[16] if len(a) > 16 else "")
        attempts = int(ch.get("attempts", "0")) - 1
        self.data[k[2]]["attempts"] = str(attempts)
        if attempts <= 0:
            self.delete(k[2])
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if attempts <= 0:
            return ["EXHAUSTED", x.events]
        return ["WRONG", x.events, attempts]

    def _op_session_answer(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        s = x.hash(k[2])
        u = x.hash(k[0])
        ok = a[7] == "ok"
        index = self.get(k[5])
        if ok and a[5] == "enrol":
            x.hset(k[0], tfa="1", codes_kid=a[14], gen=int(u.get("gen", "0")) + 1)
            for field in ("pending_secret", "pending_sid", "pending_kid"):
                self.data[k[0]].pop(field, None)
            self.delete(k[3])
            base = k[2][: len(k[2]) - len(a[8])]
            for sid in list(index) if isinstance(index, set) else []:
                if sid != a[8]:
                    if self.delete(base + sid) == 1:
                        x.audit("session.revoked", sid, "enrolment")
                    index.discard(sid)
        if not x.live(s) or int(s.get("created", "0")) <= int(u.get("revoked_at", "0")):
            return ["GONE", x.events]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if a[7] == "otp":
            ok = x.otp_take(k[6], a[15], "step_up", a[16]) is not None
        if ok:
            x.hset(k[0], fails=0)
            if self.delete(k[2]) == 1:
                x.audit("session.revoked", a[8], "rotated")
            if isinstance(index, set):
                index.discard(a[8])
            x.new_session(k[4], k[5], a[11], a[12], 2, x.now, s.get("remember", "0"),
                          x.merge_amr(s.get("amr", ""), a[13]))
            x.hset(k[4], auth=s.get("auth") or s["created"])
            if "pwd" in s:
                x.hset(k[4], pwd=s["pwd"])
            return ["OK", x.events]
        lock = x.second_factor_failed(int(a[9]), int(a[10]), a[6], a[17] if len(a) > 17 else "")
        if lock > 0:
            return ["LOCKED", x.events, lock]
        return ["WRONG", x.events]

    def _op_otp_issue(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        sends = self.get(k[3])
        if a[5] == "void":
            if x.hash(k[2]).get("h") == a[7]:
                self.delete(k[2])
            if isinstance(sends, dict):
                sends.pop(a[6], None)
            return ["OK", x.events]
        u = x.hash(k[0])
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        interval, limit, window = int(a[13]), int(a[14]), int(a[15])
        if not isinstance(sends, dict):
            sends = {}
        sends = {m: t for m, t in sends.items() if t > x.now - window}
        self.data[k[3]] = sends
        ordered = _by_score(sends)
        if ordered and x.now - sends[ordered[-1]] < interval and self.get(k[2]) is not None:
            return ["THROTTLED", x.events, sends[ordered[-1]] + interval]
        if len(ordered) >= limit:
            return ["THROTTLED", x.events, sends[ordered[0]] + window]
        ttl = int(a[10])
        self.data[k[2]] = {"h": a[7], "bind": a[8], "purpose": a[9], "exp": str(x.now + ttl), "channel": a[11],
                           "to": a[12]}
        self.expire(k[2], ttl)
        sends[a[6]] = x.now
        self.expire(k[3], window)
        user = self.data.setdefault(k[0], {})
        if a[9] == "enrol":
            user["otp_enrol"] = a[8][2:]
        else:
            user.pop("otp_enrol", None)
        x.audit("two_factor.otp_sent", "", f"{a[11]}:{a[9]}")
        return ["OK", x.events]

    def _op_otp_enrol(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u, s = x.hash(k[0]), x.hash(k[3])
        if not x.live(s) or int(s.get("created", "0")) <= int(u.get("revoked_at", "0")):
            return ["GONE", x.events]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        c = x.otp_take(k[2], a[5], "enrol", a[6])
        if c is not None:
            self.data.setdefault(k[0], {}).pop("otp_enrol", None)
            return ["OK", x.events, c["channel"], c["to"]]
        lock = x.second_factor_failed(int(a[7]), int(a[8]), "otp", "")
        if lock > 0:
            return ["LOCKED", x.events, lock]
        return ["WRONG", x.events]

    def _op_trust_use(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        t, u = x.hash(k[2]), x.hash(k[0])
        if not x.live(t) or u.get("tfa") != "1" or t.get("gen") != u.get("gen", "0"):
            return ["GONE", x.events]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        self.delete(k[2])
        exp = int(t["exp"])  # the rotated record keeps the original expiry (absolute lifetime)
        self.data[k[3]] = {"exp": str(exp), "gen": t["gen"], "mfa": t["mfa"], "created": t.get("created", t["mfa"]),
                           "ip": a[1], "ua": a[2], "seen": str(x.now)}
        self.expire(k[3], exp - x.now)
        devices = self.get(k[6])
        if isinstance(devices, dict):
            devices.pop(_key_id(k[2]), None)
        x.index_device(k[6], k[3], exp - x.now, t["gen"])
        x.new_session(k[4], k[5], a[5], a[6], 2, t["mfa"], a[7], a[8])
        return ["OK", x.events, exp]

    def _op_two_factor_begin(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        if x.hash(k[0]).get("tfa") == "1":
            return ["ALREADY", x.events]
        x.hset(k[0], pending_secret=a[5], pending_sid=a[6], pending_kid=a[7])
        self.data[k[2]] = set(a[8:])
        return ["OK", x.events]

    def _op_two_factor_disable(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u = x.hash(k[0])
        if a[7] == "undo":
            x.hset(k[0], tfa="1", codes_kid=a[8])
            base = k[3][: len(k[3]) - len(a[5])]
            index = self.get(k[4])
            for sid in sorted(index) if isinstance(index, set) else []:
                s = x.hash(base + sid)
                if "aal" in s and int(s["aal"]) < 2 and int(s.get("created", "0")) >= int(a[9]):
                    self.delete(base + sid)
                    index.discard(sid)
                    x.audit("session.revoked", sid, "two_factor_restored")
            return ["OK", x.events]
        if a[7] == "pending":
            refused = x.factor_change_refused(u, k[3], a[6], "1")
            if refused:
                return [refused, x.events]
            if u.get("tfa") == "1" or "pending_secret" not in u:
                return ["NOT_ENABLED", x.events]
        else:
            refused = x.factor_change_refused({"tfa": "1", "revoked_at": u.get("revoked_at", "0")}, k[3], a[6], "1")
            if refused:
                return [refused, x.events]
        for field in ("pending_secret", "pending_sid", "pending_kid"):
            self.data.setdefault(k[0], {}).pop(field, None)
        x.hset(k[0], tfa="0", codes_kid="", gen=int(u.get("gen", "0")) + 1)
        self.delete(k[2])
        return ["OK", x.events]

    def _op_backup_codes_replace(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u = x.hash(k[0])
        refused = x.factor_change_refused(u, k[3], a[6], "1")
        if refused:
            return [refused, x.events]
        if u.get("tfa") == "1" or "pending_secret" not in u or u.get("pending_sid") != a[5]:
            return ["NOT_ENABLED", x.events]
        x.hset(k[0], pending_kid=a[7])
        self.data[k[2]] = set(a[8:])
        x.audit("two_factor.backup_codes_regenerated", a[5])
        return ["OK", x.events]

    def _op_ceremony(self, x: _Script) -> Reply:
        key = x.keys[0]
        if self.get(key) is not None:
            return 0
        self.data[key] = "1"
        self.expire(key, int(x.argv[2]))
        return 1

    def _op_factor_change(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u = x.hash(k[0])
        if a[6] == "on":
            u = {"tfa": "1", "revoked_at": u.get("revoked_at", "0")}
        refused = x.factor_change_refused(u, k[2], a[5], a[6])
        if refused:
            return [refused, x.events]
        self.data.setdefault(k[0], {}).update(zip(a[7::2], a[8::2], strict=True))
        return ["OK", x.events]

    def _op_passkey_sign_in(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u = x.hash(k[0])
        if a[5] == "second_factor":
            ch = x.hash(k[2])
            refusal = x.challenge_refusal(ch, u, "passkey")
            if refusal is not None:
                return refusal
            self.delete(k[2])
            x.hset(k[0], fails=0, streak=0)
            x.new_session(k[3], k[4], a[6], a[7], 2, x.now, ch.get("remember", "0"), a[10])
            return ["SESSION", x.events, ch.get("remember", "0")]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if a[9] != "":
            if self.delete(k[5]) == 1:
                x.audit("session.revoked", a[9], "rotated")
            index = self.get(k[4])
            if isinstance(index, set):
                index.discard(a[9])
        x.new_session(k[3], k[4], a[6], a[7], 2, x.now, a[8], a[10])
        return ["SESSION", x.events, a[8]]

    def _op_two_factor_import(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u = x.hash(k[0])
        x.hset(k[0], tfa="1", gen=int(u.get("gen", "0")) + 1, codes_kid=a[5])
        for field in ("pending_secret", "pending_sid", "pending_kid"):
            self.data[k[0]].pop(field, None)
        self.delete(k[2])
        return ["OK", x.events]

    def _op_user_reset(self, x: _Script) -> Reply:
        k = x.keys
        u = x.hash(k[0])
        x.hset(k[0], revoked_at=x.now, gen=int(u.get("gen", "0")) + 1)  # gen: remembered devices end too
        x.audit("session.revoked", "", "all")
        if x.argv[5] == "reset":
            for field in ("pending_secret", "pending_sid", "pending_kid"):
                self.data[k[0]].pop(field, None)
            x.hset(k[0], tfa="0", codes_kid="", fails=0, lock_until=0)  # written, not deleted: user_fill.lua
            self.delete(k[2])
        return ["OK", x.events]

    def _op_audit_event(self, x: _Script) -> Reply:
        x.audit(x.argv[5], x.argv[6], x.argv[7])
        return ["OK", x.events]

    def _op_secret_reencrypt(self, x: _Script) -> Reply:
        user = self.get(x.keys[0])
        if not isinstance(user, dict) or user.get("pending_secret") != x.argv[1]:
            return 0
        user["pending_secret"] = x.argv[2]
        return 1

    def _op_session_list(self, x: _Script) -> Reply:
        k = x.keys
        revoked = int(x.hash(k[0]).get("revoked_at", "0"))
        prefix = k[2][: len(k[2]) - len(_key_id(k[2]))]
        index = self.get(k[1])
        by_age = self.get(k[1] + ":age")
        out: list[Any] = []
        for sid in list(index) if isinstance(index, set) else []:
            s = x.hash(prefix + sid)
            if x.live(s) and int(s.get("created", "0")) > revoked:
                out += [sid, list(chain.from_iterable(s.items()))]
            else:
                index.discard(sid)
                if isinstance(by_age, dict):
                    by_age.pop(sid, None)
        return out

    def _op_trust_list(self, x: _Script) -> Reply:
        k = x.keys
        gen = x.hash(k[0]).get("gen", "0")
        prefix = k[2][: len(k[2]) - len(_key_id(k[2]))]
        devices = self.get(k[1])
        out: list[Any] = []
        for tid in _by_score(devices) if isinstance(devices, dict) else []:
            t = x.hash(prefix + tid)
            if x.live(t) and t.get("gen") == gen:
                out += [tid, list(chain.from_iterable(t.items()))]
            else:
                del devices[tid]
        return out

    def _op_session_end(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        refused = x.factor_change_refused(x.hash(k[0]), k[2], a[7], "0")
        if refused:
            return [refused, x.events]
        mode, own = a[5], a[6]
        index = self.get(k[3])
        members = index if isinstance(index, set) else set()
        targets = [a[8]] if mode == "one" else list(members)
        by_age = self.get(k[3] + ":age")
        prefix = k[2][: len(k[2]) - len(own)]
        ended = current = 0
        for sid in targets:
            if (mode == "others" and sid == own) or sid not in members:
                continue
            members.discard(sid)
            if isinstance(by_age, dict):
                by_age.pop(sid, None)
            if self.delete(prefix + sid) == 1:
                x.audit("session.revoked", sid, "user")
                ended += 1
            if sid == own:
                current = 1
        return ["OK", x.events, ended, current]

    def _op_trust_end(self, x: _Script) -> Reply:
        k, a = x.keys, x.argv
        u = x.hash(k[0])
        refused = x.factor_change_refused(u, k[2], a[7], "0")
        if refused:
            return [refused, x.events]
        devices = self.get(k[3])
        devices = devices if isinstance(devices, dict) else {}
        if a[5] == "one":
            tid = _key_id(k[4])
            if devices.pop(tid, None) is None:
                return ["OK", x.events, 0]
            self.delete(k[4])
            x.audit("trusted_device.revoked", a[6], tid)
            return ["OK", x.events, 1]
        prefix = k[4][: len(k[4]) - len(_key_id(k[4]))]
        forgotten = self.delete(*(prefix + tid for tid in devices))
        self.delete(k[3])
        x.hset(k[0], gen=int(u.get("gen", "0")) + 1)
        x.audit("trusted_device.revoked", a[6], "all")
        return ["OK", x.events, forgotten]

    def user_ids(self, prefix: str) -> list[str]:
        """Every user id with a record (administration: key rotation)."""
        head, tail = f"{prefix}:{{u:", "}:user"
        with self._lock:
            return [k[len(head):-len(tail)] for k in list(self.data) if k.startswith(head) and k.endswith(tail)]

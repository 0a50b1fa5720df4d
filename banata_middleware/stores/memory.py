"""In-memory store: the embedded default (demo, single process). Thread- and task-safe.

Each ``_op_<name>`` method here is the twin of the Lua script of the same name in ``lua/``: it
reads the operation's fields by name (``hot_ops``, where they are declared once) and returns the
script's reply shape, which ``OpSpec.reply`` types as it does for Redis. One lock makes each one
atomic, as Redis does for a script. ``tests/stores/test_conformance.py`` runs random sequences of
operations against both stores, and the contract suite runs every flow on both.
"""

from __future__ import annotations

import heapq
import threading
from collections import deque
from collections.abc import Callable
from itertools import chain
from typing import Any, TypeVar

from ..clock import SYSTEM_CLOCK, Clock
from . import hot_ops as h
from .hot_ops import OPS_BY_NAME, GuardReply, Head, HotOp, LoadReply, OpSpec

__all__ = ["MemoryStore"]

Reply = Any
_new_tuple = tuple.__new__
T = TypeVar("T", set[str], dict[str, int])
TRUSTED_DEVICES_CAP = 20  # as lua/_prelude.lua
_NOTHING: dict[str, str] = {}  # an absent record, shared: read, never written


class _Script:
    """What the Lua prelude gives a script: NOW, the user hash, audit(), the shared helpers. ``head``
    is the operation's (None for one that is not a user operation, as the prelude's are unset)."""

    def __init__(self, store: MemoryStore, head: Head | None, now_ms: int) -> None:
        self.s = store
        self.head = head
        self.now = int(now_ms)
        self.events: list[str] = []

    @property
    def user_key(self) -> str:
        assert self.head is not None
        return self.head.user_key

    def hash(self, key: str) -> dict[str, str]:
        value = self.s.get(key)
        return dict(value) if isinstance(value, dict) else {}

    def live(self, rec: dict[str, str]) -> bool:
        return "exp" in rec and int(float(rec["exp"])) > self.now

    def hset(self, key: str, **fields: object) -> None:
        """HSET: the fields are added to the hash (a live one: an expired key is gone first, as in
        Redis); the fields it had stay."""
        rec = self.s.get(key)
        if not isinstance(rec, dict):
            rec = self.s.data[key] = {}
        rec.update({k: _num(v) for k, v in fields.items()})

    def audit(self, kind: str, sid: str = "", detail: str = "") -> None:
        head = self.head
        assert head is not None
        stream = self.s.data.setdefault(head.audit_key, deque(maxlen=int(head.audit_len)))
        stream.append(
            {"type": kind, "userId": head.user_id, "at": str(head.now_ms), "ip": head.ip,
             "userAgent": head.user_agent, "sessionId": sid, "detail": detail}
        )
        self.events.append(kind)

    def new_session(
        self, skey: str, index: str, sid: str, spec: int | str, aal: object, mfa: object, remember: str, amr: str
    ) -> None:
        parts = str(spec).split(",")
        long, short, cap = (int(p) for p in parts) if len(parts) == 3 else (int(spec), int(spec), 0)
        ttl_ms = long if remember == "1" else short
        self.hset(skey, exp=self.now + ttl_ms, created=self.now, aal=aal, mfa=mfa, remember=remember, amr=amr)
        self.s.expire(skey, ttl_ms)
        assert self.head is not None
        self.hset(skey, ip=self.head.ip, ua=self.head.user_agent, seen=self.now)
        self.s.container(index, set).add(sid)
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
        revoked = int(self.hash(self.user_key).get("revoked_at", "0"))
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
        devices = self.s.container(index, dict)
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

    def forget_all_devices(self, u: dict[str, str], index: str, tkey: str, sid: str) -> int:
        """Twin of ``forget_all_devices`` in lua/_prelude.lua: every trusted device of the user goes."""
        devices = self.s.get(index)
        prefix = tkey[: len(tkey) - len(_key_id(tkey))]
        forgotten = self.s.delete(*(prefix + tid for tid in (devices if isinstance(devices, dict) else {})))
        self.s.delete(index)
        self.hset(self.user_key, gen=int(u.get("gen", "0")) + 1)
        self.audit("trusted_device.revoked", sid, "all")
        return forgotten

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

    def second_factor_failed(self, lock_failures: int, lock_ms: int, detail: str, audited: str = "") -> int:
        u = self.s.data.setdefault(self.user_key, {})
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

    def factor_change_refused(self, u: dict[str, str], skey: str, max_age_ms: int, password_given: str) -> str | None:
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
        if c.get("bind") != bind or c.get("purpose") != purpose or not self.live(c) or c.get("h") not in h.split():
            return None
        self.s.delete(key)
        return c

    def otp_enrolment_ends(self, key: str) -> None:
        """Twin of ``otp_enrolment_ends`` in lua/_prelude.lua: 2FA turns on, a pending enrolment in
        codes by message (and its code) ends."""
        self.s.data.setdefault(self.user_key, {}).pop("otp_enrol", None)
        if self.hash(key).get("purpose") == "enrol":
            self.s.delete(key)

    def scard(self, key: str) -> int:
        value = self.s.get(key)
        return len(value) if isinstance(value, set) else 0


#: The user hash's fields of a setup or enrolment under way, which end when 2FA turns on or off
#: (the scripts' HDELs of them).
_PENDING = ("pending_secret", "pending_sid", "pending_kid", "pending_name", "enrol_sid", "enrol_to")

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
        #: The twins by script name, and by operation class with their spec (a twin without a
        #: declared operation is reported by tests/stores/test_twins.py).
        self._scripts: dict[str, Callable[[_Script, Any], Reply]] = {
            name[len("_op_"):]: getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }
        self._twins: dict[type[Any], tuple[OpSpec, Callable[[_Script, Any], Reply]]] = {
            OPS_BY_NAME[name].type: (OPS_BY_NAME[name], twin) for name, twin in self._scripts.items()
            if name in OPS_BY_NAME
        }
        # The two reads every request makes (the guard, which writes at most a session's last use, and
        # load) skip the script machinery and answer their typed replies themselves.
        self._reads: dict[type[Any], Callable[[Any], Reply]] = {h.Guard: self._read_guard, h.Load: self._read_load}

    # -- plumbing ---------------------------------------------------------------------------
    def execute(self, op: HotOp) -> Reply:
        """Runs ``op``'s twin; returns its typed reply (``hot_ops``)."""
        # acquire/release rather than `with`: half the cost, on every request (the guard).
        lock = self._lock
        lock.acquire()
        try:
            if self._expiry_heap and self._expiry_heap[0][0] <= self.clock.now():
                self._sweep(self.SWEEP_PER_OP)
            kind = type(op)
            read = self._reads.get(kind)
            if read is not None:
                return read(op)
            spec, twin = self._twins[kind]
            head: Head | None = op.head if spec.user else None  # type: ignore[union-attr]
            x = _Script(self, head, head.now_ms if head is not None else op.now_ms)  # type: ignore[union-attr]
            return spec.reply(twin(x, op))
        finally:
            lock.release()

    async def aexecute(self, op: HotOp) -> Reply:
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

    def container(self, key: str, kind: type[T]) -> T:
        """The live set (or sorted set: a dict) at ``key``, or a new empty one. An emptied one counts
        as absent, expiry included: Redis deletes a set when its last member goes."""
        value = self.get(key)
        if isinstance(value, kind) and value:
            return value
        self._expiry.pop(key, None)
        value = self.data[key] = kind()
        return value

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
    def _read_load(self, op: h.Load) -> LoadReply:
        """Twin of stores/redis.py's ``load`` read: the hashes copied (the flows may write to theirs)
        and the pending codes, straight into the typed reply (no flattening and pairing again: this
        runs for get-session and every endpoint)."""
        get = self.get
        u, s, c, pending = get(op.user_key), None, None, get(op.pending_codes_key)
        if op.want_session == "1":
            s = get(op.session_key)
        if op.want_challenge == "1":
            c = get(op.challenge_key)
        return _new_tuple(LoadReply, (dict(u) if isinstance(u, dict) else {}, dict(s) if isinstance(s, dict) else {},
                                      dict(c) if isinstance(c, dict) else {},
                                      list(pending) if isinstance(pending, set) else []))

    def _op_user_fill(self, x: _Script, op: h.UserFill) -> Reply:
        user_key = op.head.user_key
        user = self.data.setdefault(user_key, {})
        u = dict(user)
        filling = op.mode == "fill"
        if filling and "rec" in u:
            return ["OK", x.events, list(chain.from_iterable(user.items()))]
        sql_gen = int(op.sql_generation)
        newer = "sgen" not in u or int(u["sgen"]) < sql_gen
        bump = newer and not filling
        f = op.fields
        for field, value, seen in zip(f[0::3], f[1::3], f[2::3], strict=True):
            held = u.get(field)
            if held is None or seen == "!" or seen == "=" + held:
                if field == "tfa" and value == "1" and held == "0":  # an enrolment whose hot half failed
                    index = self.get(op.sessions_key)
                    for sid in list(index) if isinstance(index, set) else []:
                        if sid != op.keep_sid:
                            if self.delete(op.session_prefix_key + sid) == 1:
                                x.audit("session.revoked", sid, "enrolment")
                            index.discard(sid)
                    for pending in _PENDING:
                        user.pop(pending, None)
                    self.delete(op.pending_codes_key)
                    x.otp_enrolment_ends(op.otp_key)
                    bump = True
                user[field] = value
        if bump:
            user["gen"] = str(int(u.get("gen", op.generation)) + 1)
        elif filling and "gen" not in u:
            user["gen"] = str(op.generation)
        if newer:
            user["sgen"] = str(sql_gen)
        if filling:
            user["rec"] = "1"
        return ["OK", x.events, list(chain.from_iterable(user.items()))]

    def _read_guard(self, op: h.Guard) -> GuardReply:
        """Twin of stores/redis.py's ``guard`` read and its coarse last-use write (SEEN_SCRIPT). Records
        carry their own ``exp`` (checked by the caller), so the garbage-collection expiry is not
        consulted here."""
        data = self.data
        # By position (hot_ops.Guard's order), and the empty records shared (never written: only a
        # session found is): attribute reads and three dicts less, on every request.
        user_key, session_key, challenge_key, now_ms, want_session, want_challenge, seen_every_ms, idle_ms = op
        u = data.get(user_key) or _NOTHING
        s = (data.get(session_key) or _NOTHING) if want_session == "1" else _NOTHING
        c = (data.get(challenge_key) or _NOTHING) if want_challenge == "1" else _NOTHING
        exp, created, seen = s.get("exp"), s.get("created"), s.get("seen")
        # GuardReply's fields, in its order; tuple.__new__ skips the NamedTuple's Python-level
        # __new__ (this runs on every request).
        reply = _new_tuple(GuardReply, (u.get("tfa"), u.get("revoked_at"), exp, created, s.get("aal"), s.get("mfa"),
                                        c.get("exp"), c.get("created"), s.get("amr"), s.get("auth"), seen,
                                        u.get("rec")))
        if s:
            now = int(now_ms)
            since = now - int(seen or created or now)
            if since >= int(seen_every_ms) and int(exp or 0) > now:
                idle = int(idle_ms)
                if not (idle > 0 and int(s.get("aal") or 1) >= 2 and since > idle):
                    s["seen"] = str(now)
        return reply

    def _op_throttle(self, x: _Script, op: h.Throttle) -> Reply:
        rec = x.hash(op.counter_key)
        window, limit = int(op.window_ms), int(op.limit)
        n, start = int(rec.get("n", "0")), int(rec.get("start", "0"))
        if start + window <= x.now:
            n, start = 0, x.now
        if op.mode == "hit":
            n += 1
            self.data[op.counter_key] = {"n": str(n), "start": str(start)}
            self.expire(op.counter_key, start + window - x.now)
        return start + window - x.now if n >= limit else 0

    def _op_password_gate(self, x: _Script, op: h.PasswordGate) -> Reply:
        window, addr, known_ttl = int(op.window_ms), op.address, int(op.known_ttl_ms)
        known_set = self.get(op.known_key)
        if not isinstance(known_set, dict):
            known_set = {}
        if op.mode == "known":
            fresh = {m: t for m, t in known_set.items() if t > x.now - known_ttl}
            if addr in fresh or len(fresh) < 100:  # a full list keeps its addresses (see the script)
                fresh[addr] = x.now
            self.data[op.known_key] = fresh
            self.expire(op.known_key, known_ttl)
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

        hit = op.mode == "hit"
        seen = int(known_set.get(addr, 0))
        known = seen > 0 and seen + known_ttl > x.now
        pair_n, pair_left = count(op.pair_key, hit)
        all_n, all_left = count(op.account_key, hit)
        retry = pair_left if pair_n >= int(op.pair_limit) else 0
        if not known and all_n >= int(op.account_limit) and all_left > retry:
            retry = all_left
        return [retry, 1 if known else 0]

    def _op_password_failed(self, x: _Script, op: h.PasswordFailed) -> Reply:
        x.audit("password.check_failed", op.sid)
        return ["OK", x.events]

    def _op_session_create(self, x: _Script, op: h.SessionCreate) -> Reply:
        if int(op.aal) < 2 and x.hash(op.head.user_key).get("tfa") == "1":
            return ["TWO_FACTOR_ON", x.events]
        x.new_session(op.session_key, op.sessions_key, op.sid, op.session_spec, op.aal, op.mfa_ms, op.remember,
                      op.amr)
        if op.password_checked == "1":
            x.hset(op.session_key, pwd=x.now)
        return ["OK", x.events]

    def _op_session_revoke(self, x: _Script, op: h.SessionRevoke) -> Reply:
        if op.sid != "" and self.delete(op.session_key) == 1:
            index = self.get(op.sessions_key)
            if isinstance(index, set):
                index.discard(op.sid)
            x.audit("session.revoked", op.sid)
        self.delete(op.challenge_key)
        return ["OK", x.events]

    def _op_challenge_create(self, x: _Script, op: h.ChallengeCreate) -> Reply:
        ttl = int(op.ttl_ms)
        x.hset(op.challenge_key, exp=x.now + ttl, attempts=op.attempts, remember=op.remember, created=x.now,
               opened_by="pwd")
        self.expire(op.challenge_key, ttl)
        return ["OK", x.events]

    def _op_challenge_answer(self, x: _Script, op: h.ChallengeAnswer) -> Reply:
        user_key = op.head.user_key
        ch, u = x.hash(op.challenge_key), x.hash(user_key)
        refusal = x.challenge_refusal(ch, u, op.method)
        if refusal is not None:
            return refusal
        verdict = op.outcome
        if verdict == "otp":
            verdict = "ok" if x.otp_take(op.otp_key, op.binding, "sign_in", op.code_hash) is not None else "wrong"
        if verdict == "ok":
            self.delete(op.challenge_key)
            x.hset(user_key, fails=0)
            x.new_session(op.new_session_key, op.sessions_key, op.new_sid, op.session_spec, 2, x.now,
                          ch.get("remember", "0"), op.amr)
            if op.trust == "1" and int(u.get("sgen") or 0) <= int(op.record_generation):  # R12-1
                ttl = int(op.trust_ttl_ms)
                x.hset(op.trust_key, exp=x.now + ttl, gen=u.get("gen", "0"), mfa=x.now, created=x.now, ip=op.head.ip,
                       ua=op.head.user_agent)
                self.expire(op.trust_key, ttl)
                x.index_device(op.devices_key, op.trust_key, ttl, u.get("gen", "0"))
            return ["OK", x.events]
        lock = x.second_factor_failed(int(op.lock_failures), int(op.lock_ms), op.method, op.lock_audited)
        attempts = int(ch.get("attempts", "0")) - 1
        self.data[op.challenge_key]["attempts"] = str(attempts)
        if attempts <= 0:
            self.delete(op.challenge_key)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if attempts <= 0:
            return ["EXHAUSTED", x.events]
        return ["WRONG", x.events, attempts]

    def _op_session_answer(self, x: _Script, op: h.SessionAnswer) -> Reply:
        user_key = op.head.user_key
        s = x.hash(op.session_key)
        u = x.hash(user_key)
        ok = op.outcome == "ok"
        index = self.get(op.sessions_key)
        if ok and op.mode == "enrol":
            x.hset(user_key, tfa="1", codes_kid=op.codes_kid, gen=int(u.get("gen", "0")) + 1)
            for field in _PENDING:
                self.data[user_key].pop(field, None)
            self.delete(op.pending_codes_key)
            x.otp_enrolment_ends(op.otp_key)
            base = op.session_key[: len(op.session_key) - len(op.sid)]
            for sid in list(index) if isinstance(index, set) else []:
                if sid != op.sid:
                    if self.delete(base + sid) == 1:
                        x.audit("session.revoked", sid, "enrolment")
                    index.discard(sid)
        if not x.live(s) or int(s.get("created", "0")) <= int(u.get("revoked_at", "0")):
            return ["GONE", x.events]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if op.outcome == "otp":
            ok = x.otp_take(op.otp_key, op.binding, "step_up", op.code_hash) is not None
        if ok:
            x.hset(user_key, fails=0)
            if self.delete(op.session_key) == 1:
                x.audit("session.revoked", op.sid, "rotated")
            if isinstance(index, set):
                index.discard(op.sid)
            x.new_session(op.new_session_key, op.sessions_key, op.new_sid, op.session_spec, 2, x.now,
                          s.get("remember", "0"), x.merge_amr(s.get("amr", ""), op.amr))
            x.hset(op.new_session_key, auth=s.get("auth") or s["created"])
            if "pwd" in s:
                x.hset(op.new_session_key, pwd=s["pwd"])
            return ["OK", x.events]
        lock = x.second_factor_failed(int(op.lock_failures), int(op.lock_ms), op.method, op.lock_audited)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        return ["WRONG", x.events]

    def _op_otp_issue(self, x: _Script, op: h.OtpIssue) -> Reply:
        sends = self.get(op.sends_key)
        if op.mode == "void":
            if x.hash(op.otp_key).get("h") == op.code_hash:
                self.delete(op.otp_key)
            if isinstance(sends, dict):
                sends.pop(op.send_id, None)
            return ["OK", x.events]
        u = x.hash(op.head.user_key)
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        interval, limit, window = int(op.resend_interval_ms), int(op.sends_per_window), int(op.window_ms)
        if not isinstance(sends, dict):
            sends = {}
        sends = {m: t for m, t in sends.items() if t > x.now - window}
        self.data[op.sends_key] = sends
        ordered = _by_score(sends)
        if ordered and x.now - sends[ordered[-1]] < interval and self.get(op.otp_key) is not None:
            return ["THROTTLED", x.events, sends[ordered[-1]] + interval]
        if len(ordered) >= limit:
            return ["THROTTLED", x.events, sends[ordered[0]] + window]
        ttl = int(op.ttl_ms)
        self.data[op.otp_key] = {"h": op.code_hash, "bind": op.binding, "purpose": op.purpose,
                                 "exp": str(x.now + ttl), "channel": op.channel, "to": op.address}
        self.expire(op.otp_key, ttl)
        sends[op.send_id] = x.now
        self.expire(op.sends_key, window)
        user = self.data.setdefault(op.head.user_key, {})
        if op.purpose == "enrol":
            user["otp_enrol"] = op.binding[2:]
        else:
            user.pop("otp_enrol", None)
        x.audit("two_factor.otp_sent", "", f"{op.channel}:{op.purpose}")
        return ["OK", x.events]

    def _op_otp_enrol(self, x: _Script, op: h.OtpEnrol) -> Reply:
        u, s = x.hash(op.head.user_key), x.hash(op.session_key)
        if not x.live(s) or int(s.get("created", "0")) <= int(u.get("revoked_at", "0")):
            return ["GONE", x.events]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if u.get("tfa") == "1" or op.on == "1":
            refused = x.factor_change_refused({"tfa": "1", "revoked_at": u.get("revoked_at", "0")}, op.session_key,
                                              op.max_age_ms, "1")
            if refused:
                return [refused, x.events]
        c = x.otp_take(op.otp_key, op.binding, "enrol", op.code_hash)
        if c is not None:
            user = self.data.setdefault(op.head.user_key, {})
            user.pop("otp_enrol", None)
            if u.get("tfa") != "1" and op.on != "1":
                user.update(enrol_sid=op.binding[2:], enrol_to=f"{c['channel']}:{c['to']}")
            return ["OK", x.events, c["channel"], c["to"]]
        lock = x.second_factor_failed(int(op.lock_failures), int(op.lock_ms), "otp")
        if lock > 0:
            return ["LOCKED", x.events, lock]
        return ["WRONG", x.events]

    def _op_trust_use(self, x: _Script, op: h.TrustUse) -> Reply:
        t, u = x.hash(op.trust_key), x.hash(op.head.user_key)
        if not x.live(t) or u.get("tfa") != "1" or t.get("gen") != u.get("gen", "0"):
            return ["GONE", x.events]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        self.delete(op.trust_key)
        exp = int(t["exp"])  # the rotated record keeps the original expiry (absolute lifetime)
        x.hset(op.new_trust_key, exp=exp, gen=t["gen"], mfa=t["mfa"], created=t.get("created", t["mfa"]),
               ip=op.head.ip, ua=op.head.user_agent, seen=x.now)
        self.expire(op.new_trust_key, exp - x.now)
        devices = self.get(op.devices_key)
        if isinstance(devices, dict):
            devices.pop(_key_id(op.trust_key), None)
        x.index_device(op.devices_key, op.new_trust_key, exp - x.now, t["gen"])
        x.new_session(op.new_session_key, op.sessions_key, op.new_sid, op.session_spec, 2, t["mfa"], op.remember,
                      op.amr)
        return ["OK", x.events, exp]

    def _op_two_factor_begin(self, x: _Script, op: h.TwoFactorBegin) -> Reply:
        user_key = op.head.user_key
        if x.hash(user_key).get("tfa") == "1":
            return ["ALREADY", x.events]
        x.hset(user_key, pending_secret=op.secret, pending_sid=op.sid, pending_kid=op.codes_kid, pending_name=op.name)
        self.data[op.pending_codes_key] = set(op.hashes)
        return ["OK", x.events]

    def _op_two_factor_disable(self, x: _Script, op: h.TwoFactorDisable) -> Reply:
        user_key = op.head.user_key
        u = x.hash(user_key)
        if op.mode in ("undo", "sessions"):
            if op.mode == "undo":
                x.hset(user_key, tfa="1", codes_kid=op.codes_kid, gen=int(u.get("gen", "0")) + 1)
            else:
                x.hset(user_key, gen=int(u.get("gen", "0")) + 1)
            base = op.session_key[: len(op.session_key) - len(op.sid)]
            index = self.get(op.sessions_key)
            for sid in sorted(index) if isinstance(index, set) else []:
                s = x.hash(base + sid)
                if sid != op.sid and "aal" in s and int(s.get("created", "0")) >= int(op.since_ms):
                    self.delete(base + sid)
                    index.discard(sid)
                    x.audit("session.revoked", sid,
                            "two_factor_restored" if op.mode == "undo" else "factor_change_undone")
            return ["OK", x.events]
        if op.mode == "pending":
            refused = x.factor_change_refused(u, op.session_key, op.max_age_ms, "1")
            if refused:
                return [refused, x.events]
            if u.get("tfa") == "1" or "pending_secret" not in u:
                return ["NOT_ENABLED", x.events]
        else:
            refused = x.factor_change_refused({"tfa": "1", "revoked_at": u.get("revoked_at", "0")}, op.session_key,
                                              op.max_age_ms, "1")
            if refused:
                return [refused, x.events]
        for field in _PENDING:
            self.data.setdefault(user_key, {}).pop(field, None)
        x.hset(user_key, tfa="0", codes_kid="", gen=int(u.get("gen", "0")) + 1)
        self.delete(op.pending_codes_key)
        return ["OK", x.events]

    def _op_backup_codes_replace(self, x: _Script, op: h.BackupCodesReplace) -> Reply:
        user_key = op.head.user_key
        u = x.hash(user_key)
        refused = x.factor_change_refused(u, op.session_key, op.max_age_ms, "1")
        if refused:
            return [refused, x.events]
        if u.get("tfa") == "1" or "pending_secret" not in u or u.get("pending_sid") != op.sid:
            return ["NOT_ENABLED", x.events]
        x.hset(user_key, pending_kid=op.codes_kid)
        self.data[op.pending_codes_key] = set(op.hashes)
        x.audit("two_factor.backup_codes_regenerated", op.sid)
        return ["OK", x.events]

    def _op_ceremony(self, x: _Script, op: h.Ceremony) -> Reply:
        if self.get(op.mark_key) is not None:
            return 0
        self.data[op.mark_key] = "1"
        self.expire(op.mark_key, int(op.ttl_ms))
        return 1

    def _op_factor_change(self, x: _Script, op: h.FactorChange) -> Reply:
        copy = u = x.hash(op.head.user_key)
        if op.password_given == "on":
            u = {"tfa": "1", "revoked_at": copy.get("revoked_at", "0")}
        refused = x.factor_change_refused(u, op.session_key, op.max_age_ms, op.password_given)
        if refused:
            return [refused, x.events]
        f = op.fields
        if f:
            x.hset(op.head.user_key, **dict(zip(f[0::2], f[1::2], strict=True)))
        if op.forget_devices == "1":
            x.forget_all_devices(copy, op.devices_key, op.trust_key, _key_id(op.session_key))
        return ["OK", x.events]

    def _op_passkey_sign_in(self, x: _Script, op: h.PasskeySignIn) -> Reply:
        user_key = op.head.user_key
        u = x.hash(user_key)
        if op.mode == "second_factor":
            ch = x.hash(op.challenge_key)
            refusal = x.challenge_refusal(ch, u, "passkey")
            if refusal is not None:
                return refusal
            self.delete(op.challenge_key)
            x.hset(user_key, fails=0, streak=0)
            x.new_session(op.new_session_key, op.sessions_key, op.new_sid, op.session_spec, 2, x.now,
                          ch.get("remember", "0"), op.amr)
            return ["SESSION", x.events, ch.get("remember", "0")]
        lock = x.locked_until(u)
        if lock > 0:
            return ["LOCKED", x.events, lock]
        if op.replaced_sid != "":
            if self.delete(op.replaced_key) == 1:
                x.audit("session.revoked", op.replaced_sid, "rotated")
            index = self.get(op.sessions_key)
            if isinstance(index, set):
                index.discard(op.replaced_sid)
        x.new_session(op.new_session_key, op.sessions_key, op.new_sid, op.session_spec, 2, x.now, op.remember, op.amr)
        return ["SESSION", x.events, op.remember]

    def _op_two_factor_import(self, x: _Script, op: h.TwoFactorImport) -> Reply:
        user_key = op.head.user_key
        u = x.hash(user_key)
        x.hset(user_key, tfa="1", gen=int(u.get("gen", "0")) + 1, codes_kid=op.codes_kid)
        for field in _PENDING:
            self.data[user_key].pop(field, None)
        self.delete(op.pending_codes_key)
        x.otp_enrolment_ends(op.otp_key)
        return ["OK", x.events]

    def _op_user_reset(self, x: _Script, op: h.UserReset) -> Reply:
        user_key = op.head.user_key
        u = x.hash(user_key)
        x.hset(user_key, revoked_at=x.now, gen=int(u.get("gen", "0")) + 1)  # gen: remembered devices end too
        x.audit("session.revoked", "", "all")
        if op.mode == "reset":
            for field in _PENDING:
                self.data[user_key].pop(field, None)
            x.hset(user_key, tfa="0", codes_kid="", fails=0, lock_until=0)  # written, not deleted: user_fill.lua
            self.delete(op.pending_codes_key)
        return ["OK", x.events]

    def _op_audit_event(self, x: _Script, op: h.AuditEvent) -> Reply:
        x.audit(op.event, op.sid, op.detail)
        return ["OK", x.events]

    def _op_secret_reencrypt(self, x: _Script, op: h.SecretReencrypt) -> Reply:
        user = self.get(op.user_key)
        if not isinstance(user, dict) or user.get("pending_secret") != op.old_secret:
            return 0
        user["pending_secret"] = op.new_secret
        return 1

    def _op_session_list(self, x: _Script, op: h.SessionList) -> Reply:
        revoked = int(x.hash(op.user_key).get("revoked_at", "0"))
        prefix = op.session_key[: len(op.session_key) - len(_key_id(op.session_key))]
        index = self.get(op.sessions_key)
        by_age = self.get(op.sessions_key + ":age")
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

    def _op_trust_list(self, x: _Script, op: h.TrustList) -> Reply:
        gen = x.hash(op.user_key).get("gen", "0")
        prefix = op.trust_key[: len(op.trust_key) - len(_key_id(op.trust_key))]
        devices = self.get(op.devices_key)
        out: list[Any] = []
        for tid in _by_score(devices) if isinstance(devices, dict) else []:
            t = x.hash(prefix + tid)
            if x.live(t) and t.get("gen") == gen:
                out += [tid, list(chain.from_iterable(t.items()))]
            else:
                del devices[tid]
        return out

    def _op_session_end(self, x: _Script, op: h.SessionEnd) -> Reply:
        refused = x.factor_change_refused(x.hash(op.head.user_key), op.session_key, op.max_age_ms, "0")
        if refused:
            return [refused, x.events]
        index = self.get(op.sessions_key)
        members = index if isinstance(index, set) else set()
        targets = [op.target_sid] if op.mode == "one" else list(members)
        by_age = self.get(op.sessions_key + ":age")
        prefix = op.session_key[: len(op.session_key) - len(op.sid)]
        ended = current = 0
        for sid in targets:
            if (op.mode == "others" and sid == op.sid) or sid not in members:
                continue
            members.discard(sid)
            if isinstance(by_age, dict):
                by_age.pop(sid, None)
            if self.delete(prefix + sid) == 1:
                x.audit("session.revoked", sid, "user")
                ended += 1
            if sid == op.sid:
                current = 1
        return ["OK", x.events, ended, current]

    def _op_trust_end(self, x: _Script, op: h.TrustEnd) -> Reply:
        user_key = op.head.user_key
        u = x.hash(user_key)
        refused = x.factor_change_refused(u, op.session_key, op.max_age_ms, "0")
        if refused:
            return [refused, x.events]
        devices = self.get(op.devices_key)
        devices = devices if isinstance(devices, dict) else {}
        if op.mode == "one":
            tid = _key_id(op.trust_key)
            if devices.pop(tid, None) is None:
                return ["OK", x.events, 0]
            self.delete(op.trust_key)
            x.audit("trusted_device.revoked", op.sid, tid)
            return ["OK", x.events, 1]
        return ["OK", x.events, x.forget_all_devices(u, op.devices_key, op.trust_key, op.sid)]

    def user_ids(self, prefix: str) -> list[str]:
        """Every user id with a record (administration: key rotation)."""
        head, tail = f"{prefix}:{{u:", "}:user"
        with self._lock:
            return [k[len(head):-len(tail)] for k in list(self.data) if k.startswith(head) and k.endswith(tail)]

"""A hypothesis state machine: random sequences of factor operations on one user, on each backend,
compared step by step with a plain Python model of what they must do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from harness import knob
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from records_support import new_id

from banata_middleware.stores.records import (
    DEFAULT_NAME,
    AcceptTotpStep,
    ActivateBackupCodes,
    AddAuthenticator,
    AddPasskey,
    AdvanceSignCount,
    ConfirmAuthenticator,
    ConsumeBackupCode,
    DiscardBackupCodes,
    EnableTotp,
    EndRemoval,
    LoadUser,
    Passkey,
    RecordFailure,
    RecordStore,
    RemoveSecondFactor,
    RemoveTotpFactor,
    ReplaceBackupCodes,
    StageBackupCodes,
    Status,
)

T = 1_800_000_000_000
factor_ids = st.sampled_from(["a", "b"])
secrets_ = st.sampled_from(["s1", "s2"])
steps = st.integers(0, 6)
# The apps' names: two differ in case alone, and an add compares names without case (as MariaDB does).
names = st.sampled_from(["phone", "Phone", "tablet"])
limits = st.sampled_from([1, 2, 10])  # the per-user cap: 10 is the flows'
codes = st.sampled_from(["c1", "c2", "c3"])
tokens = st.sampled_from(["t1", "t2"])
# A staged set's hashes carry its token (real ones are random, so two sets never share one); a
# consume is also tried with them, before and after their set is activated.
any_code = st.sampled_from(["c1", "c2", "c3", "t1-c1", "t1-c2", "t2-c1", "t2-c3"])
credentials = st.sampled_from(["p1", "p2"])


@dataclass
class Factor:
    secret: str
    name: str
    confirmed: bool = False
    last_step: int = 0


@dataclass
class Model:
    factors: dict[str, Factor] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)
    staged: dict[str, set[str]] = field(default_factory=dict)  # generate-backup-codes' phase one, by token
    sign_counts: dict[str, int] = field(default_factory=dict)
    streak: int = 0


class FactorMachine(RuleBasedStateMachine):
    store: ClassVar[RecordStore]

    @initialize()
    def new_user(self) -> None:
        self.uid = new_id()
        self.model = Model()

    def _cred(self, name: str) -> str:
        return f"{self.uid}-{name}"  # credential ids are global; keep each example's apart

    def _on(self) -> bool:
        return any(f.confirmed for f in self.model.factors.values())

    @rule(fid=factor_ids, secret=secrets_, step=steps, new=st.sets(codes))
    def enable(self, fid: str, secret: str, step: int, new: set[str]) -> None:
        """Two-factor on, as the enable flow turns it on: a confirmed first app and its backup codes."""
        reply = self.store.execute(EnableTotp(self.uid, fid, secret, "k1", T, step, sorted(new), "k1",
                                              while_off=True))
        if self._on():
            assert reply is Status.CHANGED
        elif fid in self.model.factors:  # an unfinished setup left by a removal (the flows' ids are random)
            assert reply is Status.TAKEN
        else:
            assert reply is Status.CREATED
            self.model.factors[fid] = Factor(secret, DEFAULT_NAME, True, step)
            self.model.codes = set(new)
            self.model.staged.clear()
            self.model.streak = 0

    @rule(fid=factor_ids, secret=secrets_, name=names, limit=limits, stale=st.booleans(), turn_on=st.booleans())
    def add_factor(self, fid: str, secret: str, name: str, limit: int, stale: bool, turn_on: bool = False) -> None:
        """Another app while two-factor is on (``AddAuthenticator``). Every factor is made at T, so
        ``stale`` (setups made before T + 1) drops every unconfirmed one, and T drops none.
        ``turn_on``: two-factor off, the other id's app turns it on first, so that most adds get
        past the first check (the other rules turn it off often)."""
        if turn_on and not self._on():
            self.enable("b" if fid == "a" else "a", "s1", 0, set(self.model.codes))
        reply = self.store.execute(AddAuthenticator(self.uid, fid, secret, "k1", T, name, limit,
                                                    T + 1 if stale else T))
        factors, folded = self.model.factors, name.casefold()
        replaced = {i for i, f in factors.items() if not f.confirmed and (stale or f.name.casefold() == folded)}
        kept = factors.keys() - replaced
        if not self._on():
            assert reply is Status.CHANGED
        elif any(f.confirmed and f.name.casefold() == folded for f in factors.values()):
            assert reply is Status.TAKEN
        elif len(kept) >= limit:
            assert reply is Status.FULL
        elif fid in kept:  # the id is the key (the flows' are random): met, it undoes the add, as a lost race does
            assert reply is Status.TAKEN
        else:
            assert reply is Status.CREATED
            for i in replaced:
                del factors[i]
            factors[fid] = Factor(secret, name)

    @rule(fid=factor_ids, secret=secrets_, step=steps)
    def confirm(self, fid: str, secret: str, step: int) -> None:
        """An app's first code, as the flow confirms it: the confirmation holds the factor-change
        lease until its re-check passed, then releases it (``EndRemoval``)."""
        reply = self.store.execute(ConfirmAuthenticator(self.uid, fid, secret, step, T))
        factor = self.model.factors.get(fid)
        if factor is None:
            assert reply.status is Status.NOT_FOUND
        elif factor.secret != secret or factor.confirmed:
            assert reply.status is Status.CHANGED
        else:
            assert reply.status is Status.ACCEPTED
            assert self.store.execute(EndRemoval(self.uid, reply.lease)) is Status.OK
            factor.confirmed, factor.last_step = True, step

    @rule(fid=factor_ids, secret=secrets_, step=steps)
    def verify(self, fid: str, secret: str, step: int) -> None:
        reply = self.store.execute(AcceptTotpStep(self.uid, fid, secret, step))
        factor = self.model.factors.get(fid)
        if factor is None:
            assert reply is Status.NOT_FOUND
        elif factor.secret != secret or not factor.confirmed:
            assert reply is Status.CHANGED
        elif step <= factor.last_step:
            assert reply is Status.REPLAYED
        else:
            assert reply is Status.ACCEPTED
            factor.last_step, self.model.streak = step, 0

    @rule(fid=factor_ids, delta=st.integers(-1, 1))
    def verify_near_the_last_step(self, fid: str, delta: int) -> None:
        """The edges, often: a confirmed factor's right secret at, just before or just after the guard."""
        if fid not in self.model.factors:
            if self._on():  # a name no other app has: names are set once, and only its id had it
                self.add_factor(fid, "s1", f"app {fid}", 10, False)
            else:
                self.enable(fid, "s1", 3, set(self.model.codes))
        factor = self.model.factors[fid]
        if not factor.confirmed:
            self.confirm(fid, factor.secret, 3)
        self.verify(fid, factor.secret, max(0, factor.last_step + delta))

    @rule(fid=factor_ids, step=steps)
    def confirm_with_the_right_secret(self, fid: str, step: int) -> None:
        """Enable twice: a second confirmation of a confirmed factor changes nothing."""
        factor = self.model.factors.get(fid)
        self.confirm(fid, factor.secret if factor else "s1", step)

    @rule(fid=factor_ids)
    def remove_factor(self, fid: str) -> None:
        reply = self.store.execute(RemoveTotpFactor(self.uid, fid))
        assert reply is (Status.OK if self.model.factors.pop(fid, None) else Status.NOT_FOUND)

    @rule(new=st.sets(codes))
    def replace_codes(self, new: set[str]) -> None:
        assert self.store.execute(ReplaceBackupCodes(self.uid, sorted(new), "k1", T)) == len(new)
        self.model.codes = set(new)
        self.model.staged.clear()

    @rule(token=tokens, new=st.sets(codes, min_size=1))
    def stage_codes(self, token: str, new: set[str]) -> None:
        hashes = {f"{token}-{c}" for c in new}
        taken = self.model.codes.union(*self.model.staged.values())
        if token in self.model.staged or hashes & taken:
            return  # a token or hash is never reused for real (both random)
        assert self.store.execute(StageBackupCodes(self.uid, token, sorted(hashes), "k2", T)) is Status.OK
        self.model.staged[token] = hashes

    @rule(token=tokens)
    def activate_codes(self, token: str) -> None:
        reply = self.store.execute(ActivateBackupCodes(self.uid, token))
        if token in self.model.staged:
            assert reply is Status.OK
            self.model.codes = self.model.staged.pop(token)
            self.model.staged.clear()
        else:
            assert reply is Status.CHANGED

    @rule(token=tokens)
    def discard_codes(self, token: str) -> None:
        reply = self.store.execute(DiscardBackupCodes(self.uid, token))
        assert reply is (Status.OK if self.model.staged.pop(token, None) else Status.NOT_FOUND)

    @rule(candidates=st.lists(any_code, max_size=2))
    def use_code(self, candidates: list[str]) -> None:
        reply = self.store.execute(ConsumeBackupCode(self.uid, candidates))
        hit = self.model.codes & set(candidates)
        self.model.codes -= hit
        if hit:
            self.model.streak = 0
        assert (reply.status, reply.remaining) == (Status.CONSUMED if hit else Status.NOT_FOUND,
                                                   len(self.model.codes))

    @rule(cred=credentials, n=st.integers(0, 4))
    def passkey_assertion(self, cred: str, n: int) -> None:
        if cred not in self.model.sign_counts:
            passkey = Passkey(self._cred(cred), self.uid, "cose", n, (), "single_device", False, "", "", T)
            assert self.store.execute(AddPasskey(passkey)) is Status.CREATED
            self.model.sign_counts[cred] = n
            return
        reply = self.store.execute(AdvanceSignCount(self.uid, self._cred(cred), n, T))
        stored = self.model.sign_counts[cred]
        if n > stored or n == stored == 0:
            assert reply is Status.ACCEPTED
            self.model.sign_counts[cred] = n
        else:
            assert reply is Status.REGRESSED

    @rule()
    def failure(self) -> None:
        self.model.streak += 1
        assert self.store.execute(RecordFailure(self.uid, 100, T)).streak == self.model.streak

    @rule()
    def disable(self) -> None:
        had = bool(self.model.factors or self.model.codes)
        assert self.store.execute(RemoveSecondFactor(self.uid, T)) is (Status.OK if had else Status.NOT_FOUND)
        self.model.factors.clear()
        self.model.codes.clear()
        self.model.staged.clear()
        self.model.streak = 0

    @invariant()
    def store_matches_model(self) -> None:
        record = self.store.execute(LoadUser(self.uid))
        assert {f.id: (f.secret, f.name, f.confirmed_at is not None, f.last_step) for f in record.totp} == {
            fid: (f.secret, f.name, f.confirmed, f.last_step) for fid, f in self.model.factors.items()}
        assert record.backup_codes == len(self.model.codes)
        assert record.passkeys == len(self.model.sign_counts)
        assert record.failure_streak == self.model.streak
        assert record.two_factor_enabled == any(f.confirmed for f in self.model.factors.values())


def test_factor_operations_match_the_model(store: RecordStore, backend: str) -> None:
    class Machine(FactorMachine):
        pass

    Machine.store = store
    # The logic is the same everywhere: explore widely on the local file, check the servers' SQL semantics.
    examples = (40 if backend == "sqlite" else 10) * knob("BANATA_FUZZ_SCALE", 1, 10)
    run_state_machine_as_test(Machine, settings=settings(
        max_examples=examples, stateful_step_count=20, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow]))

"""A second-factor verification's one write transaction (DESIGN rule 3: the lookup, then this).

The check-and-consume (a TOTP step through ``AcceptAnyTotpStep``, for each authenticator app whose
code matched, or ``AcceptTotpStep``; a backup code through ``ConsumeBackupCode``) and, when it did
not succeed, the failure counted toward the permanent lock (``RecordFailure``) run in ONE
transaction, so a wrong code costs no extra statement round trip and a right one never counts as a
failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .factors.backup_codes import BackupCodeUse, ConsumeBackupCode
from .factors.totp import AcceptAnyTotpStep, AcceptTotpStep
from .ops import RecordOp, SqlGen, Status
from .users import FailureCount, RecordFailure

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["Proof", "ProveSecondFactor"]

#: The outcomes of a proof that count as a failed attempt: a replayed step, an unknown code. A
#: factor removed or replaced meanwhile (NOT_FOUND / CHANGED for a TOTP step) is no wrong guess.
_WRONG = {AcceptTotpStep: (Status.REPLAYED,), AcceptAnyTotpStep: (Status.REPLAYED,),
          ConsumeBackupCode: (Status.NOT_FOUND,)}


@dataclass(frozen=True, slots=True)
class Proof:
    status: Status  # ACCEPTED / CONSUMED (success), REPLAYED / NOT_FOUND / CHANGED, or NOT_FOUND for no proof
    remaining: int  # backup codes left (a backup-code proof), else 0
    failure: FailureCount | None  # the streak after this one, when it counted as a failure

    @property
    def ok(self) -> bool:
        return self.status in (Status.ACCEPTED, Status.CONSUMED)


@dataclass(frozen=True, slots=True)
class ProveSecondFactor(RecordOp[Proof]):
    """``attempt`` (None: the code matched nothing, so there is nothing to consume), then, unless
    it succeeded, ``failure``. The attempt's and the failure's audit rows are theirs."""

    attempt: AcceptTotpStep | AcceptAnyTotpStep | ConsumeBackupCode | None
    failure: RecordFailure

    def run(self, schema: Schema) -> SqlGen[Proof]:
        status, remaining, wrong = Status.NOT_FOUND, 0, True
        if isinstance(self.attempt, ConsumeBackupCode):
            use: BackupCodeUse = yield from self.attempt.run(schema)
            status, remaining = use.status, use.remaining
        elif self.attempt is not None:
            status = yield from self.attempt.run(schema)
        if self.attempt is not None:
            wrong = status in _WRONG[type(self.attempt)]
        failure = (yield from self.failure.run(schema)) if wrong else None
        return Proof(status, remaining, failure)

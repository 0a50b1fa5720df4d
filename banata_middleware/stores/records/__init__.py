"""Durable records in SQL: accounts, factors, backup codes, passkeys, the permanent lock, the audit trail.

Every operation is a typed dataclass (``ops``, ``accounts``, ``users``, ``audit``, ``factors.*``)
run by ``RecordStore.execute`` (sync engine) or ``RecordStore.aexecute`` (async engine) in one
transaction. Needs the ``sql`` extra (plus ``postgres`` or ``mysql`` for those servers).
"""

from __future__ import annotations

from .accounts import Account, CreateAccount, GetAccount, GetAccountByEmail, SetPassword
from .audit import AppendAudit, AuditRecord, ListAudit, PruneAudit
from .factors.backup_codes import (
    ActivateBackupCodes,
    BackupCode,
    BackupCodeUse,
    ConsumeBackupCode,
    DiscardBackupCodes,
    ReplaceBackupCodes,
    StageBackupCodes,
)
from .factors.otp import DisableOtp, EnableOtp, OtpFactor, OtpRemoval, OtpRows, RecordOtpUse, RemoveOtp, RestoreOtp
from .factors.passkeys import (
    AddPasskey,
    AdvanceSignCount,
    GetPasskey,
    ListPasskeys,
    Passkey,
    RemovePasskey,
    RenamePasskey,
)
from .factors.totp import (
    DEFAULT_NAME,
    AcceptAnyTotpStep,
    AcceptTotpStep,
    AddAuthenticator,
    AddTotpFactor,
    AuthenticatorRemoval,
    ConfirmTotpFactor,
    EnableTotp,
    ListTotpSecrets,
    RemoveAuthenticator,
    RemoveTotpFactor,
    RenameTotpFactor,
    RewrapTotpSecret,
    TotpCandidate,
    TotpFactor,
)
from .ops import AuditEntry, RecordOp, Status
from .proof import Proof, ProveSecondFactor
from .schema import Schema
from .store import RecordStore, SchemaOutOfDate
from .users import (
    REMOVAL_LEASE_MS,
    DisabledSecondFactor,
    DisableSecondFactor,
    EndRemoval,
    FailureCount,
    LoadUser,
    RecordFailure,
    RemoveSecondFactor,
    RestoreSecondFactor,
    RevokeSessions,
    Unlock,
    UserRecord,
)

__all__ = [
    "DEFAULT_NAME",
    "REMOVAL_LEASE_MS",
    "AcceptAnyTotpStep",
    "AcceptTotpStep",
    "Account",
    "ActivateBackupCodes",
    "AddAuthenticator",
    "AddPasskey",
    "AddTotpFactor",
    "AdvanceSignCount",
    "AppendAudit",
    "AuditEntry",
    "AuditRecord",
    "AuthenticatorRemoval",
    "BackupCode",
    "BackupCodeUse",
    "ConfirmTotpFactor",
    "ConsumeBackupCode",
    "CreateAccount",
    "DisableOtp",
    "DisableSecondFactor",
    "DisabledSecondFactor",
    "DiscardBackupCodes",
    "EnableOtp",
    "EnableTotp",
    "EndRemoval",
    "FailureCount",
    "GetAccount",
    "GetAccountByEmail",
    "GetPasskey",
    "ListAudit",
    "ListPasskeys",
    "ListTotpSecrets",
    "LoadUser",
    "OtpFactor",
    "OtpRemoval",
    "OtpRows",
    "Passkey",
    "Proof",
    "ProveSecondFactor",
    "PruneAudit",
    "RecordFailure",
    "RecordOp",
    "RecordOtpUse",
    "RecordStore",
    "RemoveAuthenticator",
    "RemoveOtp",
    "RemovePasskey",
    "RemoveSecondFactor",
    "RemoveTotpFactor",
    "RenamePasskey",
    "RenameTotpFactor",
    "ReplaceBackupCodes",
    "RestoreOtp",
    "RestoreSecondFactor",
    "RevokeSessions",
    "RewrapTotpSecret",
    "Schema",
    "SchemaOutOfDate",
    "SetPassword",
    "StageBackupCodes",
    "Status",
    "TotpCandidate",
    "TotpFactor",
    "Unlock",
    "UserRecord",
]

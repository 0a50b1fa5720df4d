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
from .factors.otp import EnableOtp, OtpFactor, OtpRows, RecordOtpUse, RemoveOtp, RestoreOtp
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
    DisabledSecondFactor,
    DisableSecondFactor,
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
    "AcceptAnyTotpStep", "AcceptTotpStep", "Account", "ActivateBackupCodes", "AddAuthenticator", "AddPasskey",
    "AddTotpFactor", "AdvanceSignCount", "AppendAudit", "AuditEntry", "AuditRecord", "AuthenticatorRemoval",
    "BackupCode", "BackupCodeUse", "ConfirmTotpFactor", "ConsumeBackupCode", "CreateAccount", "DisableSecondFactor",
    "DisabledSecondFactor", "DiscardBackupCodes", "EnableOtp", "EnableTotp", "FailureCount", "GetAccount",
    "GetAccountByEmail", "GetPasskey", "ListAudit", "ListPasskeys", "ListTotpSecrets", "LoadUser", "OtpFactor",
    "OtpRows", "Passkey", "Proof", "ProveSecondFactor", "PruneAudit", "RecordFailure", "RecordOp", "RecordOtpUse",
    "RecordStore", "RemoveAuthenticator", "RemoveOtp", "RemovePasskey", "RemoveSecondFactor", "RemoveTotpFactor",
    "RenamePasskey", "RenameTotpFactor", "ReplaceBackupCodes", "RestoreOtp", "RestoreSecondFactor", "RevokeSessions",
    "RewrapTotpSecret", "Schema", "SchemaOutOfDate", "SetPassword", "StageBackupCodes", "Status", "TotpCandidate",
    "TotpFactor", "Unlock", "UserRecord",
]

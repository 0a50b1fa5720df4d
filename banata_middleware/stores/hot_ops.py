"""Every hot-store operation, described once: by name, its keys and arguments as typed fields, its
reply as a typed value, its statuses as members of ``HotStatus``.

A flow yields an instance of one of the classes below (``Guard(...)``, ``ChallengeAnswer(...)``):
a NamedTuple (one is built per request, and a NamedTuple is the cheapest typed value) whose fields
are the operation's Redis keys (``Key``, named ``*_key``, all in one hash slot), then its arguments.
Field positions exist here and nowhere else:

- ``RedisStore`` runs ``lua/<name>.lua`` with EVALSHA, the fields flattened in declaration order
  (``OpSpec.flat``), each script preceded by a generated header (``lua_header``) that binds every
  field to a Lua local of the same name. No script indexes KEYS or ARGV itself
  (``tests/stores/test_twins.py`` checks it).
- ``MemoryStore`` runs ``_op_<name>``, the script's twin, which reads the same fields by name.
- Both stores turn the script's raw reply (what Redis returns: lists, strings, integers) into the
  typed reply with the same function (``OpSpec.reply``), so flows read ``reply.status``,
  ``reply.lock_until``, never ``reply[2]``.

The writing operations of one user start with ``head: Head``, the layout ``lua/_prelude.lua`` relies
on (``audit``, ``new_session``): the user hash and audit stream, now, the client, the stream length,
the user id. Every operation has ``now_ms``, the application Clock's time (never Redis TIME: tests
and the simulator move time), which the prelude reads as ``NOW``.

Values go to Redis as they are: every field is a ``str`` or an ``int`` (flags are ``"1"``/``"0"``),
and a script receives them as strings, as Redis gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, get_type_hints

__all__ = [
    "OPS", "OPS_BY_NAME", "Answer", "AuditEvent", "BackupCodesReplace", "Ceremony", "ChallengeAnswer",
    "ChallengeCreate", "Copied", "DevicesForgotten", "FactorChange", "Flag", "GateReply", "Guard", "GuardReply",
    "Head", "HotOp", "HotStatus", "Key", "Load", "LoadReply", "OpSpec", "OtpEnrol", "OtpEnrolled", "OtpIssue",
    "OtpIssued", "PasskeySession", "PasskeySignIn", "PasswordFailed", "PasswordGate", "Rest", "SecretReencrypt",
    "SessionAnswer", "SessionCreate", "SessionEnd", "SessionList", "SessionRevoke", "SessionsEnded", "Throttle",
    "TrustEnd", "TrustList", "TrustRotated", "TrustUse", "TwoFactorBegin", "TwoFactorDisable", "TwoFactorImport",
    "UserFill", "UserOp", "UserReset", "Verdict", "keys_of", "lua_header", "name_of", "records",
]

T = TypeVar("T")


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_KEY = _Marker("KEY")
_REST = _Marker("REST")

#: A Redis key (Lua's KEYS). Every key field's name ends in ``_key``; keys come before arguments.
Key = Annotated[str, _KEY]
#: The variadic tail of the arguments (backup-code hashes, field/value pairs): the last field, if any.
Rest = Annotated[tuple[str, ...], _REST]
#: A yes/no argument, as the scripts compare it.
Flag = Literal["0", "1"]


class HotStatus(StrEnum):
    """Every status a hot-store script answers with (each operation declares the ones it may give).
    A ``StrEnum``: the scripts return these strings, and a member equals its string."""

    OK = "OK"
    GONE = "GONE"  # the challenge, session or trust record is absent, expired or revoked
    LOCKED = "LOCKED"  # the user's temporary lock is on (the reply carries its end)
    SAME_FACTOR = "SAME_FACTOR"  # the factor that opened the challenge cannot answer it too
    WRONG = "WRONG"  # the record store refused the proof; the failure was counted
    EXHAUSTED = "EXHAUSTED"  # that failure used up the challenge's attempts
    SESSION = "SESSION"  # passkey_sign_in made a session
    TWO_FACTOR_ON = "TWO_FACTOR_ON"  # an aal 1 session refused: 2FA is on by now
    ALREADY = "ALREADY"  # 2FA is already on
    NOT_ENABLED = "NOT_ENABLED"  # no pending setup (of this session) to act on
    NO_SESSION = "NO_SESSION"  # factor_change_refused: the caller's session has ended
    FRESH_TWO_FACTOR = "FRESH_TWO_FACTOR"  # factor_change_refused: a recent second factor is needed
    FRESH_PASSWORD = "FRESH_PASSWORD"  # factor_change_refused: a recent password check is needed
    THROTTLED = "THROTTLED"  # otp_issue: a code was sent a moment ago, or too many in the window


_STATUS = {s.value: s for s in HotStatus}  # a dict look-up: cheaper than HotStatus(value)
_REFUSALS = (HotStatus.NO_SESSION, HotStatus.FRESH_TWO_FACTOR, HotStatus.FRESH_PASSWORD)


# -- replies -----------------------------------------------------------------------------------
class Verdict(NamedTuple):
    """The reply of most writing scripts: a status and the types of the audit events it wrote."""

    status: HotStatus
    events: list[str]


class Answer(NamedTuple):
    """``challenge_answer`` and ``session_answer``."""

    status: HotStatus
    events: list[str]
    lock_until: int = 0  # LOCKED: when the temporary lock ends (ms)
    attempts_left: int | None = None  # WRONG, from challenge_answer: the challenge's attempts left


class PasskeySession(NamedTuple):
    """``passkey_sign_in``."""

    status: HotStatus
    events: list[str]
    lock_until: int = 0  # LOCKED
    remember: str = "0"  # SESSION: the remember-me flag the session was made with ("1" | "0")


class TrustRotated(NamedTuple):
    """``trust_use``."""

    status: HotStatus
    events: list[str]
    lock_until: int = 0  # LOCKED
    expires_ms: int = 0  # OK: when the (rotated) trust ends: the original one's expiry


class SessionsEnded(NamedTuple):
    """``session_end``."""

    status: HotStatus
    events: list[str]
    ended: int = 0  # OK: sessions ended
    current: int = 0  # OK: 1 when the caller's own session was one of them


class DevicesForgotten(NamedTuple):
    """``trust_end``."""

    status: HotStatus
    events: list[str]
    forgotten: int = 0  # OK: trust records removed


class Copied(NamedTuple):
    """``user_fill``."""

    status: HotStatus
    events: list[str]  # sessions a repair ended (an enrolment whose hot half failed)
    user: dict[str, str]  # the user hash after the write


class OtpIssued(NamedTuple):
    """``otp_issue``."""

    status: HotStatus
    events: list[str]
    lock_until: int = 0  # LOCKED
    retry_at: int = 0  # THROTTLED: when a send is allowed again (ms)


class OtpEnrolled(NamedTuple):
    """``otp_enrol``."""

    status: HotStatus
    events: list[str]
    lock_until: int = 0  # LOCKED
    channel: str = ""  # OK: the code's channel
    address: str = ""  # OK: where it was sent


class GuardReply(NamedTuple):
    """``guard``: the fields the pass-through decides on (None: absent or not asked for)."""

    tfa: str | None
    revoked_at: str | None
    session_exp: str | None
    session_created: str | None
    session_aal: str | None
    session_mfa: str | None
    challenge_exp: str | None
    challenge_created: str | None
    session_amr: str | None
    session_auth: str | None  # when the session's sign-in happened, if rotated since
    session_seen: str | None  # last use (written coarsely by the guard)
    rec: str | None  # "1" when the user's copy is filled (user_fill)


class LoadReply(NamedTuple):
    """``load``: the hashes (empty when absent or not asked for) and the pending setup's code hashes."""

    user: dict[str, str]
    session: dict[str, str]
    challenge: dict[str, str]
    pending_codes: list[str]  # in no particular order


class GateReply(NamedTuple):
    """``password_gate``."""

    retry_ms: int  # ms until this account may be tried from this address; 0: now
    known: bool  # the address signed in to the account before (within the known-address lifetime)


def _pairs(flat: list[Any]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def records(flat: list[Any]) -> list[tuple[str, dict[str, str]]]:
    """A list script's reply ``[id, [field, value, ...], ...]`` as (id, record) pairs."""
    return [(str(flat[i]), _pairs(flat[i + 1])) for i in range(0, len(flat), 2)]


def _statused(cls: Callable[..., T], **values: str) -> Callable[[list[Any]], T]:
    """The reply converter of a script answering ``{status, events, value...}``: ``values`` names,
    per status, the fields its values fill (space-separated), e.g. ``LOCKED="lock_until"``."""
    named = {_STATUS[status]: tuple(fields.split()) for status, fields in values.items()}

    def convert(raw: list[Any]) -> T:
        status = _STATUS[raw[0]]
        names = named.get(status)
        if not names:
            return cls(status, raw[1])
        return cls(status, raw[1], **dict(zip(names, raw[2:], strict=True)))

    return convert


def _verdict(raw: list[Any]) -> Verdict:
    return Verdict(_STATUS[raw[0]], raw[1])


def _guard_reply(raw: list[Any]) -> GuardReply:
    return GuardReply._make(raw)


def _load_reply(raw: list[Any]) -> LoadReply:
    return LoadReply(_pairs(raw[0]), _pairs(raw[1]), _pairs(raw[2]), list(raw[3]))


def _copied(raw: list[Any]) -> Copied:
    return Copied(_STATUS[raw[0]], raw[1], _pairs(raw[2]))


def _gate_reply(raw: list[Any]) -> GateReply:
    return GateReply(int(raw[0]), int(raw[1]) == 1)


# -- the registry ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpSpec:
    """What the stores know of one operation, derived from its class by ``hot_op``."""

    name: str  # lua/<name>.lua, MemoryStore._op_<name>
    type: type[Any]
    keys: tuple[str, ...]  # KEYS, in order (a user operation's head's first)
    args: tuple[str, ...]  # ARGV, in order (the head's first; a Rest field last)
    rest: bool  # the last argument is variadic
    user: bool  # starts with ``head: Head``
    statuses: frozenset[HotStatus]  # what it may answer (empty: it answers no status)
    reply: Callable[[Any], Any]  # Redis's raw reply -> the typed one
    flat: Callable[[Any], tuple[Any, ...]]  # an instance -> KEYS then ARGV, for EVALSHA


OPS: dict[type[Any], OpSpec] = {}
OPS_BY_NAME: dict[str, OpSpec] = {}


def _flattener(user: bool, body_keys: int, rest: bool) -> Callable[[Any], tuple[Any, ...]]:
    if not user and not rest:
        return lambda op: op  # already KEYS then ARGV: sent as it is (the guard's path)

    def flat(op: tuple[Any, ...]) -> tuple[Any, ...]:
        if user:
            head = op[0]
            out = (*head[:2], *op[1:1 + body_keys], *head[2:], *op[1 + body_keys:])
        else:
            out = op
        return (*out[:-1], *out[-1]) if rest else out

    return flat


def _is(hint: Any, marker: _Marker) -> bool:
    return marker in getattr(hint, "__metadata__", ())


def hot_op(name: str, reply: Callable[[Any], Any], *statuses: HotStatus) -> Callable[[type[T]], type[T]]:
    """Registers the class below as the operation ``name``; its fields' order is the scripts'."""

    def register(cls: type[T]) -> type[T]:
        hints = get_type_hints(cls, include_extras=True)
        fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
        user = fields[0] == "head"
        if user and hints["head"] is not Head:
            raise TypeError(f"{cls.__name__}.head must be a Head")
        body = fields[1:] if user else fields
        keys = tuple(f for f in body if _is(hints[f], _KEY))
        args = tuple(f for f in body if not _is(hints[f], _KEY))
        rest = bool(args) and _is(hints[args[-1]], _REST)
        if body[:len(keys)] != keys:
            raise TypeError(f"{cls.__name__}: keys come before arguments")
        if any(not k.endswith("_key") for k in keys) or any(a.endswith("_key") for a in args):
            raise TypeError(f"{cls.__name__}: key fields, and only they, are named *_key")
        if any(_is(hints[a], _REST) for a in args[:-1]):
            raise TypeError(f"{cls.__name__}: only the last argument may be Rest")
        if not user and args[:1] != ("now_ms",):
            raise TypeError(f"{cls.__name__}: the first argument is now_ms (the prelude's NOW)")
        spec = OpSpec(
            name=name, type=cls,
            keys=(*Head._fields[:2], *keys) if user else keys,
            args=(*Head._fields[2:], *args) if user else args,
            rest=rest, user=user, statuses=frozenset(statuses), reply=reply,
            flat=_flattener(user, len(keys), rest),
        )
        if name in OPS_BY_NAME:
            raise TypeError(f"two operations named {name}")
        OPS[cls] = OPS_BY_NAME[name] = spec
        cls.__repr__ = _repr  # type: ignore[method-assign]
        return cls

    return register


def _repr(op: Any) -> str:
    """An operation's repr names its keys, never its arguments: they may hold a secret's ciphertext,
    code hashes or a client's address, and logs and error reports print reprs."""
    spec = OPS[type(op)]
    keys = spec.flat(op)[:len(spec.keys)]
    return f"{type(op).__name__}(keys={tuple(keys)!r}, <{len(spec.args)} arguments>)"


def lua_header(spec: OpSpec) -> str:
    """The Lua that binds the operation's fields to locals of the same names, the only place where
    KEYS and ARGV are indexed. The user head's names that an operation lacks are declared unset, so
    the prelude's functions (which use them) never reach for a global."""
    lines = [f"-- {spec.type.__name__} (stores/hot_ops.py): KEYS and ARGV by name, generated"]
    lines += [f"local {k} = KEYS[{i}]" for i, k in enumerate(spec.keys, 1)]
    for i, a in enumerate(spec.args, 1):
        last = i == len(spec.args)
        lines.append(f"local {a} = {{unpack(ARGV, {i})}}" if last and spec.rest else f"local {a} = ARGV[{i}]")
    unset = [f for f in Head._fields if f not in spec.keys and f not in spec.args]
    if unset:
        lines.append(f"local {', '.join(unset)}")
    return "\n".join(lines) + "\n"


# -- the user head -----------------------------------------------------------------------------
class Head(NamedTuple):
    """The fields every writing operation of one user starts with (``lua/_prelude.lua``: ``audit``
    writes the stream entry from them, ``new_session`` the session's client)."""

    user_key: Key  # the user hash (Keys.user)
    audit_key: Key  # the user's audit stream (Keys.audit)
    now_ms: int
    ip: str  # the client's address, for the audit trail and the session list
    user_agent: str  # at most 256 characters
    audit_len: int  # the audit stream's length (XADD MAXLEN ~)
    user_id: str


# -- reads and counters (no head) --------------------------------------------------------------
@hot_op("guard", _guard_reply)
class Guard(NamedTuple):
    """The middleware's check of every protected request (one round trip)."""

    user_key: Key
    session_key: Key
    challenge_key: Key
    now_ms: int
    want_session: Flag
    want_challenge: Flag
    seen_every_ms: int  # last use ('seen') is written at most this often
    idle_timeout_ms: int  # aal 2 idle timeout (0: none): a session idle past it is not revived


@hot_op("load", _load_reply)
class Load(NamedTuple):
    """Everything one request needs about a user, in one round trip."""

    user_key: Key
    session_key: Key
    challenge_key: Key
    pending_codes_key: Key
    now_ms: int
    want_session: Flag
    want_challenge: Flag


@hot_op("throttle", int)
class Throttle(NamedTuple):
    """A fixed-window counter; replies with the ms until allowed (0: now)."""

    counter_key: Key
    now_ms: int
    mode: Literal["peek", "hit"]
    window_ms: int
    limit: int


@hot_op("password_gate", _gate_reply)
class PasswordGate(NamedTuple):
    """The password throttle of one account, per address and over all addresses."""

    pair_key: Key  # failures of (account, address)
    account_key: Key  # failures of the account, every address
    known_key: Key  # addresses that signed in to the account -> when they last did
    now_ms: int
    mode: Literal["peek", "hit", "known"]
    window_ms: int
    pair_limit: int
    account_limit: int
    address: str  # the client address's hash
    known_ttl_ms: int


@hot_op("ceremony", bool)
class Ceremony(NamedTuple):
    """Spends a WebAuthn challenge; True for its first answer."""

    mark_key: Key
    now_ms: int
    mode: Literal["spend"]
    ttl_ms: int  # how long the mark lives


@hot_op("secret_reencrypt", bool)
class SecretReencrypt(NamedTuple):
    """Swaps a pending setup's secret for its re-encryption; True when swapped."""

    user_key: Key
    now_ms: int
    old_secret: str
    new_secret: str


@hot_op("session_list", records)
class SessionList(NamedTuple):
    """The user's live sessions: (id hash, fields), in no particular order."""

    user_key: Key
    sessions_key: Key  # the session index
    session_key: Key  # any session key of the user: the others' keys are built from it
    now_ms: int


@hot_op("trust_list", records)
class TrustList(NamedTuple):
    """The user's live trusted devices: (id hash, fields), least recently used first."""

    user_key: Key
    devices_key: Key  # the trusted devices index
    trust_key: Key  # any trust key of the user
    now_ms: int


# -- one user's writing operations (head first) ------------------------------------------------
@hot_op("user_fill", _copied, HotStatus.OK)
class UserFill(NamedTuple):
    """The read-through copy of the durable record (SessionCore.copy_op)."""

    head: Head
    sessions_key: Key
    pending_codes_key: Key
    session_prefix_key: Key  # the key of the empty session id: the others' keys are built from it
    otp_key: Key  # the user's live code: an enrolment's goes when the repair turns 2FA on
    generation: int  # 'gen' for a copy that has none (a random one: after a loss)
    mode: Literal["fill", "repair"]
    sql_generation: int  # the record's generation, as read
    keep_sid: str  # 2FA turned on by the repair: the session that confirmed the factor, kept ('': none)
    fields: Rest  # field, value, seen; field, value, seen... (see user_fill.lua)


@hot_op("audit_event", _verdict, HotStatus.OK)
class AuditEvent(NamedTuple):
    head: Head
    event: str  # the event type
    sid: str  # session id hash
    detail: str  # never a secret


@hot_op("password_failed", _verdict, HotStatus.OK)
class PasswordFailed(NamedTuple):
    head: Head
    sid: str


@hot_op("session_create", _verdict, HotStatus.TWO_FACTOR_ON, HotStatus.OK)
class SessionCreate(NamedTuple):
    head: Head
    session_key: Key
    sessions_key: Key
    sid: str  # the new session's id hash
    session_spec: str  # Flows.session_spec: lifetimes and the cap (see new_session)
    aal: int
    mfa_ms: int  # when a second factor was verified (0: never)
    remember: Flag
    password_checked: Flag  # the password was checked now ('pwd')
    amr: str  # RFC 8176 methods, space-separated


@hot_op("session_revoke", _verdict, HotStatus.OK)
class SessionRevoke(NamedTuple):
    head: Head
    session_key: Key
    sessions_key: Key
    challenge_key: Key
    sid: str  # '' when there is no session


@hot_op("challenge_create", _verdict, HotStatus.OK)
class ChallengeCreate(NamedTuple):
    head: Head
    challenge_key: Key
    ttl_ms: int
    attempts: int
    remember: Flag


@hot_op("challenge_answer", _statused(Answer, LOCKED="lock_until", WRONG="attempts_left"),
        HotStatus.GONE, HotStatus.LOCKED, HotStatus.SAME_FACTOR, HotStatus.OK, HotStatus.EXHAUSTED, HotStatus.WRONG)
class ChallengeAnswer(NamedTuple):
    head: Head
    challenge_key: Key
    new_session_key: Key
    sessions_key: Key
    trust_key: Key  # the new trust record (when trust is "1")
    devices_key: Key  # the trusted devices index
    otp_key: Key  # the user's code sent by message (Keys.otp)
    method: str  # totp | backup | otp: the factor given
    outcome: Literal["ok", "wrong", "otp"]  # the record store's verdict on the proof; otp: decided here
    new_sid: str
    session_spec: str
    trust: Flag  # remember this device
    trust_ttl_ms: int
    lock_failures: int  # failures before the temporary lock
    lock_ms: int
    amr: str  # of the new session
    binding: str = ""  # outcome otp: what the code was sent for ('ch:' + challenge id hash)
    code_hash: str = ""  # outcome otp: the code's keyed hashes, one per address it may have gone to, space-separated
    lock_audited: Flag = "0"  # "1": the lock this failure sets was audited in SQL (second_factor_failed)
    # The record store's generation the proof was decided under (UserRecord.generation): no trust
    # record is made once the copy has seen a newer one ('sgen': a factor taken away meanwhile, R12-1).
    record_generation: int = 0


@hot_op("session_answer", _statused(Answer, LOCKED="lock_until"),
        HotStatus.GONE, HotStatus.LOCKED, HotStatus.OK, HotStatus.WRONG)
class SessionAnswer(NamedTuple):
    head: Head
    session_key: Key  # the caller's session
    pending_codes_key: Key
    new_session_key: Key
    sessions_key: Key
    otp_key: Key  # the user's code sent by message (Keys.otp)
    mode: Literal["enrol", "stepup"]
    method: str  # totp | backup | otp
    outcome: Literal["ok", "wrong", "otp"]  # otp (step-up only): decided here
    sid: str  # the caller's session id hash
    lock_failures: int
    lock_ms: int
    new_sid: str
    session_spec: str
    amr: str  # of the factor given (merged into the session's)
    codes_kid: str  # enrolment: the key id the pending codes were hashed under
    binding: str = ""  # outcome otp: what the code was sent for ('s:' + session id hash)
    code_hash: str = ""  # outcome otp: the code's keyed hashes, one per address it may have gone to, space-separated
    lock_audited: Flag = "0"  # "1": the lock this failure sets was audited in SQL (second_factor_failed)


@hot_op("otp_issue", _statused(OtpIssued, LOCKED="lock_until", THROTTLED="retry_at"),
        HotStatus.OK, HotStatus.LOCKED, HotStatus.THROTTLED)
class OtpIssue(NamedTuple):
    head: Head
    otp_key: Key  # the user's one live code (Keys.otp)
    sends_key: Key  # the user's sends: send id -> time (Keys.otp_sends)
    mode: Literal["issue", "void"]  # void: take back an issue whose sending failed
    send_id: str
    code_hash: str  # the code's keyed hash
    binding: str  # what the code is for: 'ch:' + challenge id hash, or 's:' + session id hash
    purpose: Literal["sign_in", "step_up", "enrol"]
    ttl_ms: int
    channel: str
    address: str  # where it is sent
    resend_interval_ms: int
    sends_per_window: int
    window_ms: int


@hot_op("otp_enrol", _statused(OtpEnrolled, LOCKED="lock_until", OK="channel address"),
        HotStatus.OK, HotStatus.GONE, HotStatus.LOCKED, HotStatus.WRONG, HotStatus.FRESH_TWO_FACTOR)
class OtpEnrol(NamedTuple):
    head: Head
    otp_key: Key
    session_key: Key  # the caller's
    binding: str
    code_hash: str
    lock_failures: int
    lock_ms: int
    max_age_ms: int  # Policies.factor_change_max_age: with 2FA on, the session's second factor this recent
    on: Flag  # "1": judged as with 2FA on (the record had it when loaded), whatever the copy says


@hot_op("trust_use", _statused(TrustRotated, LOCKED="lock_until", OK="expires_ms"),
        HotStatus.GONE, HotStatus.LOCKED, HotStatus.OK)
class TrustUse(NamedTuple):
    head: Head
    trust_key: Key  # the trust record presented
    new_trust_key: Key  # its replacement
    new_session_key: Key
    sessions_key: Key
    devices_key: Key
    new_sid: str
    session_spec: str
    remember: Flag
    amr: str


@hot_op("passkey_sign_in", _statused(PasskeySession, LOCKED="lock_until", SESSION="remember"),
        HotStatus.SESSION, HotStatus.GONE, HotStatus.LOCKED, HotStatus.SAME_FACTOR)
class PasskeySignIn(NamedTuple):
    head: Head
    challenge_key: Key  # the pending challenge (mode second_factor)
    new_session_key: Key
    sessions_key: Key
    replaced_key: Key  # the session a passwordless sign-in replaces
    mode: Literal["second_factor", "passwordless"]
    new_sid: str
    session_spec: str
    remember: Flag
    replaced_sid: str  # '' if none
    amr: str


@hot_op("factor_change", _verdict, HotStatus.OK, *_REFUSALS)
class FactorChange(NamedTuple):
    head: Head
    session_key: Key  # the caller's
    devices_key: Key
    trust_key: Key  # any trust key of the user (forget_devices: the others share its prefix)
    max_age_ms: int  # Policies.factor_change_max_age
    password_given: Literal["0", "1", "on"]  # on: judged as with 2FA on, whatever the copy says
    forget_devices: Flag  # 1: a second factor is removed; every trusted device goes when allowed
    fields: Rest = ()  # field, value...: written into the copy when the change is allowed


@hot_op("two_factor_begin", _verdict, HotStatus.ALREADY, HotStatus.OK)
class TwoFactorBegin(NamedTuple):
    head: Head
    pending_codes_key: Key
    secret: str  # the new secret's ciphertext
    sid: str  # the session that owns the setup
    codes_kid: str  # the key id the codes are hashed under
    name: str  # the app's name, for the factor the first code makes ("": the default)
    hashes: Rest  # the codes' hashes


@hot_op("backup_codes_replace", _verdict, HotStatus.NOT_ENABLED, HotStatus.OK, *_REFUSALS)
class BackupCodesReplace(NamedTuple):
    head: Head
    pending_codes_key: Key
    session_key: Key
    sid: str
    max_age_ms: int
    codes_kid: str
    hashes: Rest


@hot_op("two_factor_disable", _verdict, HotStatus.NOT_ENABLED, HotStatus.OK, *_REFUSALS)
class TwoFactorDisable(NamedTuple):
    head: Head
    pending_codes_key: Key
    session_key: Key  # the caller's
    sessions_key: Key
    sid: str
    max_age_ms: int
    # "sessions": the session part of "undo" alone (the record's undo found its lease gone: R10-5)
    mode: Literal["confirmed", "pending", "undo", "sessions"]
    codes_kid: str = ""  # undo: the restored codes' key id
    since_ms: int = 0  # undo, sessions: when the factor was removed (sessions made since then end, but the caller's)


@hot_op("two_factor_import", _verdict, HotStatus.OK)
class TwoFactorImport(NamedTuple):
    head: Head
    pending_codes_key: Key
    otp_key: Key  # the user's live code: an enrolment's goes (2FA is on now)
    codes_kid: str


@hot_op("user_reset", _verdict, HotStatus.OK)
class UserReset(NamedTuple):
    head: Head
    pending_codes_key: Key
    mode: Literal["revoke", "reset"]


@hot_op("session_end", _statused(SessionsEnded, OK="ended current"), HotStatus.OK, *_REFUSALS)
class SessionEnd(NamedTuple):
    head: Head
    session_key: Key  # the caller's
    sessions_key: Key
    mode: Literal["one", "others", "all"]
    sid: str  # the caller's
    max_age_ms: int
    target_sid: str  # mode one: the session to end


@hot_op("trust_end", _statused(DevicesForgotten, OK="forgotten"), HotStatus.OK, *_REFUSALS)
class TrustEnd(NamedTuple):
    head: Head
    session_key: Key  # the caller's
    devices_key: Key
    trust_key: Key  # mode one: the record to forget; all: any trust key of the user
    mode: Literal["one", "all"]
    sid: str
    max_age_ms: int


#: A writing operation of one user (it has a ``head``).
UserOp = (UserFill | AuditEvent | PasswordFailed | SessionCreate | SessionRevoke | ChallengeCreate
          | ChallengeAnswer | SessionAnswer | OtpIssue | OtpEnrol | TrustUse | PasskeySignIn | FactorChange
          | TwoFactorBegin | BackupCodesReplace | TwoFactorDisable | TwoFactorImport | UserReset | SessionEnd
          | TrustEnd)
#: Any hot-store operation: what ``effects.Op`` names.
HotOp = Guard | Load | Throttle | PasswordGate | Ceremony | SecretReencrypt | SessionList | TrustList | UserOp


def name_of(op: HotOp) -> str:
    """The name of ``op``'s operation: its script ``lua/<name>.lua``, its twin ``_op_<name>``."""
    return OPS[type(op)].name


def keys_of(op: HotOp) -> tuple[str, ...]:
    """The Redis keys ``op`` touches, in KEYS order."""
    spec = OPS[type(op)]
    return tuple(spec.flat(op)[:len(spec.keys)])

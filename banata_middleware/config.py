"""Configuration, mirroring the product docs' ``BanataAuthConfig`` (appName, siteUrl, secret, authMethods)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from .otp import OtpMessage

__all__ = [
    "AuthMethods",
    "BackupCodePolicy",
    "BanataAuthConfig",
    "OtpConfig",
    "OtpSender",
    "PasskeyConfig",
    "PasswordHashing",
    "Policies",
    "TotpPolicy",
]

MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class AuthMethods:
    """Which endpoints are served. ``email_password`` (built-in sign-up and sign-in) left as None
    means on, unless the app brings its own users (``verify_password`` given to ``BanataAuth``):
    then anyone could create an account there and enrol their own second factor. Set it to True
    explicitly to serve both kinds of users."""

    email_password: bool | None = None
    two_factor: bool = True
    passkey: bool = False


@dataclass(frozen=True)
class TotpPolicy:
    """RFC 6238 parameters. ``window`` is how many steps before/after now are accepted."""

    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    window: int = 1

    def __post_init__(self) -> None:
        if self.digits not in (6, 7, 8):
            raise ValueError("TotpPolicy.digits must be 6, 7 or 8")
        if self.algorithm not in ("SHA1", "SHA256", "SHA512"):
            raise ValueError("TotpPolicy.algorithm must be SHA1, SHA256 or SHA512")
        # The periods authenticator apps offer; a longer one would stretch every code's life.
        if not 15 <= self.period <= 120 or not 0 <= self.window <= 3:
            raise ValueError("TotpPolicy.period must be 15..120 s and window 0..3 steps")


@dataclass(frozen=True)
class PasswordHashing:
    """scrypt cost. The default (2**15, 32 MiB, ~0.1 s here) is a floor; tests lower it for speed."""

    n: int = 2**15
    r: int = 8
    p: int = 1


_CODE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@dataclass(frozen=True)
class BackupCodePolicy:
    """Backup (recovery) codes: ``length`` characters drawn from ``alphabet``, shown in groups of
    ``group`` characters joined by '-' (0: ungrouped); how many is ``Policies.backup_code_count``.
    Input is read case-insensitively with spaces and dashes ignored, so the alphabet is upper-case
    letters and digits only. The default is the product docs' 8 of A-Z0-9 (about 41 bits a code);
    ``BackupCodePolicy.nist()`` gives 13 (about 67 bits, NIST SP 800-63B-4's 64 for saved recovery
    codes), shown as ``XXXXX-XXXXX-XXX``."""

    length: int = 8
    alphabet: str = _CODE_ALPHABET
    group: int = 0

    def __post_init__(self) -> None:
        if not 6 <= self.length <= 32 or not 0 <= self.group <= self.length:
            raise ValueError("BackupCodePolicy: length must be 6..32 and group 0..length")
        if (len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 10
                or any(c not in _CODE_ALPHABET for c in self.alphabet)):
            raise ValueError("BackupCodePolicy.alphabet must be at least 10 distinct characters of A-Z0-9 "
                             "(input is upper-cased, so lower-case letters would never match)")

    @property
    def bits(self) -> float:
        """Entropy of one code in bits."""
        return self.length * math.log2(len(self.alphabet))

    @classmethod
    def nist(cls) -> BackupCodePolicy:
        """At least 64 bits a code (NIST SP 800-63B-4): 13 of A-Z0-9 (about 67 bits), in fives."""
        return cls(length=13, group=5)


@dataclass(frozen=True)
class Policies:
    """Limits from the contract's 'exact rules'. Times are in seconds."""

    session_ttl: int = 7 * 24 * 3600
    pending_ttl: int = 300
    challenge_attempts: int = 5
    user_lock_failures: int = 10
    user_lock_seconds: int = 15 * 60
    trust_device_ttl: int = 30 * 24 * 3600
    passkey_ceremony_ttl: int = 300
    sign_in_window: int = 15 * 60
    sign_in_failures_per_account: int = 10
    sign_in_failures_per_address: int = 50
    ipv6_throttle_prefix: int = 64  # per-address throttles count an IPv6 client by its /64 network
    # ... and the same limits again for its /48 (one site's allocation), so rotating networks gains nothing.
    ipv6_site_prefix: int = 48
    # Records anonymous requests may add (failed sign-ins' counters, sign-ups), all addresses together,
    # per ``sign_in_window``: past it, sign-up answers 429 and sign-in is open only to addresses that
    # signed in to the account before, so a flood from many addresses cannot fill the store.
    anonymous_records_per_window: int = 50_000
    backup_code_count: int = 10
    max_body_bytes: int = 64 * 1024
    audit_stream_length: int = 1000
    password_min_length: int = 8
    # Sign-in throttle: ``sign_in_failures_per_account`` counts per (account, client address); past
    # this many failures per account from all addresses together, only addresses that signed in to
    # the account within ``known_address_ttl`` may still try (the account is slowed, never locked).
    sign_in_failures_per_account_all_addresses: int = 100
    known_address_ttl: int = 30 * 24 * 3600
    # Server-side lifetime of a session made with ``rememberMe: false`` (better-auth: 1 day).
    session_ttl_not_remembered: int = 24 * 3600
    # Live sessions per user; a new one past this revokes the oldest.
    max_sessions_per_user: int = 50
    # How old the session's last second factor (for a user with 2FA on) or password (without)
    # may be for a factor change: TOTP URI, backup codes, enable/disable, passkey register/delete/rename.
    factor_change_max_age: int = 10 * 60
    # Sign-up attempts per client address per window, counted before any password hashing.
    sign_up_per_address: int = 20
    sign_up_window: int = 10 * 60
    # Password hashes (scrypt) one client address may cause per window on sign-in and password
    # re-checks, right passwords included: failures are throttled above, but a client signing in to
    # its own account back to back made the server hash without bound (about 0.1 CPU-s each).
    password_hashes_per_address: int = 60
    password_hash_window: int = 60
    # Passkey sign-ins that verify, per client address per ``sign_in_window``: each writes a single-use
    # mark and a session, and anyone can register a software passkey on an account of their own.
    passkey_sign_ins_per_address: int = 300
    # Lifetimes of aal 2 sessions (after a second factor), 0 = none beyond ``session_ttl`` (7 days,
    # as better-auth). NIST SP 800-63B-4 AAL2: an overall timeout of at most 24 h (from sign-in; a
    # step-up does not restart it) and an inactivity timeout of at most 1 h SHOULD apply: see
    # ``Policies.nist_aal2()``. Inactivity counts protected requests, recorded about once a minute.
    aal2_max_lifetime: int = 0
    aal2_idle_timeout: int = 0
    # Backup (recovery) codes: how many, how long, which characters (``BackupCodePolicy``).
    backup_codes: BackupCodePolicy = field(default_factory=lambda: BackupCodePolicy())

    def __post_init__(self) -> None:
        if self.aal2_max_lifetime < 0 or self.aal2_idle_timeout < 0:
            raise ValueError("Policies.aal2_max_lifetime and aal2_idle_timeout are seconds, 0 (none) or more")

    @classmethod
    def nist_aal2(cls, **overrides: Any) -> Policies:
        """Policies meeting NIST SP 800-63B-4 AAL2's SHOULDs: aal 2 sessions end 24 h after sign-in
        and after 1 h without a request; backup codes of 13 characters (``BackupCodePolicy.nist()``,
        about 67 bits; the SP asks at least 64 for saved recovery codes). ``overrides`` win."""
        settings: dict[str, Any] = {"aal2_max_lifetime": 24 * 3600, "aal2_idle_timeout": 3600,
                                    "backup_codes": BackupCodePolicy.nist()}
        settings.update(overrides)
        return cls(**settings)


@dataclass(frozen=True)
class PasskeyConfig:
    """WebAuthn relying party. ``origins``: the pages allowed to run a ceremony.
    ``allowed_top_origins``: the sites allowed to embed those pages in a cross-origin iframe
    (clientDataJSON ``crossOrigin``/``topOrigin``, WebAuthn L3); empty (the default) refuses
    every ceremony run inside a cross-origin iframe."""

    rp_id: str = "localhost"
    rp_name: str = ""
    origins: tuple[str, ...] = ("http://localhost:3000",)
    user_verification: str = "preferred"
    allowed_top_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _not_a_str("PasskeyConfig.origins", self.origins)
        # A bare string would be matched as a substring ("in"): ask for the tuple it should be.
        if isinstance(self.allowed_top_origins, str) or not all(
                isinstance(o, str) and o for o in self.allowed_top_origins):
            raise ValueError("PasskeyConfig.allowed_top_origins must be a tuple of origins, "
                             "e.g. ('https://portal.example',)")


#: What delivers a one-time code: the app's email or SMS sending, sync or async. It gets the message
#: (``otp.OtpMessage``: the user, the channel, the address and the code) and raises when it could
#: not send; nothing in the library talks to a mail or SMS provider.
OtpSender = Callable[["OtpMessage"], None] | Callable[["OtpMessage"], Awaitable[None]]

OTP_CHANNELS = ("email", "sms")


@dataclass(frozen=True)
class OtpConfig:
    """One-time codes by message (email or SMS) as a second factor: better-auth's ``send-otp`` and
    ``verify-otp``. Off unless configured: ``BanataAuthConfig(otp=OtpConfig(sender=send))``.

    NIST SP 800-63B-4 treats SMS (and voice) as a *restricted* authenticator, which an app may offer
    only with an alternative and after telling the user of the risk, and does not accept email for
    out-of-band authentication at all. Prefer TOTP or passkeys; offer these codes where the users
    need them, knowing that they are weaker.

    ``sender(message)`` is called on the request's path (a coroutine function is awaited, at most
    ``send_timeout`` seconds; a plain function is called in a worker thread under ASGI and should
    bound its own time); when it raises, the request answers 503 ``OTP_DELIVERY_FAILED`` and
    nothing else changes. ``channels``: which of "email" and "sms" users may enrol. A code has
    ``digits`` digits (6..8) and lives ``ttl`` seconds. Each user has one live code: a new one
    voids the last. Asking again while the last code is live and unused waits ``resend_interval``
    seconds, and a user gets at most ``sends_per_window`` codes per ``send_window`` seconds
    (429 with ``Retry-After`` saying when again)."""

    sender: OtpSender
    channels: tuple[str, ...] = ("email",)
    digits: int = 6
    ttl: int = 300
    resend_interval: int = 30
    sends_per_window: int = 5
    send_window: int = 3600
    send_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not callable(self.sender):
            raise ValueError("OtpConfig.sender must be a function that sends the message (sync or async)")
        _not_a_str("OtpConfig.channels", self.channels)
        if not self.channels or any(c not in OTP_CHANNELS for c in self.channels):
            raise ValueError(f"OtpConfig.channels must be some of {OTP_CHANNELS}")
        if not 6 <= self.digits <= 8:
            raise ValueError("OtpConfig.digits must be 6, 7 or 8")
        if not 60 <= self.ttl <= 900:
            raise ValueError("OtpConfig.ttl must be 60..900 seconds (NIST: a few minutes)")
        if self.resend_interval < 1 or self.sends_per_window < 1 or self.send_window < self.resend_interval:
            raise ValueError("OtpConfig: resend_interval and sends_per_window must be at least 1, and "
                             "send_window at least resend_interval")
        if not 0 < self.send_timeout <= 60:
            raise ValueError("OtpConfig.send_timeout must be more than 0 and at most 60 seconds")


def _not_a_str(name: str, value: object) -> None:
    """``public_paths=("/health")`` is a str, not a tuple (the missing comma), and iterating it per
    character would make ``/`` public. Refuse it, showing the fix."""
    if isinstance(value, str):
        raise ValueError(f"{name} must be a tuple of strings, not a str: write {name.split('.')[1]}=({value!r},) "
                         "(note the comma)")


def _check_pattern(name: str, pattern: object) -> None:
    """Path patterns are exact paths or prefixes ending in ``*``: ``/about``, ``/static/*``."""
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError(f"{name}: {pattern!r} is not a path pattern; patterns start with '/' "
                         "(to make every path public, set protect_by_default=False)")
    if "*" in pattern[:-1]:
        raise ValueError(f"{name}: {pattern!r}: '*' is allowed only at the end (a prefix, as in '/static/*')")


@dataclass(frozen=True)
class BanataAuthConfig:
    """Everything the middleware needs to know about the app it protects.

    ``secret`` signs cookies and derives the encryption and hashing keys (HKDF, one key per use).
    ``previous_secrets`` are still accepted for decryption and cookie signatures (rotation):
    the newest (``secret``) encrypts and signs.

    ``sign_in_page`` / ``two_factor_page``: where an HTML navigation to a protected path is sent
    (303) when there is no session / only a pending second factor; JSON callers get 401 / 403.

    Paths: ``public_paths`` pass through untouched; ``fresh_paths`` maps a path to the maximum
    age in seconds of the session's last second factor; ``phishing_resistant_paths`` need a
    session whose sign-in used a passkey (its ``amr`` has ``pop``; 403
    PHISHING_RESISTANT_FACTOR_REQUIRED otherwise); everything else is protected unless
    ``protect_by_default`` is off. A pattern ending in ``*`` is a prefix, otherwise exact.
    """

    app_name: str
    site_url: str
    secret: str
    auth_methods: AuthMethods = field(default_factory=AuthMethods)
    previous_secrets: tuple[str, ...] = ()
    base_path: str = "/api/auth"
    public_paths: tuple[str, ...] = ()
    fresh_paths: Mapping[str, int] = field(default_factory=dict)
    phishing_resistant_paths: tuple[str, ...] = ()
    protect_by_default: bool = True
    require_two_factor: bool = False
    sign_in_page: str | None = None
    two_factor_page: str | None = None
    trusted_origins: tuple[str, ...] = ()
    trusted_proxies: int = 0
    challenge_status: int = 403
    totp: TotpPolicy = field(default_factory=TotpPolicy)
    policies: Policies = field(default_factory=Policies)
    password_hashing: PasswordHashing = field(default_factory=PasswordHashing)
    passkey: PasskeyConfig = field(default_factory=PasskeyConfig)
    # One-time codes by email or SMS (better-auth's send-otp / verify-otp): off unless given.
    otp: OtpConfig | None = None
    key_prefix: str = "banata"
    clock: Clock = SYSTEM_CLOCK
    # Serve the OpenAPI document of the auth endpoints at {base_path}/openapi.json (off: it tells
    # which endpoints are on, which an app may not want to publish).
    serve_openapi: bool = False

    def __post_init__(self) -> None:
        for name in ("public_paths", "phishing_resistant_paths", "trusted_origins", "previous_secrets"):
            _not_a_str(f"BanataAuthConfig.{name}", getattr(self, name))
        for name, value in [("secret", self.secret), *[("previous_secrets", s) for s in self.previous_secrets]]:
            if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"BanataAuthConfig.{name} must be at least {MIN_SECRET_LENGTH} characters "
                    "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
                )
        parts = urlsplit(self.site_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"BanataAuthConfig.site_url must be an http(s) URL, got {self.site_url!r}")
        if not self.base_path.startswith("/") or self.base_path.endswith("/"):
            raise ValueError("BanataAuthConfig.base_path must start with '/' and not end with '/'")
        if self.challenge_status not in (200, 403):
            raise ValueError("BanataAuthConfig.challenge_status must be 403 (contract) or 200 (better-auth)")
        if not 32 <= self.policies.ipv6_throttle_prefix <= 128:
            raise ValueError("Policies.ipv6_throttle_prefix must be 32..128 (an IPv6 prefix length; 64 is usual)")
        if not 16 <= self.policies.ipv6_site_prefix <= 128:
            raise ValueError("Policies.ipv6_site_prefix must be 16..128 (an IPv6 prefix length; 48 is usual)")
        for name, pattern in [*(("fresh_paths", p) for p in self.fresh_paths),
                              *(("phishing_resistant_paths", p) for p in self.phishing_resistant_paths)]:
            # The auth endpoints are answered by the middleware before any path rule is read, so
            # a rule on them would be silently ignored: refuse it (they have their own rule).
            if not isinstance(pattern, str):
                continue  # refused with the reason below (_check_pattern)
            head = pattern[:-1] if pattern.endswith("*") else pattern
            if head == self.base_path or head.startswith(self.base_path + "/"):
                raise ValueError(
                    f"BanataAuthConfig.{name}: {pattern!r} lies under base_path {self.base_path!r}, where the "
                    "middleware answers itself; factor changes there need a fresh second factor anyway "
                    "(Policies.factor_change_max_age)")
        if any("{" in c or "}" in c for c in self.key_prefix):
            raise ValueError("BanataAuthConfig.key_prefix must not contain braces (they make hash tags)")
        for name, patterns in (("public_paths", self.public_paths), ("fresh_paths", list(self.fresh_paths)),
                               ("phishing_resistant_paths", self.phishing_resistant_paths)):
            for pattern in patterns:
                _check_pattern(f"BanataAuthConfig.{name}", pattern)

    @property
    def site_origin(self) -> str:
        parts = urlsplit(self.site_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.site_url).scheme == "https"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, app_name: str | None = None, **overrides: object
    ) -> BanataAuthConfig:
        """Read ``SITE_URL``, ``BANATA_AUTH_SECRET`` (or ``BETTER_AUTH_SECRET``),
        ``BANATA_AUTH_PREVIOUS_SECRETS`` (comma-separated, for rotation), ``PASSKEY_RP_ID``,
        ``PASSKEY_ORIGIN`` (comma-separated for several) and ``APP_NAME``.

        Defaults: ``SITE_URL`` ``http://localhost:3000`` (logged as a warning when neither the
        variable nor a ``site_url=`` override is given: anywhere but local development it is wrong),
        ``APP_NAME`` "Banata", ``PASSKEY_RP_ID`` "localhost", ``PASSKEY_ORIGIN`` the site URL.
        Keyword ``overrides`` win over the environment."""
        env = os.environ if environ is None else environ
        secret = env.get("BANATA_AUTH_SECRET") or env.get("BETTER_AUTH_SECRET")
        if not secret:
            raise ValueError("set BANATA_AUTH_SECRET (or BETTER_AUTH_SECRET) to at least 32 random characters")
        site_url = env.get("SITE_URL", "http://localhost:3000")
        if "SITE_URL" not in env and "site_url" not in overrides:
            logging.getLogger("banata_middleware.config").warning(
                "SITE_URL is not set: using http://localhost:3000, right for local development only (the origin "
                "check refuses every other site and cookies are not Secure); set SITE_URL to the app's URL")
        passkey = PasskeyConfig(
            rp_id=env.get("PASSKEY_RP_ID", "localhost"),
            rp_name=app_name or env.get("APP_NAME", "Banata"),
            origins=tuple(o.strip() for o in env.get("PASSKEY_ORIGIN", site_url).split(",") if o.strip()),
        )
        kwargs: dict[str, object] = {
            "app_name": app_name or env.get("APP_NAME", "Banata"),
            "site_url": site_url,
            "secret": secret,
            "previous_secrets": tuple(
                p.strip() for p in env.get("BANATA_AUTH_PREVIOUS_SECRETS", "").split(",") if p.strip()
            ),
            "passkey": passkey,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]

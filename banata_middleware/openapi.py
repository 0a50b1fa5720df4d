"""The OpenAPI 3.1 document of the auth endpoints, made from the gateway's route table.

``ENDPOINTS`` describes each route the gateway can serve: its request body, its success answers
and the error codes it can answer. ``openapi_document`` walks ``Gateway.routes`` (the routes this
configuration serves) and looks each one up here, so a route without an entry fails loudly
(``KeyError``) and an entry without a route is left out; ``tests/contract/test_openapi.py`` checks
both ways, and schemathesis checks every answer of real servers against the document. Cookie names
come from the flows (``__Host-`` prefixed on https), the challenge status from the config.
docs/http-api.md is the human contract this mirrors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["ENDPOINTS", "Endpoint", "openapi_document"]

Schema = dict[str, Any]

# -- schemas -------------------------------------------------------------------------------------
_DATE = {"type": "string", "format": "date-time"}
_DATE_OR_NULL = {"type": ["string", "null"], "format": "date-time"}


def _text(max_len: int, *, optional: bool = False) -> Schema:
    """A field read with ``Body.text``: a non-empty string of at most ``max_len`` characters and no
    NUL; an optional one may also be null or empty."""
    schema: Schema = {"type": ["string", "null"] if optional else "string", "maxLength": max_len,
                      "pattern": "^[^\\u0000]*$"}
    if not optional:
        schema["minLength"] = 1
    return schema


# Also refused (400 VALIDATION_ERROR): quoted local parts, a non-ASCII local part, IP literals (emails.py).
_EMAIL = _text(254) | {"format": "email"}
_FLAG = {"type": ["boolean", "null"]}  # Body.flag: true or false; null or absent is false


def _object(properties: Mapping[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": dict(properties)}
    if required:
        schema["required"] = list(required)
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


COMPONENTS: dict[str, Schema] = {
    "User": _object({
        "id": {"type": "string"},
        "email": {"type": ["string", "null"], "description": "canonical form; null for an app's own users"},
        "name": {"type": "string"},
        "twoFactorEnabled": {"type": "boolean"},
        "createdAt": _DATE_OR_NULL,
        "backupCodesNeedRegeneration": {
            "type": "boolean", "description": "get-session only: the backup codes can no longer match"},
    }, ("id", "email", "name", "twoFactorEnabled", "createdAt")),
    "Session": _object({
        "id": {"type": "string", "description": "the stored hash of the session id (not a credential)"},
        "userId": {"type": "string"},
        "expiresAt": _DATE,
        "createdAt": _DATE,
        "mfaVerifiedAt": _DATE_OR_NULL,
        "aal": {"enum": [1, 2]},
    }, ("id", "userId", "expiresAt", "createdAt", "mfaVerifiedAt", "aal")),
    "TokenAndUser": _object({
        "token": {"type": "string", "description": "the session token; send as `Authorization: Bearer`"},
        "user": _ref("User"),
    }, ("token", "user")),
    "Passkey": _object({
        "id": {"type": "string", "description": "credential id, base64url"},
        "name": {"type": "string"},
        "createdAt": _DATE_OR_NULL,
        "deviceType": {"type": ["string", "null"]},
        "backedUp": {"type": "boolean"},
        "aaguid": {"type": ["string", "null"]},
    }, ("id", "name", "createdAt", "deviceType", "backedUp")),
    "Authenticator": _object({
        "id": {"type": "string"},
        "name": {"type": "string"},
        "createdAt": _DATE_OR_NULL,
        "lastUsedAt": {**_DATE_OR_NULL, "description": "the last accepted code; null: never used"},
        "confirmed": {"type": "boolean", "description": "false: added, its first code not yet verified"},
    }, ("id", "name", "createdAt", "lastUsedAt", "confirmed")),
    "ListedSession": _object({
        "id": {"type": "string", "description": "the stored hash of the session id"},
        "token": {"type": "string", "description": "the id again (tokens are never stored); revoke-session takes it"},
        "userId": {"type": "string"},
        "createdAt": _DATE_OR_NULL,
        "updatedAt": _DATE_OR_NULL,
        "lastUsedAt": _DATE_OR_NULL,
        "expiresAt": _DATE_OR_NULL,
        "ipAddress": {"type": ["string", "null"]},
        "userAgent": {"type": ["string", "null"]},
        "aal": {"enum": [1, 2]},
        "mfaVerifiedAt": _DATE_OR_NULL,
        "current": {"type": "boolean"},
        "amr": {"type": "array", "items": {"type": "string"}},
    }, ("id", "token", "userId", "createdAt", "updatedAt", "lastUsedAt", "expiresAt", "ipAddress", "userAgent",
        "aal", "mfaVerifiedAt", "current")),
    "TrustedDevice": _object({
        "id": {"type": "string"},
        "createdAt": _DATE_OR_NULL,
        "lastUsedAt": _DATE_OR_NULL,
        "expiresAt": _DATE_OR_NULL,
        "ipAddress": {"type": ["string", "null"]},
        "userAgent": {"type": ["string", "null"]},
        "current": {"type": "boolean", "description": "the device of this request"},
    }, ("id", "createdAt", "lastUsedAt", "expiresAt", "ipAddress", "userAgent", "current")),
    "CreationOptions": {
        **_object({"rp": {"type": "object"}, "user": {"type": "object"}, "challenge": {"type": "string"},
                   "pubKeyCredParams": {"type": "array"}, "timeout": {"type": "integer"},
                   "excludeCredentials": {"type": "array"}, "authenticatorSelection": {"type": "object"},
                   "attestation": {"type": "string"}},
                  ("rp", "user", "challenge", "pubKeyCredParams")),
        "description": "WebAuthn PublicKeyCredentialCreationOptions as JSON (binary fields base64url)",
    },
    "RequestOptions": {
        **_object({"challenge": {"type": "string"}, "timeout": {"type": "integer"}, "rpId": {"type": "string"},
                   "allowCredentials": {"type": "array"}, "userVerification": {"type": "string"}},
                  ("challenge", "rpId")),
        "description": "WebAuthn PublicKeyCredentialRequestOptions as JSON (binary fields base64url)",
    },
}

_TRUE = {"const": True}
_TWO_FACTOR_METHODS = {"type": "array", "items": {"enum": ["totp", "otp", "backup_code", "passkey"]}}
_CHALLENGE_BODY = _object({
    "code": {"const": "TWO_FACTOR_REQUIRED"}, "message": {"type": "string"},
    "twoFactorRedirect": _TRUE, "twoFactorMethods": _TWO_FACTOR_METHODS,
}, ("code", "message", "twoFactorRedirect", "twoFactorMethods"))

# Fields some error codes add to {code, message}.
_ERROR_EXTRAS: dict[str, tuple[Schema, tuple[str, ...]]] = {
    "INVALID_CODE": ({"attemptsRemaining": {
        "type": "integer", "minimum": 0, "description": "present when a sign-in challenge is answered"}}, ()),
}
# Codes answered with a Retry-After header.
_RETRY_AFTER_CODES = frozenset({"TOO_MANY_REQUESTS", "ACCOUNT_TEMPORARILY_LOCKED"})

# What every endpoint can answer, and every POST (their bodies are JSON, checked for origin).
_EVERY: dict[int, tuple[str, ...]] = {413: ("PAYLOAD_TOO_LARGE",), 503: ("STORE_UNAVAILABLE",)}
_POST: dict[int, tuple[str, ...]] = {400: ("VALIDATION_ERROR",), 415: ("VALIDATION_ERROR",),
                                     403: ("INVALID_ORIGIN",)}

# Security requirements: who may call. Names are keys of components.securitySchemes.
Security = tuple[dict[str, list[str]], ...]
SESSION: Security = ({"sessionCookie": []}, {"bearerToken": []})
PENDING_OR_SESSION: Security = ({"twoFactorCookie": []}, *SESSION)
OPTIONAL_SESSION: Security = ({}, *SESSION)  # {} = anonymous callers too
ANYONE: Security = ()


@dataclass(frozen=True)
class Success:
    """One success answer: its schema and the cookies it sets or clears (logical names)."""

    schema: Schema
    description: str
    sets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    summary: str
    tag: str
    security: Security
    success: Success
    body: Schema | None = None
    query: Mapping[str, Schema] = field(default_factory=dict)
    reads: tuple[str, ...] = ()  # optional cookies read besides the security ones (logical names)
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""
    links: Mapping[str, Schema] = field(default_factory=dict)  # OpenAPI links of the success answer


_PASSWORD_BODY = _object({"password": _text(128)}, ("password",))
_VERIFY_BODY = _object({"code": _text(64), "trustDevice": _FLAG}, ("code",))
# Re-authentication: a wrong password, a broken verify_password hook, the sign-in throttle.
_REAUTH: dict[int, tuple[str, ...]] = {400: ("INVALID_PASSWORD",), 429: ("TOO_MANY_REQUESTS",),
                                       503: ("PASSWORD_CHECK_UNAVAILABLE",)}
_FACTOR_CHANGE = ("FRESH_TWO_FACTOR_REQUIRED",)
# A factor change without a password (passkeys, ending sessions and devices): see require_factor_change.
_NO_PASSWORD_CHANGE = ("FRESH_TWO_FACTOR_REQUIRED", "FRESH_PASSWORD_REQUIRED")


def _merge(*tables: Mapping[int, tuple[str, ...]]) -> dict[int, tuple[str, ...]]:
    out: dict[int, tuple[str, ...]] = {}
    for table in tables:
        for status, codes in table.items():
            out[status] = tuple(dict.fromkeys((*out.get(status, ()), *codes)))
    return out


def _status_and(*fields: tuple[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return _object({"status": _TRUE, **dict(fields)}, ("status", *required))


# credential_id_of: an assertion names its credential in ``id`` (base64url).
_ASSERTION = _object({"id": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 1400}}, ("id",)) | {
    "description": "the browser's assertion as JSON (PublicKeyCredential, binary fields base64url)"}
_BACKUP_LEFT = ("backupCodesRemaining", {"type": "integer", "minimum": 0})
_VERIFY_MODES = ("With the `two_factor` cookie (sign-in challenge): `{token, user}`, a new session cookie, "
                 "the challenge cookie cleared. With a session: enrolment (2FA set up, not yet confirmed) "
                 "or step-up; `{status: true, token, user}` and the session rotated (new cookie and token).")
_VERIFY_TOTP_MODES = (_VERIFY_MODES + " With a session and a code of an authenticator app added while 2FA is on "
                      "(`enable`): that app is confirmed, `{status: true, token, user, authenticator}`, the "
                      "session kept (its own token).")
_AUTHENTICATOR_ID = _text(64)
_AUTHENTICATOR_NAME = _text(64) | {"description": "trimmed, NFC; no control or invisible formatting characters; "
                                                  "unique per user, without regard to case"}

# Ours (better-auth's client sends none): the name of the app set up or added.
_ENABLE_NAME = _text(64, optional=True) | {
    "description": "the authenticator app's name, the first setup's too: trimmed, NFC, at most 64 characters, no "
                   "control or invisible formatting characters (400 VALIDATION_ERROR); absent, null or blank: "
                   "\"Authenticator\" for the first app, else \"Authenticator 2\", \"Authenticator 3\", ..."}

_CHANNEL = {"enum": ["email", "sms", None], "description": "codes by message: \"email\" or \"sms\""}
# What sending a code can answer: the resend throttle (Retry-After), a sender that failed.
_OTP_SEND: dict[int, tuple[str, ...]] = {429: ("TOO_MANY_REQUESTS",), 503: ("OTP_DELIVERY_FAILED",)}
_TOTP_ENABLED = _object({"method": {"const": "totp"}, "totpURI": {"type": "string"},
                         "backupCodes": {"type": "array", "items": {"type": "string"}},
                         "id": {"type": "string", "description": "the authenticator app added (2FA on)"},
                         "name": {"type": "string", "description": "the authenticator app added (2FA on)"}},
                        ("method", "totpURI", "backupCodes"))
_OTP_ENABLED = _object({"method": {"const": "otp"}, "status": _TRUE, "channel": {"enum": ["email", "sms"]},
                        "to": {"type": "string", "description": "the address, masked"}},
                       ("method", "status", "channel", "to"))

# Where a signed-in answer leads (schemathesis follows these in its stateful run): the session
# cookie it sets authenticates the next call, and the password just typed is the re-check's.
_SIGNED_IN_LINKS: dict[str, Schema] = {
    "getSession": {"operationId": "get_session", "description": "the session just made"},
    "enable": {"operationId": "two_factor_enable", "description": "set up TOTP in the new session",
               "requestBody": {"password": "$request.body#/password"}},
}

# Keys as in ``Gateway.routes``: (method, path under base_path).
ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("POST", "/sign-up/email"): Endpoint(
        "Create an account with email and password", "primary", ANYONE,
        Success(_ref("TokenAndUser"), "signed up and signed in", ("session",)),
        body=_object({"email": _EMAIL, "password": _text(128), "name": _text(128, optional=True)},
                     ("email", "password")),
        # 409 TWO_FACTOR_REQUIRED: an administrator imported a second factor for the account an
        # instant after it was made (no session then; sign in).
        errors={400: ("PASSWORD_TOO_SHORT",), 409: ("TWO_FACTOR_REQUIRED",), 422: ("USER_ALREADY_EXISTS",),
                429: ("TOO_MANY_REQUESTS",)},
        links=_SIGNED_IN_LINKS | {"signIn": {
            "operationId": "sign_in_email", "description": "sign in again with the same email and password",
            "requestBody": {"email": "$request.body#/email", "password": "$request.body#/password"}}}),
    ("POST", "/sign-in/email"): Endpoint(
        "Sign in with email and password", "primary", ANYONE,
        Success(_ref("TokenAndUser"), "signed in (no second factor due, or a trusted device)",
                ("session", "trust_device")),
        body=_object({"email": _EMAIL, "password": _text(128), "rememberMe": {"type": "boolean"}},
                     ("email", "password")),
        reads=("trust_device",), links=_SIGNED_IN_LINKS,
        errors={401: ("INVALID_EMAIL_OR_PASSWORD",), 403: ("TWO_FACTOR_REQUIRED",),
                429: ("TOO_MANY_REQUESTS", "ACCOUNT_TEMPORARILY_LOCKED")},
        description="When the user has 2FA on, the answer is the challenge (`TWO_FACTOR_REQUIRED`, "
                    "`twoFactorRedirect`, `twoFactorMethods`) with the `two_factor` cookie and no session."),
    ("POST", "/sign-out"): Endpoint(
        "Sign out", "primary", ({"twoFactorCookie": []}, *OPTIONAL_SESSION),
        Success(_object({"success": _TRUE}, ("success",)), "session and pending challenge ended",
                ("session", "two_factor"))),
    ("GET", "/get-session"): Endpoint(
        "The caller's session and user, or null", "primary", OPTIONAL_SESSION,
        Success({"anyOf": [_object({"session": _ref("Session"), "user": _ref("User")}, ("session", "user")),
                           {"type": "null"}]}, "the session, or null without one")),
    ("GET", "/list-sessions"): Endpoint(
        "The user's live sessions, the caller's first", "sessions", SESSION,
        Success({"type": "array", "items": _ref("ListedSession")}, "the caller's own first, then the latest used"),
        errors={401: ("UNAUTHORIZED",)}),
    ("POST", "/revoke-session"): Endpoint(
        "End one session of the user", "sessions", SESSION,
        Success(_status_and(), "ended (anything not the user's ends nothing and answers the same)", ("session",)),
        body=_object({"token": _text(512)}, ("token",)),
        errors={401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE}),
    ("POST", "/revoke-other-sessions"): Endpoint(
        "End every other session of the user", "sessions", SESSION, Success(_status_and(), "ended"),
        errors={401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE}),
    ("POST", "/revoke-sessions"): Endpoint(
        "End every session of the user, this one too", "sessions", SESSION,
        Success(_status_and(), "ended; the session cookie is cleared", ("session",)),
        errors={401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE}),
    ("GET", "/two-factor/list-trusted-devices"): Endpoint(
        "The browsers that skip the second factor", "sessions", SESSION,
        Success({"type": "array", "items": _ref("TrustedDevice")}, "this one first, then the latest used"),
        reads=("trust_device",), errors={401: ("UNAUTHORIZED",)}),
    ("POST", "/two-factor/revoke-trusted-device"): Endpoint(
        "Forget one trusted device", "sessions", SESSION,
        Success(_status_and(), "forgotten (its cookie cleared when it is this browser)", ("trust_device",)),
        body=_object({"id": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}, ("id",)), reads=("trust_device",),
        errors={401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE}),
    ("POST", "/two-factor/revoke-trusted-devices"): Endpoint(
        "Forget every trusted device", "sessions", SESSION,
        Success(_status_and(), "forgotten; this browser's cookie cleared", ("trust_device",)),
        errors={401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE}),
    ("POST", "/two-factor/enable"): Endpoint(
        "Start TOTP setup or add an authenticator app (confirmed by verify-totp), or codes by message "
        "(confirmed by verify-otp)", "two-factor", SESSION,
        Success({"anyOf": [_TOTP_ENABLED, _OTP_ENABLED]}, "TOTP: the secret and backup codes, not yet active; with "
                "an authenticator app already, another one (`id`, `name`) and no backup codes (the user's stay "
                "valid); `method: \"otp\"`: a code was sent to the address, not yet active"),
        body=_object({"password": _text(128), "issuer": _text(64, optional=True), "method": {"enum": ["totp", "otp"]},
                      "channel": _CHANNEL, "to": _text(254, optional=True),
                      "name": _ENABLE_NAME},
                     ("password",)),
        errors=_merge(_REAUTH, _OTP_SEND, {401: ("UNAUTHORIZED",), 403: _FACTOR_CHANGE,
                                           409: ("TWO_FACTOR_ALREADY_ENABLED", "AUTHENTICATOR_NAME_TAKEN",
                                                 "TOO_MANY_AUTHENTICATORS")}),
        description="`method` \"otp\" (with `channel`, \"email\" by default, and `to`, the address; for email "
                    "the account's by default) is served when codes by message are configured."),
    ("POST", "/two-factor/verify-totp"): Endpoint(
        "Answer a sign-in challenge, confirm enrolment or step up with a TOTP code", "two-factor",
        PENDING_OR_SESSION,
        Success({"anyOf": [_ref("TokenAndUser"),
                           _status_and(("token", {"type": "string"}), ("user", _ref("User")),
                                       required=("token", "user"))]},
                _VERIFY_TOTP_MODES, ("session", "two_factor", "trust_device")),
        body=_VERIFY_BODY,
        errors={400: ("TWO_FACTOR_NOT_ENABLED",),
                401: ("UNAUTHORIZED", "INVALID_CODE", "TOO_MANY_ATTEMPTS"), 403: _FACTOR_CHANGE,
                409: ("TWO_FACTOR_SECRET_UNREADABLE", "TWO_FACTOR_ALREADY_ENABLED", "TWO_FACTOR_CHANGED"),
                429: ("ACCOUNT_TEMPORARILY_LOCKED",)}),
    ("POST", "/two-factor/verify-backup-code"): Endpoint(
        "Answer a sign-in challenge or step up with a backup code", "two-factor", PENDING_OR_SESSION,
        Success({"anyOf": [_object({"token": {"type": "string"}, "user": _ref("User"),
                                    _BACKUP_LEFT[0]: _BACKUP_LEFT[1]}, ("token", "user", "backupCodesRemaining")),
                           _status_and(("token", {"type": "string"}), ("user", _ref("User")), _BACKUP_LEFT,
                                       required=("token", "user", "backupCodesRemaining"))]},
                _VERIFY_MODES, ("session", "two_factor", "trust_device")),
        body=_VERIFY_BODY,
        errors={400: ("TWO_FACTOR_NOT_ENABLED",),
                401: ("UNAUTHORIZED", "INVALID_CODE", "TOO_MANY_ATTEMPTS"),
                409: ("BACKUP_CODES_NEED_REGENERATION",), 429: ("ACCOUNT_TEMPORARILY_LOCKED",)}),
    ("POST", "/two-factor/disable"): Endpoint(
        "Turn two-factor off (or cancel an unfinished setup)", "two-factor", SESSION,
        Success(_status_and(), "two-factor is off"), body=_PASSWORD_BODY,
        errors=_merge(_REAUTH, {400: ("TWO_FACTOR_NOT_ENABLED",), 401: ("UNAUTHORIZED",), 403: _FACTOR_CHANGE,
                                409: ("TWO_FACTOR_CHANGED",)})),
    ("POST", "/two-factor/get-totp-uri"): Endpoint(
        "Show the TOTP URI again", "two-factor", SESSION,
        Success(_object({"totpURI": {"type": "string"}}, ("totpURI",)),
                "the otpauth:// URI: of the app named by `id`, else of the app being added, else of the oldest"),
        body=_object({"password": _text(128), "id": _text(64, optional=True)}, ("password",)),
        errors=_merge(_REAUTH, {400: ("TWO_FACTOR_NOT_ENABLED",), 401: ("UNAUTHORIZED",), 403: _FACTOR_CHANGE,
                                404: ("AUTHENTICATOR_NOT_FOUND",), 409: ("TWO_FACTOR_SECRET_UNREADABLE",)})),
    ("GET", "/two-factor/list-authenticators"): Endpoint(
        "The user's authenticator apps", "two-factor", SESSION,
        Success({"type": "array", "items": _ref("Authenticator")},
                "oldest first, with those being added (`confirmed: false`); empty while 2FA is off"),
        errors={401: ("UNAUTHORIZED",)}),
    ("POST", "/two-factor/rename-authenticator"): Endpoint(
        "Rename an authenticator app", "two-factor", SESSION,
        Success(_object({"authenticator": _ref("Authenticator")}, ("authenticator",)), "renamed"),
        body=_object({"id": _AUTHENTICATOR_ID, "name": _AUTHENTICATOR_NAME}, ("id", "name")),
        errors={401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE, 404: ("AUTHENTICATOR_NOT_FOUND",),
                409: ("AUTHENTICATOR_NAME_TAKEN",)}),
    ("POST", "/two-factor/remove-authenticator"): Endpoint(
        "Remove an authenticator app", "two-factor", SESSION,
        Success(_status_and(("twoFactorEnabled", {"type": "boolean"}), required=("twoFactorEnabled",)),
                "removed; every trusted device of the user is forgotten (unless the app was still being "
                "added); `twoFactorEnabled: false` when it was the last one, which turned 2FA off "
                "(backup codes and unfinished setups go too); that needs `password`, as `disable` does "
                "(400 `VALIDATION_ERROR` without it); a password given is checked on any removal"),
        body=_object({"id": _AUTHENTICATOR_ID, "password": _text(128)}, ("id",)),
        errors=_merge(_REAUTH, {401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE, 404: ("AUTHENTICATOR_NOT_FOUND",),
                                409: ("TWO_FACTOR_CHANGED",)})),
    ("POST", "/two-factor/generate-backup-codes"): Endpoint(
        "Replace the backup codes", "two-factor", SESSION,
        Success(_status_and(("backupCodes", {"type": "array", "items": {"type": "string"}}),
                            required=("backupCodes",)), "the new codes; the old set is void"),
        body=_PASSWORD_BODY,
        errors=_merge(_REAUTH, {400: ("TWO_FACTOR_NOT_ENABLED",), 401: ("UNAUTHORIZED",), 403: _FACTOR_CHANGE,
                                409: ("BACKUP_CODES_CHANGED",)})),
    ("POST", "/two-factor/send-otp"): Endpoint(
        "Send a one-time code by message, for the sign-in challenge or a step-up", "two-factor", PENDING_OR_SESSION,
        Success(_status_and(), "sent to the user's address (one live code per user: an earlier one is void)"),
        body=_object({"trustDevice": _FLAG, "channel": _CHANNEL}),
        errors=_merge(_OTP_SEND, {400: ("OTP_NOT_ENABLED",), 401: ("UNAUTHORIZED",),
                                  429: ("ACCOUNT_TEMPORARILY_LOCKED",)})),
    ("POST", "/two-factor/verify-otp"): Endpoint(
        "Answer a sign-in challenge, step up or confirm an enrolment with a code sent by message", "two-factor",
        PENDING_OR_SESSION,
        Success({"anyOf": [_ref("TokenAndUser"),
                           _status_and(("token", {"type": "string"}), ("user", _ref("User")),
                                       required=("token", "user"))]},
                _VERIFY_MODES.replace("2FA set up, not yet confirmed", "the code `enable` sent"),
                ("session", "two_factor", "trust_device")),
        body=_VERIFY_BODY,
        errors={400: ("OTP_NOT_ENABLED",), 401: ("UNAUTHORIZED", "INVALID_CODE", "TOO_MANY_ATTEMPTS"),
                409: ("OTP_ENROLMENT_CONFLICT",), 429: ("ACCOUNT_TEMPORARILY_LOCKED",)}),
    ("POST", "/two-factor/disable-otp"): Endpoint(
        "Stop codes by message (one channel, or all)", "two-factor", SESSION,
        Success(_status_and(("twoFactorEnabled", {"type": "boolean"}), required=("twoFactorEnabled",)),
                "stopped; every trusted device of the user is forgotten; two-factor is off when no "
                "other factor is left"),
        body=_object({"password": _text(128), "channel": _CHANNEL}, ("password",)),
        errors=_merge(_REAUTH, {400: ("OTP_NOT_ENABLED",), 401: ("UNAUTHORIZED",), 403: _FACTOR_CHANGE,
                                409: ("TWO_FACTOR_CHANGED",)})),
    ("GET", "/passkey/generate-register-options"): Endpoint(
        "Options to register a passkey", "passkey", SESSION,
        Success(_ref("CreationOptions"), "the options; the ceremony travels in the `passkey` cookie",
                ("passkey",)),
        query={"name": {"type": "string", "description": "the passkey's name (first 64 characters kept; NFC, "
                                                        "trimmed; no control or invisible formatting character: "
                                                        "400 VALIDATION_ERROR)"}},
        errors={400: ("VALIDATION_ERROR",), 401: ("UNAUTHORIZED",), 403: _NO_PASSWORD_CHANGE}),
    ("POST", "/passkey/verify-registration"): Endpoint(
        "Register a passkey", "passkey", SESSION,
        Success(_ref("Passkey"), "registered", ("passkey",)),
        body=_object({"response": {"type": "object", "description": "the browser's credential as JSON"},
                      "name": _text(64, optional=True)}, ("response",)),
        reads=("passkey",),
        errors={400: ("CHALLENGE_NOT_FOUND", "FAILED_TO_VERIFY_REGISTRATION"), 401: ("UNAUTHORIZED",),
                403: _NO_PASSWORD_CHANGE, 409: ("PASSKEY_ALREADY_REGISTERED", "TWO_FACTOR_CHANGED")}),
    ("GET", "/passkey/generate-authenticate-options"): Endpoint(
        "Options to sign in with a passkey", "passkey", (*OPTIONAL_SESSION, {"twoFactorCookie": []}),
        Success(_ref("RequestOptions"), "the options; the ceremony travels in the `passkey` cookie",
                ("passkey",))),
    ("POST", "/passkey/verify-authentication"): Endpoint(
        "Sign in with a passkey (or answer a sign-in challenge with one)", "passkey",
        ({}, {"twoFactorCookie": []}),
        Success(_ref("TokenAndUser"), "signed in", ("session", "passkey", "two_factor")),
        body=_object({"response": _ASSERTION,
                      "rememberMe": {"type": "boolean"}}, ("response",)),
        reads=("passkey",),
        errors={400: ("CHALLENGE_NOT_FOUND",), 401: ("AUTHENTICATION_FAILED", "PASSKEY_NOT_FOUND", "UNAUTHORIZED"),
                429: ("ACCOUNT_TEMPORARILY_LOCKED",)}),
    ("GET", "/passkey/list-user-passkeys"): Endpoint(
        "The caller's passkeys", "passkey", SESSION,
        Success({"type": "array", "items": _ref("Passkey")}, "oldest first"),
        errors={401: ("UNAUTHORIZED",)}),
    ("POST", "/passkey/delete-passkey"): Endpoint(
        "Delete a passkey", "passkey", SESSION, Success(_status_and(), "deleted"),
        body=_object({"id": _text(1400)}, ("id",)),
        errors={401: ("UNAUTHORIZED", "PASSKEY_NOT_FOUND"), 403: _NO_PASSWORD_CHANGE}),
    ("POST", "/passkey/update-passkey"): Endpoint(
        "Rename a passkey", "passkey", SESSION,
        Success(_object({"passkey": _ref("Passkey")}, ("passkey",)), "renamed"),
        body=_object({"id": _text(1400), "name": _text(64)}, ("id", "name")),
        errors={401: ("UNAUTHORIZED", "PASSKEY_NOT_FOUND"), 403: _NO_PASSWORD_CHANGE}),
    ("GET", "/openapi.json"): Endpoint(
        "This document (served when `serve_openapi` is on)", "meta", ANYONE,
        Success({"type": "object", "required": ["openapi", "paths"]}, "the OpenAPI document")),
}

# enable when codes by message are off: TOTP's alone.
_ENABLE_TOTP_ONLY = Endpoint(
    "Start TOTP setup, or add an authenticator app (confirmed by verify-totp)", "two-factor", SESSION,
    Success(_TOTP_ENABLED, "the secret and backup codes, not yet active; with an authenticator app already, "
            "another one (`id`, `name`) and no backup codes (the user's stay valid)"),
    body=_object({"password": _text(128), "issuer": _text(64, optional=True), "method": {"const": "totp"},
                  "name": _ENABLE_NAME},
                 ("password",)),
    errors=_merge(_REAUTH, {401: ("UNAUTHORIZED",), 403: _FACTOR_CHANGE,
                            409: ("TWO_FACTOR_ALREADY_ENABLED", "AUTHENTICATOR_NAME_TAKEN",
                                  "TOO_MANY_AUTHENTICATORS")}))

_COOKIE_ROLES = {"session": "banata.session_token", "two_factor": "banata.two_factor",
                 "trust_device": "banata.trust_device", "passkey": "banata.passkey"}
_COOKIE_NOTES = {
    "session": "signed user id and session id; the session token, also accepted as a Bearer token",
    "two_factor": "signed pending sign-in challenge id (a second factor is due)",
    "trust_device": "signed trust record id (set by `trustDevice: true`, rotated on use)",
    "passkey": "signed WebAuthn ceremony (kind, challenge, user, expiry)",
}


def _error_schema(status: int, codes: tuple[str, ...]) -> Schema:
    variants = []
    for code in codes:
        if code == "TWO_FACTOR_REQUIRED" and status == 403:  # the sign-in challenge
            variants.append(_CHALLENGE_BODY)
            continue
        props, required = _ERROR_EXTRAS.get(code, ({}, ()))
        variants.append(_object({"code": {"const": code}, "message": {"type": "string"}, **props},
                                ("code", "message", *required)))
    return variants[0] if len(variants) == 1 else {"oneOf": variants}


def _operation_id(key: tuple[str, str]) -> str:
    return key[1].strip("/").replace("/", "_").replace("-", "_").replace(".", "_")


def _operation(key: tuple[str, str], ep: Endpoint, cookies: Mapping[str, str], challenge_status: int,
               operation_ids: set[str]) -> Schema:
    method = key[0]
    errors = _merge(_EVERY, _POST if method == "POST" else {}, ep.errors)
    success: Schema = ep.success.schema
    if challenge_status == 200 and "TWO_FACTOR_REQUIRED" in errors.get(403, ()):
        # better-auth's form (challenge_status=200): the challenge is a 200 answer.
        errors[403] = tuple(c for c in errors[403] if c != "TWO_FACTOR_REQUIRED")
        success = {"anyOf": [success, _CHALLENGE_BODY]}
    ok: Schema = {"description": ep.success.description,
                  "content": {"application/json": {"schema": success}}}
    if ep.links:
        ok["links"] = {name: dict(link) for name, link in ep.links.items() if link["operationId"] in operation_ids}
    if ep.success.sets:
        names = ", ".join(f"`{cookies[c]}`" for c in ep.success.sets if c in cookies)
        ok["headers"] = {"Set-Cookie": {"description": f"sets or clears (when the mode calls for it): {names}",
                                        "schema": {"type": "string"}}}
    responses: dict[str, Schema] = {"200": ok}
    for status in sorted(errors):
        if not errors[status]:
            continue
        codes = errors[status]
        resp: Schema = {"description": ", ".join(codes),
                        "content": {"application/json": {"schema": _error_schema(status, codes)}}}
        if _RETRY_AFTER_CODES & set(codes):
            resp["headers"] = {"Retry-After": {"description": "seconds to wait", "required": True,
                                               "schema": {"type": "integer", "minimum": 1}}}
        responses[str(status)] = resp
    op: Schema = {"operationId": _operation_id(key),
                  "summary": ep.summary, "tags": [ep.tag], "responses": responses,
                  "security": [dict(s) for s in ep.security]}
    if ep.description:
        op["description"] = ep.description
    params = [{"name": name, "in": "query", "required": False, "schema": schema}
              for name, schema in ep.query.items()]
    params += [{"name": cookies[c], "in": "cookie", "required": False, "schema": {"type": "string"},
                "description": _COOKIE_NOTES[c]} for c in ep.reads if c in cookies]
    if params:
        op["parameters"] = params
    if ep.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": copy.deepcopy(ep.body)}}}
    return op


def openapi_document(gateway: Gateway) -> dict[str, Any]:
    """The OpenAPI 3.1 document of what ``gateway`` serves (its routes, base path, cookie names)."""
    from . import __version__

    config = gateway.config
    # Names as the flows set them (``__Host-`` prefixed when the site is https).
    by_role = {name.removeprefix("__Host-"): name for name in gateway.flows.cookie_names}
    cookies = {role: by_role[plain] for role, plain in _COOKIE_ROLES.items() if plain in by_role}
    paths: dict[str, dict[str, Any]] = {}
    operation_ids = {_operation_id(key) for key in gateway.routes}
    otp_off = ("POST", "/two-factor/send-otp") not in gateway.routes
    for key in sorted(gateway.routes, key=lambda k: (k[1], k[0])):
        ep = ENDPOINTS[key]  # a route without an entry must not ship undocumented
        if otp_off and key == ("POST", "/two-factor/enable"):
            ep = _ENABLE_TOTP_ONLY
        paths.setdefault(gateway.base + key[1], {})[key[0].lower()] = _operation(
            key, ep, cookies, config.challenge_status, operation_ids)
    if ("POST", "/sign-up/email") in gateway.routes:
        # Shorter (after NFKC normalization) answers 400 PASSWORD_TOO_SHORT.
        body = paths[gateway.base + "/sign-up/email"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"]["properties"]["password"]["minLength"] = config.policies.password_min_length
    schemes: dict[str, Schema] = {
        "bearerToken": {"type": "http", "scheme": "bearer",
                        "description": "the `token` of a sign-in answer (same value as the session cookie)"},
        "sessionCookie": {"type": "apiKey", "in": "cookie", "name": cookies["session"],
                          "description": _COOKIE_NOTES["session"]},
        "twoFactorCookie": {"type": "apiKey", "in": "cookie", "name": cookies["two_factor"],
                            "description": _COOKIE_NOTES["two_factor"]},
    }
    prefix = "`__Host-` prefixed, " if config.secure_cookies else ""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{config.app_name}: banata-middleware auth endpoints",
            "version": __version__,
            "description": (
                "Every error is `{code, message}` (some add fields). Cookies are HttpOnly, SameSite=Lax, "
                f"Path=/, {prefix}signed with the app secret. A POST that carries one of these cookies must "
                "come from the site's origin (`Origin` or `Referer`), else 403 `INVALID_ORIGIN`. "
                "See docs/http-api.md."),
        },
        "paths": paths,
        "components": {"schemas": copy.deepcopy(COMPONENTS), "securitySchemes": schemes},
    }

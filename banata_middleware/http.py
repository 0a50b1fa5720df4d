"""Framework-neutral request and response values. Adapters only translate to and from these."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from .errors import AuthError

__all__ = ["NO_QUERY", "Identity", "Request", "Response", "display_name", "error_response", "json_body",
           "json_response", "parse_cookies", "set_cookie"]


@dataclass(slots=True)
class Request:
    """What the flows see of a request. ``headers`` has lower-case names.

    ``body`` is None when the adapter did not read it (pass-through paths, a GET); ``body_too_large``
    says the adapter stopped reading at the cap. ``path`` is percent-decoded; ``raw_path`` is the
    path as the client sent it, percent-encoded, when the server tells (ASGI ``raw_path``, WSGI
    ``REQUEST_URI``/``RAW_URI``), else empty. ``websocket`` marks a WebSocket handshake.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    client: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    body_too_large: bool = False
    raw_path: str = ""
    websocket: bool = False
    _cookies: Mapping[str, str] | None = None

    def cookies(self) -> Mapping[str, str]:
        """The Cookie header's pairs (``parse_cookies``), read-only: parsed once per distinct header
        and shared by the requests that carry the same one (a browser sends the same header again
        and again; parsing it was a tenth of a pass-through's cost)."""
        if self._cookies is None:
            header = self.headers.get("cookie", "")
            cookies = _parsed_cookies.get(header)
            if cookies is None:
                cookies = MappingProxyType(parse_cookies(header))
                if len(header) <= _COOKIE_CACHE_HEADER:
                    if len(_parsed_cookies) >= _COOKIE_CACHE_SIZE:
                        _parsed_cookies.clear()  # as TokenSigner's cache: bounded, and no pop racing threads
                    _parsed_cookies[header] = cookies
            self._cookies = cookies
        return self._cookies


#: An empty, read-only query, shared: what the adapters give ``Request`` positionally for the paths
#: whose query the flows never read (every pass-through), instead of a new dict each.
NO_QUERY: Mapping[str, str] = MappingProxyType({})

# Cookie header -> its parsed pairs. Bounded in entries and in the size of a header kept, so that
# headers made up to fill it cost at most a clear now and then (a few MiB at most).
_parsed_cookies: dict[str, Mapping[str, str]] = {}
_COOKIE_CACHE_SIZE = 4096
_COOKIE_CACHE_HEADER = 1024


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]]
    #: The error code of a refusal (``error_response``), "" otherwise: what metrics and spans report.
    code: str = ""


class Identity(NamedTuple):
    """Who the caller is, handed to the wrapped app as ``scope["banata"]`` / ``environ["banata"]``.

    ``session_id`` is the stored (hashed) id, safe to log; the token itself is never exposed.
    ``amr``: how the user authenticated, RFC 8176 values (``pwd``, ``otp``, ``pop``, ``user``,
    ``mfa``; see README), empty for sessions made before it was recorded.
    Immutable; a NamedTuple because one is made per authenticated request.
    """

    user_id: str
    session_id: str
    aal: int
    mfa_verified_at: float | None
    two_factor_enabled: bool
    amr: tuple[str, ...] = ()


_JSON_HEADERS = [("content-type", "application/json"), ("cache-control", "no-store")]
# json.dumps makes a new encoder at every call given separators: one, made once, writes the same.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


# A dataclass or a datetime is refused as the standard encoder refuses it, never written field by
# field: a record object handed to a reply by mistake must fail, not publish its fields (a secret's
# repr=False hides it from repr only).
_REFUSE_OBJECTS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def json_body(payload: Any) -> bytes:
    """``payload`` as compact JSON (UTF-8). orjson writes it in a fifteenth of the standard encoder's
    time (0.36 against 5.4 µs for a get-session reply), which is a tenth of get-session's own cost.
    What orjson refuses (a string with a lone surrogate, which a JSON body may carry in; a key that is
    not a string; an integer past 64 bits) the standard encoder writes, as it always did; what both
    refuse raises TypeError."""
    try:
        return orjson.dumps(payload, option=_REFUSE_OBJECTS)
    except TypeError:  # orjson.JSONEncodeError is one
        return _COMPACT_JSON.encode(payload).encode()


def json_response(status: int, payload: Any, *, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json_body(payload)
    return Response(status, body, [*_JSON_HEADERS, *(headers or [])])


def error_response(error: AuthError, *, headers: list[tuple[str, str]] | None = None) -> Response:
    response = json_response(error.status, error.body(), headers=[*error.headers.items(), *(headers or [])])
    response.code = error.code
    return response


def parse_cookies(header: str) -> dict[str, str]:
    """A forgiving Cookie header parser: malformed pairs are skipped, the first value of a name wins."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value.strip().strip('"')
    return cookies


def set_cookie(
    name: str,
    value: str,
    *,
    max_age: int | None,
    secure: bool,
    http_only: bool = True,
    same_site: str = "Lax",
) -> tuple[str, str]:
    """A Set-Cookie header. ``max_age=None`` makes a browser-session cookie; 0 deletes it."""
    parts = [f"{name}={value}", "Path=/", f"SameSite={same_site}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if http_only:
        parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    return ("set-cookie", "; ".join(parts))


def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object body of an auth endpoint, or a 4xx ``AuthError``."""
    if request.body_too_large or (request.body is not None and len(request.body) > max_bytes):
        raise AuthError(413, "PAYLOAD_TOO_LARGE", f"the request body is larger than {max_bytes} bytes")
    raw = request.body or b""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not raw.strip():
        return {}
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise AuthError(415, "VALIDATION_ERROR", "the body must be application/json")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise AuthError(400, "VALIDATION_ERROR", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise AuthError(400, "VALIDATION_ERROR", "the body must be a JSON object")
    return data


#: Unicode categories a display name may not hold: control (C0 and C1: U+0085, U+009B, an 8-bit
#: terminal's CSI), format (bidi overrides, which can make a name read as another), surrogate,
#: private-use and unassigned characters, line and paragraph separators.
_NOT_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Format characters emoji sequences need (zero-width joiner and non-joiner).
_JOINERS = frozenset("\u200c\u200d")


def display_name(value: str, field: str, *, max_len: int, required: bool = False) -> str:
    """A name the user gives something and others see (an authenticator app, a passkey, the
    account): NFC, trimmed, at most ``max_len`` characters, no control or invisible formatting
    character (R6-7: the same rule for every such string, wherever it is shown: a log line, the
    outbox, a terminal). "" when blank and not ``required``; otherwise 400 ``VALIDATION_ERROR``."""
    name = unicodedata.normalize("NFC", value).strip()
    if required and not name:
        raise AuthError(400, "VALIDATION_ERROR", f"'{field}' must be a non-empty string")
    if len(name) > max_len:  # NFC lengthens a few rare strings
        raise AuthError(400, "VALIDATION_ERROR", f"'{field}' is longer than {max_len} characters")
    if any(unicodedata.category(ch) in _NOT_IN_NAMES and ch not in _JOINERS for ch in name):
        raise AuthError(400, "VALIDATION_ERROR", f"'{field}' holds control or invisible formatting characters")
    return name


def _utf8(value: str) -> bool:
    """False for text UTF-8 cannot encode: lone surrogates, which JSON escapes such as "\\ud800"
    produce. They would fail later, in hashing, key derivation or the Redis client (a 500)."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class Body:
    """Typed access to a JSON body's fields with contract errors (400 VALIDATION_ERROR)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def text(self, name: str, *, max_len: int = 256, required: bool = True) -> str:
        value = self.data.get(name)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and value == ""):
            raise AuthError(400, "VALIDATION_ERROR", f"'{name}' must be a non-empty string")
        if len(value) > max_len or "\x00" in value or not _utf8(value):
            raise AuthError(400, "VALIDATION_ERROR", f"'{name}' is too long or holds invalid characters")
        return value

    def flag(self, name: str) -> bool:
        value = self.data.get(name, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise AuthError(400, "VALIDATION_ERROR", f"'{name}' must be true or false")
        return value

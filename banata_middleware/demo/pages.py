"""What the demo serves, with no web framework in it: its configuration, its pages (``templates/``),
its static files (``static/``: the stylesheet and the one script every page runs) and the QR code of
the two-factor setup page. ``app.py`` (Starlette) and ``wsgi.py`` (Werkzeug) only route to these, so
both frameworks serve the same bytes.

The pages are plain HTML; ``static/app.js`` calls the middleware's JSON endpoints with ``fetch``
(the calls better-auth's ``authClient`` makes), so the demo is a live example of the wire contract.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from string import Template
from typing import Any, TextIO
from urllib.parse import urlsplit

from ..config import AuthMethods, BanataAuthConfig, OtpConfig, PasskeyConfig
from ..delivery.notices import Outbox
from ..http import Identity
from ..otp import Inbox, OtpMessage, mask_address

__all__ = [
    "DEMO_INBOX",
    "DEMO_OUTBOX",
    "FRESH_MAX_AGE",
    "PAGES",
    "PAGE_HEADERS",
    "PUBLIC_PATHS",
    "QR_MAX_BODY",
    "DemoPost",
    "StaticAsset",
    "dashboard_page",
    "demo_config",
    "demo_otp",
    "outbox_page",
    "page",
    "qr_reply",
    "qr_svg_data_uri",
    "static_asset",
]

FRESH_MAX_AGE = 300

#: The notices the demo "sent" (``banata-mfa demo`` passes it as the notifier): the outbox page lists them.
DEMO_OUTBOX = Outbox()
#: The one-time codes the demo "sent" by email or SMS (``DemoPost``): the outbox page lists them, codes hidden.
DEMO_INBOX = Inbox()


class DemoPost:
    """The demo's sender of one-time codes (``banata-mfa demo`` configures it): it keeps each message
    for the outbox page (``inbox``), and delivers it to a stand-in for the user's mailbox or phone:
    the terminal running the demo (``stream``, as Django's console email backend does) and, when
    given, a folder where each message becomes a JSON file (as its file backend does; the
    better-auth interop test reads its codes there). A page of the site never shows a live code:
    whoever has only the password would read it there."""

    def __init__(self, inbox: Inbox = DEMO_INBOX, *, folder: str | None = None,
                 stream: TextIO | None = sys.stderr) -> None:
        self.inbox = inbox
        self.folder = folder
        self.stream = stream
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, message: OtpMessage) -> None:
        self.inbox(message)
        if self.stream is not None:
            print(f"demo mailbox: {message.channel} to {mask_address(message.channel, message.to)} "
                  f"({message.purpose}): {message.text()}", file=self.stream, flush=True)
        if self.folder is not None:
            with self._lock:
                self._count += 1
                name = os.path.join(self.folder, f"{self._count:06d}.json")
            record = {"userId": message.user_id, "channel": message.channel, "to": message.to,
                      "purpose": message.purpose, "code": message.code, "text": message.text()}
            with open(name + ".tmp", "w", encoding="utf-8") as out:
                json.dump(record, out)
            os.replace(name + ".tmp", name)  # readers never see half a file


def demo_otp(sender: DemoPost | None = None) -> OtpConfig:
    """The demo's codes by message: email and SMS, to ``sender`` (default: a ``DemoPost``)."""
    return OtpConfig(sender=sender or DemoPost(), channels=("email", "sms"))

# path -> (template under templates/, title). Every one of them is public except /settings.
PAGES: dict[str, tuple[str, str]] = {
    "/": ("index", "Welcome"),
    "/sign-in": ("sign-in", "Sign in"),
    "/sign-up": ("sign-up", "Create an account"),
    "/two-factor": ("two-factor", "Two-factor authentication"),
    "/settings": ("settings", "Security settings"),
}

# The pending-challenge page (/two-factor) must be public: a user between password and second
# factor has no session, and the middleware answers protected paths 403 for them.
PUBLIC_PATHS: tuple[str, ...] = ("/", "/sign-in", "/sign-up", "/two-factor", "/static/*", "/favicon.ico")

# Pages load nothing from anywhere but the demo itself (the QR code is a data: URL made here).
_CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS: dict[str, str] = {
    "content-security-policy": _CSP,
    "cache-control": "no-store",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}

QR_MAX_BODY = 4096
_QR_MAX_URI = 1024

_ASSET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def demo_config(*, secret: str, site_url: str, **overrides: Any) -> BanataAuthConfig:
    """The demo's configuration: email and password, TOTP and backup codes, passkeys with the
    site URL's host as rpId; ``/api/sensitive`` needs a second factor at most 300 s old."""
    options: dict[str, Any] = {
        "app_name": "Banata Demo",
        "site_url": site_url,
        "secret": secret,
        "public_paths": PUBLIC_PATHS,
        "fresh_paths": {"/api/sensitive": FRESH_MAX_AGE},
        "sign_in_page": "/sign-in",
        "two_factor_page": "/two-factor",
        "auth_methods": AuthMethods(email_password=True, two_factor=True, passkey=True),
        "passkey": PasskeyConfig(rp_id=urlsplit(site_url).hostname or "localhost", rp_name="Banata Demo",
                                 origins=(site_url.rstrip("/"),)),
    }
    options.update(overrides)
    return BanataAuthConfig(**options)


# -- pages -----------------------------------------------------------------------------------
@cache
def _template(name: str) -> Template:
    return Template(files(__package__).joinpath("templates", f"{name}.html").read_text(encoding="utf-8"))


def _layout(page_id: str, title: str, main: str) -> str:
    return _template("layout").substitute(title=html.escape(title), page=page_id, main=main)


@cache
def page(path: str) -> str:
    """The HTML of one of :data:`PAGES` (they are the same for everyone: the script fills them in)."""
    name, title = PAGES[path]
    return _layout(name, title, _template(name).substitute())


def dashboard_page(identity: Identity) -> str:
    """The protected dashboard, rendered from the identity the middleware handed to the app."""
    verified = "never in this session"
    if identity.mfa_verified_at:
        at = datetime.fromtimestamp(identity.mfa_verified_at, tz=UTC)
        verified = f'<time datetime="{at.isoformat()}">{at.strftime("%Y-%m-%d %H:%M:%S")} UTC</time>'
    main = _template("dashboard").substitute(
        user_id=html.escape(identity.user_id),
        aal=identity.aal,
        aal_text="password and a second factor" if identity.aal >= 2 else "password only",
        two_factor="on" if identity.two_factor_enabled else "off",
        two_factor_hint="" if identity.two_factor_enabled else
        ' &mdash; <a href="/settings#two-factor">turn it on</a>',
        mfa_verified_at=verified,
        fresh_max_age=FRESH_MAX_AGE,
    )
    return _layout("dashboard", "Dashboard", main)


_NOTICE_TEXT = {
    "two_factor.enabled": "Two-factor authentication was turned on",
    "two_factor.disabled": "Two-factor authentication was turned off",
    "passkey.added": "A passkey was added",
    "passkey.removed": "A passkey was removed",
    "backup_codes.regenerated": "New backup codes were generated",
    "backup_codes.low": "You have 2 or fewer backup codes left",
    "trusted_device.added": "A new device was remembered",
    "two_factor.reset_by_admin": "An administrator reset your two-factor authentication",
    "two_factor.locked": "Sign-in was locked after repeated wrong codes",
    "authenticator.added": "An authenticator app was added",
    "authenticator.removed": "An authenticator app was removed",
    "otp.enabled": "Sign-in codes by email or text message were turned on",
    "otp.disabled": "Sign-in codes by email or text message were turned off",
}


_PURPOSE_TEXT = {"sign_in": "Sign-in code", "step_up": "Step-up code", "enrol": "Address confirmation code"}


def outbox_page(identity: Identity, outbox: Outbox = DEMO_OUTBOX, inbox: Inbox = DEMO_INBOX) -> str:
    """The demo outbox: the signed-in user's notices and one-time code messages, newest first (only
    theirs: it is their mail). Codes are hidden: the demo delivers them to its terminal."""
    messages = "\n".join(
        f'      <tr data-channel="{html.escape(m.channel)}"><td>{html.escape(m.channel)}</td>'
        f"<td>{html.escape(mask_address(m.channel, m.to))}</td>"
        f"<td>{html.escape(_PURPOSE_TEXT.get(m.purpose, m.purpose))}</td>"
        f"<td>{html.escape(m.text().replace(m.code, '•' * len(m.code)))}</td></tr>"
        for m in reversed(inbox.for_user(identity.user_id)))
    no_messages = '      <tr><td colspan="4" class="muted">No codes sent yet.</td></tr>'
    rows = "\n".join(
        f'      <tr data-kind="{html.escape(n.kind)}"><td><time datetime="{n.at.isoformat()}">'
        f'{n.at.strftime("%Y-%m-%d %H:%M:%S")}</time></td><td>{html.escape(_NOTICE_TEXT.get(n.kind, n.kind))}</td>'
        f"<td>{html.escape(n.ip)}</td><td>{html.escape(n.user_agent[:80])}</td></tr>"
        for n in reversed(outbox.notices) if n.user_id == identity.user_id)
    empty = '      <tr><td colspan="4" class="muted">No notices yet: turn two-factor on in Security settings.</td></tr>'
    return _layout("outbox", "Outbox", _template("outbox").substitute(rows=rows or empty,
                                                                      messages=messages or no_messages))


# -- static files ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StaticAsset:
    body: bytes
    content_type: str


def static_asset(name: str) -> StaticAsset | None:
    """A file of ``static/`` by its bare name, or None (unknown name, a path, a hidden file)."""
    if not _ASSET_NAME.fullmatch(name):
        return None
    suffix = name[name.rfind("."):] if "." in name else ""
    content_type = _CONTENT_TYPES.get(suffix)
    resource = files(__package__).joinpath("static", name)
    if content_type is None or not resource.is_file():
        return None
    return StaticAsset(resource.read_bytes(), content_type)


# -- the QR code of the setup page -------------------------------------------------------------
def qr_svg_data_uri(uri: str) -> str:
    """``uri`` as a QR code, an SVG ``data:`` URL, drawn here: the secret it carries never goes to
    a third-party QR image service."""
    try:
        import segno
    except ImportError as exc:  # pragma: no cover - the demo extra installs it
        raise RuntimeError("the demo's QR code needs segno: pip install 'banata-middleware[demo]'") from exc
    return str(segno.make(uri, error="m").svg_data_uri(scale=6, border=4, dark="#111827", light="#ffffff"))


def qr_reply(body: bytes) -> tuple[int, dict[str, Any]]:
    """The demo endpoint ``POST /demo/qr {"uri": "otpauth://..."}`` -> (status, JSON payload)
    ``{"svg": "data:image/svg+xml,..."}``. Only otpauth URIs: it is not a general QR service."""
    if len(body) > QR_MAX_BODY:
        return 413, {"code": "PAYLOAD_TOO_LARGE", "message": f"the request body is larger than {QR_MAX_BODY} bytes"}
    try:
        data = json.loads(body or b"null")
    except (ValueError, RecursionError):
        data = None
    uri = data.get("uri") if isinstance(data, dict) else None
    if not isinstance(uri, str) or not uri.startswith("otpauth://") or len(uri) > _QR_MAX_URI:
        return 400, {"code": "VALIDATION_ERROR", "message": "'uri' must be an otpauth:// URI"}
    return 200, {"svg": qr_svg_data_uri(uri)}

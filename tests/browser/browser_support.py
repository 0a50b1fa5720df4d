"""What the browser tests share: the demo server as a subprocess, Chromium driven by Playwright, and
the steps a person takes on the demo's pages (sign up, turn on 2FA, sign in, ...).

The demo runs as ``banata-mfa demo --port P --site-url http://localhost:P``: ``localhost`` is a valid
WebAuthn rpId, ``127.0.0.1`` is not. Chromium is Debian's (``/usr/bin/chromium``); Playwright never
downloads a browser here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from servers import demo_cli

from banata_middleware.simulator import VirtualAuthenticator

CHROMIUM = os.environ.get("BANATA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "correct horse battery"
READY = "banata-mfa demo listening on http://"
REPO = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = REPO / "docs" / "screenshots" / "setup.png"
DATA_SVG = re.compile(r"^data:image/svg\+xml")

# Expectations wait at most this long (ms); the demo answers in milliseconds, scrypt included.
expect.set_options(timeout=10_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


demo_server = demo_cli  # the shared launcher in tests/servers.py


def require_chromium() -> None:
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium (apt-get install -y chromium)")


def add_virtual_authenticator(context: BrowserContext, page: Page) -> str:
    """Chromium's DevTools virtual authenticator (a platform authenticator with user verification)."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    result = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    return str(result["authenticatorId"])


@dataclass
class Person:
    """Someone using the demo in one browser tab, with a phone app (the simulator) once 2FA is on."""

    page: Page
    base: str
    shots: Path
    email: str
    phone: VirtualAuthenticator | None = None
    backup_codes: list[str] = field(default_factory=list)
    taken: list[Path] = field(default_factory=list)
    mailbox: Path | None = None  # the demo's --mail-dir: the one-time codes it "sent"

    def latest_message(self, purpose: str) -> dict[str, Any]:
        """The newest one-time code message the demo "sent" to this person (email or SMS)."""
        assert self.mailbox is not None, "the demo was started without --mail-dir"
        for path in sorted(self.mailbox.glob("*.json"), reverse=True):
            message: dict[str, Any] = json.loads(path.read_text())
            if message["purpose"] == purpose and message["to"] in (self.email, "+15551234567"):
                return message
        raise AssertionError(f"no {purpose} code was sent to {self.email}")

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)
        # The page's script has bound its handlers (app.js sets data-ready): a click before that
        # did nothing (its submit is held back), so the step would wait for an answer in vain.
        self.page.locator("body[data-ready]").wait_for(state="attached")

    def shot(self, name: str, **kw: Any) -> Path:
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), **kw)
        self.taken.append(path)
        return path

    # -- the steps ---------------------------------------------------------------------------
    def sign_up(self, name: str = "Ada Lovelace") -> None:
        self.goto("/sign-up")
        self.page.get_by_label("Name").fill(name)
        self.page.get_by_label("Email").fill(self.email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Create account").click()
        self.page.wait_for_url("**/dashboard")
        expect(self.page.locator("#account-email")).to_have_text(self.email)

    def start_two_factor_setup(self) -> str:
        """Settings -> password -> the QR code and secret; returns the secret shown for manual entry."""
        self.goto("/settings")
        self.page.get_by_label("Confirm your password to start").fill(PASSWORD)
        self.page.get_by_role("button", name="Set up two-factor authentication").click()
        secret = self.page.locator("#manual-secret")
        expect(secret).not_to_be_empty()
        expect(self.page.locator("#qr-image")).to_have_attribute("src", DATA_SVG)
        expect(self.page.locator("#setup-code")).to_be_focused()
        return secret.inner_text().replace(" ", "")

    def finish_two_factor_setup(self, secret: str) -> None:
        """Type the phone's code, read the backup codes, say they are saved."""
        uri = f"otpauth://totp/Banata%20Demo:{quote(self.email)}?secret={secret}&issuer=Banata%20Demo"
        self.phone = VirtualAuthenticator.from_uri(uri)
        self.page.get_by_label("Enter the 6-digit code the app shows").fill(self.phone.code())
        self.page.get_by_role("button", name="Verify and turn on").click()
        codes = self.page.locator("#backup-codes li")
        expect(codes).to_have_count(10)
        self.backup_codes = codes.all_inner_texts()

    def confirm_codes_saved(self) -> None:
        self.page.get_by_role("button", name="I have saved my backup codes").click()
        expect(self.page.locator("#tfa-on")).to_be_visible()

    def enable_two_factor(self) -> None:
        self.finish_two_factor_setup(self.start_two_factor_setup())
        self.confirm_codes_saved()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out", exact=True).click()  # not a session list's
        self.page.wait_for_url("**/sign-in")

    def sign_in_with_password(self) -> None:
        """Email and password; stops wherever the demo sends us (dashboard, or the 2FA page)."""
        if not self.page.url.endswith("/sign-in"):
            self.goto("/sign-in")
        self.page.get_by_label("Email").fill(self.email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        self.page.wait_for_url(lambda url: url.endswith(("/two-factor", "/dashboard")))

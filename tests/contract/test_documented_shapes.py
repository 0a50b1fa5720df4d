"""The endpoint tables of README.md and docs/http-api.md say what the code answers: every documented
success body has exactly the top-level fields a real response has (each mode of verify-totp and
verify-backup-code on its own), and the ``user`` and ``session`` objects are described as they are."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import PASSWORD, Api, Stack

from banata_middleware import OtpConfig
from banata_middleware.otp import Inbox

ROOT = Path(__file__).resolve().parents[2]
MODES = ("sign-in", "enrolment", "step-up", "adding", "method otp")
Shapes = dict[tuple[str, str | None], frozenset[str]]


def fields(shape: str) -> frozenset[str]:
    """``{status:true, token, user}`` -> {"status", "token", "user"}."""
    return frozenset(part.split(":")[0].strip().rstrip("?") for part in shape.split(",") if part.strip())


def modes_of(text: str) -> list[str | None]:
    """The verify modes a table cell or list item names before its first shape ("sign-in: ...")."""
    named = [m for m in MODES if m in text]
    return list(named) if named else [None]


def documented(cell: str) -> list[tuple[str | None, frozenset[str]]]:
    """The success shapes of one table cell: ``sign-in: `{token, user}`; step-up: `{status, ...}` ``."""
    found = []
    for part in cell.split(";"):
        match = re.search(r"`\{([^}`]*)\}`", part)
        if match:
            found += [(mode, fields(match.group(1))) for mode in modes_of(part[:match.start()])]
    return found


def table_shapes(markdown: str) -> Shapes:
    shapes: Shapes = {}
    column = -1
    for line in markdown.splitlines():
        cells = re.split(r"\s*\|\s*", line.strip().strip("|").strip())
        if "success" in cells:  # a table's header row
            column = cells.index("success")
        match = re.match(r"\| (GET|POST) `(/[a-z/-]+)` \|", line)
        if not match:
            continue
        for mode, shape in documented(cells[column]):
            shapes[(match.group(2), mode)] = shape
    return shapes


def readme_shapes() -> Shapes:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Endpoints"):]
    return table_shapes(section[:section.index("\n### ")])


def docs_shapes() -> Shapes:
    docs = (ROOT / "docs/http-api.md").read_text()
    shapes = table_shapes(docs[:docs.index("## Passkeys")])
    # verify-totp's modes are a numbered list under the table ("see below")
    below = docs[docs.index("`verify-totp` does one of four things"):docs.index("Errors of the second-factor")]
    for item in re.split(r"\n\d\. ", below)[1:]:
        match = re.search(r"`\{([^}`]*)\}`", item)
        assert match, item
        for mode in modes_of(item[:match.start()]):
            shapes[("/two-factor/verify-totp", mode)] = fields(match.group(1))
    return shapes


def answered(stack: Stack) -> tuple[Shapes, dict[str, Any]]:
    """Every endpoint in every mode, once, on a real stack: the top-level fields of each 200 body."""
    seen: Shapes = {}

    def note(path: str, mode: str | None, r: Any) -> Any:
        assert r.status_code == 200, (path, mode, r.text)
        seen[(path, mode)] = frozenset(r.json())
        return r.json()

    a: Api = stack.client()
    note("/sign-up/email", None, a.sign_up("shapes@example.com"))
    body = note("/get-session", None, a.http.get("/api/auth/get-session"))
    note("/sign-out", None, a.auth("/sign-out"))
    note("/sign-in/email", None, a.sign_in("shapes@example.com"))
    r = a.auth("/two-factor/enable", {"password": PASSWORD})
    enabled = note("/two-factor/enable", None, r)
    from banata_middleware.simulator import VirtualAuthenticator

    phone = VirtualAuthenticator.from_uri(enabled["totpURI"], clock=stack.clock)
    note("/two-factor/verify-totp", "enrolment", a.auth("/two-factor/verify-totp", {"code": phone.code()}))
    stack.clock.advance(30)
    note("/two-factor/verify-totp", "step-up", a.auth("/two-factor/verify-totp", {"code": phone.code()}))
    # another authenticator app (issue 15): enable while 2FA is on, confirmed by its first code
    added = note("/two-factor/enable", "adding", a.auth("/two-factor/enable", {"password": PASSWORD}))
    tablet = VirtualAuthenticator.from_uri(added["totpURI"], clock=stack.clock)
    note("/two-factor/verify-totp", "adding", a.auth("/two-factor/verify-totp", {"code": tablet.code()}))
    note("/two-factor/rename-authenticator", None,
         a.auth("/two-factor/rename-authenticator", {"id": added["id"], "name": "Tablet"}))
    note("/two-factor/remove-authenticator", None, a.auth("/two-factor/remove-authenticator", {"id": added["id"]}))
    note("/two-factor/get-totp-uri", None, a.auth("/two-factor/get-totp-uri", {"password": PASSWORD}))
    codes = note("/two-factor/generate-backup-codes", None,
                 a.auth("/two-factor/generate-backup-codes", {"password": PASSWORD}))["backupCodes"]
    note("/two-factor/verify-backup-code", "step-up", a.auth("/two-factor/verify-backup-code", {"code": codes[0]}))
    b = stack.client()
    assert b.sign_in("shapes@example.com").status_code == 403
    stack.clock.advance(30)
    note("/two-factor/verify-totp", "sign-in", b.auth("/two-factor/verify-totp", {"code": phone.code()}))
    c = stack.client()
    assert c.sign_in("shapes@example.com").status_code == 403
    note("/two-factor/verify-backup-code", "sign-in", c.auth("/two-factor/verify-backup-code", {"code": codes[1]}))
    # codes by message (OtpConfig): enrolment, a sign-in, a step-up, then off again
    inbox = stack.auth.config.otp.sender if stack.auth.config.otp else None
    assert isinstance(inbox, Inbox), "answered() needs a stack with OtpConfig(sender=Inbox())"
    note("/two-factor/enable", "method otp", a.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}))
    note("/two-factor/verify-otp", "enrolment", a.auth("/two-factor/verify-otp", {"code": inbox.latest().code}))
    d = stack.client()
    assert d.sign_in("shapes@example.com").status_code == 403
    note("/two-factor/send-otp", None, d.auth("/two-factor/send-otp", {}))
    note("/two-factor/verify-otp", "sign-in", d.auth("/two-factor/verify-otp", {"code": inbox.latest().code}))
    assert a.auth("/two-factor/send-otp", {}).status_code == 200
    note("/two-factor/verify-otp", "step-up", a.auth("/two-factor/verify-otp", {"code": inbox.latest().code}))
    note("/two-factor/disable-otp", None, a.auth("/two-factor/disable-otp", {"password": PASSWORD}))
    c_session = c.http.get("/api/auth/get-session").json()["session"]["id"]
    note("/two-factor/revoke-trusted-device", None, a.auth("/two-factor/revoke-trusted-device", {"id": "0" * 64}))
    note("/two-factor/revoke-trusted-devices", None, a.auth("/two-factor/revoke-trusted-devices"))
    note("/revoke-session", None, a.auth("/revoke-session", {"token": c_session}))
    note("/revoke-other-sessions", None, a.auth("/revoke-other-sessions"))
    note("/two-factor/disable", None, a.auth("/two-factor/disable", {"password": PASSWORD}))
    note("/revoke-sessions", None, a.auth("/revoke-sessions"))
    return seen, body


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    """Every endpoint is served: codes by message too."""
    return stack_factory(otp=OtpConfig(sender=Inbox()))


@pytest.mark.parametrize("document", ["README.md", "docs/http-api.md"])
def test_the_endpoint_tables_list_the_fields_the_code_answers(stack: Stack, document: str) -> None:
    docs = readme_shapes() if document == "README.md" else docs_shapes()
    seen, _ = answered(stack)
    for (path, mode), shape in seen.items():
        written = docs.get((path, mode), docs.get((path, None)))
        assert written is not None, f"{document} has no success shape for {path} ({mode or 'any'})"
        assert written == shape, f"{document}: {path} ({mode or 'any'}) says {sorted(written)}, answers {sorted(shape)}"


def test_http_api_describes_the_user_and_session_objects_as_they_are(stack: Stack) -> None:
    docs = (ROOT / "docs/http-api.md").read_text()
    _, body = answered(stack)
    for name in ("user", "session"):
        match = re.search(rf"`{name}` is `\{{([^}}`]*)\}}`", docs)
        assert match, name
        assert fields(match.group(1)) == frozenset(body[name]), name

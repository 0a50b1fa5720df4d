"""The demo's pages as served by both frameworks: public and protected paths, static files, the QR
endpoint, security headers; better-auth's 200 ``twoFactorRedirect`` form and a store that is down,
as a person sees them; and the Werkzeug demo without Starlette installed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_support import PASSWORD, Person, demo_server
from harness import RedisServer
from playwright.sync_api import Browser, expect

PUBLIC_PAGES = ["/", "/sign-in", "/sign-up", "/two-factor"]


@pytest.fixture
def http(demo: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo, headers={"origin": demo}, timeout=10) as client:
        yield client


def test_public_pages_and_static_files_need_no_session(http: httpx.Client) -> None:
    for path in PUBLIC_PAGES:
        r = http.get(path, headers={"accept": "text/html"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        assert 'src="/static/app.js"' in r.text
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "img-src 'self' data:" in csp
    assert "banata-mfa demo" in http.get("/").text
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")):
        r = http.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), name
    for bad in ("/static/nope.js", "/static/.hidden", "/static/pages.py"):
        assert http.get(bad).status_code == 404, bad
    # a traversal (dot segments, an encoded slash) is refused before any policy decision or the app
    traversal = http.get("/static/%2e%2e%2fpages.py")
    assert traversal.status_code == 400 and traversal.json()["code"] == "INVALID_PATH"


def test_protected_pages_send_a_browser_to_sign_in(http: httpx.Client) -> None:
    for path in ("/settings", "/dashboard"):
        r = http.get(path, headers={"accept": "text/html,application/xhtml+xml"})
        assert (r.status_code, r.headers.get("location")) == (303, "/sign-in"), path
    assert http.post("/demo/qr", json={"uri": "otpauth://totp/x?secret=AAAA"}).status_code == 401


def test_qr_endpoint_draws_otpauth_uris_only(http: httpx.Client) -> None:
    r = http.post("/api/auth/sign-up/email", json={"email": "qr@example.com", "password": PASSWORD})
    assert r.status_code == 200, r.text
    r = http.post("/demo/qr", json={"uri": "otpauth://totp/Banata%20Demo:qr%40example.com?secret=JBSWY3DPEHPK3PXP"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.json()["svg"].startswith("data:image/svg+xml")
    bodies: list[object] = [{"uri": "https://example.com/"}, {"uri": 5}, {}, [], {"uri": "otpauth://" + "a" * 2000}]
    for body in bodies:
        r = http.post("/demo/qr", json=body)
        assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), body
    r = http.post("/demo/qr", content=b"{" + b" " * 5000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_a_browser_without_a_session_lands_on_sign_in(person: Person) -> None:
    person.goto("/settings")
    person.page.wait_for_url("**/sign-in")
    expect(person.page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_better_auth_style_200_two_factor_redirect_reaches_the_code_page(browser: Browser, tmp_path: Path) -> None:
    with demo_server("starlette", "--challenge-status", "200") as base:
        context = browser.new_context()
        context.set_default_timeout(10_000)
        try:
            person = Person(context.new_page(), base, tmp_path, "redirect@example.com")
            person.sign_up()
            person.enable_two_factor()
            person.sign_out()
            person.sign_in_with_password()
            assert person.page.url.endswith("/two-factor")
            assert person.phone is not None
            person.page.get_by_label("6-digit code").fill(person.phone.code(steps=1))
            person.page.get_by_role("button", name="Verify").click()
            person.page.wait_for_url("**/dashboard")
        finally:
            context.close()


def test_a_store_that_is_down_is_explained(browser: Browser, tmp_path: Path) -> None:
    # The demo checks its store at start (and refuses to start without it), so the store goes
    # down while the demo runs.
    redis_server = RedisServer()
    try:
        with demo_server("starlette", "--redis-url", redis_server.url) as base:
            redis_server.stop()
            _sign_in_shows_the_store_is_down(browser, base)
    finally:
        redis_server.stop()


def _sign_in_shows_the_store_is_down(browser: Browser, base: str) -> None:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        page.goto(base + "/sign-in")
        page.get_by_label("Email").fill("down@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.locator("#sign-in-error")).to_contain_text("unavailable right now")
    finally:
        context.close()


def test_werkzeug_demo_needs_no_starlette() -> None:
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "from banata_middleware.demo.pages import demo_config\n"
            "from banata_middleware.demo.wsgi import werkzeug_app\n"
            "from banata_middleware import BanataAuth\n"
            "werkzeug_app(BanataAuth(demo_config(secret='s' * 40, site_url='http://localhost:1')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_navigation_offers_sign_in_and_create_account_only_without_a_session(person: Person) -> None:
    nav = person.page.get_by_role("navigation", name="Main")
    offers = (nav.get_by_role("link", name="Sign in"), nav.get_by_role("link", name="Create account"))
    person.goto("/")
    for link in offers:
        expect(link).to_be_visible()
    person.sign_up()
    for path in ("/dashboard", "/", "/sign-in", "/settings"):
        person.goto(path)
        expect(nav.get_by_role("link", name="Dashboard")).to_be_visible()
        for link in offers:
            expect(link).to_be_hidden()
    person.goto("/dashboard")
    person.sign_out()
    for link in offers:
        expect(link).to_be_visible()


def test_a_form_submitted_before_its_handler_is_bound_never_puts_a_password_in_the_url(person: Person) -> None:
    """The sign-in form before app.js has bound its handler is stood for by an identical form that
    no page handler ever binds: its submit is held back, so the browser's own GET (fields in the
    query string) never happens."""
    person.goto("/sign-in")
    page = person.page
    page.evaluate("""() => {
        const form = document.createElement("form");
        form.id = "unbound-form";
        form.innerHTML = '<input name="email" value="ann@example.com">'
            + '<input type="password" name="password" value="s3cret-pw"><button type="submit">Go</button>';
        document.body.append(form);
    }""")
    page.locator("#unbound-form button").click()
    page.wait_for_timeout(300)  # a native submit would have navigated by now
    assert "s3cret" not in page.url and page.url.endswith("/sign-in"), page.url

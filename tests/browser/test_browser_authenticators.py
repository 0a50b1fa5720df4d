"""Issue 15 §2 in a real browser: the demo's security page lists the user's authenticator apps, adds
another one (its QR code and secret, then its first code), renames it, signs in with a code from
either app, and removing the last one turns two-factor authentication off and says so."""

from __future__ import annotations

import re
from urllib.parse import quote

from browser_support import DATA_SVG, Person
from playwright.sync_api import expect

from banata_middleware.simulator import VirtualAuthenticator


def test_the_security_page_lists_adds_renames_and_removes_authenticator_apps(person: Person) -> None:
    page = person.page
    person.sign_up()
    person.enable_two_factor()
    apps = page.locator("#authenticator-list li")
    expect(apps).to_have_count(1)
    expect(apps.first).to_contain_text("Authenticator")
    expect(apps.first).to_contain_text("last used")

    # Another app: a name and the password, then its QR code and secret, then its first code.
    page.get_by_label("Name for another app").fill("Tablet")
    page.get_by_label("Your password, to add it").fill("correct horse battery")
    page.get_by_role("button", name="Add an authenticator app").click()
    expect(page.locator("#app-qr-image")).to_have_attribute("src", DATA_SVG)
    secret = page.locator("#app-manual-secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    expect(apps).to_have_count(2)
    expect(page.locator("#authenticator-list li", has_text="Tablet")).to_contain_text("waiting for its first code")
    person.shot("adding-an-authenticator-app")
    tablet = VirtualAuthenticator.from_uri(
        f"otpauth://totp/Banata%20Demo:{quote(person.email)}?secret={secret}&issuer=Banata%20Demo")
    assert person.phone is not None and tablet.code() != person.phone.code()
    page.get_by_label("Enter the 6-digit code the new app shows").fill(tablet.code())
    page.get_by_role("button", name="Verify and add").click()
    expect(page.locator("#flash")).to_have_text("Authenticator app “Tablet” added: its codes sign you in too.")
    expect(page.locator("#add-app-scan")).to_be_hidden()
    expect(page.locator("#authenticator-list li", has_text="Tablet")).to_contain_text("last used")

    # Rename it.
    page.get_by_role("button", name="Rename authenticator app Tablet").click()
    page.get_by_label("New name").fill("iPad")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#authenticator-list li", has_text="iPad")).to_have_count(1)
    expect(page.locator("#authenticator-list li", has_text="Tablet")).to_have_count(0)
    person.shot("two-authenticator-apps")

    # Sign in with the new app's code (the step after the one that confirmed it).
    person.sign_out()
    person.sign_in_with_password()
    assert page.url.endswith("/two-factor")
    page.get_by_label("6-digit code").fill(tablet.code(steps=1))
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/dashboard")
    expect(page.locator("#aal")).to_contain_text("AAL2")

    # Remove the first app: 2FA stays on. Remove the last: it turns off, and the page says so.
    person.goto("/settings")
    expect(apps).to_have_count(2)
    page.get_by_role("button", name="Remove authenticator app Authenticator").click()
    expect(page.locator("#authenticator-list")).to_contain_text("Its codes stop working.")
    page.get_by_role("button", name="Yes, remove Authenticator").click()
    expect(apps).to_have_count(1)
    expect(page.locator("#tfa-on")).to_be_visible()
    page.get_by_role("button", name="Remove authenticator app iPad").click()
    expect(page.locator("#authenticator-list")).to_contain_text("your last authenticator app? Two-factor")
    # Turning 2FA off asks for the password, as "Turn off" does (R6-4): none, a wrong one, the right one.
    page.get_by_role("button", name="Yes, remove iPad").click()
    expect(page.locator("#authenticator-list")).to_contain_text("Enter your password to turn two-factor")
    page.get_by_label("Your password, to turn two-factor off").fill("not the password")
    page.get_by_role("button", name="Yes, remove iPad").click()
    expect(page.locator("#authenticator-list")).to_contain_text("That password is not correct.")
    expect(apps).to_have_count(1)
    page.get_by_label("Your password, to turn two-factor off").fill("correct horse battery")
    page.get_by_role("button", name="Yes, remove iPad").click()
    expect(page.locator("#tfa-off")).to_be_visible()
    expect(page.locator("#flash")).to_have_text(
        "Two-factor authentication is off: you removed your last authenticator app.")
    person.shot("last-authenticator-app-removed")
    person.sign_out()
    person.sign_in_with_password()
    assert page.url.endswith("/dashboard")  # a password alone again

"""Issue 5: passkeys in a real browser. Chromium's DevTools virtual authenticator (CDP) plays the
platform authenticator; the page calls ``navigator.credentials`` with the JSON options from our
endpoints. Register from the settings page, rename, sign in with it (no password), delete; and,
with 2FA on, a passkey answering the sign-in challenge instead of a code."""

from __future__ import annotations

import pytest
from browser_support import Person, add_virtual_authenticator
from playwright.sync_api import BrowserContext, expect

# Hide WebAuthn Level 3's JSON helpers so the page's own base64url <-> ArrayBuffer code runs.
WITHOUT_JSON_HELPERS = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""


def add_passkey(person: Person, name: str) -> None:
    person.goto("/settings")
    person.page.get_by_label("Name for a new passkey").fill(name)
    person.page.get_by_role("button", name="Add a passkey").click()
    expect(person.page.locator("#passkey-list li", has_text=name)).to_be_visible()
    expect(person.page.locator("#add-passkey-error")).to_be_empty()


@pytest.mark.parametrize("json_helpers", [True, False], ids=["native-json", "manual-b64url"])
def test_register_rename_sign_in_with_a_passkey_and_delete_it(context: BrowserContext, person: Person,
                                                              json_helpers: bool) -> None:
    page = person.page
    if not json_helpers:
        context.add_init_script(WITHOUT_JSON_HELPERS)
    add_virtual_authenticator(context, page)
    person.sign_up()
    helpers = page.evaluate("[typeof PublicKeyCredential.parseCreationOptionsFromJSON,"
                            " typeof PublicKeyCredential.parseRequestOptionsFromJSON,"
                            " typeof PublicKeyCredential.prototype.toJSON]")
    assert helpers == (["function"] * 3 if json_helpers else ["undefined"] * 3)
    add_passkey(person, "Laptop")
    expect(page.locator("#passkey-list li")).to_have_count(1)
    expect(page.locator("#passkey-list li")).to_contain_text("added")
    person.shot("passkey-added")

    item = page.locator("#passkey-list li").first
    item.get_by_role("button", name="Rename passkey Laptop").click()
    page.get_by_label("New name").fill("Work laptop")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#passkey-list .name")).to_have_text(["Work laptop"])

    # Passwordless: no email, no password; a user-verified passkey is a second factor by itself.
    person.sign_out()
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("**/dashboard")
    expect(page.locator("#account-email")).to_have_text(person.email)
    expect(page.locator("#aal")).to_contain_text("AAL2")
    person.shot("signed-in-with-passkey")

    person.goto("/settings")
    page.get_by_role("button", name="Delete passkey Work laptop").click()
    page.get_by_role("button", name="Yes, delete").click()
    expect(page.locator("#passkey-list li")).to_have_count(0)
    expect(page.locator("#passkey-empty")).to_be_visible()

    # The authenticator still holds the credential, but the server no longer knows it.
    person.sign_out()
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#passkey-sign-in-error")).to_contain_text("not registered here")


def test_passkey_answers_the_sign_in_challenge_when_two_factor_is_on(context: BrowserContext,
                                                                       person: Person) -> None:
    page = person.page
    add_virtual_authenticator(context, page)
    person.sign_up()
    person.enable_two_factor()
    add_passkey(person, "Phone")
    person.sign_out()

    person.sign_in_with_password()
    assert page.url.endswith("/two-factor")
    expect(page.get_by_role("button", name="Use a passkey")).to_be_visible()
    person.shot("two-factor-page-with-passkey")
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url("**/dashboard")
    expect(page.locator("#aal")).to_contain_text("AAL2")
    expect(page.locator("#account-email")).to_have_text(person.email)

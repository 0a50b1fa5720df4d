"""Codes by email or text message on the demo's pages: turned on in Security settings with a code
sent to the address, then a sign-in answered with a code "sent" by email (the demo writes each
message to its --mail-dir, the test's stand-in for the person's mailbox), then off again."""

from __future__ import annotations

from browser_support import PASSWORD, Person
from playwright.sync_api import expect


def test_turn_on_codes_by_email_sign_in_with_one_then_turn_them_off(person: Person) -> None:
    page = person.page
    person.sign_up()
    person.goto("/settings")
    card = page.locator("#codes-by-message")
    expect(card).to_contain_text("NIST SP 800-63B-4 restricts SMS")
    card.get_by_label("Your password").first.fill(PASSWORD)
    card.get_by_role("button", name="Send a confirmation code").click()
    expect(page.locator("#otp-confirm-note")).to_contain_text("A code went to u")
    code = person.latest_message("enrol")["code"]
    page.get_by_label("Code from the message").fill(code)
    page.get_by_role("button", name="Confirm and turn on").click()
    expect(page.locator("#flash")).to_contain_text("Codes by message are on")
    expect(page.locator("#tfa-on")).to_be_visible()

    # The demo outbox lists the message, the code itself hidden.
    person.goto("/outbox")
    expect(page.locator("#messages tbody")).to_contain_text("Address confirmation code")
    expect(page.locator("#messages tbody")).not_to_contain_text(code)

    person.goto("/settings")
    person.sign_out()
    person.sign_in_with_password()
    page.wait_for_url("**/two-factor")
    expect(page.locator("#otp-step")).to_be_visible()  # the only second factor this person has
    expect(page.locator("#totp-step")).to_be_hidden()
    page.get_by_role("button", name="Send me a code").click()
    expect(page.locator("#otp-sent")).to_contain_text("A code is on its way")
    page.get_by_role("button", name="Send me a code").click()  # at once again: the resend waits
    expect(page.locator("#otp-error")).to_contain_text("A code was sent a moment ago")
    page.get_by_label("Code from the message").fill("000000" if code != "000000" else "111111")
    page.locator("#otp-form").get_by_role("button", name="Verify").click()
    expect(page.locator("#otp-error")).to_contain_text("4 attempts left")
    page.get_by_label("Code from the message").fill(person.latest_message("sign_in")["code"])
    page.locator("#otp-form").get_by_role("button", name="Verify").click()
    page.wait_for_url("**/dashboard")

    person.goto("/settings")  # the code's sign-in is a fresh second factor: no step-up asked
    page.locator("#otp-disable-form").get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Stop codes by message").click()
    expect(page.locator("#flash")).to_contain_text("and with them two-factor authentication")
    expect(page.locator("#tfa-off")).to_be_visible()

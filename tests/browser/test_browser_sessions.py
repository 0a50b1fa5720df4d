"""Issue 14, section 2: the settings page lists where the user is signed in and which browsers are
trusted, with "Sign out" and "Forget" buttons. Two browsers (two contexts, told apart by their user
agent) on one account: the first forgets the second's trust and signs it out; the second then lands
on the sign-in page, and its next password sign-in asks for the second factor again."""

from __future__ import annotations

from browser_support import Person
from playwright.sync_api import Browser, expect

OTHER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) OtherBrowser/1.0"


def test_settings_lists_sessions_and_trusted_devices_and_ends_them(browser: Browser, demo: str,
                                                                   person: Person) -> None:
    page = person.page
    person.sign_up()
    person.enable_two_factor()
    assert person.phone is not None

    # The second browser signs in with a code (the next step's: enrolment used this one) and trusts itself.
    other_context = browser.new_context(base_url=demo, user_agent=OTHER_AGENT)
    try:
        other = Person(other_context.new_page(), demo, person.shots, person.email, phone=person.phone)
        other.sign_in_with_password()
        assert other.page.url.endswith("/two-factor")
        other.page.get_by_label("6-digit code").fill(person.phone.code(steps=1))
        other.page.get_by_label("Trust this device for 30 days").first.check()
        other.page.get_by_role("button", name="Verify").click()
        other.page.wait_for_url("**/dashboard")

        person.goto("/settings")
        sessions = page.locator("#session-list li")
        expect(sessions).to_have_count(2)
        expect(sessions.first).to_contain_text("this browser")
        expect(sessions.first.get_by_role("button")).to_have_count(0)  # this one signs out with "Sign out" below
        expect(sessions.nth(1)).to_contain_text("OtherBrowser/1.0")
        expect(sessions.nth(1)).to_contain_text("AAL2")
        devices = page.locator("#device-list li")
        expect(devices).to_have_count(1)
        expect(devices.first).to_contain_text("OtherBrowser/1.0")
        person.shot("sessions-and-trusted-devices", full_page=True)

        # Forget the other browser's trust, then sign it out.
        page.get_by_role("button", name=f"Forget {OTHER_AGENT}").click()
        expect(devices).to_have_count(0)
        expect(page.locator("#device-empty")).to_be_visible()
        page.get_by_role("button", name=f"Sign out {OTHER_AGENT}").click()
        expect(sessions).to_have_count(1)
        expect(page.locator("#session-list-error")).to_be_empty()
        person.shot("other-browser-signed-out")

        # The other browser: its session is gone, and the password alone no longer gets it in.
        other.goto("/dashboard")
        other.page.wait_for_url("**/sign-in")
        other.sign_in_with_password()
        assert other.page.url.endswith("/two-factor")

        # This browser is still signed in.
        person.goto("/dashboard")
        expect(page.locator("#aal")).to_contain_text("AAL2")
    finally:
        other_context.close()

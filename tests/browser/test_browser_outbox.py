"""The demo's outbox page as a person sees it: marked as a demo, empty at first, then the notice of
turning two-factor on (delivered by the demo's delivery thread after the change committed), and
those of a remembered device and of a lock after wrong codes."""

from __future__ import annotations

from browser_support import PASSWORD, Person
from playwright.sync_api import Browser, expect


def test_a_new_account_has_an_empty_demo_outbox(person: Person) -> None:
    person.sign_up()
    person.page.get_by_role("link", name="Outbox").click()
    person.page.wait_for_url("**/outbox")
    expect(person.page.get_by_role("heading", name="Outbox")).to_be_visible()
    expect(person.page.locator("#demo-outbox-banner")).to_contain_text("Nothing here was sent")
    expect(person.page.locator("#outbox tbody")).to_contain_text("No notices yet")


def test_turning_two_factor_on_shows_a_notice_in_the_outbox(person: Person) -> None:
    person.sign_up()
    person.enable_two_factor()
    person.page.set_default_timeout(5_000)
    for _ in range(10):  # the delivery thread sends it within moments of the commit
        person.goto("/outbox")
        if person.page.locator('#outbox tr[data-kind="two_factor.enabled"]').count():
            break
        person.page.wait_for_timeout(300)
    expect(person.page.locator('#outbox tr[data-kind="two_factor.enabled"]')).to_contain_text(
        "Two-factor authentication was turned on")


def test_a_remembered_device_and_a_lock_after_wrong_codes_show_in_the_outbox(
        person: Person, browser: Browser, demo: str) -> None:
    """The notices decided in the hot store reach the outbox too: this browser remembered at
    sign-in, then someone with the password (another browser, no cookies of ours) guessing codes
    until sign-in locks. The person, still signed in, reads both in the outbox."""
    person.sign_up()
    person.enable_two_factor()
    person.sign_out()
    person.sign_in_with_password()
    assert person.phone is not None
    person.page.get_by_label("6-digit code").fill(person.phone.code(steps=1))  # enrolment used this step
    person.page.get_by_label("Trust this device for 30 days").first.check()
    person.page.get_by_role("button", name="Verify").first.click()
    person.page.wait_for_url("**/dashboard")

    shown = {person.phone.code(steps=s) for s in (-1, 0, 1, 2)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333", "444444") if c not in shown)
    thief = browser.new_context(base_url=demo)
    try:
        api, headers = thief.request, {"origin": demo}
        answers: list[int] = []
        while not answers or answers[-1] != 429:
            r = api.post("/api/auth/sign-in/email", data={"email": person.email, "password": PASSWORD},
                         headers=headers)
            assert r.status == 403, r.text()
            for _ in range(5):  # a challenge's attempts; the lock comes with the tenth wrong code
                answers.append(api.post("/api/auth/two-factor/verify-totp", data={"code": wrong},
                                        headers=headers).status)
                if answers[-1] == 429:
                    break
            assert len(answers) <= 10, answers
    finally:
        thief.close()

    for kind in ("trusted_device.added", "two_factor.locked"):
        for _ in range(10):  # the delivery thread sends it within moments of the commit
            person.goto("/outbox")
            if person.page.locator(f'#outbox tr[data-kind="{kind}"]').count():
                break
            person.page.wait_for_timeout(300)
    rows = person.page.locator("#outbox")
    expect(rows.locator('tr[data-kind="trusted_device.added"]')).to_contain_text("A new device was remembered")
    expect(rows.locator('tr[data-kind="two_factor.locked"]')).to_contain_text(
        "Sign-in was locked after repeated wrong codes")
    expect(rows.locator('tr[data-kind="two_factor.enabled"]')).to_have_count(1)

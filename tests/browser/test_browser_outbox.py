"""The demo's outbox page as a person sees it: marked as a demo, empty at first, then the notice of
turning two-factor on (delivered by the demo's delivery thread after the change committed)."""

from __future__ import annotations

from browser_support import Person
from playwright.sync_api import expect


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

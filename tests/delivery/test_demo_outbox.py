"""The demo's outbox page on both frameworks: the signed-in user's notices, marked as a demo outbox,
delivered through the durable outbox like any notifier's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from delivery_support import SECRET

from banata_middleware import BanataAuth
from banata_middleware.delivery import NOTICE_KINDS, DeliveryPolicy
from banata_middleware.demo import pages
from banata_middleware.demo.app import starlette_app
from banata_middleware.demo.wsgi import werkzeug_app
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.simulator.testing import app_client, enroll
from banata_middleware.stores.records import AppendAudit, AuditEntry, RecordStore

SITE = "http://testserver"


@pytest.fixture(params=["starlette", "werkzeug"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[BanataAuth, object, FrozenClock]]:
    clock = FrozenClock()
    records = RecordStore.embedded(tmp_path / "records.db")
    pages.DEMO_OUTBOX.clear()
    auth = BanataAuth(pages.demo_config(secret=SECRET, site_url=SITE, clock=clock), records=records,
                      notifier=pages.DEMO_OUTBOX, delivery=DeliveryPolicy(background=False))
    app = starlette_app(auth) if request.param == "starlette" else werkzeug_app(auth)
    yield auth, app, clock
    records.dispose()
    pages.DEMO_OUTBOX.clear()


def test_the_outbox_page_lists_the_users_own_notices_as_a_demo(demo: tuple[BanataAuth, object, FrozenClock]) -> None:
    auth, app, clock = demo
    with app_client(app, base_url=SITE) as browser:
        user = enroll(browser, authenticator=VirtualAuthenticator(clock=clock), clock=clock)
        at = int(clock.now() * 1000)
        # A passkey added for this user and a lock for another one, as their record operations commit them.
        auth.records.execute(AppendAudit(user.user_id, [AuditEntry("passkey.added", at, "198.51.100.4", "Firefox")]))
        auth.records.execute(AppendAudit("someone-else", [AuditEntry("two_factor.locked", at)]))
        auth.deliver_pending()
        page = browser.get("/outbox")
    assert page.status_code == 200
    assert "Demo outbox." in page.text and "Nothing here was sent" in page.text
    assert 'data-kind="passkey.added"' in page.text and "A passkey was added" in page.text
    assert "198.51.100.4" in page.text and "Firefox" in page.text
    assert "two_factor.locked" not in page.text  # another user's mail


def test_the_outbox_page_needs_a_session(demo: tuple[BanataAuth, object, FrozenClock]) -> None:
    _, app, _ = demo
    with app_client(app, base_url=SITE) as browser:
        assert browser.get("/outbox", headers={"accept": "application/json"}).status_code in (401, 403)


def test_factor_changes_through_the_api_reach_the_outbox(demo: tuple[BanataAuth, object, FrozenClock]) -> None:
    """End to end: each change, committed by its flow with its audit row, gives its notice."""
    auth, app, clock = demo
    with app_client(app, base_url=SITE) as browser:
        user = enroll(browser, authenticator=VirtualAuthenticator(clock=clock), clock=clock)
        assert user.post("/two-factor/generate-backup-codes", {"password": user.password}).status_code == 200
        assert user.post("/two-factor/disable", {"password": user.password}).status_code == 200
        auth.reset_two_factor(user.user_id)
        auth.deliver_pending()
    assert pages.DEMO_OUTBOX.kinds(user.user_id) == [
        "two_factor.enabled", "backup_codes.regenerated", "two_factor.disabled", "two_factor.reset_by_admin"]


def test_the_outbox_page_says_each_kind_of_notice_in_words(demo: tuple[BanataAuth, object, FrozenClock]) -> None:
    auth, app, clock = demo
    with app_client(app, base_url=SITE) as browser:
        user = enroll(browser, authenticator=VirtualAuthenticator(clock=clock), clock=clock)
        at = int(clock.now() * 1000)
        auth.records.execute(AppendAudit(user.user_id, [AuditEntry(t, at, "198.51.100.4", "Firefox")
                                                        for t in NOTICE_KINDS]))
        auth.deliver_pending()
        page = browser.get("/outbox").text
    for kind in set(NOTICE_KINDS.values()):
        assert f'data-kind="{kind}"><td><time' in page, kind
        assert pages._NOTICE_TEXT[kind] in page, kind

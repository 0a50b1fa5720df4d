"""Sessions and trusted devices the user can see and end (issue 14, section 2): better-auth's
list-sessions / revoke-session / revoke-other-sessions / revoke-sessions, and our trusted-device
endpoints; ending either needs a fresh second factor for a user with 2FA, checked again in the script."""

from __future__ import annotations

import httpx
import pytest
from harness import Api, Stack

from banata_middleware.flows import iso
from banata_middleware.stores.hot_ops import Head, HotStatus, SessionEnd, SessionsEnded

EMAIL = "sessions@example.com"
WINDOW = 600  # Policies.factor_change_max_age, the default


def browser(stack: Stack, name: str, ip: str) -> Api:
    api = stack.client(ip=ip)
    api.http.headers["user-agent"] = name
    return api


def two_browsers(stack: Stack) -> tuple[Api, Api]:
    a = browser(stack, "Browser A", "10.0.0.1")
    a.sign_up(EMAIL)
    b = browser(stack, "Browser B", "10.0.0.2")
    assert b.sign_in(EMAIL).status_code == 200
    return a, b


def listed(api: Api) -> list[dict[str, object]]:
    r = api.get("/api/auth/list-sessions")
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()
    return items


def session_id(api: Api) -> str:
    return str(api.get("/api/auth/get-session").json()["session"]["id"])


def test_list_sessions_shows_each_browser_with_where_when_and_how(stack: Stack) -> None:
    a, b = two_browsers(stack)
    items = listed(a)
    assert [i["userAgent"] for i in items] == ["Browser A", "Browser B"]  # the caller's own first
    own, other = items
    assert own["current"] is True and other["current"] is False
    assert own["id"] == session_id(a) and other["id"] == session_id(b)
    assert (own["ipAddress"], other["ipAddress"]) == ("10.0.0.1", "10.0.0.2")
    assert own["aal"] == 1 and own["createdAt"] == iso(stack.clock.now() * 1000)
    assert own["lastUsedAt"] == own["updatedAt"] == own["createdAt"]
    # the listed "token" is the id: the session token itself is never stored, so never listed
    cookies = {a.http.cookies["banata.session_token"], b.http.cookies["banata.session_token"]}
    assert not cookies & {str(i["token"]) for i in items}
    assert all(i["token"] == i["id"] for i in items)


def test_list_sessions_needs_a_session(stack: Stack) -> None:
    r = stack.client().get("/api/auth/list-sessions")
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")


def test_last_use_is_recorded_to_the_minute_by_the_guard(stack: Stack) -> None:
    a, b = two_browsers(stack)
    created = stack.clock.now()
    stack.clock.advance(30)
    assert b.get("/api/me").status_code == 200  # within the minute: not written again
    assert listed(a)[1]["lastUsedAt"] == iso(created * 1000)
    stack.clock.advance(31)
    assert b.get("/api/me").status_code == 200
    assert listed(a)[1]["lastUsedAt"] == iso(stack.clock.now() * 1000)
    assert listed(a)[1]["createdAt"] == iso(created * 1000)


def test_revoke_session_by_its_listed_id_ends_that_browser(stack: Stack) -> None:
    a, b = two_browsers(stack)
    other = listed(a)[1]
    r = a.post("/api/auth/revoke-session", {"token": other["token"]})
    assert r.status_code == 200 and r.json() == {"status": True}
    assert "banata.session_token" not in r.headers.get("set-cookie", "")  # the caller's own cookie stays
    assert b.get("/api/me").status_code == 401
    assert a.get("/api/me").status_code == 200
    assert [i["userAgent"] for i in listed(a)] == ["Browser A"]


def test_revoke_session_takes_a_session_token_too(stack: Stack) -> None:
    a, b = two_browsers(stack)
    r = a.post("/api/auth/revoke-session", {"token": b.http.cookies["banata.session_token"]})
    assert r.status_code == 200
    assert b.get("/api/me").status_code == 401


def test_revoking_ones_own_session_clears_its_cookie(stack: Stack) -> None:
    a, b = two_browsers(stack)
    r = a.post("/api/auth/revoke-session", {"token": session_id(a)})
    assert r.status_code == 200
    assert "banata.session_token=;" in r.headers["set-cookie"]
    assert a.get("/api/me").status_code == 401 and b.get("/api/me").status_code == 200


def test_another_users_session_is_never_ended(stack: Stack) -> None:
    _, b = two_browsers(stack)
    stranger = stack.client()
    stranger.sign_up("stranger@example.com")
    for token in (session_id(b), b.http.cookies["banata.session_token"]):
        r = stranger.post("/api/auth/revoke-session", {"token": token})
        assert r.status_code == 200 and r.json() == {"status": True}  # as better-auth: nothing to end
    assert b.get("/api/me").status_code == 200


@pytest.mark.parametrize("token", ["", 7, None, "x" * 600])
def test_revoke_session_refuses_a_malformed_token(stack: Stack, token: object) -> None:
    a, _ = two_browsers(stack)
    r = a.post("/api/auth/revoke-session", {"token": token})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")


def test_revoke_other_sessions_keeps_only_the_callers(stack: Stack) -> None:
    a, b = two_browsers(stack)
    c = browser(stack, "Browser C", "10.0.0.3")
    assert c.sign_in(EMAIL).status_code == 200
    r = a.post("/api/auth/revoke-other-sessions")
    assert r.status_code == 200 and r.json() == {"status": True}
    assert [api.get("/api/me").status_code for api in (a, b, c)] == [200, 401, 401]
    assert [i["current"] for i in listed(a)] == [True]


def test_revoke_sessions_ends_every_one_and_clears_the_cookie(stack: Stack) -> None:
    a, b = two_browsers(stack)
    r = a.post("/api/auth/revoke-sessions")
    assert r.status_code == 200 and r.json() == {"status": True}
    assert "banata.session_token=;" in r.headers["set-cookie"]
    a.http.cookies.clear()
    assert [api.get("/api/me").status_code for api in (a, b)] == [401, 401]
    assert a.sign_in(EMAIL).status_code == 200  # the password still signs in


def test_ended_sessions_leave_an_audit_trail(stack: Stack) -> None:
    events: list[dict[str, object]] = []
    stack.auth.audit.subscribe(events.append)
    a, b = two_browsers(stack)
    a.post("/api/auth/revoke-other-sessions")
    revoked = [e for e in events if e["type"] == "session.revoked"]
    assert len(revoked) == 1 and revoked[0]["ip"] == "10.0.0.1"
    assert b.get("/api/me").status_code == 401


# -- a fresh second factor for users with 2FA ---------------------------------------------------

def with_2fa(stack: Stack) -> tuple[Api, Api]:
    """(A, B): both signed in with TOTP; A enrolled."""
    a = browser(stack, "Browser A", "10.0.0.1")
    a.sign_up(EMAIL)
    a.enable_2fa()
    stack.clock.advance(30)
    b = browser(stack, "Browser B", "10.0.0.2")
    assert b.sign_in(EMAIL).status_code == 403
    assert b.auth("/two-factor/verify-totp", {"code": a.code()}).status_code == 200
    return a, b


ENDINGS = {
    "revoke-session": lambda api, other: api.post("/api/auth/revoke-session", {"token": other}),
    "revoke-other-sessions": lambda api, other: api.post("/api/auth/revoke-other-sessions"),
    "revoke-sessions": lambda api, other: api.post("/api/auth/revoke-sessions"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_ending_sessions_needs_a_fresh_second_factor_with_2fa(stack: Stack, ending: str) -> None:
    a, b = with_2fa(stack)
    other = session_id(b)
    stack.clock.advance(WINDOW + 1)
    r = ENDINGS[ending](a, other)
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    assert b.get("/api/me").status_code == 200
    assert a.auth("/two-factor/verify-totp", {"code": a.code()}).status_code == 200  # step up
    assert ENDINGS[ending](a, other).status_code == 200
    assert b.get("/api/me").status_code == 401


def test_the_script_checks_freshness_again(stack: Stack) -> None:
    """Loaded fresh, committed stale (the second factor aged, or the session ended, in between):
    the store op itself refuses."""
    a, b = with_2fa(stack)
    uid = a.get("/api/auth/get-session").json()["user"]["id"]
    keys = stack.auth.flows.keys
    sid = session_id(a)

    def end(max_age_ms: int, own: str = sid) -> HotStatus:
        head = Head(keys.user(uid), keys.audit(uid), int(stack.clock.now() * 1000), "", "", 100, uid)
        reply: SessionsEnded = stack.auth.store.execute(SessionEnd(
            head, session_key=keys.session(uid, own), sessions_key=keys.sessions(uid), mode="others", sid=own,
            max_age_ms=max_age_ms, target_sid=""))
        return reply.status

    stack.clock.advance(1)
    assert end(0) is HotStatus.FRESH_TWO_FACTOR
    assert end(WINDOW * 1000, "0" * 64) is HotStatus.NO_SESSION
    assert b.get("/api/me").status_code == 200
    assert end(WINDOW * 1000) is HotStatus.OK
    assert b.get("/api/me").status_code == 401


def test_without_2fa_a_stale_session_signs_in_again_first(stack: Stack) -> None:
    a, b = two_browsers(stack)
    stack.clock.advance(WINDOW + 1)
    r = a.post("/api/auth/revoke-other-sessions")
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_PASSWORD_REQUIRED")
    assert b.get("/api/me").status_code == 200


# -- trusted devices ---------------------------------------------------------------------------------

def trusted_sign_in(stack: Stack, owner: Api, name: str, ip: str) -> Api:
    stack.clock.advance(30)
    api = browser(stack, name, ip)
    assert api.sign_in(EMAIL).status_code == 403
    r = api.auth("/two-factor/verify-totp", {"code": owner.code(), "trustDevice": True})
    assert r.status_code == 200, r.text
    return api


def devices(api: Api) -> list[dict[str, object]]:
    r = api.get("/api/auth/two-factor/list-trusted-devices")
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()
    return items


def sign_in_again(api: Api) -> httpx.Response:
    api.auth("/sign-out")
    return api.sign_in(EMAIL)


def test_trusted_devices_are_listed_and_keep_their_place_when_rotated(stack: Stack) -> None:
    a, _ = with_2fa(stack)
    c = trusted_sign_in(stack, a, "Browser C", "10.0.0.3")
    d = trusted_sign_in(stack, a, "Browser D", "10.0.0.4")
    trusted_at = stack.clock.now()
    items = devices(c)
    assert [(i["userAgent"], i["ipAddress"], i["current"]) for i in items] == [
        ("Browser C", "10.0.0.3", True), ("Browser D", "10.0.0.4", False)]
    assert devices(a)[0]["current"] is False  # A is not a trusted device
    stack.clock.advance(3600)
    d.http.headers["user-agent"] = "Browser D 2"
    assert sign_in_again(d).status_code == 200  # the trust rotates: a new id, the same device
    mine = devices(d)[0]
    assert (mine["userAgent"], mine["current"]) == ("Browser D 2", True)
    assert mine["id"] != items[1]["id"] and mine["createdAt"] == iso(trusted_at * 1000)
    assert mine["lastUsedAt"] == iso(stack.clock.now() * 1000)
    assert len(devices(d)) == 2


def test_forgetting_a_device_makes_it_ask_for_the_second_factor(stack: Stack) -> None:
    a, _ = with_2fa(stack)
    c = trusted_sign_in(stack, a, "Browser C", "10.0.0.3")
    d = trusted_sign_in(stack, a, "Browser D", "10.0.0.4")
    target = next(i for i in devices(a) if i["userAgent"] == "Browser C")
    r = a.post("/api/auth/two-factor/revoke-trusted-device", {"id": target["id"]})
    assert r.status_code == 200 and r.json() == {"status": True}
    assert [i["userAgent"] for i in devices(a)] == ["Browser D"]
    r = sign_in_again(c)
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")
    assert sign_in_again(d).status_code == 200


def test_forgetting_this_browser_clears_its_cookie(stack: Stack) -> None:
    a, _ = with_2fa(stack)
    c = trusted_sign_in(stack, a, "Browser C", "10.0.0.3")
    r = c.post("/api/auth/two-factor/revoke-trusted-device", {"id": devices(c)[0]["id"]})
    assert r.status_code == 200 and "banata.trust_device=;" in r.headers["set-cookie"]


def test_forgetting_all_devices_voids_every_trust(stack: Stack) -> None:
    a, _ = with_2fa(stack)
    c = trusted_sign_in(stack, a, "Browser C", "10.0.0.3")
    d = trusted_sign_in(stack, a, "Browser D", "10.0.0.4")
    r = a.post("/api/auth/two-factor/revoke-trusted-devices")
    assert r.status_code == 200 and r.json() == {"status": True}
    assert devices(a) == []
    for api in (c, d):
        r = sign_in_again(api)
        assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")


def test_forgetting_devices_needs_a_fresh_second_factor(stack: Stack) -> None:
    a, _ = with_2fa(stack)
    c = trusted_sign_in(stack, a, "Browser C", "10.0.0.3")
    stack.clock.advance(WINDOW + 1)
    tid = devices(a)[0]["id"]
    for r in (a.post("/api/auth/two-factor/revoke-trusted-device", {"id": tid}),
              a.post("/api/auth/two-factor/revoke-trusted-devices")):
        assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")
    assert sign_in_again(c).status_code == 200


@pytest.mark.parametrize("bad", ["", "zz", "../" + "a" * 61, "A" * 64, 5])
def test_revoke_trusted_device_refuses_a_malformed_id(stack: Stack, bad: object) -> None:
    a, _ = with_2fa(stack)
    r = a.post("/api/auth/two-factor/revoke-trusted-device", {"id": bad})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")


def test_trusted_devices_are_bounded_per_user_least_recently_used_first(stack: Stack) -> None:
    a, _ = with_2fa(stack)
    first = trusted_sign_in(stack, a, "Browser 0", "10.0.1.0")
    for n in range(1, 21):
        trusted_sign_in(stack, a, f"Browser {n}", f"10.0.1.{n}")
    names = {str(i["userAgent"]) for i in devices(a)}
    assert len(names) == 20 and "Browser 0" not in names
    r = sign_in_again(first)
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")

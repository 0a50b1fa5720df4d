"""Sign-up, sign-in, sign-out and get-session: every success and every listed error."""

from __future__ import annotations

from typing import Any

from harness import PASSWORD, Api, Stack

from banata_middleware.stores.records import GetAccount


def test_sign_up_gives_user_and_session_cookie(stack: Stack) -> None:
    api = stack.client()
    r = api.sign_up("ada@example.com", name="Ada")
    user = r.json()["user"]
    assert user["email"] == "ada@example.com" and user["name"] == "Ada"
    assert user["twoFactorEnabled"] is False and user["createdAt"].endswith("Z")
    assert r.json()["token"] == api.http.cookies["banata.session_token"]
    assert api.get("/api/me").json() == {"userId": user["id"], "aal": 1}


def test_sign_up_refuses_bad_fields_with_validation_error(stack: Stack) -> None:
    api = stack.client()
    for body in ({}, {"email": "no-at-sign", "password": PASSWORD}, {"email": 5, "password": PASSWORD},
                 {"email": "a@b.co", "password": None}, {"email": "a@b.co" + "x" * 300, "password": PASSWORD}):
        r = api.auth("/sign-up/email", body)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", (body, r.text)
        assert r.json()["message"]


def test_sign_up_with_short_password_is_refused(stack: Stack) -> None:
    r = stack.client().auth("/sign-up/email", {"email": "a@b.co", "password": "1234567"})
    assert (r.status_code, r.json()["code"]) == (400, "PASSWORD_TOO_SHORT")


def test_sign_up_twice_with_one_email_is_refused(stack: Stack) -> None:
    stack.client().sign_up("dup@example.com")
    r = stack.client().auth("/sign-up/email", {"email": "DUP@example.com", "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (422, "USER_ALREADY_EXISTS")


def _hot_store_values(stack: Stack) -> list[str]:
    """Every key and value the hot store holds, as text (hashes, sets and lists flattened)."""
    if stack.redis is not None:
        out: list[str] = []
        with stack.redis.client() as c:
            for key in c.scan_iter():
                kind = c.type(key)
                value: Any = {"hash": c.hgetall, "set": c.smembers, "zset": lambda k: c.zrange(k, 0, -1),
                              "list": lambda k: c.lrange(k, 0, -1), "string": c.get,
                              "stream": lambda k: c.xrange(k)}[kind](key)
                out += [key, repr(value)]
        return out
    return [repr(stack.auth.store.data)]


def _lose_the_hot_store(stack: Stack) -> None:
    """Every key of Redis (or the memory store) gone: a FLUSHALL, or a failover to an empty replica."""
    if stack.redis is not None:
        with stack.redis.client() as c:
            c.flushall()
    else:
        stack.auth.store.data.clear()
        stack.auth.store._expiry.clear()


def test_an_account_survives_the_loss_of_the_hot_store(stack: Stack) -> None:
    """Accounts live in SQL: a flushed Redis ends sessions, never an account or its password."""
    api = stack.client()
    user = api.sign_up("durable@example.com", name="Dee").json()["user"]
    stack.clock.advance(5)
    _lose_the_hot_store(stack)
    assert api.get("/api/me").status_code == 401  # the session was hot state
    r = stack.client().sign_in("durable@example.com")
    assert r.status_code == 200, r.text
    assert r.json()["user"] == user  # the same id, name and createdAt, read back from SQL
    again = stack.client().auth("/sign-up/email", {"email": "Durable@Example.com", "password": PASSWORD})
    assert (again.status_code, again.json()["code"]) == (422, "USER_ALREADY_EXISTS")
    assert stack.client().sign_in("durable@example.com", "wrong password").status_code == 401


def test_no_password_hash_reaches_the_hot_store(stack: Stack) -> None:
    api = stack.client()
    uid = api.sign_up("nohash@example.com").json()["user"]["id"]
    assert api.auth("/two-factor/get-totp-uri", {"password": "wrong password"}).status_code == 400
    assert api.auth("/two-factor/enable", {"password": PASSWORD}).status_code == 200  # re-checked against SQL
    assert stack.client().sign_in("nohash@example.com").status_code == 200
    stored = stack.auth.records.execute(GetAccount(uid))
    assert stored is not None and stored.password_hash.startswith("scrypt$")
    dump = "\n".join(_hot_store_values(stack))
    assert "scrypt$" not in dump and stored.password_hash not in dump
    user = stack.auth.flows.keys.user(uid)
    fields = (stack.redis.client().hgetall(user) if stack.redis is not None else stack.auth.store.data[user])
    assert not {"pw", "pwnf"} & set(fields)


def test_sign_in_without_2fa_gives_token_user_and_cookie(stack: Stack) -> None:
    uid = stack.client().sign_up("b@example.com").json()["user"]["id"]
    api = stack.client()
    r = api.sign_in("b@example.com")
    assert r.status_code == 200
    assert r.json()["user"]["id"] == uid and r.json()["token"] == api.http.cookies["banata.session_token"]
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie and "Max-Age=604800" in cookie
    assert "Secure" not in cookie  # the test site is http


def test_remember_me_false_gives_a_browser_session_cookie(stack: Stack) -> None:
    stack.client().sign_up("rm@example.com")
    r = stack.client().sign_in("rm@example.com", rememberMe=False)
    assert r.status_code == 200
    assert "Max-Age" not in r.headers["set-cookie"] and "Expires" not in r.headers["set-cookie"]


def test_wrong_password_and_unknown_email_get_the_same_answer(stack: Stack) -> None:
    stack.client().sign_up("c@example.com")
    wrong = stack.client().sign_in("c@example.com", "not the password")
    unknown = stack.client().sign_in("nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "INVALID_EMAIL_OR_PASSWORD"


def test_eleventh_failed_sign_in_for_an_account_from_one_address_is_throttled_even_with_the_right_password(
        stack: Stack) -> None:
    stack.client().sign_up("d@example.com")
    for _ in range(10):
        assert stack.client(ip="10.0.0.1").sign_in("d@example.com", "wrong password").status_code == 401
    r = stack.client(ip="10.0.0.1").sign_in("d@example.com")
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert 0 < int(r.headers["retry-after"]) <= 900
    stack.clock.advance(15 * 60 + 1)
    assert stack.client(ip="10.0.0.1").sign_in("d@example.com").status_code == 200


def test_fifty_failures_from_one_address_throttle_that_address(stack: Stack) -> None:
    api = stack.client(ip="192.0.2.7")
    for i in range(50):
        assert api.sign_in(f"user{i}@example.com", "wrong password").status_code == 401
    r = api.sign_in("user0@example.com", "wrong password")
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert stack.client(ip="192.0.2.8").sign_in("user0@example.com", "x" * 8).status_code == 401


def test_successful_sign_ins_are_not_counted(stack: Stack) -> None:
    stack.client().sign_up("e@example.com")
    for _ in range(15):
        assert stack.client().sign_in("e@example.com").status_code == 200


def test_sign_out_deletes_the_session(stack: Stack) -> None:
    api = stack.client()
    token = api.sign_up("f@example.com").json()["token"]
    r = api.auth("/sign-out")
    assert r.json() == {"success": True}
    assert any(c.startswith("banata.session_token=;") and "Max-Age=0" in c for c in r.headers.get_list("set-cookie"))
    other = stack.client()
    other.http.cookies.set("banata.session_token", token)
    assert other.get("/api/me").status_code == 401


def test_get_session_returns_null_without_a_session(stack: Stack) -> None:
    r = stack.client().get("/api/auth/get-session")
    assert r.status_code == 200 and r.json() is None


def test_get_session_returns_session_and_user(stack: Stack) -> None:
    api = stack.client()
    uid = api.sign_up("g@example.com").json()["user"]["id"]
    body = api.get("/api/auth/get-session").json()
    assert body["user"]["id"] == uid and body["user"]["email"] == "g@example.com"
    assert body["session"]["aal"] == 1 and body["session"]["mfaVerifiedAt"] is None
    assert body["session"]["expiresAt"] > body["session"]["createdAt"]


def test_bearer_token_is_accepted_instead_of_the_cookie(stack: Stack) -> None:
    token = stack.client().sign_up("h@example.com").json()["token"]
    bare = stack.client(origin=None)
    assert bare.get("/api/me", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert bare.get("/api/me", headers={"authorization": "Bearer forged.token.value"}).status_code == 401


def _wrong_password_via(api: Api, email: str, forwarded_for: str) -> int:
    body = {"email": email, "password": "wrong password"}
    return api.auth("/sign-in/email", body, headers={"x-forwarded-for": forwarded_for}).status_code


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(stack: Stack) -> None:
    api = stack.client(ip="10.9.9.9")
    for i in range(50):  # an attacker rotating X-Forwarded-For from one peer
        assert _wrong_password_via(api, f"x{i}@example.com", f"198.51.100.{i}") == 401
    assert _wrong_password_via(api, "x0@example.com", "198.51.100.200") == 429


def test_with_a_trusted_proxy_the_forwarded_client_address_is_throttled(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(trusted_proxies=1)
    proxy = stack.client(ip="10.0.0.1")
    for i in range(50):
        assert _wrong_password_via(proxy, f"y{i}@example.com", "203.0.113.5, 203.0.113.77") == 401
    # the right-most address, added by the trusted proxy, is the client's
    assert _wrong_password_via(proxy, "y0@example.com", "203.0.113.77") == 429
    assert _wrong_password_via(proxy, "y0@example.com", "203.0.113.78") == 401

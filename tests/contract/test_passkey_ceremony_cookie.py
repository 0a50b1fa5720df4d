"""WebAuthn ceremonies travel in the signed banata.passkey cookie: asking for options writes nothing,
and a challenge still answers once (a single-use mark is written when it is answered)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from harness import SITE, Stack
from test_passkeys import BASE, assertion, user_with_passkey

from banata_middleware.flows.passkeys import PasskeyFlows
from banata_middleware.stores import MemoryStore


def key_count(stack: Stack) -> int:
    if stack.redis is not None:
        with stack.redis.client() as admin:
            return int(admin.dbsize())
    assert isinstance(stack.auth.store, MemoryStore)
    return len(stack.auth.store.data)


def test_options_write_nothing(stack: Stack) -> None:
    owner, _ = user_with_passkey(stack)
    before = key_count(stack)
    for _ in range(50):
        assert stack.client().get(f"{BASE}/generate-authenticate-options").status_code == 200
        assert owner.get(f"{BASE}/generate-register-options").status_code == 200
    assert key_count(stack) == before


def marks(stack: Stack) -> dict[str, int]:
    """The single-use marks and their ms left."""
    if stack.redis is not None:
        with stack.redis.client() as admin:
            return {k: int(admin.pttl(k)) for k in admin.keys("*:ceremony")}
    store = stack.auth.store
    assert isinstance(store, MemoryStore)
    now = stack.clock.now()
    return {k: int((store._expiry[k] - now) * 1000) for k in store.data if k.endswith(":ceremony")}


def test_an_answered_challenge_leaves_one_mark_living_as_long_as_the_ceremony(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    response = assertion(api, key)
    stack.clock.advance(100)
    before = marks(stack)
    assert api.post(f"{BASE}/verify-authentication", {"response": response}).status_code == 200
    new = {k: v for k, v in marks(stack).items() if k not in before}
    assert len(new) == 1
    left = next(iter(new.values()))
    margin = PasskeyFlows.MARK_MARGIN_MS  # the mark outlives the ceremony by this (clocks)
    assert margin < left <= (stack.auth.config.policies.passkey_ceremony_ttl - 100) * 1000 + margin
    if isinstance(stack.auth.store, MemoryStore):
        stack.clock.advance(201 + margin / 1000)
        stack.client().get("/api/auth/get-session")  # any request lets the store sweep
        stack.client().auth("/sign-in/email", {"email": "nobody@example.com", "password": "x" * 10})
        assert not set(new) & set(marks(stack))


def test_an_expired_ceremony_cookie_is_refused(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    response = assertion(api, key)
    stack.clock.advance(stack.auth.config.policies.passkey_ceremony_ttl + 1)
    r = api.post(f"{BASE}/verify-authentication", {"response": response}, headers={"origin": SITE})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")


def test_a_tampered_ceremony_cookie_is_refused(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    response = assertion(api, key)
    value = api.http.cookies["banata.passkey"]
    payload, _, signature = value.rpartition(".")
    api.http.cookies.delete("banata.passkey")
    api.http.cookies.set("banata.passkey", payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature)
    r = api.post(f"{BASE}/verify-authentication", {"response": response})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")


def test_one_challenge_answered_in_parallel_gives_one_session(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    api = stack.client()
    response = assertion(api, key)
    cookie = api.http.cookies["banata.passkey"]
    clients = [stack.client() for _ in range(6)]
    for c in clients:
        c.http.cookies.set("banata.passkey", cookie)
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda c: c.post(f"{BASE}/verify-authentication", {"response": response}).status_code,
                                 clients))
    assert sorted(statuses) == [200] + [400] * 5


def test_a_refused_answer_writes_nothing_and_leaves_the_challenge_open(stack: Stack) -> None:
    """The mark is written only once the assertion verifies: a junk or forged answer to a real
    ceremony costs the store nothing (anyone can get a ceremony cookie)."""
    _, key = user_with_passkey(stack)
    api = stack.client()
    options = api.get(f"{BASE}/generate-authenticate-options").json()
    before = key_count(stack)
    bad = key.get(options, origin=SITE, tamper_signature=True)
    r = api.post(f"{BASE}/verify-authentication", {"response": bad})
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert key_count(stack) == before
    good = key.get(options, origin=SITE)
    cookie = api.http.cookies["banata.passkey"]
    assert api.post(f"{BASE}/verify-authentication", {"response": good}).status_code == 200
    replay = stack.client()  # the success cleared the cookie; a replayer keeps a copy
    replay.http.cookies.set("banata.passkey", cookie)
    r = replay.post(f"{BASE}/verify-authentication", {"response": key.get(options, origin=SITE)})
    assert (r.status_code, r.json()["code"]) == (400, "CHALLENGE_NOT_FOUND")

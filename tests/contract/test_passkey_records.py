"""Passkeys live in the record store (SQL): losing every byte of the hot store (Redis, or the
memory store) loses sessions, never a passkey nor its sign count; the unique credential key
decides racing registrations."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from harness import SITE, Api, Stack
from test_factor_change import request_of
from test_passkeys import BASE, cid, register, sign_in, user_with_passkey

from banata_middleware.effects import Op, run_sync
from banata_middleware.errors import AuthError
from banata_middleware.simulator import VirtualPasskey
from banata_middleware.stores import MemoryStore
from banata_middleware.stores.hot_ops import name_of


def lose_hot_state(stack: Stack) -> None:
    """Everything in the hot store gone at once (FLUSHALL, or a restarted memory store)."""
    if stack.redis is not None:
        with redis.Redis.from_url(stack.redis.url) as client:
            client.flushall()
        return
    store = stack.auth.store
    assert isinstance(store, MemoryStore)
    with store._lock:
        for part in (store.data, store._expiry, store._queued):
            part.clear()
        store._expiry_heap.clear()


def test_a_passkey_survives_the_loss_of_the_hot_store(stack: Stack) -> None:
    owner, key = user_with_passkey(stack)
    uid = owner.get("/api/me").json()["userId"]
    lose_hot_state(stack)
    assert owner.get("/api/me").status_code == 401  # the loss ends sessions ...
    api = stack.client()
    r = sign_in(api, key)  # ... and nothing else
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == uid
    assert api.get("/api/me").json()["aal"] == 2
    assert [p["id"] for p in api.get(f"{BASE}/list-user-passkeys").json()] == [cid(key)]


def test_a_sign_count_regression_is_refused_after_the_loss_too(stack: Stack) -> None:
    _, key = user_with_passkey(stack)
    assert sign_in(stack.client(), key, sign_count=10).status_code == 200
    lose_hot_state(stack)
    r = sign_in(stack.client(), key, sign_count=5)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")
    assert sign_in(stack.client(), key, sign_count=10).status_code == 401  # equal is not growth
    assert sign_in(stack.client(), key, sign_count=11).status_code == 200


def test_a_passkey_registered_without_user_verification_stays_one_factor_after_the_loss(stack: Stack) -> None:
    """'Registered without UV' is part of the record, not of the hot store."""
    _, key = user_with_passkey(stack, user_verified=False)
    lose_hot_state(stack)
    r = sign_in(stack.client(), key, user_verified=True)
    assert (r.status_code, r.json()["code"]) == (401, "AUTHENTICATION_FAILED")


def test_racing_registrations_of_one_credential_id_have_one_winner(stack: Stack) -> None:
    """Six accounts, six authenticators claiming one credential id, registering at once."""
    same_id = secrets.token_bytes(32)
    racers: list[tuple[Api, VirtualPasskey, dict[str, Any]]] = []
    for i in range(6):
        api, key = stack.client(), VirtualPasskey()
        api.sign_up(f"racer{i}@example.com")
        options = api.get(f"{BASE}/generate-register-options").json()
        racers.append((api, key, {"response": key.create(options, origin=SITE, credential_id=same_id)}))
    with ThreadPoolExecutor(len(racers)) as pool:
        answers = list(pool.map(lambda r: r[0].post(f"{BASE}/verify-registration", r[2]), racers))
    assert sorted(r.status_code for r in answers) == [200] + [409] * 5, [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"PASSKEY_ALREADY_REGISTERED"}
    assert sorted(len(api.get(f"{BASE}/list-user-passkeys").json()) for api, _, _ in racers) == [0] * 5 + [1]
    winner, key, _ = next(racer for racer, r in zip(racers, answers, strict=True) if r.status_code == 200)
    r = sign_in(stack.client(), key)
    assert r.status_code == 200 and r.json()["user"]["id"] == winner.get("/api/me").json()["userId"]


def test_a_deleted_passkey_can_be_registered_again(stack: Stack) -> None:
    owner, key = user_with_passkey(stack)
    assert owner.post(f"{BASE}/delete-passkey", {"id": cid(key)}).json() == {"status": True}
    assert sign_in(stack.client(), key).json()["code"] == "PASSKEY_NOT_FOUND"
    assert register(owner, key, credential_id=key.credential_id).status_code == 200


class _FailsAt:
    """The stack's hot store, unreachable for script ``name`` (what RedisStore raises then)."""

    in_process = True

    def __init__(self, store: Any, name: str) -> None:
        self.store, self.name = store, name

    def execute(self, op: Op) -> Any:
        if name_of(op) == self.name:
            raise AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")
        return self.store.execute(op)


def test_a_registration_whose_re_check_cannot_run_is_undone(stack: Stack) -> None:
    """The factor-change re-check follows the SQL add; a hot store that fails it leaves no passkey."""
    owner = stack.client()
    owner.sign_up("undo@example.com")
    key = VirtualPasskey()
    options = owner.get(f"{BASE}/generate-register-options").json()
    request = request_of(owner, "POST", f"{BASE}/verify-registration", {"response": key.create(options, origin=SITE)})
    response = run_sync(stack.auth.gateway.handle(request), _FailsAt(stack.auth.store, "factor_change"),
                        stack.auth.records)
    assert response.status == 503
    assert owner.get(f"{BASE}/list-user-passkeys").json() == []
    assert sign_in(stack.client(), key).json()["code"] == "PASSKEY_NOT_FOUND"
    assert register(owner, key, credential_id=key.credential_id).status_code == 200  # its id is free again

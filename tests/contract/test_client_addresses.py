"""Client addresses as the throttles and the audit see them: IPv6 clients grouped by their /64
(configurable), IPv4-mapped addresses read as IPv4, and repeated X-Forwarded-For lines read as one
list by both adapters (RFC 9110 5.3), so that Starlette and Werkzeug find the same client."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from typing import Any

import pytest
from harness import ADAPTERS, PASSWORD, SECRET, SITE, Stack
from servers import SERVER_KINDS, serve

from banata_middleware import BanataAuth, PasswordHashing
from banata_middleware.addresses import throttle_group
from banata_middleware.config import Policies
from banata_middleware.demo.app import demo_config


def fail_sign_ins(stack: Stack, addresses: list[str]) -> list[int]:
    """One failed sign-in from each address (through a trusted proxy), each for another email so
    that only the per-address throttle can trip (50 failures per address by default)."""
    api = stack.client()
    statuses = []
    for i, address in enumerate(addresses):
        r = api.auth("/sign-in/email", {"email": f"nobody{i}@example.com", "password": "wrong password"},
                     headers={"x-forwarded-for": address})
        assert r.status_code in (401, 429), r.text
        statuses.append(r.status_code)
    return statuses


def test_sixty_failed_sign_ins_from_one_ipv6_64_are_throttled(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(trusted_proxies=1)
    statuses = fail_sign_ins(stack, [f"2001:db8:7:42:{i:x}:{i * 7:x}::1" for i in range(60)])
    assert statuses == [401] * 50 + [429] * 10
    # Another /64 of the same /48 (one site) shares the limit too; another site is another client.
    assert fail_sign_ins(stack, ["2001:db8:7:43::1"]) == [429]
    assert fail_sign_ins(stack, ["2001:db8:8:43::1"]) == [401]


def test_the_ipv6_prefix_is_configurable(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(trusted_proxies=1, policies=Policies(ipv6_throttle_prefix=48))
    statuses = fail_sign_ins(stack, [f"2001:db8:7:{i:x}::1" for i in range(51)])  # 51 /64s of one /48
    assert statuses == [401] * 50 + [429]


def test_ipv4_mapped_and_plain_ipv4_share_a_count(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(trusted_proxies=1)
    statuses = fail_sign_ins(stack, ["::ffff:198.51.100.7", "198.51.100.7"] * 25 + ["::FFFF:c633:6407"])
    assert statuses == [401] * 50 + [429]


def test_audit_keeps_the_whole_ipv6_address(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(trusted_proxies=1)
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    r = stack.client().auth("/sign-up/email", {"email": "v6@example.com", "password": PASSWORD},
                            headers={"x-forwarded-for": "2001:db8:7:42::abcd"})
    assert r.status_code == 200, r.text
    assert [e["ip"] for e in events if e["type"] == "session.created"] == ["2001:db8:7:42::abcd"]


@pytest.mark.parametrize(("address", "group"), [
    ("203.0.113.9", "203.0.113.9"), ("203.0.113.9:5555", "203.0.113.9"),
    ("2001:db8::1", "2001:db8::/64"), ("2001:DB8:0:0:ffff::1", "2001:db8::/64"),
    ("[2001:db8:1:2:3::4]:443", "2001:db8:1:2::/64"), ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:203.0.113.9", "203.0.113.9"), ("::ffff:cb00:7109", "203.0.113.9"),
    ("", ""), ("unix:/run/app.sock", "unix:/run/app.sock"), ("not an address", "not an address"),
])
def test_throttle_groups(address: str, group: str) -> None:
    assert throttle_group(address, Policies()) == group


def test_the_ipv6_prefix_must_be_a_prefix_length() -> None:
    for bad in (0, 16, 129):
        with pytest.raises(ValueError, match="ipv6_throttle_prefix"):
            demo_config(site_url=SITE, secret=SECRET, policies=Policies(ipv6_throttle_prefix=bad))


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_repeated_forwarded_for_lines_are_one_list_on_both_adapters(kind: str) -> None:
    """HAProxy's ``option forwardfor`` adds a line rather than appending to the one it got. With
    two trusted proxies and two lines, the client is the first line's address on both adapters
    (the ASGI adapter used to keep only the last line, too short a list for two proxies)."""
    events: list[dict[str, Any]] = []
    auth = BanataAuth(demo_config(site_url=SITE, secret=SECRET, trusted_proxies=2,
                                  password_hashing=PasswordHashing(n=2**8)), on_event=[events.append])
    body = b'{"email":"xff@example.com","password":"%s"}' % PASSWORD.encode()
    with serve(ADAPTERS[kind](auth), kind) as base:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /api/auth/sign-up/email HTTP/1.1\r\nHost: testserver\r\nConnection: close\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                      b"X-Forwarded-For: 203.0.113.50\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n%s" % (len(body), body))
            reply = http.client.HTTPResponse(s)
            reply.begin()
            assert reply.status == 200, reply.read()
    assert [e["ip"] for e in events if e["type"] == "session.created"] == ["203.0.113.50"]

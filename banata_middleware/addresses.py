"""Client addresses as the throttles count them."""

from __future__ import annotations

import ipaddress

from .config import Policies

__all__ = ["throttle_group"]


def throttle_group(address: str, policies: Policies) -> str:
    """The group a client address is throttled as (audit events keep the address itself).
    Every per-address throttle keys on this.

    - IPv4: the address, in its canonical form.
    - IPv6: its network of ``policies.ipv6_throttle_prefix`` bits (default /64): one client
      usually holds a whole /64 and can send each request from another address in it.
    - IPv4-mapped IPv6 (``::ffff:a.b.c.d``, what a dual-stack socket reports for an IPv4 peer):
      the IPv4 address, so both spellings share a count.

    A bracketed ``[v6]:port``, an IPv4 ``a.b.c.d:port`` (some proxies write ports into
    X-Forwarded-For) and a zone (``fe80::1%eth0``) are read as their address. Anything else (a Unix
    socket path, a hostname, "") is its own group, as it came.
    """
    text = address.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, policies.ipv6_throttle_prefix), strict=False))
    return str(ip)

"""Client addresses as the throttles count them."""

from __future__ import annotations

import ipaddress

from .config import Policies

__all__ = ["throttle_group", "throttle_site"]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: the IPv4 in the low 32 bits


def throttle_group(address: str, policies: Policies) -> str:
    """The group a client address is throttled as (audit events keep the address itself).
    Every per-address throttle keys on this.

    - IPv4: the address, in its canonical form.
    - IPv6: its network of ``policies.ipv6_throttle_prefix`` bits (default /64): one client
      usually holds a whole /64 and can send each request from another address in it.
    - IPv4-mapped IPv6 (``::ffff:a.b.c.d``, what a dual-stack socket reports for an IPv4 peer):
      the IPv4 address, so both spellings share a count. So are the other forms that carry an IPv4
      client: the NAT64/SIIT well-known prefix ``64:ff9b::/96`` (RFC 6052; behind such a translator
      every IPv4 client would otherwise share one /64, making the per-address throttle global),
      6to4 ``2002:<ipv4>::/48`` (one IPv4 host owns 65536 /64s there) and Teredo ``2001::/32``
      (all clients of one Teredo server share a /64).

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
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if embedded is not None:
            return str(embedded)
        return str(ipaddress.IPv6Network((ip, policies.ipv6_throttle_prefix), strict=False))
    return str(ip)


def throttle_site(address: str, policies: Policies) -> str | None:
    """The wider group an IPv6 client's network belongs to (``policies.ipv6_site_prefix``, default
    /48, what one site is given: RFC 6177), or None for IPv4. The per-address limits apply to it
    too, so a client rotating through its site's 65,536 /64 networks gets one network's allowance."""
    group = throttle_group(address, policies)
    if "/" not in group:
        return None
    network = ipaddress.IPv6Network(group)
    return str(network.supernet(new_prefix=min(network.prefixlen, policies.ipv6_site_prefix)))

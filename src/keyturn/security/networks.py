"""Which network a client address counts as for rate limits (ASVS v5.0.0-2.4.1, 6.3.1).

One IPv6 subscriber usually holds a whole /64 (RFC 6177 section 2, RFC 7421 section 1),
so a limit keyed on the full IPv6 address is escaped by rotating through it; limits key
IPv6 clients on their prefix and IPv4 clients on the address. An IPv4-mapped IPv6 address
(``::ffff:192.0.2.1``, RFC 4291 section 2.5.5.2) is that IPv4 client, so it shares its key.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

NO_ADDRESS = "-"


@lru_cache(maxsize=4096)
def ip_limit_key(ip: str | None, ipv6_prefix: int) -> str:
    """The rate-limit key for client address ``ip``: IPv4 address or IPv6 prefix (CIDR).

    The ONE function behind every limit that contains a client address. The address
    recorded on sessions and audit rows stays the real one; only limiter keys go through
    here. Cached because hot credential endpoints call it on every request.

    Args:
        ip: the resolved client address; ``None`` when the server saw none.
        ipv6_prefix: prefix length (1..128) an IPv6 client is limited on.

    Returns:
        ``"192.0.2.1"`` for IPv4 (and IPv4-mapped IPv6), ``"2001:db8:1:2::/64"`` for IPv6,
        ``"-"`` without an address, and the text unchanged when it is no IP address
        (a test transport's peer name), so distinct peers never share a key by accident.
    """
    if not ip:
        return NO_ADDRESS
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, ipv6_prefix), strict=False)
        return str(network)
    return str(address)

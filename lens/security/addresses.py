"""Who a request comes from, as limits count it: an IPv4 address, or an IPv6 /64."""

from __future__ import annotations

import ipaddress

from flask import request


def address_key(address: str | None) -> str:
    """The key an address is counted under: IPv4 as it is, IPv6 by its /64 (one subscriber).

    An IPv6 subscriber gets a whole /64 (often a /56 or /48) and may pick any address in it,
    so counting single IPv6 addresses would give one client 2^64 allowances.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_key() -> str:
    """The requesting client's key (after the trusted proxies, lens.network)."""
    return address_key(request.remote_addr)

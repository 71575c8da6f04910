"""Counting clients for connection and rate limits."""

from __future__ import annotations

import ipaddress


def client_key(ip: str) -> str:
    """The unit a client is counted in: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)

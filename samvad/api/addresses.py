"""Who a request comes from, as its budgets count it: the TCP peer, or the address a trusted
proxy says it forwarded for, aggregated so that one caller is one budget."""

from __future__ import annotations

import ipaddress


def client_ip(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str:
    """The caller, as its budgets count it: the peer, unless the peer is a trusted proxy, in
    which case the right-most X-Forwarded-For entry that is not itself a trusted proxy (entries
    to its left were written by the client and prove nothing); then `bucket`ed."""
    peer = peer or "unknown"
    if not trusted or not forwarded_for or not _trusted(peer, trusted):
        return bucket(peer)
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, trusted):
            return bucket(hop if _is_ip(hop) else peer)
    return bucket(peer)


def bucket(address: str) -> str:
    """One budget per caller, not per address it can choose: an IPv4-mapped IPv6 address is its
    IPv4 address, and an IPv6 address is its /64 (one subscriber's prefix: a single host may
    use any of its 2^64 addresses)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _trusted(address: str, trusted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)

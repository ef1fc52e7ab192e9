"""What the address-policy tests share: a resolver that answers from a table (no DNS server runs here)
and every range the policy blocks."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult


class FixedTableResolver(AbstractResolver):
    """Answers host names from a table, as a DNS server would; counts the lookups."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"{host} is not in the table")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        return None


END = "the end of the address space"

BLOCKED_RANGES = [
    # (range, what refuses the first address after it: None where that address is public)
    # the IANA IPv4 Special-Purpose Address Registry
    ("0.0.0.0/8", None),
    ("0.0.0.0/32", "a 'this network' address"),
    ("10.0.0.0/8", None),
    ("100.64.0.0/10", None),
    ("127.0.0.0/8", None),
    ("169.254.0.0/16", None),
    ("172.16.0.0/12", None),
    ("192.0.0.0/24", None),
    ("192.0.0.0/29", "the IPv4 dummy address"),
    ("192.0.0.8/32", "an IETF protocol assignment address"),
    ("192.0.0.170/32", "a NAT64/DNS64 discovery address"),
    ("192.0.0.171/32", "an IETF protocol assignment address"),
    ("192.0.2.0/24", None),
    ("192.88.99.0/24", None),
    ("192.88.99.2/32", "a deprecated 6to4 relay anycast address"),
    ("192.168.0.0/16", None),
    ("198.18.0.0/15", None),
    ("198.51.100.0/24", None),
    ("203.0.113.0/24", None),
    ("240.0.0.0/4", END),
    ("255.255.255.255/32", END),
    # the IANA IPv6 Special-Purpose Address Registry
    ("::1/128", "a deprecated IPv4-compatible IPv6 address"),
    ("::/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv6 address reserved by the IETF"),
    ("64:ff9b::/96", "an IPv6 address reserved by the IETF"),
    ("64:ff9b:1::/48", "an IPv6 address reserved by the IETF"),
    ("100::/64", "a dummy IPv6 address"),
    ("100:0:0:1::/64", "an IPv6 address reserved by the IETF"),
    ("2001::/23", None),
    ("2001::/32", "an IETF protocol assignment address"),
    ("2001:2::/48", "an IETF protocol assignment address"),
    ("2001:10::/28", "an IETF protocol assignment address"),
    ("2001:db8::/32", None),
    ("2002::/16", None),
    ("3fff::/20", None),
    ("5f00::/16", "an IPv6 address reserved by the IETF"),
    ("fc00::/7", "an IPv6 address reserved by the IETF"),
    ("fe80::/10", "a deprecated site-local address"),
    # outside the registries
    ("169.254.169.254/32", "a link-local address"),
    ("169.254.170.2/32", "a link-local address"),
    ("169.254.170.23/32", "a link-local address"),
    ("100.100.100.200/32", "a carrier-grade NAT (shared) address"),
    ("fd00:ec2::254/128", "a unique-local address"),
    ("fd00:ec2::23/128", "a unique-local address"),
    ("224.0.0.0/4", "a reserved address"),
    ("ff00::/8", END),
    ("::/96", "an IPv6 address reserved by the IETF"),
    ("::ffff:0:0:0/96", "an IPv6 address reserved by the IETF"),
    ("fec0::/10", "a multicast address"),
    ("::/3", None),
    ("4000::/2", "an IPv6 address reserved by the IETF"),
    ("8000::/1", END),
]
"""Every range nodes/special_addresses.py blocks (test_special_addresses.py checks that none is missing)."""

"""The addresses HTTP nodes refuse, as data: every entry of the IANA IPv4 and IPv6 Special-Purpose Address
Registries (RFC 6890; the registries as updated 2025-04), and the ranges outside them that a destination
must not be in either: cloud metadata addresses, multicast, the deprecated IPv6 forms that carry an IPv4
address, and the IPv6 space outside global unicast.

An address is allowed only when no blocked range contains it; the most specific blocked range that does
decides how it is refused. A registry entry that IANA marks globally reachable blocks nothing, so an
address inside a larger blocked range stays refused: the anycast addresses 192.0.0.9 and 192.0.0.10 in
192.0.0.0/24, and 2001:1::1-3, AMT, AS112-v6, ORCHIDv2 and DETs in 2001::/23, reach the nearest instance
of a service (often inside the operator's own network) and none of them is an HTTP API.

Ranges that carry an IPv4 address are judged by it where the address says where the packet goes
(IPv4-mapped, the well-known NAT64 prefix, 6to4), and refused whatever the settings say where it cannot be
checked or the form is obsolete (IPv4-compatible, IPv4-translated, local-use NAT64 whose IPv4 position
depends on the operator's prefix length, Teredo). This replaces `ipaddress`'s `is_global`, whose lists
missed ranges (CVE-2024-4032 and later entries of the registries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class Treatment(StrEnum):
    """What the HTTP nodes do with an address whose most specific blocked range is this one."""

    PUBLIC = "allowed"
    """IANA: globally reachable. Blocks nothing; listed so the table is the whole registry."""
    EMBEDS_IPV4 = "judged by its IPv4 address"
    REFUSED = "refused unless opened"
    """Opened by HTTP_ALLOWED_HOSTS (a name or network) or HTTP_ALLOW_PRIVATE_NETWORKS."""
    NEVER = "never allowed"


@dataclass(frozen=True)
class SpecialRange:
    network: IPNetwork
    what: str
    """How messages name an address in it: `a loopback address`."""
    reference: str
    """Where the range is defined: the RFCs IANA lists, or the provider for a metadata address."""
    treatment: Treatment
    ipv4_shift: int = 0
    """For EMBEDS_IPV4: how far right the IPv4 address sits in the IPv6 address, in bits."""

    @property
    def description(self) -> str:
        return f"{self.what} ({self.network}, {self.reference})"

    def carried_ipv4(self, address: IPv6Address) -> IPv4Address:
        """The IPv4 address inside `address`, an address of this EMBEDS_IPV4 range."""
        return IPv4Address((int(address) >> self.ipv4_shift) & 0xFFFFFFFF)


PUBLIC, EMBEDS, REFUSED, NEVER = Treatment.PUBLIC, Treatment.EMBEDS_IPV4, Treatment.REFUSED, Treatment.NEVER


def _range(cidr: str, what: str, reference: str, treatment: Treatment, ipv4_shift: int = 0) -> SpecialRange:
    return SpecialRange(ip_network(cidr), what, reference, treatment, ipv4_shift)


IANA_IPV4 = (
    _range("0.0.0.0/8", "a 'this network' address", "RFC 791 §3.2", NEVER),
    _range("0.0.0.0/32", "an unspecified ('this host') address", "RFC 1122 §3.2.1.3", NEVER),
    _range("10.0.0.0/8", "a private address", "RFC 1918", REFUSED),
    _range("100.64.0.0/10", "a carrier-grade NAT (shared) address", "RFC 6598", REFUSED),
    _range("127.0.0.0/8", "a loopback address", "RFC 1122 §3.2.1.3", REFUSED),
    _range("169.254.0.0/16", "a link-local address", "RFC 3927", REFUSED),
    _range("172.16.0.0/12", "a private address", "RFC 1918", REFUSED),
    _range("192.0.0.0/24", "an IETF protocol assignment address", "RFC 6890 §2.1", REFUSED),
    _range("192.0.0.0/29", "an IPv4 service continuity (DS-Lite) address", "RFC 7335", REFUSED),
    _range("192.0.0.8/32", "the IPv4 dummy address", "RFC 7600", REFUSED),
    _range("192.0.0.9/32", "the Port Control Protocol anycast address", "RFC 7723", PUBLIC),
    _range("192.0.0.10/32", "the TURN anycast address", "RFC 8155", PUBLIC),
    _range("192.0.0.170/32", "a NAT64/DNS64 discovery address", "RFC 8880, RFC 7050 §2.2", REFUSED),
    _range("192.0.0.171/32", "a NAT64/DNS64 discovery address", "RFC 8880, RFC 7050 §2.2", REFUSED),
    _range("192.0.2.0/24", "a documentation address (TEST-NET-1)", "RFC 5737", REFUSED),
    _range("192.31.196.0/24", "an AS112-v4 address", "RFC 7535", PUBLIC),
    _range("192.52.193.0/24", "an AMT address", "RFC 7450", PUBLIC),
    _range("192.88.99.0/24", "a deprecated 6to4 relay anycast address", "RFC 7526", REFUSED),
    _range("192.88.99.2/32", "the 6a44 relay anycast address", "RFC 6751", REFUSED),
    _range("192.168.0.0/16", "a private address", "RFC 1918", REFUSED),
    _range("192.175.48.0/24", "a direct delegation AS112 address", "RFC 7534", PUBLIC),
    _range("198.18.0.0/15", "a benchmarking address", "RFC 2544", REFUSED),
    _range("198.51.100.0/24", "a documentation address (TEST-NET-2)", "RFC 5737", REFUSED),
    _range("203.0.113.0/24", "a documentation address (TEST-NET-3)", "RFC 5737", REFUSED),
    _range("240.0.0.0/4", "a reserved address", "RFC 1112 §4", NEVER),
    _range("255.255.255.255/32", "the limited broadcast address", "RFC 8190, RFC 919 §7", NEVER),
)
"""The IANA IPv4 Special-Purpose Address Registry, in its order."""

IANA_IPV6 = (
    _range("::1/128", "a loopback address", "RFC 4291", REFUSED),
    _range("::/128", "an unspecified ('this host') address", "RFC 4291", NEVER),
    _range("::ffff:0:0/96", "an IPv4-mapped IPv6 address", "RFC 4291", EMBEDS),
    _range("64:ff9b::/96", "a NAT64 IPv6 address", "RFC 6052", EMBEDS),
    _range("64:ff9b:1::/48", "a local-use NAT64 address", "RFC 8215", NEVER),
    _range("100::/64", "a discard-only address", "RFC 6666", REFUSED),
    _range("100:0:0:1::/64", "a dummy IPv6 address", "RFC 9780", REFUSED),
    _range("2001::/23", "an IETF protocol assignment address", "RFC 2928", REFUSED),
    _range("2001::/32", "a Teredo address", "RFC 4380, RFC 8190", NEVER),
    _range("2001:1::1/128", "the Port Control Protocol anycast address", "RFC 7723", PUBLIC),
    _range("2001:1::2/128", "the TURN anycast address", "RFC 8155", PUBLIC),
    _range("2001:1::3/128", "the DNS-SD service registration anycast address", "RFC 9665", PUBLIC),
    _range("2001:2::/48", "a benchmarking address", "RFC 5180, RFC Errata 1752", REFUSED),
    _range("2001:3::/32", "an AMT address", "RFC 7450", PUBLIC),
    _range("2001:4:112::/48", "an AS112-v6 address", "RFC 7535", PUBLIC),
    _range("2001:10::/28", "a deprecated ORCHID address", "RFC 4843", REFUSED),
    _range("2001:20::/28", "an ORCHIDv2 address", "RFC 7343", PUBLIC),
    _range("2001:30::/28", "a drone remote ID entity tag (DET)", "RFC 9374", PUBLIC),
    _range("2001:db8::/32", "a documentation address", "RFC 3849", REFUSED),
    _range("2002::/16", "a 6to4 IPv6 address", "RFC 3056", EMBEDS, ipv4_shift=80),
    _range("2620:4f:8000::/48", "a direct delegation AS112 address", "RFC 7534", PUBLIC),
    _range("3fff::/20", "a documentation address", "RFC 9637", REFUSED),
    _range("5f00::/16", "a segment routing (SRv6) SID", "RFC 9602", REFUSED),
    _range("fc00::/7", "a unique-local address", "RFC 4193, RFC 8190", REFUSED),
    _range("fe80::/10", "a link-local address", "RFC 4291", REFUSED),
)
"""The IANA IPv6 Special-Purpose Address Registry, in its order."""

_OUTSIDE_UNICAST = "an IPv6 address reserved by the IETF, outside global unicast 2000::/3"
OUTSIDE_THE_REGISTRIES = (
    _range(
        "169.254.169.254/32", "a cloud metadata address", "AWS, GCP, Azure, OpenStack, DigitalOcean", NEVER
    ),
    _range("169.254.170.2/32", "a cloud metadata address", "AWS ECS task metadata", NEVER),
    _range("169.254.170.23/32", "a cloud metadata address", "AWS EKS pod identity", NEVER),
    _range("100.100.100.200/32", "a cloud metadata address", "Alibaba Cloud", NEVER),
    _range("fd00:ec2::254/128", "a cloud metadata address", "AWS IMDS over IPv6", NEVER),
    _range("fd00:ec2::23/128", "a cloud metadata address", "AWS EKS pod identity over IPv6", NEVER),
    _range("224.0.0.0/4", "a multicast address", "RFC 5771", NEVER),
    _range("ff00::/8", "a multicast address", "RFC 4291 §2.7", NEVER),
    _range("::/96", "a deprecated IPv4-compatible IPv6 address", "RFC 4291 §2.5.5.1", NEVER),
    _range("::ffff:0:0:0/96", "an IPv4-translated IPv6 address", "RFC 2765 §2.1", NEVER),
    _range("fec0::/10", "a deprecated site-local address", "RFC 3879", REFUSED),
    _range("::/3", _OUTSIDE_UNICAST, "RFC 4291 §2.4", REFUSED),
    _range("4000::/2", _OUTSIDE_UNICAST, "RFC 4291 §2.4", REFUSED),
    _range("8000::/1", _OUTSIDE_UNICAST, "RFC 4291 §2.4", REFUSED),
)
"""Cloud metadata addresses, multicast, deprecated IPv6 forms and the IPv6 space IANA has not allocated."""

SPECIAL_RANGES: tuple[SpecialRange, ...] = (*IANA_IPV4, *IANA_IPV6, *OUTSIDE_THE_REGISTRIES)


class RangeIndex:
    """The blocked ranges by prefix length, longest first: finding the most specific one that contains an
    address costs one shift and one dict lookup per distinct prefix length of its version (about 1 us)."""

    def __init__(self, ranges: Iterable[SpecialRange]) -> None:
        by_length: dict[tuple[int, int], dict[int, SpecialRange]] = {}
        for special in ranges:
            if special.treatment is Treatment.PUBLIC:
                continue
            network = special.network
            shift = network.max_prefixlen - network.prefixlen
            same_length = by_length.setdefault((network.version, shift), {})
            key = int(network.network_address) >> shift
            if key in same_length:
                raise ValueError(f"{network} is in the table twice")
            same_length[key] = special
        self._levels: dict[int, tuple[tuple[int, dict[int, SpecialRange]], ...]] = {
            version: tuple(
                sorted(
                    ((shift, table) for (v, shift), table in by_length.items() if v == version),
                    key=lambda level: level[0],
                )
            )
            for version in (4, 6)
        }

    def most_specific(self, address: IPAddress) -> SpecialRange | None:
        """The most specific blocked range that contains `address`; None when none does."""
        value = int(address)
        for shift, table in self._levels[address.version]:
            found = table.get(value >> shift)
            if found is not None:
                return found
        return None


BLOCKED = RangeIndex(SPECIAL_RANGES)


def embedded_ipv4(address: IPAddress) -> tuple[IPv4Address, SpecialRange] | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4), with the range that says so."""
    if not isinstance(address, IPv6Address):
        return None
    special = BLOCKED.most_specific(address)
    if special is None or special.treatment is not Treatment.EMBEDS_IPV4:
        return None
    return special.carried_ipv4(address), special

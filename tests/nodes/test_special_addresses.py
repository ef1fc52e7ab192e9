"""The table of special-purpose ranges is the whole of both IANA registries, every range it blocks is
tested (test_ssrf.py), and an address is looked up in it by the most specific range."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from nodes.special_addresses import (
    BLOCKED,
    IANA_IPV4,
    IANA_IPV6,
    SPECIAL_RANGES,
    RangeIndex,
    SpecialRange,
    Treatment,
)
from tests.nodes.ssrf_support import BLOCKED_RANGES

IANA_REGISTRIES = {
    # IANA IPv4 Special-Purpose Address Registry: address block -> "Globally Reachable" is True
    "0.0.0.0/8": False,
    "0.0.0.0/32": False,
    "10.0.0.0/8": False,
    "100.64.0.0/10": False,
    "127.0.0.0/8": False,
    "169.254.0.0/16": False,
    "172.16.0.0/12": False,
    "192.0.0.0/24": False,
    "192.0.0.0/29": False,
    "192.0.0.8/32": False,
    "192.0.0.9/32": True,
    "192.0.0.10/32": True,
    "192.0.0.170/32": False,
    "192.0.0.171/32": False,
    "192.0.2.0/24": False,
    "192.31.196.0/24": True,
    "192.52.193.0/24": True,
    "192.88.99.0/24": False,
    "192.88.99.2/32": False,
    "192.168.0.0/16": False,
    "192.175.48.0/24": True,
    "198.18.0.0/15": False,
    "198.51.100.0/24": False,
    "203.0.113.0/24": False,
    "240.0.0.0/4": False,
    "255.255.255.255/32": False,
    # IANA IPv6 Special-Purpose Address Registry
    "::1/128": False,
    "::/128": False,
    "::ffff:0:0/96": False,
    "64:ff9b::/96": True,
    "64:ff9b:1::/48": False,
    "100::/64": False,
    "100:0:0:1::/64": False,
    "2001::/23": False,
    "2001::/32": False,
    "2001:1::1/128": True,
    "2001:1::2/128": True,
    "2001:1::3/128": True,
    "2001:2::/48": False,
    "2001:3::/32": True,
    "2001:4:112::/48": True,
    "2001:10::/28": False,
    "2001:20::/28": True,
    "2001:30::/28": True,
    "2001:db8::/32": False,
    "2002::/16": False,
    "2620:4f:8000::/48": True,
    "3fff::/20": False,
    "5f00::/16": False,
    "fc00::/7": False,
    "fe80::/10": False,
}
"""Both registries as updated 2025-04 (192.0.0.170/32 and 192.0.0.171/32 are one entry there). Teredo,
6to4 and the terminated entries say N/A or nothing, which is not True."""


def test_the_table_holds_every_entry_of_both_iana_registries():
    assert sorted(str(special.network) for special in (*IANA_IPV4, *IANA_IPV6)) == sorted(IANA_REGISTRIES)
    assert all(special.reference for special in SPECIAL_RANGES)


def test_only_globally_reachable_entries_block_nothing_and_the_rest_embed_ipv4_or_are_refused():
    for special in (*IANA_IPV4, *IANA_IPV6):
        reachable = IANA_REGISTRIES[str(special.network)]
        if special.network == ip_network("64:ff9b::/96"):
            assert special.treatment is Treatment.EMBEDS_IPV4
        else:
            assert (special.treatment is Treatment.PUBLIC) is reachable, special


def test_every_blocked_range_of_the_table_is_tested():
    blocked = {
        str(special.network) for special in SPECIAL_RANGES if special.treatment is not Treatment.PUBLIC
    }
    assert blocked == {cidr for cidr, _ in BLOCKED_RANGES}


def test_the_most_specific_blocked_range_decides():
    def found(address: str) -> str | None:
        special = BLOCKED.most_specific(ip_address(address))
        return None if special is None else str(special.network)

    assert found("0.0.0.0") == "0.0.0.0/32"
    assert found("0.0.0.1") == "0.0.0.0/8"
    assert found("169.254.169.254") == "169.254.169.254/32"
    assert found("169.254.169.253") == "169.254.0.0/16"
    assert found("192.0.0.9") == "192.0.0.0/24"
    assert found("2001:0:4136::1") == "2001::/32"
    assert found("2001:1::1") == "2001::/23"
    assert found("::1") == "::1/128"
    assert found("::2") == "::/96"
    assert found("::ffff:127.0.0.1") == "::ffff:0:0/96"
    assert found("1::") == "::/3"
    assert found("8.8.8.8") is None
    assert found("2606:4700::1111") is None


def test_an_index_refuses_a_range_listed_twice():
    twice = [
        SpecialRange(ip_network("10.0.0.0/8"), "a private address", "RFC 1918", Treatment.REFUSED),
        SpecialRange(ip_network("10.0.0.0/8"), "a private address", "RFC 1918", Treatment.REFUSED),
    ]
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/8 is in the table twice"):
        RangeIndex(twice)

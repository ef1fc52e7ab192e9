"""The HTTP nodes' address policy: every refused form, the allowlist, and the checking resolver.

No DNS server can run here, so resolver tests use `FixedTableResolver`, a real implementation of
aiohttp's resolver interface that answers from a table (the stand-in for DNS). End-to-end checks over
real loopback HTTP, redirects included, are in test_http_node.py.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from pydantic import ValidationError
from yarl import URL

from config.settings import Settings
from nodes.settings import NodeSettings
from nodes.ssrf import AddressPolicy, AddressRefusedError, AllowList, CheckingResolver, classify
from tests.nodes.ssrf_support import BLOCKED_RANGES, END, FixedTableResolver

STRICT = AddressPolicy()
OPEN = AddressPolicy(allow_private_networks=True)


def refusal(policy: AddressPolicy, url: str) -> str:
    with pytest.raises(AddressRefusedError) as caught:
        policy.check_url(URL(url))
    assert caught.value.retryable is False
    return caught.value.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://127.255.0.9:8080/x", "127.255.0.9 is a loopback address"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://10.1.2.3/", "10.1.2.3 is a private address"),
        ("http://172.16.0.1/", "172.16.0.1 is a private address"),
        ("http://172.31.255.255/", "172.31.255.255 is a private address"),
        ("http://192.168.1.1/", "192.168.1.1 is a private address"),
        ("http://169.254.1.1/", "169.254.1.1 is a link-local address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[fe80::1%25eth0]/", "fe80::1%eth0 is a link-local address"),
        ("http://[fc00::1]/", "fc00::1 is a unique-local address"),
        ("http://[fd12:3456::1]/", "fd12:3456::1 is a unique-local address"),
        ("http://100.64.0.1/", "100.64.0.1 is a carrier-grade NAT (shared) address"),
        ("http://[fec0::1]/", "fec0::1 is a deprecated site-local address (fec0::/10, RFC 3879)"),
        ("http://192.0.2.10/", "192.0.2.10 is a documentation address (TEST-NET-1) (192.0.2.0/24, RFC 5737)"),
        ("http://198.18.0.1/", "198.18.0.1 is a benchmarking address (198.18.0.0/15, RFC 2544)"),
        ("http://[2001:db8::1]/", "2001:db8::1 is a documentation address (2001:db8::/32, RFC 3849)"),
        # the attack review's three bypasses of `is_global` (CVE-2024-4032 on CPython 3.11.7)
        ("http://192.0.0.192/", "192.0.0.192 is an IETF protocol assignment address (192.0.0.0/24, RFC 6890"),
        ("http://[64:ff9b:1::7f00:1]/", "is a local-use NAT64 address (64:ff9b:1::/48, RFC 8215)"),
        ("http://[::ffff:0:7f00:1]/", "is an IPv4-translated IPv6 address (::ffff:0:0:0/96, RFC 2765"),
        # legacy IPv4 notations the C library accepts
        ("http://2130706433/", "2130706433 (that is 127.0.0.1) is a loopback address"),
        ("http://0x7f.1/", "0x7f.1 (that is 127.0.0.1) is a loopback address"),
        ("http://0x7f000001/", "0x7f000001 (that is 127.0.0.1) is a loopback address"),
        ("http://017700000001/", "017700000001 (that is 127.0.0.1) is a loopback address"),
        ("http://0177.0.0.01/", "0177.0.0.01 (that is 127.0.0.1) is a loopback address"),
        ("http://127.1/", "127.1 (that is 127.0.0.1) is a loopback address"),
        ("http://3232235777/", "3232235777 (that is 192.168.1.1) is a private address"),
        ("http://0xa9fea9fe/", "0xa9fea9fe (that is 169.254.169.254) is a cloud metadata address"),
        # IPv6 forms that carry an IPv4 address
        ("http://[::ffff:127.0.0.1]/", "is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address"),
        ("http://[::ffff:7f00:1]/", "is an IPv4-mapped IPv6 address of 127.0.0.1, a loopback address"),
        ("http://[::ffff:10.0.0.1]/", "IPv4-mapped IPv6 address of 10.0.0.1, a private address"),
        ("http://[::127.0.0.1]/", "is a deprecated IPv4-compatible IPv6 address (::/96, RFC 4291"),
        ("http://[64:ff9b::7f00:1]/", "is a NAT64 IPv6 address of 127.0.0.1, a loopback address"),
        ("http://[2002:7f00:1::]/", "is a 6to4 IPv6 address of 127.0.0.1, a loopback address"),
        # names
        ("http://localhost/", "localhost is a loopback host name"),
        ("http://LOCALHOST./", "localhost is a loopback host name"),
        ("http://api.localhost:8000/", "api.localhost is a loopback host name"),
        (
            "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/",
            "localhost is a loopback host name",
        ),
        ("http://%31%32%37.0.0.1/", "'%31%32%37.0.0.1' is not a valid host name"),
        # schemes
        ("ftp://example.com/file", "only http and https URLs are allowed, not 'ftp'"),
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
        ("gopher://example.com:70/", "only http and https URLs are allowed, not 'gopher'"),
        ("ws://example.com/socket", "only http and https URLs are allowed, not 'ws'"),
        ("//example.com/path", "only http and https URLs are allowed, not 'a URL without scheme'"),
        ("http:///path-only", "the URL has no host"),
    ],
)
def test_refused_by_default_with_the_reason(url, reason):
    message = refusal(STRICT, url)
    assert message.startswith("refused: ")
    assert reason in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://169.254.170.2/v2/credentials", "169.254.170.2 is a cloud metadata address"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", "of 169.254.169.254, a cloud metadata address"),
        ("http://2852039166/", "(that is 169.254.169.254) is a cloud metadata address"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "metadata.google.internal is a cloud metadata",
        ),
        ("http://METADATA.GOOGLE.INTERNAL./", "metadata.google.internal is a cloud metadata"),
        ("http://0.0.0.0:8080/", "0.0.0.0 is an unspecified ('this host') address"),
        ("http://0/", "0 (that is 0.0.0.0) is an unspecified"),
        ("http://[::]/", ":: is an unspecified ('this host') address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://[ff02::1]/", "ff02::1 is a multicast address"),
        ("http://255.255.255.255/", "255.255.255.255 is the limited broadcast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a reserved address (240.0.0.0/4, RFC 1112"),
        ("http://[::ffff:0:7f00:1]/", "is an IPv4-translated IPv6 address"),
        ("http://[::ffff:0:808:808]/", "is an IPv4-translated IPv6 address"),
        ("http://[::127.0.0.1]/", "is a deprecated IPv4-compatible IPv6 address"),
        ("http://[::8.8.8.8]/", "is a deprecated IPv4-compatible IPv6 address"),
        ("http://[64:ff9b:1::7f00:1]/", "is a local-use NAT64 address"),
        ("http://[64:ff9b:1:ffff::1]/", "is a local-use NAT64 address"),
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "is a Teredo address"),
        ("http://[::ffff:169.254.169.254]/", "IPv4-mapped IPv6 address of 169.254.169.254, a cloud metadata"),
        ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 IPv6 address of 169.254.169.254, a cloud metadata"),
        ("http://[2002:a9fe:a9fe::]/", "6to4 IPv6 address of 169.254.169.254, a cloud metadata"),
    ],
)
def test_never_allowed_even_when_private_networks_and_the_allowlist_are_open(url, reason):
    wide_open = AddressPolicy(
        allow_private_networks=True,
        allowed=AllowList.parse("0.0.0.0/0, ::/0, metadata.google.internal, 169.254.0.0/16"),
    )
    message = refusal(wide_open, url)
    assert reason in message
    assert message.endswith("never allowed")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/",
        "https://api.example.com:8443/v1?x=1",
        "http://8.8.8.8/",
        "http://[2606:4700:4700::1111]/",
        "http://[::ffff:8.8.8.8]/",
        "http://[64:ff9b::8.8.8.8]/",
        "http://[2002:808:808::1]/",
        "http://134744072/",
        "http://metadata.example.com/",
        "http://localhost.example.com/",
    ],
)
def test_public_urls_pass(url):
    STRICT.check_url(URL(url))


def refused_address(policy: AddressPolicy, address: str) -> str | None:
    """The policy's refusal of a name that resolved to `address`; None when it is allowed."""
    try:
        policy.check_address(address, "range.test")
    except AddressRefusedError as exc:
        return exc.message
    return None


@pytest.mark.parametrize("cidr", [cidr for cidr, _ in BLOCKED_RANGES])
def test_each_blocked_range_is_refused_from_its_first_to_its_last_address(cidr):
    network = ip_network(cidr)
    for inside in (network.network_address, network.broadcast_address):
        assert refused_address(STRICT, str(inside)) is not None, f"{inside} (in {cidr}) was allowed"
        with pytest.raises(AddressRefusedError):
            STRICT.check_url(URL(f"http://{_url_host(inside)}/"))


@pytest.mark.parametrize(("cidr", "after"), BLOCKED_RANGES)
def test_the_first_address_after_each_blocked_range_is_allowed_where_it_is_public(cidr, after):
    network = ip_network(cidr)
    if after == END:
        assert int(network.broadcast_address) == 2**network.max_prefixlen - 1
        return
    following = network.broadcast_address + 1
    message = refused_address(STRICT, str(following))
    if after is None:
        assert message is None, f"{following}, just after {cidr}, was refused: {message}"
    else:
        assert message is not None and f"{following} (resolved from range.test) is {after}" in message


def _url_host(address: IPv4Address | IPv6Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)


@pytest.mark.parametrize(
    "address",
    [
        # globally reachable entries of the registries that no blocked range contains
        "192.31.196.0",
        "192.31.196.255",
        "192.52.193.1",
        "192.175.48.255",
        "2620:4f:8000::",
        "2620:4f:8000:ffff:ffff:ffff:ffff:ffff",
        # the public IPv4 address behind the forms that carry one
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_globally_reachable_registry_entries_and_public_embedded_addresses_are_allowed(address):
    assert refused_address(STRICT, address) is None


@pytest.mark.parametrize(
    "address",
    [
        "192.0.0.9",
        "192.0.0.10",
        "2001:1::1",
        "2001:1::2",
        "2001:1::3",
        "2001:3::1",
        "2001:4:112::1",
        "2001:20::1",
        "2001:30::1",
    ],
)
def test_globally_reachable_entries_inside_a_blocked_range_are_refused_with_it(address):
    """IANA marks these anycast and protocol addresses globally reachable; they reach the nearest instance
    of a service, often inside the operator's network, so the block around them decides."""
    message = refused_address(STRICT, address)
    assert message is not None and "is an IETF protocol assignment address" in message


def test_private_networks_setting_opens_loopback_and_private_addresses_and_names():
    for url in (
        "http://127.0.0.1:9/",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://localhost/",
        "http://0x7f.1/",
    ):
        OPEN.check_url(URL(url))
    OPEN.check_address("192.168.0.7", "printer.lan")
    with pytest.raises(AddressRefusedError, match="cloud metadata"):
        OPEN.check_address("169.254.169.254", "innocent.example")


def test_allowlist_cidr_opens_only_its_network_in_every_notation():
    policy = AddressPolicy(allowed=AllowList.parse("127.0.0.1/32"))
    for url in ("http://127.0.0.1:8080/", "http://2130706433/", "http://[::ffff:127.0.0.1]/"):
        policy.check_url(URL(url))
    policy.check_address("127.0.0.1", "service.test")
    assert "127.0.0.2 is a loopback address" in refusal(policy, "http://127.0.0.2/")
    assert "::1 is a loopback address" in refusal(policy, "http://[::1]/")
    assert "localhost is a loopback host name" in refusal(policy, "http://localhost/")


def test_allowlist_opens_the_newly_listed_ranges_but_never_the_forms_that_hide_an_ipv4_address():
    policy = AddressPolicy(allowed=AllowList.parse("192.0.0.0/24, 3fff::/20, 64:ff9b:1::/48, ::/96"))
    policy.check_address("192.0.0.192", "lab.example")
    policy.check_url(URL("http://[3fff::1]/"))
    assert "198.18.0.1 is a benchmarking address" in refusal(policy, "http://198.18.0.1/")
    assert "never allowed" in refusal(policy, "http://[64:ff9b:1::7f00:1]/")
    assert "never allowed" in refusal(policy, "http://[::7f00:1]/")


def test_allowlist_names_and_wildcards_open_private_resolutions_of_those_names_only():
    policy = AddressPolicy(allowed=AllowList.parse(" Internal.Example. , *.corp.example ,localhost"))
    policy.check_address("10.0.0.5", "internal.example")
    policy.check_address("10.0.0.6", "db.corp.example")
    policy.check_address("10.0.0.7", "a.b.corp.example")
    policy.check_url(URL("http://localhost:3000/"))
    with pytest.raises(
        AddressRefusedError, match=r"10\.0\.0\.8 \(resolved from corp\.example\) is a private"
    ):
        policy.check_address("10.0.0.8", "corp.example")
    with pytest.raises(AddressRefusedError, match=r"resolved from other\.example"):
        policy.check_address("10.0.0.9", "other.example")
    with pytest.raises(AddressRefusedError, match="cloud metadata"):
        policy.check_address("169.254.169.254", "internal.example")


def test_resolved_address_message_names_host_address_and_the_setting():
    with pytest.raises(AddressRefusedError) as caught:
        STRICT.check_address("127.0.0.1", "evil.example")
    assert caught.value.message == (
        "refused: 127.0.0.1 (resolved from evil.example) is a loopback address (127.0.0.0/8, RFC 1122 "
        "§3.2.1.3); set HTTP_ALLOWED_HOSTS (or HTTP_ALLOW_PRIVATE_NETWORKS=true, for development) to allow it"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.0/33", "entry '10.0.0.0/33' is not a valid IP address or CIDR"),
        ("fd00::/200", "is not a valid IP address or CIDR"),
        ("api.example, bad host", "entry 'bad host' is neither a host name"),
        ("http://api.example", "host names go without scheme or port"),
        ("*", "entry '*' is neither a host name"),
    ],
)
def test_malformed_allowlist_is_refused_when_settings_load(value, message):
    with pytest.raises(ValidationError, match="HTTP_ALLOWED_HOSTS") as caught:
        NodeSettings(HTTP_ALLOWED_HOSTS=value)
    assert message in str(caught.value)


def test_policy_comes_from_settings(monkeypatch):
    monkeypatch.setenv("HTTP_ALLOWED_HOSTS", "10.2.0.0/16,api.internal")
    monkeypatch.setenv("HTTP_ALLOW_PRIVATE_NETWORKS", "false")
    policy = AddressPolicy.from_settings(Settings(_env_file=None).nodes)
    assert policy.allow_private_networks is False
    policy.check_address("10.2.3.4", "anything.example")
    policy.check_address("192.168.9.9", "api.internal")
    with pytest.raises(AddressRefusedError):
        policy.check_address("10.3.0.1", "anything.example")


def test_classify_is_none_exactly_for_public_addresses():
    assert classify(ip_address("93.184.216.34")) is None
    assert classify(ip_address("2a00:1450:4001:81b::200e")) is None
    verdict = classify(ip_address("::ffff:192.168.0.1"))
    assert verdict is not None and verdict.never_allowed is False


async def test_checking_resolver_returns_the_checked_answers_unchanged():
    table = FixedTableResolver({"api.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    results = await CheckingResolver(STRICT, table).resolve("api.example", 443)
    assert [result["host"] for result in results] == ["93.184.216.34", "2606:2800:220:1::1"]
    assert all(result["port"] == 443 and result["hostname"] == "api.example" for result in results)


async def test_checking_resolver_refuses_a_name_if_any_of_its_addresses_is_refused():
    table = FixedTableResolver({"mixed.example": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(
        AddressRefusedError, match=r"10\.0\.0\.1 \(resolved from mixed\.example\) is a private"
    ):
        await CheckingResolver(STRICT, table).resolve("mixed.example", 80)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "is a loopback address"),
        ("::ffff:127.0.0.1", "IPv4-mapped IPv6 address of 127.0.0.1, a loopback address"),
        ("169.254.169.254", "is a cloud metadata address (169.254.169.254/32, AWS, GCP, Azure"),
        (
            "fd00:ec2::254",
            "is a cloud metadata address (fd00:ec2::254/128, AWS IMDS over IPv6), never allowed",
        ),
        ("fe80::1%lo", "is a link-local address"),
    ],
)
async def test_checking_resolver_refuses_names_that_resolve_to_internal_addresses(address, reason):
    table = FixedTableResolver({"rebind.example": [address]})
    with pytest.raises(AddressRefusedError, match=r"resolved from rebind\.example") as caught:
        await CheckingResolver(STRICT, table).resolve("rebind.example", 80)
    assert reason in caught.value.message


async def test_checking_resolver_reports_an_empty_answer():
    with pytest.raises(Exception, match="did not resolve to any address"):
        await CheckingResolver(STRICT, FixedTableResolver({"void.example": []})).resolve("void.example", 80)

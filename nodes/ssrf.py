"""Where HTTP nodes may connect: the address policy, and a resolver that pins the addresses it checked.

A URL is checked twice. Before a request, `AddressPolicy.check_url` refuses other schemes than http and
https, names that are loopback or metadata by definition, malformed hosts and IP literals in any notation
(`2130706433`, `0x7f.1` and `017700000001` are all 127.0.0.1, as the C resolver reads them). Then
`CheckingResolver` resolves a name, refuses it if ANY of its addresses is refused, and hands aiohttp
exactly the addresses it checked: aiohttp connects to those and never resolves the name again, so DNS
rebinding cannot swap in another address between the check and the connection. Callers check every
redirect hop the same way, because they follow redirects themselves.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import TYPE_CHECKING

from aiohttp import TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from engine.errors import NodeExecutionError
from nodes.special_addresses import BLOCKED, IPAddress, IPNetwork, Treatment, embedded_ipv4

if TYPE_CHECKING:
    from nodes.settings import NodeSettings


class AddressRefusedError(NodeExecutionError):
    """A URL or an address the policy refuses; not retryable: the same request would be refused again."""


ALLOWED_SCHEMES = frozenset({"http", "https"})
LOOPBACK_NAMES = frozenset({"localhost"})
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog"})
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
_NUMERIC_IPV4 = re.compile(r"^[0-9a-fx.]+$")


@dataclass(frozen=True)
class Verdict:
    what: str
    never_allowed: bool


def classify(address: IPAddress) -> Verdict | None:
    """Why HTTP nodes refuse `address` by default (nodes/special_addresses.py); None for a public one."""
    special = BLOCKED.most_specific(address)
    if special is None:
        return None
    if special.treatment is Treatment.EMBEDS_IPV4 and isinstance(address, IPv6Address):
        carried = special.carried_ipv4(address)
        inner = classify(carried)
        if inner is None:
            return None
        return Verdict(f"{special.what} of {carried}, {inner.what}", inner.never_allowed)
    return Verdict(special.description, special.treatment is Treatment.NEVER)


@dataclass(frozen=True)
class AllowList:
    """HTTP_ALLOWED_HOSTS: names (`api.internal`, `*.corp.example`), networks (`10.1.0.0/16`, `127.0.0.1`)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: str) -> AllowList:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in value.split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
                continue
            except ValueError:
                if "/" in entry or ":" in entry:
                    raise ValueError(
                        f"HTTP_ALLOWED_HOSTS entry {entry!r} is not a valid IP address or CIDR (host names "
                        "go without scheme or port)"
                    ) from None
            wildcard = entry.startswith("*.")
            name = entry[2:] if wildcard else entry
            if not _HOST_NAME.match(name):
                raise ValueError(
                    f"HTTP_ALLOWED_HOSTS entry {raw.strip()!r} is neither a host name, a '*.domain' pattern "
                    "nor an IP address or CIDR"
                )
            if wildcard:
                suffixes.append("." + name)
            else:
                names.add(name)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def allows_name(self, host: str) -> bool:
        return host in self.names or host.endswith(self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        candidates = [address]
        embedded = embedded_ipv4(address)
        if embedded is not None:
            candidates.append(embedded[0])
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


def check_allowed_hosts(value: str) -> str:
    """Validator for the HTTP_ALLOWED_HOSTS setting: refuses a malformed entry when settings load."""
    AllowList.parse(value)
    return value


@dataclass(frozen=True)
class AddressPolicy:
    allow_private_networks: bool = False
    allowed: AllowList = AllowList()

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> AddressPolicy:
        return _policy(settings.http_allow_private_networks, settings.http_allowed_hosts)

    def check_url(self, url: URL) -> None:
        """Refuse `url` on its scheme and host as written, before anything is resolved."""
        if url.scheme not in ALLOWED_SCHEMES:
            raise AddressRefusedError(
                f"refused: only http and https URLs are allowed, not {url.scheme or 'a URL without scheme'!r}"
            )
        host = (url.host or "").lower().rstrip(".")
        if not host:
            raise AddressRefusedError("refused: the URL has no host")
        literal = ip_literal(host)
        if literal is not None:
            shown = host if str(literal) == host else f"{host} (that is {literal})"
            self._check(literal, shown, url_host=host)
            return
        if not _HOST_NAME.match(host):
            raise AddressRefusedError(f"refused: {host!r} is not a valid host name")
        if host in METADATA_NAMES:
            raise AddressRefusedError(f"refused: {host} is a cloud metadata host name, never allowed")
        if (host in LOOPBACK_NAMES or host.endswith(".localhost")) and not self._opens_name(host):
            raise AddressRefusedError(f"refused: {host} is a loopback host name; {_HINT}")

    def check_address(self, address: str, resolved_from: str) -> None:
        """Refuse an address that the host name `resolved_from` resolved to."""
        host = resolved_from.lower().rstrip(".")
        self._check(ip_address(address), f"{address} (resolved from {host})", url_host=host)

    def _check(self, address: IPAddress, shown: str, url_host: str) -> None:
        verdict = classify(address)
        if verdict is None:
            return
        if verdict.never_allowed:
            raise AddressRefusedError(f"refused: {shown} is {verdict.what}, never allowed")
        if self._opens_name(url_host) or self.allowed.allows_address(address):
            return
        raise AddressRefusedError(f"refused: {shown} is {verdict.what}; {_HINT}")

    def _opens_name(self, host: str) -> bool:
        return self.allow_private_networks or self.allowed.allows_name(host)


_HINT = "set HTTP_ALLOWED_HOSTS (or HTTP_ALLOW_PRIVATE_NETWORKS=true, for development) to allow it"


@lru_cache(maxsize=32)
def _policy(allow_private_networks: bool, allowed_hosts: str) -> AddressPolicy:
    return AddressPolicy(allow_private_networks, AllowList.parse(allowed_hosts))


def ip_literal(host: str) -> IPAddress | None:
    """The address a host written as an IP literal means, in any notation the C library accepts."""
    try:
        return ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_IPV4.match(host):
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def display_url(url: URL) -> str:
    """The URL without credentials, query or fragment (they may hold secrets), for messages and logs."""
    shown = url.with_query(None).with_fragment(None)
    if shown.user is not None or shown.password is not None:
        shown = shown.with_user(None)
    return str(shown)


class CheckingResolver(AbstractResolver):
    """Resolves with `inner` (the system resolver unless given) and returns the addresses only when every
    one of them passes the policy; aiohttp connects to exactly the returned addresses."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise NodeExecutionError(f"{host} did not resolve to any address")
        for result in results:
            self._policy.check_address(result["host"], host)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def pinned_connector(
    policy: AddressPolicy, resolver: AbstractResolver | None = None, max_connections: int = 100
) -> TCPConnector:
    """A connector that reaches only addresses `policy` accepts: names go through the checking resolver
    on every new connection (no DNS cache that could outlive a check); IP literals are not resolved by
    aiohttp, so callers check them with `check_url` first."""
    return TCPConnector(
        resolver=CheckingResolver(policy, resolver), use_dns_cache=False, limit=max_connections
    )

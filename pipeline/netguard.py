"""Which network addresses an outgoing request (a webhook) may reach: the SSRF policy.

A webhook URL is chosen by a user, and the request is made from inside the deployment, next to
PostgreSQL, Redis, the object store and the cloud's metadata service. So by default only
*global* unicast addresses are allowed: loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7),
link-local (169.254/16 with the metadata address 169.254.169.254, fe80::/10), shared CGNAT
space, documentation, multicast, reserved and unspecified addresses are refused, and so is an
IPv4 address wrapped in IPv6 (``::ffff:127.0.0.1``) that would be refused on its own.

The check is made on the addresses a name resolves to *at connection time* (the connection is
then made to the checked address: see ``workers.webhooks``), so a name that resolves to a
public address when the job is submitted and to 127.0.0.1 when it is delivered (DNS rebinding)
is still refused. A name that resolves to several addresses is refused when any of them is.

On-premise receivers are opened explicitly: ``TELEAI_WEBHOOK_ALLOW_PRIVATE=true`` allows
loopback, private and link-local addresses, except the cloud metadata addresses;
``TELEAI_WEBHOOK_ALLOWED_HOSTS`` lists host names, addresses or networks (``10.1.2.0/24``) that
are allowed whatever they resolve to (a metadata address only ever this way).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)

# Headers the delivery sets itself; a user-chosen auth header may not replace them.
RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "user-agent",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class UnsafeUrl(ValueError):
    """A webhook URL that cannot be used at all (scheme, credentials, no host)."""


class RefusedAddress(OSError):
    """A connection that the policy refuses; the message names the host and the address."""


def check_url(url: str) -> str:
    """The URL if it is a plain ``http(s)://host[:port]/path`` (raises :class:`UnsafeUrl`).

    No user name or password in the URL (a credential belongs in the auth header, where it is
    kept out of logs), no whitespace or control characters. Where it points is checked at
    delivery time, against the policy in force then.
    """
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise UnsafeUrl("the webhook URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"}:
        raise UnsafeUrl("the webhook URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the webhook URL may not contain a user name or password")
    if not parts.hostname:
        raise UnsafeUrl("the webhook URL has no host")
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError as error:
        raise UnsafeUrl(f"the webhook URL has an invalid port: {error}") from None
    return url


def check_header_name(name: str) -> str:
    """An HTTP header name (RFC 9110 token) the delivery may send, else :class:`ValueError`."""
    if not name or any(c not in _TCHAR for c in name):
        raise ValueError("the webhook auth header name must be an HTTP token (letters, digits, -)")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"the webhook auth header may not be {name!r} (the delivery sets it)")
    return name


def _unwrap(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
    return address


def _is_private_kind(address: IPAddress) -> bool:
    """Loopback, private or link-local: what ``allow_private`` opens."""
    return address.is_loopback or address.is_private or address.is_link_local


@dataclass(frozen=True)
class AddressPolicy:
    """The SSRF policy: global unicast only, plus what the settings open."""

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_settings(cls, allow_private: bool, allowed: str) -> AddressPolicy:
        """From ``TELEAI_WEBHOOK_ALLOW_PRIVATE`` and the comma-separated allowlist."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (e.strip() for e in allowed.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_private, frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why a connection to ``address`` (resolved from ``host``) is refused, or None."""
        if host.lower().rstrip(".").strip("[]") in self.allowed_hosts:
            return None
        plain = _unwrap(address)
        if any(plain in net or address in net for net in self.allowed_networks):
            return None
        if plain in METADATA_ADDRESSES:
            return "a cloud metadata address"
        if plain.is_multicast or plain.is_unspecified or plain.is_reserved:
            return "a multicast, reserved or unspecified address"
        if _is_private_kind(plain):
            if self.allow_private:
                return None
            kind = "loopback" if plain.is_loopback else (
                "link-local" if plain.is_link_local else "private"
            )  # fmt: skip
            return f"a {kind} address"
        if not plain.is_global:
            return "a non-global address"
        return None

    def check(self, host: str, addresses: list[IPAddress]) -> None:
        """Raise :class:`RefusedAddress` when any address ``host`` resolved to is refused."""
        if not addresses:
            raise RefusedAddress(f"{host} resolved to no address")
        for address in addresses:
            why = self.refusal(host, address)
            if why is not None:
                raise RefusedAddress(
                    f"refused to connect to {host} ({address}): {why}; set "
                    "TELEAI_WEBHOOK_ALLOWED_HOSTS or TELEAI_WEBHOOK_ALLOW_PRIVATE to allow "
                    "on-premise receivers"
                )

"""Which URLs a webhook may be sent to, and the connection that holds to it.

The rules: https only, no credentials in the URL, at most MAX_URL_LENGTH characters, and a
host whose every address is public: no loopback, private, shared, link-local, multicast,
reserved or unspecified address, nor one of those embedded in an IPv6 address (mapped,
6to4, Teredo, NAT64). The host is resolved by the system's resolver, which reads every
spelling of an IPv4 address (decimal `2130706433`, hex `0x7f.1`, short `127.1`) as the
address it means. The rules are checked when a URL is saved (`check_url`, 422) and again
by `jobboard.webhooks.client` on every connection of a delivery, on the addresses it connects to
(DNS may answer differently by then): a refused address fails the attempt before any
byte is sent. WEBHOOK_ALLOW_PRIVATE_URLS=1 lifts the https and address rules.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Iterable

import anyio
import httpx

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RefusedTarget(Exception):
    """A URL or an address that webhooks may not go to; the message says why."""


def forbidden(address: IPAddress) -> bool:
    """Whether `address` is not a public one (see the module's docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour]
        if address.teredo is not None:
            embedded.append(address.teredo[1])
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(inner is not None and forbidden(inner) for inner in embedded):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def parse_url(url: str, allow_private: bool) -> httpx.URL:
    """The URL, if its form is allowed (scheme, credentials, length, host); else
    RefusedTarget. The host's addresses are not checked here."""
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise RefusedTarget(f"Not a valid URL: {error}") from None
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if parsed.scheme not in allowed_schemes:
        raise RefusedTarget("The URL must use https.")
    if parsed.userinfo:
        raise RefusedTarget("The URL may not carry credentials (user:password@).")
    if not parsed.host:
        raise RefusedTarget("The URL has no host.")
    return parsed


def _addresses(infos: Iterable[typing.Any]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address not in found:
            found.append(address)
    return found


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def vet(host: str, addresses: list[IPAddress]) -> list[IPAddress]:
    """`addresses` (what `host` resolved to) if none of them is refused; else RefusedTarget."""
    if not addresses:
        raise RefusedTarget(f"The host {host} does not resolve to any address.")
    refused = [address for address in addresses if forbidden(address)]
    if refused:
        raise RefusedTarget(
            f"The host {host} resolves to {refused[0]}, which is not a public address."
        )
    return addresses


def resolve(host: str, port: int) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        return _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        raise RefusedTarget(f"The host {host} cannot be resolved.") from None


async def resolve_async(host: str, port: int) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        return _addresses(await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except (OSError, UnicodeError):
        raise RefusedTarget(f"The host {host} cannot be resolved.") from None


def check_url(url: str, allow_private: bool) -> str:
    """`url` if webhooks may be sent to it, now; else RefusedTarget saying why."""
    parsed = parse_url(url, allow_private)
    if not allow_private:
        vet(parsed.host, resolve(parsed.host, parsed.port or 443))
    return url

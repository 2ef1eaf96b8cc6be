"""Webhook HTTP: resolve the host, check every address, then connect to the checked address.

The URL is checked when the chain sets it and again at every delivery, since a name that
resolved to a public address then may resolve to this machine now (DNS rebinding). The request
goes to the very address that was checked (the URL's host replaced by it; `Host` and the TLS
server name stay the URL's host, so the certificate is verified against the name), never to a
second lookup the HTTP client would make. Redirects are not followed (a redirect could point
anywhere) and no proxy from the environment is used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable

import httpx

from notifier.domain.webhooks import (
    Destination,
    DestinationRefused,
    IPAddress,
    check_addresses,
    literal_address,
    parse_destination,
    signature,
)

#: host, port -> the addresses it resolves to (in the resolver's order)
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

RESOLVE_TIMEOUT_SECONDS = 5.0


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The host's addresses (an IP literal is its own), or DestinationRefused."""
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError) as exc:
        raise DestinationRefused(f"{host} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


async def checked_destination(
    url: str, *, allow_private: bool, resolver: Resolver = resolve
) -> tuple[Destination, IPAddress]:
    """The URL's destination and the address to connect to, or DestinationRefused."""
    destination = parse_destination(url, allow_private=allow_private)
    addresses = await resolver(destination.host, destination.port)
    return destination, check_addresses(addresses, allow_private=allow_private)


def client() -> httpx.AsyncClient:
    """The client deliveries use: no redirects, no proxy or other settings from the
    environment."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


async def post_signed(
    http: httpx.AsyncClient,
    url: str,
    secret: str,
    message_id: str,
    body: bytes,
    *,
    timeout_seconds: float,
    allow_private: bool,
    resolver: Resolver = resolve,
) -> str | None:
    """Deliver once: None when the receiver took it (2xx), else what went wrong."""
    try:
        destination, address = await checked_destination(
            url, allow_private=allow_private, resolver=resolver
        )
    except DestinationRefused as exc:
        return f"destination refused: {exc}"[:2000]
    timestamp = int(time.time())  # the receiver compares it with its clock: this attempt's
    extensions = {}
    if destination.scheme == "https" and literal_address(destination.host) is None:
        extensions["sni_hostname"] = destination.host
    try:
        response = await http.post(
            destination.url_to(address),
            content=body,
            headers={
                "Host": destination.host_header,
                "Content-Type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature(secret, message_id, timestamp, body),
            },
            extensions=extensions,
            timeout=timeout_seconds,
        )
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:2000]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}"

"""Where a chain's webhook may point, and how a delivery is signed (pure rules, no I/O).

Destinations: `https` only, and every address the host resolves to must be a public one - no
loopback, private, link-local, multicast, unspecified, reserved or otherwise non-global address,
IPv4 or IPv6, an IPv4 address written as IPv6 (`::ffff:127.0.0.1`, 6to4, Teredo, NAT64)
included. Otherwise a chain could point the notifier at this machine's own services or the
internal network and have it POST signed tasks (names, phones, amounts) there. The operator
setting `NOTIFIER_WEBHOOK_ALLOW_PRIVATE=true` (local testing only) lifts both rules: any
address, and `http` too.

Signatures follow Standard Webhooks (standardwebhooks.com): headers `webhook-id` (the
delivery's id, the same on every retry, so a receiver can drop duplicates), `webhook-timestamp`
(Unix seconds of this attempt, so a receiver can refuse replays) and `webhook-signature:
v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`. The HMAC key is the secret as the chain
set it: a secret in the spec's own format `whsec_<base64>` is the base64-decoded bytes (what
the Standard Webhooks libraries expect), any other secret its UTF-8 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SECRET_PREFIX = "whsec_"
#: The decoded key of a `whsec_` secret: at least 24 bytes (the spec's minimum), at most 64.
SECRET_BYTES = (24, 64)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(ValueError):
    """The webhook may not point there; the message says why."""


@dataclass(frozen=True)
class Destination:
    """A webhook URL taken apart: what to resolve and connect to, and what to ask for."""

    scheme: str
    host: str
    port: int
    #: the request target: path and query ("/hooks/tasks?x=1")
    target: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    def url_to(self, address: IPAddress) -> str:
        """The URL with the checked address in place of the host name (connect there only)."""
        where = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{where}:{self.port}{self.target}"


def parse_destination(url: str, *, allow_private: bool) -> Destination:
    """The URL's parts, or DestinationRefused for a URL a webhook may not have."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"not a valid URL: {exc}") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise DestinationRefused("must be an https URL")
    if not parts.hostname:
        raise DestinationRefused("must name a host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("may not carry a user name or password")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Destination(parts.scheme, parts.hostname, port or default, target)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for: IPv4-mapped, 6to4, Teredo's client, NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """True only for a globally routable unicast address (for IPv6, also the IPv4 one it may
    stand for)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:  # fe80::1%eth0 and the like: link-local by nature
            return False
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on the wire
            return is_public(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


def check_addresses(addresses: list[IPAddress], *, allow_private: bool) -> IPAddress:
    """The address to connect to: the first one, once every one of them is allowed (a host
    that resolves to a public and a private address is refused: which one a client would take
    is not up to the sender)."""
    if not addresses:
        raise DestinationRefused("does not resolve to any address")
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise DestinationRefused(
                f"resolves to {refused[0]}, a loopback, private, link-local, multicast or "
                "otherwise non-public address"
            )
    return addresses[0]


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as an IP literal is, else None (a name to resolve)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret (see the module docstring)."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    return secret.encode("utf-8")


def check_secret(secret: str) -> None:
    """A `whsec_` secret must be valid base64 of 24 to 64 bytes (ValueError otherwise)."""
    if not secret.startswith(SECRET_PREFIX):
        return
    try:
        key = signing_key(secret)
    except (binascii.Error, ValueError):
        raise ValueError("a whsec_ secret is base64 after its prefix") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"a whsec_ secret holds {low} to {high} bytes")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>` of id.timestamp.body."""
    content = message_id.encode("utf-8") + b"." + str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(signing_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")

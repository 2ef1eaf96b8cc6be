"""Where a webhook may point and how it is signed (issue 13 finding 4): https only, public
addresses only (IPv4 and IPv6, IPv4 written as IPv6 included), Standard Webhooks signatures."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from notifier.domain.webhooks import (
    DestinationRefused,
    check_addresses,
    check_secret,
    is_public,
    parse_destination,
    signature,
)

NOT_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "0.0.0.0",
    "100.64.0.1",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",
    "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
    "2001:db8::1",
    "198.18.0.1",
    "192.0.2.1",
]
PUBLIC = [
    "93.184.215.14",
    "1.1.1.1",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.215.14",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_loopback_private_link_local_multicast_and_unspecified_addresses_are_not_public(
    address: str,
) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(DestinationRefused):
        check_addresses([ipaddress.ip_address(address)], allow_private=False)


@pytest.mark.parametrize("address", PUBLIC)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_a_host_with_one_private_address_among_public_ones_is_refused() -> None:
    mixed = [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1"):
        check_addresses(mixed, allow_private=False)
    assert check_addresses(mixed, allow_private=True) == mixed[0]
    with pytest.raises(DestinationRefused, match="resolve"):
        check_addresses([], allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",
        "ftp://hooks.example.com/x",
        "hooks.example.com/x",
        "https:///x",
        "https://user:pw@hooks.example.com/x",
        "https://h:99999/x",
        "javascript:alert(1)",
    ],
)
def test_only_plain_https_urls_are_destinations(url: str) -> None:
    with pytest.raises(DestinationRefused):
        parse_destination(url, allow_private=False)


def test_the_local_testing_setting_also_allows_http() -> None:
    local = parse_destination("http://127.0.0.1:8099/hook?a=1", allow_private=True)
    assert (local.scheme, local.host, local.port, local.target) == (
        "http",
        "127.0.0.1",
        8099,
        "/hook?a=1",
    )
    assert local.url_to(ipaddress.ip_address("127.0.0.1")) == "http://127.0.0.1:8099/hook?a=1"


def test_the_request_goes_to_the_checked_address_with_the_urls_host_name() -> None:
    dest = parse_destination("https://hooks.example.com/tasks", allow_private=False)
    assert dest.host_header == "hooks.example.com"
    assert dest.url_to(ipaddress.ip_address("93.184.215.14")) == ("https://93.184.215.14:443/tasks")
    v6 = parse_destination("https://[2606:4700:4700::1111]:8443/t", allow_private=False)
    assert v6.host_header == "[2606:4700:4700::1111]:8443"
    assert v6.url_to(ipaddress.ip_address("2606:4700:4700::1111")) == (
        "https://[2606:4700:4700::1111]:8443/t"
    )


def test_signatures_match_the_standard_webhooks_reference_vector() -> None:
    # the vector of the Standard Webhooks reference libraries' tests
    assert signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    ) == ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")


def test_a_secret_without_the_whsec_prefix_signs_with_its_own_bytes() -> None:
    raw = "a-long-enough-webhook-secret"
    as_whsec = "whsec_" + base64.b64encode(raw.encode()).decode()
    assert signature(raw, "id", 1, b"{}") == signature(as_whsec, "id", 1, b"{}")
    assert signature(raw, "id", 1, b"{}") != signature(raw, "id", 2, b"{}")  # time is signed


def test_a_whsec_secret_must_be_base64_of_24_to_64_bytes() -> None:
    check_secret("whsec_" + base64.b64encode(b"k" * 32).decode())
    check_secret("not-whsec-at-all-but-long")
    for bad in (
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(b"k" * 65).decode(),
    ):
        with pytest.raises(ValueError, match="a whsec_ secret"):
            check_secret(bad)

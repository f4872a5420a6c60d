"""The address guard: which addresses the federation may connect to. Addresses are only checked here, never
connected to."""

from __future__ import annotations

import pytest

from activitypub.protocol.addresses import AddressRefused, FetchError, check_address, resolve_host

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:1.1.1.1",  # no DNS answer has a reason to be IPv4-mapped
    "::7f00:1",
    "64:ff9b::7f00:1",
    "64:ff9b::101:101",
    "64:ff9b:1::1",
    "2002:7f00:1::",
    "2002:101:101::1",
    "2001::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "100.127.255.254",
    "169.254.169.254",
    "169.254.1.1",
    "fe80::1",
    "fec0::1",
    "fc00::1",
    "fd12:3456::1",
    "0.0.0.0",
    "0.1.2.3",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "3fff::1",
    "198.18.0.1",
    "198.19.255.255",
    "192.0.2.1",
    "198.51.100.1",
    "203.0.113.1",
    "192.0.0.8",
    "192.88.99.1",
    "240.0.0.1",
    "255.255.255.255",
    "100::1",
]
ACCEPTED = ["1.1.1.1", "8.8.8.8", "93.184.215.14", "2606:4700::1111", "2a00:1450:4007:80e::200e"]
ALWAYS_REFUSED = ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "::ffff:0.0.0.0", "::ffff:224.0.0.1", "2002:e000:1::"]
PRIVATE_ALLOWED = ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "10.1.2.3", "192.168.1.1", "fc00::1", "fe80::1"]


@pytest.mark.parametrize("ip", REFUSED)
def test_refused_without_allow_private(ip: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        check_address(ip, allow_private=False)
    assert ip in refused.value.reason
    assert isinstance(refused.value, FetchError)


@pytest.mark.parametrize("ip", ACCEPTED)
def test_global_unicast_accepted(ip: str) -> None:
    check_address(ip, allow_private=False)
    check_address(ip, allow_private=True)


@pytest.mark.parametrize("ip", PRIVATE_ALLOWED)
def test_loopback_and_private_allowed_in_labs(ip: str) -> None:
    check_address(ip, allow_private=True)


@pytest.mark.parametrize("ip", ALWAYS_REFUSED)
def test_unspecified_and_multicast_refused_even_in_labs(ip: str) -> None:
    with pytest.raises(AddressRefused):
        check_address(ip, allow_private=True)


@pytest.mark.parametrize("text", ["", "localhost", "127.1", "2130706433", "1.1.1.1.1", "[::1]", "::ffff:1.1.1.1.1"])
def test_anything_but_an_address_refused(text: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(AddressRefused, match="not an IP address"):
            check_address(text, allow_private=allow_private)


def test_refusal_names_the_reason() -> None:
    with pytest.raises(AddressRefused, match=r"loopback"):
        check_address("127.0.0.1", allow_private=False)
    with pytest.raises(AddressRefused, match=r"CGNAT"):
        check_address("100.64.0.1", allow_private=False)
    with pytest.raises(AddressRefused, match=r"carries 224\.0\.0\.1, multicast"):
        check_address("::ffff:224.0.0.1", allow_private=True)


async def test_default_resolver_reads_ip_literals_without_a_lookup() -> None:
    assert await resolve_host("127.0.0.1", 80) == ["127.0.0.1"]
    assert await resolve_host("::1", 443) == ["::1"]

"""SPEC 8: with no keys the server binds loopback only. What counts as loopback is decided
by `ipaddress` on an IP literal, or is the name `localhost`: never by how a name looks."""

from __future__ import annotations

import pytest

from api import is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),  # the whole 127.0.0.0/8 is loopback
        ("127.255.255.255", True),
        ("::1", True),
        ("[::1]", True),  # the URL form of an IPv6 address
        ("0:0:0:0:0:0:0:1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped: a v6 socket bound to it takes loopback only
        ("localhost", True),
        ("LOCALHOST", True),  # host names are case-insensitive
        ("Localhost", True),
        ("127.evil.example", False),  # a name that only looks like an address
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("127.1", False),  # inet_aton's shorthand: not an address ipaddress accepts
        ("0177.0.0.1", False),  # octal, as some resolvers read it
        ("[127.0.0.1]", False),  # brackets are for IPv6 only
        ("0.0.0.0", False),  # every interface
        ("::", False),
        ("[::]", False),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("192.168.1.20", False),
        ("fe80::1", False),
        ("", False),
        (" 127.0.0.1", False),
        ("[::1", False),
        ("not a host", False),
        ("127.0.0.256", False),
    ],
)
def test_only_a_loopback_ip_literal_or_localhost_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback

"""Peer hosts learned by exchange: every spelling of a loopback or private address is refused,
every spelling of a public one is made canonical (protocol/peers.py; docs/security.md,
section 10).  Pure: no event loop, no sockets."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.protocol import peers
from dazibao.protocol.peers import PeerAddressError

SETTINGS = dict(deadline=None, database=None, max_examples=300,
                suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])

PRIVATE_V4 = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "192.0.2.0/24", "198.18.0.0/15", "240.0.0.0/4",
)]
PUBLIC_V4 = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "151.101.1.1"]


def addresses_in(networks):
    return st.sampled_from(networks).flatmap(
        lambda n: st.integers(int(n.network_address), int(n.broadcast_address)).map(ipaddress.IPv4Address))


def spellings(address: ipaddress.IPv4Address):
    """Every way the system resolver (inet_aton) or an IPv6 stack reads as ``address``."""
    n = int(address)
    a, b, c, d = address.packed
    yield str(address)
    yield f"{address}."                                  # trailing dot
    yield str(n)                                         # one decimal number
    yield hex(n)                                         # one hexadecimal number
    yield f"0{n:o}"                                      # one octal number
    yield f"{a}.{(b << 16) | (c << 8) | d}"              # a.bcd
    yield f"{a}.{b}.{(c << 8) | d}"                      # a.b.cd
    yield f"{a:#x}.{b:#x}.{c:#x}.{d:#x}"                 # hexadecimal parts
    yield f"0{a:o}.0{b:o}.0{c:o}.0{d:o}"                 # octal parts
    yield f"[::ffff:{address}]"                          # IPv4-mapped
    yield f"[::ffff:{n >> 16:x}:{n & 0xffff:x}]"
    yield f"[64:ff9b::{address}]"                        # NAT64, well-known prefix
    yield f"[2002:{n >> 16:x}:{n & 0xffff:x}::1]"        # 6to4


@settings(**SETTINGS)
@given(addresses_in(PRIVATE_V4), st.integers(1, 65535))
def test_every_spelling_of_a_private_ipv4_address_is_refused(address, port):
    for host in spellings(address):
        url = f"http://{host}:{port}"
        with pytest.raises(PeerAddressError):
            peers.check_learned_peer(url, allow_private=False)
        # Allowed on a LAN, but in one canonical spelling, never a disguised one.
        normal = peers.check_learned_peer(url, allow_private=True)
        assert normal.startswith(("http://[", f"http://{address}:"))


@settings(**SETTINGS)
@given(st.sampled_from(PUBLIC_V4).map(ipaddress.IPv4Address), st.integers(1, 65535))
def test_every_numeric_spelling_of_a_public_ipv4_address_is_its_dotted_quad(address, port):
    for host in spellings(address):
        if host.startswith("["):
            continue
        assert peers.check_learned_peer(f"http://{host}:{port}", allow_private=False) == f"http://{address}:{port}"


@pytest.mark.parametrize("url", [
    "http://127.1:7470", "http://0177.0.0.1:7470", "http://127.0.0.1.:7470", "http://[::7f00:1]:7470",
    "http://2130706433:7470", "http://0x7f.1:7470", "http://0x7f000001:7470", "http://[::ffff:127.0.0.1]:7470",
    "http://[::ffff:7f00:1]:7470", "http://[::1]:7470", "http://[64:ff9b::7f00:1]:7470",
    "http://[64:ff9b::a00:1]:7470", "http://[64:ff9b:1::808:808]:7470", "http://[2002:7f00:1::1]:7470",
    "http://[2002:a9fe:a9fe::1]:7470", "http://[::808:808]:7470", "http://10.1:7470", "http://0:7470",
    "http://localhost.:7470", "http://foo.localhost.:7470", "http://[fe80::1]:7470", "http://[fc00::1]:7470",
    # Teredo: server 65.54.227.120, client 192.0.2.45 (a documentation address).
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:7470",
])
def test_disguised_local_hosts_are_refused(url):
    with pytest.raises(PeerAddressError) as info:
        peers.check_learned_peer(url, allow_private=False)
    assert info.value.code == "bad_peer_url"


@pytest.mark.parametrize("url", [
    "http://08.1.1.1", "http://1.2.3.4.5", "http://256.1.1.1", "http://1.2.65536", "http://0x1g.1",
    "http://example.0x1", "http://example.123", "http://a..b", "http://.example.org", "http://example.org..",
    "http://[::1::2]",
])
def test_hosts_that_are_no_address_and_no_name_are_refused(url):
    with pytest.raises(PeerAddressError):
        peers.normalize_peer_url(url)


@pytest.mark.parametrize(("url", "normal"), [
    ("http://Example.ORG.:7470", "http://example.org:7470"),
    ("https://peer.example.org", "https://peer.example.org:443"),
    ("http://0x08080808", "http://8.8.8.8:80"),
    ("http://8.8.2056:7470", "http://8.8.8.8:7470"),
    ("http://[2606:4700:0:0::1]:7470", "http://[2606:4700::1]:7470"),
    ("http://[64:ff9b::8.8.8.8]:7470", "http://[64:ff9b::808:808]:7470"),
    ("http://[2002:808:808::1]:7470", "http://[2002:808:808::1]:7470"),
])
def test_public_hosts_are_accepted_in_canonical_form(url, normal):
    assert peers.check_learned_peer(url, allow_private=False) == normal


def test_embedded_ipv4_addresses_decide_whether_an_ipv6_address_is_public():
    assert peers.is_public_address("64:ff9b::808:808")
    assert not peers.is_public_address("64:ff9b::7f00:1")
    assert not peers.is_public_address("64:ff9b::c0a8:101")       # 192.168.1.1 through NAT64
    assert not peers.is_public_address("64:ff9b:1::808:808")      # local-use NAT64, whatever it embeds
    assert peers.is_public_address("2002:808:808::1")
    assert not peers.is_public_address("2002:c0a8:101::1")        # 6to4 of 192.168.1.1
    assert not peers.is_public_address("::ffff:10.0.0.1")
    assert not peers.is_public_address("::808:808")               # IPv4-compatible: never routed
    # Teredo with a public server and a public client (the client is stored inverted).
    assert peers.is_public_address("2001:0:808:808::f7f7:f7f7")
    assert not peers.is_public_address("2001:0:808:808::80ff:fffe")  # client 127.0.0.1
    assert not peers.is_public_address("2001:0:7f00:1::f7f7:f7f7")   # server 127.0.0.1
    assert not peers.is_public_address("not an address")
    assert not peers.is_public_address("224.0.0.1")


@settings(**SETTINGS)
@given(st.text(alphabet="0123456789abcdefx.:[]", min_size=1, max_size=40), st.booleans())
def test_any_host_is_refused_cleanly_or_normalized_to_a_fixed_point(host, allow_private):
    try:
        normal = peers.check_learned_peer(f"http://{host}:7470", allow_private=allow_private)
    except PeerAddressError:
        return
    assert peers.check_learned_peer(normal, allow_private=allow_private) == normal

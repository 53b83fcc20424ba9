"""Peer URLs that carry a pinned TLS key, and .onion peers (protocol/peers.py; docs/protocol.md,
"Peer URLs").  Pure: no event loop, no sockets."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import peers
from dazibao.protocol.peers import OnionWithoutProxyError, PeerAddressError

# Tor's own example of a version 3 onion address (rend-spec-v3, the Tor Project's site).
TOR_PROJECT_ONION = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
PIN = peers.encode_pin(hashlib.sha256(b"a public key").digest())


def test_a_pinned_https_url_keeps_its_pin_in_one_spelling():
    assert peers.normalize_peer_url(f"https://Node.Example.org/#{PIN}") == f"https://node.example.org:443#{PIN}"
    assert peers.normalize_peer_url(f"https://node.example.org:8443#{PIN}") == f"https://node.example.org:8443#{PIN}"
    base, digest = peers.split_pin(peers.normalize_peer_url(f"https://10.0.0.1:8443#{PIN}"))
    assert base == "https://10.0.0.1:8443" and digest == hashlib.sha256(b"a public key").digest()
    assert peers.split_pin("https://node.example.org:443") == ("https://node.example.org:443", None)


@pytest.mark.parametrize("url", [
    f"http://node.example.org#{PIN}",                     # a pin means TLS
    "https://node.example.org#",                          # an empty fragment
    "https://node.example.org#spki=",                     # an empty pin
    "https://node.example.org#sha256=" + PIN[5:],         # another name
    "https://node.example.org#" + PIN[:-1],               # 42 characters
    "https://node.example.org#" + PIN + "A",              # 44 characters
    "https://node.example.org#" + PIN.replace("spki=", "spki=+")[:48],  # not base64url
    f"https://node.example.org?x=1#{PIN}",                # still no query
])
def test_a_bad_fragment_is_refused(url):
    with pytest.raises(PeerAddressError) as exc:
        peers.normalize_peer_url(url)
    assert exc.value.code == "bad_peer_url"


def test_a_pin_has_one_spelling():
    # The last of 43 base64url characters carries 2 unused bits: only the spelling with them at
    # zero is the pin, so that one key is one peer URL.
    last = PIN[-1]
    index = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(last)
    other = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[index ^ 1]
    with pytest.raises(PeerAddressError):
        peers.normalize_peer_url(f"https://node.example.org#{PIN[:-1]}{other}")


@settings(deadline=None, database=None, max_examples=200)
@given(st.binary(min_size=32, max_size=32))
def test_every_digest_round_trips_through_a_url(digest):
    pin = peers.encode_pin(digest)
    assert len(pin) == len("spki=") + 43
    url = peers.normalize_peer_url(f"https://node.example.org:7470/#{pin}")
    assert peers.split_pin(url) == ("https://node.example.org:7470", digest)
    assert peers.normalize_peer_url(url) == url
    assert base64.urlsafe_b64decode(pin[5:] + "=") == digest


def test_pinned_urls_learned_from_peers_follow_the_address_rules():
    assert peers.check_learned_peer(f"https://8.8.8.8#{PIN}", allow_private=False) == f"https://8.8.8.8:443#{PIN}"
    with pytest.raises(PeerAddressError):
        peers.check_learned_peer(f"https://127.0.0.1:7470#{PIN}", allow_private=False)


def test_onion_addresses_are_version_3_with_a_good_checksum():
    assert peers.normalize_peer_url(f"http://{TOR_PROJECT_ONION}") == f"http://{TOR_PROJECT_ONION}:80"
    assert peers.onion_address(bytes(range(32))).endswith(".onion")
    assert peers.normalize_peer_url(f"http://{peers.onion_address(bytes(range(32)))}:7470")
    # A subdomain of an onion service reaches the same service, as in Tor.
    assert peers.normalize_peer_url(f"http://www.{TOR_PROJECT_ONION}")
    broken = TOR_PROJECT_ONION[:10] + ("a" if TOR_PROJECT_ONION[10] != "a" else "b") + TOR_PROJECT_ONION[11:]
    for url in [f"http://{broken}", "http://expyuzz4wqqyqhjn.onion", "http://onion", "http://x.onion",
                "http://" + TOR_PROJECT_ONION.replace("d.onion", "c.onion")]:
        with pytest.raises(PeerAddressError):
            peers.normalize_peer_url(url)


def test_an_onion_peer_needs_a_proxy():
    url = f"http://{TOR_PROJECT_ONION}:7470"
    assert peers.check_transport(url, proxy=True) == url
    with pytest.raises(OnionWithoutProxyError) as exc:
        peers.check_transport(url, proxy=False)
    assert exc.value.code == "onion_needs_proxy" and "proxy" in exc.value.message
    assert isinstance(exc.value, PeerAddressError)
    # Any other peer is reachable either way.
    assert peers.check_transport("http://node.example.org", proxy=False) == "http://node.example.org:80"
    # An onion address is a public name: peer exchange may spread it.
    assert peers.check_learned_peer(url, allow_private=False) == url

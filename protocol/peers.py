"""Peers, pure: which peer addresses are acceptable (in any spelling of a host), and what the
gossip policy knows of one peer (:class:`PeerState`).

Whom to sync with, whom to push to, when a failing peer is tried again and which peers to
forget is decided in one place only, protocol/gossip.py.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from .errors import ValidationError

__all__ = [
    "Rng",
    "PeerAddressError",
    "PeerState",
    "normalize_peer_url",
    "canonical_host",
    "embedded_ipv4",
    "check_learned_peer",
    "check_transport",
    "is_public_address",
    "is_onion",
    "onion_address",
    "split_pin",
    "encode_pin",
    "OnionWithoutProxyError",
    "PIN_PREFIX",
    "MAX_PEERS_PER_EXCHANGE",
]

#: Most peer addresses taken from one peer-exchange answer.
MAX_PEERS_PER_EXCHANGE = 32


class Rng(Protocol):
    """The randomness the policy takes from its caller (``random.Random`` fits)."""

    def uniform(self, a: float, b: float) -> float: ...
    def choice(self, seq: Sequence[Any]) -> Any: ...
    def sample(self, population: Sequence[Any], k: int) -> list[Any]: ...


class PeerAddressError(ValidationError):
    """A peer address is not an acceptable gossip URL."""

    code = "bad_peer_url"


class OnionWithoutProxyError(PeerAddressError):
    """A ``.onion`` peer, and this node has no proxy: it can only be reached through Tor."""

    code = "onion_needs_proxy"


#: The fragment that pins a peer's TLS key: ``https://host:port#spki=`` and the SHA-256 of the
#: DER SubjectPublicKeyInfo of its certificate, base64url without padding (43 characters).
PIN_PREFIX = "spki="
_PIN = re.compile(r"[A-Za-z0-9_-]{43}")
#: A version 3 onion address: 56 base32 characters (an Ed25519 key, a checksum, a version).
_ONION_V3 = re.compile(r"(?:[a-z0-9-]+\.)*([a-z2-7]{56})\.onion")


def _is_onion_v3(host: str) -> bool:
    """Whether a host is a well-formed version 3 onion address, checksum included (Tor's
    rend-spec-v3: base32 of key, SHA3-256(".onion checksum" key version)[:2], version 3)."""
    match = _ONION_V3.fullmatch(host)
    if not match:
        return False
    raw = base64.b32decode(match.group(1).upper())
    key, checksum, version = raw[:32], raw[32:34], raw[34:]
    return version == b"\x03" and hashlib.sha3_256(b".onion checksum" + key + version).digest()[:2] == checksum


def onion_address(key: bytes) -> str:
    """The version 3 onion address of an Ed25519 public key (32 bytes)."""
    checksum = hashlib.sha3_256(b".onion checksum" + key + b"\x03").digest()[:2]
    return base64.b32encode(key + checksum + b"\x03").decode("ascii").lower() + ".onion"


def encode_pin(digest: bytes) -> str:
    """The URL fragment that pins a TLS key: ``spki=`` and the base64url of a SHA-256 digest."""
    if len(digest) != 32:
        raise ValueError("a pin is a SHA-256 digest of 32 bytes")
    return PIN_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def split_pin(url: str) -> tuple[str, bytes | None]:
    """A normalized peer URL without its pin, and the pinned SHA-256 digest (or None)."""
    base, sep, fragment = url.partition("#")
    if not sep:
        return url, None
    return base, _decode_pin(fragment, url)


def _decode_pin(fragment: str, url: str) -> bytes:
    value = fragment[len(PIN_PREFIX):] if fragment.startswith(PIN_PREFIX) else ""
    if not _PIN.fullmatch(value):
        raise PeerAddressError(f"peer URL {url!r}: the only fragment allowed is #spki= and 43 base64url "
                               "characters (the SHA-256 of the server's public key)")
    digest = base64.urlsafe_b64decode(value + "=")
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") != value:
        # Unused low bits in the last character: another spelling of the same pin.
        raise PeerAddressError(f"peer URL {url!r}: the pin is not in its one canonical spelling")
    return digest


def is_onion(host: str) -> bool:
    """Whether a canonical host is a Tor onion service name (any ``*.onion``)."""
    return host == "onion" or host.endswith(".onion")


def normalize_peer_url(url: str) -> str:
    """Check a gossip URL and normalize it to ``scheme://host:port``, or for a pinned TLS key
    ``https://host:port#spki=PIN``; raise PeerAddressError.

    Only http and https, a host, an optional port and no path, query, user name or fragment
    but the pin: a peer URL is copied from node to node and must not carry anything else.  An
    ``.onion`` host must be a version 3 onion address (56 characters); the older 16-character
    ones no longer work in Tor.  The host is made
    canonical, so that one host has one spelling: a trailing dot is dropped, an IPv4 address in
    any of the legacy numeric forms the system resolver still accepts (``127.1``,
    ``0177.0.0.1``, ``0x7f.1``, ``2130706433``) becomes its dotted quad, and an IPv6 address
    its compressed form.  A host whose last label is a number but which is not a valid IPv4
    address is refused, as browsers do.
    """
    if not isinstance(url, str) or not url or len(url) > 512:
        raise PeerAddressError("peer URL must be a string of 1 to 512 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise PeerAddressError(f"peer URL {url!r} is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise PeerAddressError(f"peer URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise PeerAddressError(f"peer URL {url!r} has no host")
    if parts.username or parts.password or parts.query or parts.path not in ("", "/"):
        raise PeerAddressError(f"peer URL {url!r} must be only scheme://host[:port][#spki=PIN]")
    pin = ""
    if parts.fragment or url.strip().endswith("#"):
        if parts.scheme != "https":
            raise PeerAddressError(f"peer URL {url!r}: only an https:// URL may pin a key (#spki=)")
        pin = "#" + encode_pin(_decode_pin(parts.fragment, url))
    host = parts.hostname
    if any(ch in host for ch in " %\\") or not host.isascii():
        raise PeerAddressError(f"peer URL {url!r} has an invalid host")
    host = canonical_host(host, url)
    if is_onion(host) and not _is_onion_v3(host):
        raise PeerAddressError(f"peer URL {url!r} is not a valid onion address (56 characters and a "
                               "checksum before .onion; the older 16-character ones no longer work in Tor)")
    port = port or (443 if parts.scheme == "https" else 80)
    if port == 0:
        raise PeerAddressError(f"peer URL {url!r} has port 0")
    return f"{parts.scheme}://{host}:{port}{pin}"


def canonical_host(host: str, url: str = "") -> str:
    """The one spelling of a URL host (IPv6 in brackets); raise PeerAddressError.

    ``host`` is what ``urlsplit(...).hostname`` gives: lower case, IPv6 without brackets.
    """
    what = repr(url or host)
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise PeerAddressError(f"peer URL {what} has an invalid IPv6 address") from None
    # One trailing dot is the root of the DNS, not part of the name ("example.org." is
    # "example.org"); an empty label anywhere else is not a host name at all.
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or any(not label for label in labels):
        raise PeerAddressError(f"peer URL {what} has an empty host label")
    if _NUMBER.match(labels[-1]):
        # The system resolver (inet_aton) reads "127.1", "0177.0.0.1", "0x7f.1" and
        # "2130706433" as IPv4 addresses: read them the same way here, so that the address
        # checks below see the address that would really be dialled.
        address = _parse_ipv4(labels)
        if address is None:
            raise PeerAddressError(f"peer URL {what} has an invalid IPv4 address")
        return str(address)
    return name


_NUMBER = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def _parse_ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    """An IPv4 address written as inet_aton reads it (1 to 4 parts, each decimal, octal with a
    leading 0, or hexadecimal with 0x), or None if it is not one."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if not _NUMBER.match(label):
            return None
        if label.startswith("0x"):
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if any(ch in "89" for ch in label):
                return None
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


#: IPv6 prefixes that carry an IPv4 address in their last 32 bits: IPv4-mapped, the deprecated
#: IPv4-compatible ``::a.b.c.d``, and the well-known NAT64 prefix (RFC 6052), which a
#: translator on the path turns into a connection to that IPv4 address.
_EMBEDS_LAST_32 = (
    ipaddress.IPv6Network("::ffff:0:0/96"),
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
)
#: Never a public peer: local-use NAT64 (RFC 8215), where the IPv4 address sits depends on the
#: operator's prefix length and the translator is in the operator's own network; and the
#: IPv4-compatible addresses, deprecated since RFC 4291 and never routed, which some stacks
#: still treat as the IPv4 address they end with.
_NEVER_PUBLIC_V6 = (ipaddress.IPv6Network("64:ff9b:1::/48"), ipaddress.IPv6Network("::/96"))


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to (mapped, compatible, NAT64, 6to4, Teredo)."""
    for network in _EMBEDS_LAST_32:
        if address in network:
            return [ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def is_public_address(host: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, link-local, ...).

    An IPv6 address that embeds an IPv4 address (IPv4-mapped or -compatible, NAT64, 6to4,
    Teredo) is judged by the IPv4 address it leads to; local-use NAT64 and IPv4-compatible
    addresses are never public.
    Anything that is not an IP address is not public.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NEVER_PUBLIC_V6):
            return False
        inner = embedded_ipv4(address)
        if inner:
            return all(_is_public(a) for a in inner)
    return _is_public(address)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


def check_learned_peer(url: str, *, allow_private: bool) -> str:
    """Check a peer address learned from another node (untrusted input); return it normalized.

    Unless ``allow_private``, an IP literal must be a public address (after the host is made
    canonical, so ``127.1``, ``0x7f.1``, ``127.0.0.1.`` and IPv6 addresses that embed a private
    IPv4 address are refused too) and the names ``localhost`` and ``*.localhost``, ``*.local``,
    ``*.internal``, ``*.lan``, ``*.home.arpa`` are refused; a name is checked again where it is
    resolved (the node refuses private results when connecting).  Raises PeerAddressError.
    """
    normal = normalize_peer_url(url)
    if allow_private:
        return normal
    # The host is canonical here: numeric IPv4 forms are dotted quads, trailing dots are gone.
    host = urlsplit(normal).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        lowered = host
        if lowered == "localhost" or lowered.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa")):
            raise PeerAddressError(f"peer URL {url!r} names a local host") from None
        if "." not in lowered:
            raise PeerAddressError(f"peer URL {url!r} is not a fully qualified name") from None
        return normal
    if not is_public_address(host):
        raise PeerAddressError(f"peer URL {url!r} is not a public address")
    return normal


def check_transport(url: str, *, proxy: bool) -> str:
    """Check that this node can reach a peer URL at all; return it normalized.

    An ``.onion`` peer is reachable only through a proxy that speaks to Tor: without one,
    dialling it would at best fail and at worst ask the local DNS resolver for the onion name,
    telling the network which organizer node this one looks for.  Raises
    OnionWithoutProxyError (code onion_needs_proxy) or PeerAddressError.
    """
    normal = normalize_peer_url(url)
    if not proxy and is_onion(urlsplit(normal).hostname or ""):
        raise OnionWithoutProxyError(f"peer URL {url!r} is an onion service: set the proxy setting "
                                     "(e.g. socks5h://127.0.0.1:9050 for Tor) to reach it")
    return normal


@dataclass(frozen=True, slots=True)
class PeerState:
    """What the policy needs to know of one peer."""

    url: str
    source: str = "config"            # 'config' | 'cli' | 'pex'
    failures: int = 0                 # failures in a row
    next_try_at_ms: int = 0
    last_ok_at_ms: int | None = None
    added_at_ms: int = 0

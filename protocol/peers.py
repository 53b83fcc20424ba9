"""Peer policy, pure: which peer addresses are acceptable, when a failing peer is tried again,
whom to sync with and whom to push to, which peers to forget (docs/gossip.md).

The node keeps its peers in SQLite and the simulation keeps them in memory; both make their
choices here, with the clock passed in as ``now_ms`` and randomness as ``rng``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from .errors import ValidationError

__all__ = [
    "Rng",
    "PeerAddressError",
    "PeerState",
    "normalize_peer_url",
    "check_learned_peer",
    "is_public_address",
    "backoff_ms",
    "due",
    "choose_sync_peer",
    "choose_push_targets",
    "peers_to_forget",
    "BASE_BACKOFF_MS",
    "MAX_BACKOFF_MS",
    "FORGET_AFTER_FAILURES",
    "MAX_PEERS_PER_EXCHANGE",
]

BASE_BACKOFF_MS = 5_000
MAX_BACKOFF_MS = 3_600_000
#: A peer learned by exchange that failed this many times in a row, and has not answered for a
#: day, is forgotten.  Peers the operator added are never forgotten.
FORGET_AFTER_FAILURES = 8
FORGET_AFTER_MS = 86_400_000
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


def normalize_peer_url(url: str) -> str:
    """Check a gossip URL and normalize it to ``scheme://host:port``; raise PeerAddressError.

    Only http and https, a host, an optional port and no path, query, user name or fragment:
    a peer URL is copied from node to node and must not carry anything else.
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
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise PeerAddressError(f"peer URL {url!r} must be only scheme://host[:port]")
    host = parts.hostname
    if any(ch in host for ch in " %\\") or not host.isascii():
        raise PeerAddressError(f"peer URL {url!r} has an invalid host")
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass
    port = port or (443 if parts.scheme == "https" else 80)
    if port == 0:
        raise PeerAddressError(f"peer URL {url!r} has port 0")
    return f"{parts.scheme}://{host}:{port}"


def is_public_address(host: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, link-local, ...)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def check_learned_peer(url: str, *, allow_private: bool) -> str:
    """Check a peer address learned from another node (untrusted input); return it normalized.

    Unless ``allow_private``, an IP literal must be a public address and the names
    ``localhost`` and ``*.localhost``, ``*.local``, ``*.internal`` are refused; a name is
    checked again where it is resolved (the node refuses private results when connecting).
    """
    normal = normalize_peer_url(url)
    if allow_private:
        return normal
    host = urlsplit(normal).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        lowered = host.lower().rstrip(".")
        if lowered == "localhost" or lowered.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa")):
            raise PeerAddressError(f"peer URL {url!r} names a local host") from None
        if "." not in lowered:
            raise PeerAddressError(f"peer URL {url!r} is not a fully qualified name") from None
        return normal
    if not is_public_address(host):
        raise PeerAddressError(f"peer URL {url!r} is not a public address")
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


def backoff_ms(failures: int, rng: Rng) -> int:
    """Delay before trying a peer again after ``failures`` failures in a row.

    5 s, 10 s, 20 s, ... doubling up to an hour, jittered by +-25% so that many nodes that lost
    the same peer do not come back to it in step.
    """
    if failures <= 0:
        return 0
    base = min(BASE_BACKOFF_MS * 2 ** min(failures - 1, 30), MAX_BACKOFF_MS)
    return int(base * rng.uniform(0.75, 1.25))


def due(peers: Iterable[PeerState], now_ms: int, exclude: Iterable[str] = ()) -> list[PeerState]:
    """The peers that may be contacted now (not backing off), minus ``exclude``."""
    skip = set(exclude)
    return [p for p in peers if p.next_try_at_ms <= now_ms and p.url not in skip]


def choose_sync_peer(peers: Sequence[PeerState], now_ms: int, rng: Rng,
                     exclude: Iterable[str] = ()) -> str | None:
    """A random peer for anti-entropy among those due, or None."""
    candidates = due(peers, now_ms, exclude)
    return rng.choice(candidates).url if candidates else None


def choose_push_targets(peers: Sequence[PeerState], k: int, now_ms: int, rng: Rng,
                        exclude: Iterable[str] = ()) -> list[str]:
    """Up to ``k`` distinct random peers, among those due, to announce fresh posts to."""
    candidates = due(peers, now_ms, exclude)
    return [p.url for p in rng.sample(candidates, min(k, len(candidates)))]


def peers_to_forget(peers: Sequence[PeerState], now_ms: int, max_peers: int) -> list[str]:
    """Peers to drop: dead exchange-learned ones, then the least healthy beyond ``max_peers``.

    Peers an operator added (source 'config' or 'cli') are never dropped.
    """
    learned = [p for p in peers if p.source == "pex"]
    drop = {
        p.url for p in learned
        if p.failures >= FORGET_AFTER_FAILURES
        and now_ms - (p.last_ok_at_ms if p.last_ok_at_ms is not None else p.added_at_ms) > FORGET_AFTER_MS
    }
    keep = [p for p in learned if p.url not in drop]
    excess = len(peers) - len(drop) - max_peers
    if excess > 0:
        # Worst first: most failures, then longest without an answer, then newest.
        keep.sort(key=lambda p: (-p.failures, p.last_ok_at_ms or 0, -p.added_at_ms))
        drop.update(p.url for p in keep[:excess])
    return sorted(drop)

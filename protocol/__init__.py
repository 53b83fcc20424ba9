"""dazibao's protocol: pure, sans-IO.  Bytes and plain values in, bytes and plain values out.

This package imports only the standard library, ``msgpack``, ``cryptography`` and PyNaCl
(libsodium, for signature verification).  It never touches sockets, files, the clock or a
source of randomness: time arrives as ``now`` and randomness as ``rng`` or bytes.
"""

from . import errors, identity, keyindex, limits, messages, moderation, peers, posts, reconcile, trust, wire, work

__all__ = [
    "errors", "identity", "keyindex", "limits", "messages", "moderation", "peers", "posts", "reconcile", "trust",
    "wire", "work",
]

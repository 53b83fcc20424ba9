"""Proof of work for posts (docs/protocol.md, "Proof of work"), as pure functions.

A post of format version 1 may carry an 8th item in its unsigned array, ``work = [target,
nonce]``: ``target`` an integer in ``min_pow_bits`` ... ``max_pow_bits`` and ``nonce`` a ``bin``
of exactly :data:`NONCE_BYTES` bytes.  It is valid only when the post id -- SHA-256 of the
canonical unsigned array, work included, as for every post -- begins with at least ``target``
zero bits.  The target is signed with the rest, so a node asks "what did the author commit to?"
(the target), never "how lucky was the hash?" (NIP-13's committed difficulty).

Nothing here reads a clock or draws randomness: :func:`mine` counts nonces up from ``start``
and stops after a bounded number of tries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from . import limits, wire
from .errors import LocalProtocolError

__all__ = ["NONCE_BYTES", "leading_zero_bits", "meets", "check_target", "mine"]

#: Length of the nonce, in bytes.
NONCE_BYTES = 8


def leading_zero_bits(digest: bytes) -> int:
    """How many zero bits ``digest`` begins with (its first byte's high bit first)."""
    return len(digest) * 8 - int.from_bytes(digest, "big").bit_length()


def meets(post_id: bytes, target: int) -> bool:
    """Whether ``post_id`` begins with at least ``target`` zero bits."""
    return int.from_bytes(post_id, "big") >> (len(post_id) * 8 - target) == 0


def check_target(bits: object) -> int:
    """``bits`` if it is a work target this protocol allows; LocalProtocolError otherwise."""
    if type(bits) is not int or not limits.MIN_POW_BITS <= bits <= limits.MAX_POW_BITS:
        raise LocalProtocolError(
            f"a work target must be an integer from {limits.MIN_POW_BITS} to {limits.MAX_POW_BITS}, not {bits!r}"
        )
    return bits


def _default_tries(bits: int) -> int:
    # 64 times the expected number: the chance of finding nothing is below e^-64.
    return 1 << min(bits + 6, NONCE_BYTES * 8)


def mine(unsigned_without_work: Sequence[object], bits: int, *, start: int = 0, tries: int | None = None) -> bytes:
    """The first nonce, counting up from ``start``, that gives the post at least ``bits`` zero bits.

    ``unsigned_without_work`` is the 7-item unsigned array ``[1, kind, board, author,
    created_at_ms, parent, body]``; the id tried for a nonce ``n`` is SHA-256 of the canonical
    encoding of that array with ``[bits, n]`` appended (``n`` as 8 bytes, big-endian).  At most
    ``tries`` nonces are tried (by default 64 times the expected count, 2^(bits+6)); a caller
    that must stay responsive mines in slices by passing ``start`` and a small ``tries``.
    Raises LocalProtocolError for a target out of bounds, a 7-item array of the wrong shape,
    or when no nonce in the range meets the target.
    """
    check_target(bits)
    items = list(unsigned_without_work)
    if len(items) != 7:
        raise LocalProtocolError("mine() takes the 7-item unsigned array, without work")
    limit = 1 << (NONCE_BYTES * 8)
    count = _default_tries(bits) if tries is None else tries
    if type(start) is not int or type(count) is not int or start < 0 or count < 0:
        raise LocalProtocolError("start and tries must be non-negative integers")
    stop = min(start + count, limit)
    # The canonical encoding of an 8-item array is 0x98, the 7 items, then the work item:
    # 0x92, the target (a positive fixint, 8..40 < 128), 0xc4 0x08 and the nonce.  Everything
    # but the nonce is hashed once.
    try:
        prefix = b"\x98" + b"".join(wire.pack(item) for item in items) + b"\x92" + wire.pack(bits) + b"\xc4\x08"
    except (TypeError, ValueError, OverflowError):
        raise LocalProtocolError("the unsigned array holds a value outside the data model") from None
    base = hashlib.sha256(prefix)
    shift = 256 - bits
    for n in range(start, stop):
        nonce = n.to_bytes(NONCE_BYTES, "big")
        h = base.copy()
        h.update(nonce)
        if int.from_bytes(h.digest(), "big") >> shift == 0:
            return nonce
    raise LocalProtocolError(f"no nonce from {start} to {stop - 1} gives {bits} zero bits")

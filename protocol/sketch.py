"""Rateless set sketches of post ids (docs/protocol.md, "Reconciliation", §5.1).

A sketch of a set of ids is a prefix of an infinite sequence of **coded symbols** in the style
of the rateless invertible Bloom lookup table of Yang, Gilad and Alizadeh ("Practical Rateless
Set Reconciliation", SIGCOMM 2024).  Each id is added into symbol 0 and into a sparse,
pseudo-random, ever-growing sequence of later symbols (symbol i holds a given id with
probability about 1/(1 + i/2)), so the first m symbols of two sets, combined, let the holder of
one set recover the symmetric difference once m is somewhat larger than it (about 1.35 to 2
symbols per differing id), and more symbols of the same sequence can always be asked for.

A symbol is 36 bytes: the XOR of the ids in it (32 bytes) and the XOR of their checksums
(4 bytes).  For an id x, ``h = SHA-256(x)``; its checksum is ``h[8:12]`` and its index sequence
starts at 0 and continues from the seed ``int_le(h[0:8])`` (:func:`indexes`).  XOR has no sign,
so the side an id comes from is found by looking it up in one's own set.

Pure: no I/O, no clock, no randomness.  Every loop is bounded by the symbols asked for and the
ids given; :func:`decode` never runs longer than a bounded number of peels, whatever the
symbols hold.  protocol/keyindex.py keeps the first symbols of every block of keys, so that a
range's symbols cost little more than its fingerprint.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

__all__ = [
    "SYMBOL_BYTES",
    "CHECKSUM_BYTES",
    "indexes",
    "symbols",
    "pack",
    "packed",
    "contribution",
    "encode",
    "decode",
    "Decoded",
]

ID_BYTES = 32
CHECKSUM_BYTES = 4
SYMBOL_BYTES = ID_BYTES + CHECKSUM_BYTES

_MULT = 0xDA942042E4DD58B5
_M64 = (1 << 64) - 1
_TWO32 = float(1 << 32)


def _hash(item: bytes) -> tuple[int, int]:
    """(seed, checksum) of one id."""
    h = hashlib.sha256(item).digest()
    return int.from_bytes(h[0:8], "little"), int.from_bytes(h[8:12], "little")


def _next(prng: int, last: int) -> tuple[int, int]:
    """One step of the index sequence: the new PRNG state and the next index (§5.1).

    The gap is ``ceil((last + 1.5) * (2^32 / sqrt(r + 1) - 1))`` in IEEE 754 double precision
    (r converted to the nearest double), as in the reference rateless IBLT: index i is reached
    with probability about 1/(1 + i/2).
    """
    r = (prng * _MULT) & _M64
    return r, last + math.ceil((last + 1.5) * (_TWO32 / math.sqrt(float(r) + 1.0) - 1.0))


def indexes(item: bytes, stop: int) -> list[int]:
    """The indexes below ``stop`` of the symbols that ``item`` is added into (0 first)."""
    return _walk(_hash(item)[0], stop)


def symbols(items: Iterable[bytes], stop: int) -> list[int]:
    """Coded symbols 0 to ``stop - 1`` of the set ``items``, each as a 288-bit integer: the XOR
    of the ids read little-endian, plus the XOR of their checksums shifted left by 256 bits.

    The caller bounds ``stop`` and the number of items (every bound is in protocol/limits.py).
    """
    out = [0] * stop
    from_bytes = int.from_bytes
    sha = hashlib.sha256
    sqrt = math.sqrt
    ceil = math.ceil
    for item in items:
        h = sha(item).digest()
        prng = from_bytes(h[0:8], "little")
        value = from_bytes(item, "little") | from_bytes(h[8:12], "little") << 256
        i = 0
        while i < stop:
            out[i] ^= value
            prng = (prng * _MULT) & _M64
            i += ceil((i + 1.5) * (_TWO32 / sqrt(float(prng) + 1.0) - 1.0))
    return out


def pack(values: list[int]) -> bytes:
    """Symbols as integers (see :func:`symbols`) to their wire form: 36 bytes each, in order."""
    return b"".join(v.to_bytes(SYMBOL_BYTES, "little") for v in values)


def packed(values: list[int]) -> int:
    """Symbols as one integer: symbol k in bits 288 k to 288 k + 287, so that the XOR of two
    sets' packed symbols is one integer operation and ``packed(...).to_bytes(36 m, "little")``
    is the wire form of m symbols."""
    return int.from_bytes(pack(values), "little")


def contribution(item: bytes, stop: int) -> int:
    """The packed symbols (see :func:`packed`) of the one-id set ``{item}``, below ``stop``."""
    seed, chk = _hash(item)
    # The symbol's wire form is the id's bytes, then the checksum's (both little-endian): lay
    # them out in one buffer and convert once, rather than shift integers per symbol.
    chunk = item + chk.to_bytes(CHECKSUM_BYTES, "little")
    walk = _walk(seed, stop)
    buf = bytearray(SYMBOL_BYTES * (walk[-1] + 1)) if walk else bytearray()
    for i in walk:
        buf[SYMBOL_BYTES * i : SYMBOL_BYTES * (i + 1)] = chunk
    return int.from_bytes(buf, "little")


def _walk(seed: int, stop: int) -> list[int]:
    # _next written out: this runs for every key added to or removed from a KeyIndex.
    out = []
    prng = seed
    i = 0
    sqrt = math.sqrt
    ceil = math.ceil
    while i < stop:
        out.append(i)
        prng = (prng * _MULT) & _M64
        i += ceil((i + 1.5) * (_TWO32 / sqrt(float(prng) + 1.0) - 1.0))
    return out


def encode(items: Iterable[bytes], first: int, count: int) -> bytes:
    """The wire form of coded symbols ``first`` to ``first + count - 1`` of the set ``items``."""
    return pack(symbols(items, first + count)[first:])


class Decoded:
    """The outcome of :func:`decode`: ``ids`` recovered, ``complete`` when symbol 0 emptied."""

    __slots__ = ("ids", "complete")

    def __init__(self, ids: list[bytes], complete: bool) -> None:
        self.ids = ids
        self.complete = complete


def decode(theirs: bytes, ours: bytes, *, max_ids: int) -> Decoded:
    """Peel the difference of two equally long runs of symbols starting at index 0.

    ``theirs`` and ``ours`` are symbols 0 to m - 1 of two sets (m = len / SYMBOL_BYTES).  The
    result holds every id recovered (from either side; the caller tells them apart by looking
    them up in its own set) and whether decoding completed: every symbol empty afterwards.
    At most ``max_ids`` ids are peeled; a run of symbols that would yield more is reported
    incomplete.  Symbols from a hostile peer can make decoding fail or yield ids of no set,
    never loop: an id is peeled at most once, at most ``max_ids`` of them, each a walk of about
    2 ln m symbols.  The caller checks a complete decode against the range's fingerprint.
    Raises ValueError for runs of different lengths (a caller's mistake).
    """
    if len(theirs) != len(ours) or len(theirs) % SYMBOL_BYTES:
        raise ValueError("sketches of different lengths")
    m = len(theirs) // SYMBOL_BYTES
    from_bytes = int.from_bytes
    sums = []
    checks = []
    for k in range(m):
        a = k * SYMBOL_BYTES
        b = a + ID_BYTES
        sums.append(from_bytes(theirs[a:b], "little") ^ from_bytes(ours[a:b], "little"))
        checks.append(from_bytes(theirs[b : a + SYMBOL_BYTES], "little")
                      ^ from_bytes(ours[b : a + SYMBOL_BYTES], "little"))
    found: list[bytes] = []
    seen: set[bytes] = set()
    queue = [k for k in range(m) if sums[k] or checks[k]]
    while queue:
        k = queue.pop()
        s = sums[k]
        if not s and not checks[k]:
            continue
        item = s.to_bytes(ID_BYTES, "little")
        seed, chk = _hash(item)
        if chk != checks[k] or item in seen:
            continue  # not pure (yet), or a hostile repeat
        if len(found) >= max_ids:
            return Decoded(found, False)
        # A pure symbol: its id is in the difference.  Take it out of every symbol it is in.
        seen.add(item)
        found.append(item)
        prng = seed
        i = 0
        hit_k = False
        while i < m:
            sums[i] ^= s
            checks[i] ^= chk
            if i == k:
                hit_k = True
            elif sums[i] or checks[i]:
                queue.append(i)
            prng, i = _next(prng, i)
        if not hit_k:
            # The id does not map to the symbol it was found in: the symbols are not an honest
            # sketch.  Stop rather than go on from a state no honest peer produces.
            return Decoded(found, False)
    complete = not any(sums) and not any(checks)
    return Decoded(found, complete)


_LOG_MISS = [0.0] + [math.log1p(-2.0 / (i + 2)) for i in range(1, 4096)]


def estimate(theirs: bytes, ours: bytes) -> int | None:
    """A maximum-likelihood estimate of the size of the difference behind two equally long runs
    of symbols from index 0, from which of the combined symbols are empty (symbol i holds a
    given id with probability 2 / (i + 2)); None when every symbol is non-empty, which says
    only that the difference is large for this many symbols.  Policy only: it sizes the next
    request, never decides an outcome.
    """
    m = len(theirs) // SYMBOL_BYTES
    empty = [theirs[k * SYMBOL_BYTES : (k + 1) * SYMBOL_BYTES] == ours[k * SYMBOL_BYTES : (k + 1) * SYMBOL_BYTES]
             for k in range(min(m, len(_LOG_MISS)))]
    if not any(empty[1:]):
        return None
    logs = _LOG_MISS[1 : len(empty)]
    flags = empty[1:]

    def likelihood(d: int) -> float:
        total = 0.0
        for lg, e in zip(logs, flags, strict=True):
            total += d * lg if e else math.log(max(-math.expm1(d * lg), 1e-300))
        return total

    # The likelihood is unimodal in d: a ternary search over the integers.
    lo, hi = 1, 64 * m
    while hi - lo > 2:
        a = lo + (hi - lo) // 3
        b = hi - (hi - lo) // 3
        if likelihood(a) < likelihood(b):
            lo = a + 1
        else:
            hi = b
    return max(range(lo, hi + 1), key=likelihood)

"""Range-based set reconciliation, negentropy-shaped (docs/protocol.md, "Reconciliation").
Longer than 600 lines because the message codec, the responder and the initiator are one
protocol whose rules (docs/protocol.md sections 3 to 8) must be read side by side.

Two nodes find the posts one has and the other lacks by exchanging fingerprints of key ranges,
splitting the ranges that differ and listing ids once a range is small; where both sides know
them (negotiated in band, §5.1), a differing range is answered with a rateless sketch of its ids
(protocol/sketch.py) from which the Initiator decodes the whole difference.  The cost grows with
the difference, not with the size of the stores.

* :class:`Initiator` is the side that asks (it keeps state between rounds):
  ``initiate() -> bytes``, then ``reconcile(reply) -> bytes | None`` until None; it gathers
  ``have`` (ids it has and the peer lacks) and ``need`` (ids the peer has and it lacks).
* :func:`respond` is the side that answers: stateless, a pure function of its index and the
  message, so every round can be an independent HTTP request.

Section numbers in comments (§n) refer to the subsections of docs/protocol.md, "Reconciliation".
Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import limits, sketch, wire
from .errors import FieldError, LocalProtocolError, ReconcileError, TooLargeError
from .keyindex import FINGERPRINT_BYTES, ID_BYTES, MAX_KEY_BYTES, KeyIndex, fingerprint_of

__all__ = [
    "PROTOCOL_VERSION",
    "MODE_SKIP",
    "MODE_FINGERPRINT",
    "MODE_IDLIST",
    "MODE_SKETCH_REQUEST",
    "MODE_SKETCH",
    "SKETCH_MARKER",
    "FIRST_SKETCH_SYMBOLS",
    "SPLIT_PARTS",
    "NARROW_PARTS",
    "TAIL_PARTS",
    "IDLIST_THRESHOLD",
    "INITIATOR_IDLIST_THRESHOLD",
    "DENSE_IDLIST_THRESHOLD",
    "MAX_ROUNDS",
    "Range",
    "decode_message",
    "encode_message",
    "respond",
    "Initiator",
]

PROTOCOL_VERSION = 1
MODE_SKIP = 0
MODE_FINGERPRINT = 1
MODE_IDLIST = 2
MODE_SKETCH_REQUEST = 3
MODE_SKETCH = 4
#: §5.1: the Fingerprint an Initiator that reads Sketches puts on the key-free range
#: [b"", b"\x01") of its first message.  No key lies there, so a first-release responder
#: answers it with an empty IdList (rule 1) and a responder that knows sketches with Skip.
SKETCH_MARKER = b"dazibao sketch 1"
_MARKER_BOUND = b"\x01"

# Policy (§6.3): local choices that change how many rounds and bytes a conversation takes,
# never its outcome; none of them is part of the wire.
#: A differing range is split into about the fourth root of its own keys, rounded up to a power
#: of two, but into at least NARROW_PARTS and at most SPLIT_PARTS sub-ranges: 4 up to 256 keys,
#: 8 up to 4 096, 16 above.
SPLIT_PARTS = 16
NARROW_PARTS = 4
#: Of a full split's parts, how many cut the newest share of the range geometrically.
TAIL_PARTS = 7
#: The responder answers a differing Fingerprint with an IdList when it has at most this many
#: keys there: its list settles the range.
IDLIST_THRESHOLD = 8
#: The Initiator does so with at most this many: its list is answered with the peer's own list,
#: so listing costs it twice, and splitting until the peer can list is cheaper.
INITIATOR_IDLIST_THRESHOLD = 2
#: Where differences are dense (at least three quarters of the Fingerprints of one split differ,
#: and they hold few keys), the responder lists up to this many keys, and either side splits
#: wide into parts the responder will list.
DENSE_IDLIST_THRESHOLD = 48
#: Replies an Initiator accepts before it gives up on a conversation (§8).
MAX_ROUNDS = 64
#: Symbols of the first Sketch of a range (§6.3): one difference decodes from symbol 0 alone,
#: and a few tens are found in a round or two more.
FIRST_SKETCH_SYMBOLS = 24

# One range is [upper_bound, mode, payload] (§3).
Range = tuple["bytes | None", int, Any]

_MSG_HEADER = 7  # fixarray(2) + version + the largest array header of the range list
_ID_COST = 2 + ID_BYTES  # bin8 header + id
_SKIP_NIL = 4  # [nil, 0, nil]
_NO_SKIP = object()
_DENSE_NUM, _DENSE_DEN = 3, 4  # the share of differing Fingerprints that makes a run dense (§6.3)
_DENSE_MEAN_KEYS = 64  # and the most own keys its Fingerprints may hold on average
_TOP_FULL_SPLIT_KEYS = 256  # a range holding the newest key of a board with more keys is split fully
_CUT_SLACK = 4  # how far a cut may move to find a shorter bound (§6.3)


# --- sizes (§7): exact msgpack lengths, so a message can be filled without encoding it twice --


def _bin_cost(n: int) -> int:
    return n + (2 if n < 0x100 else 3 if n < 0x10000 else 5)


def _array_header(n: int) -> int:
    return 1 if n < 16 else 3 if n < 0x10000 else 5


def _bound_cost(bound: bytes | None) -> int:
    return 1 if bound is None else _bin_cost(len(bound))


def _range_cost(bound: bytes | None, mode: int, n_ids: int = 0) -> int:
    # fixarray(3) + bound + mode (a positive fixint) + payload.
    if mode == MODE_SKIP:
        payload = 1
    elif mode == MODE_FINGERPRINT:
        payload = 2 + FINGERPRINT_BYTES
    else:
        payload = _array_header(n_ids) + n_ids * _ID_COST
    return 2 + _bound_cost(bound) + payload


def _int_cost(v: int) -> int:
    return 1 if v < 0x80 else 2 if v < 0x100 else 3 if v < 0x10000 else 5


def _cost(bound: bytes | None, mode: int, payload: Any) -> int:
    """The exact encoded size of one range of any mode."""
    if mode == MODE_IDLIST:
        return _range_cost(bound, mode, len(payload))
    if mode == MODE_SKETCH_REQUEST or mode == MODE_SKETCH:
        _, first, last = payload
        tail = _int_cost(last) if mode == MODE_SKETCH_REQUEST else _bin_cost(len(last))
        return 2 + _bound_cost(bound) + 1 + 2 + FINGERPRINT_BYTES + _int_cost(first) + tail
    return _range_cost(bound, mode)


def _lt(a: bytes, b: bytes | None) -> bool:
    """a < b where None is the end of the key space."""
    return b is None or a < b


def _le(a: bytes | None, b: bytes | None) -> bool:
    """a <= b where None is the end of the key space."""
    return b is None or (a is not None and a <= b)


# --- parameters ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Params:
    max_msg_bytes: int
    max_ranges: int
    max_idlist_ids: int
    max_bound_bytes: int
    split_parts: int
    narrow_parts: int
    tail_parts: int
    idlist_threshold: int
    dense_threshold: int
    open_top: bool

    @classmethod
    def make(
        cls,
        *,
        max_msg_bytes: int,
        max_ranges: int,
        max_idlist_ids: int,
        max_bound_bytes: int,
        split_parts: int,
        narrow_parts: int,
        tail_parts: int,
        idlist_threshold: int,
        open_top: bool,
    ) -> _Params:
        for name, value in locals().items():
            if name not in ("cls", "open_top") and type(value) is not int:
                raise LocalProtocolError(f"{name} must be an integer")
        if type(open_top) is not bool:
            raise LocalProtocolError("open_top must be True or False")
        if max_bound_bytes < MAX_KEY_BYTES:
            # §4: a bound may need every byte of a key to separate it from its predecessor.
            raise LocalProtocolError(f"max_bound_bytes must be at least {MAX_KEY_BYTES}, the longest key")
        fp_max = _range_cost(b"\0" * max_bound_bytes, MODE_FINGERPRINT)
        # §7.3: a message must hold a leading Skip, a two-way split, a remainder and a trailing
        # Skip with room to spare, or a conversation could stall.
        if max_msg_bytes < 8 * fp_max:
            raise LocalProtocolError(f"max_msg_bytes must be at least {8 * fp_max} with these bounds")
        if max_ranges < 8:
            raise LocalProtocolError("max_ranges must be at least 8")
        if max_idlist_ids < 1 or idlist_threshold < 1:
            raise LocalProtocolError("max_idlist_ids and idlist_threshold must be at least 1")
        if split_parts < 2 or narrow_parts < 2 or not 1 <= tail_parts < split_parts:
            raise LocalProtocolError("split_parts and narrow_parts must be at least 2, tail_parts in [1, split_parts)")
        # The IdList an Initiator sends must fit into a message next to a Skip (§7.3) and into
        # the peer's max_idlist_ids.
        room = max_msg_bytes - _MSG_HEADER - 2 * fp_max - _SKIP_NIL
        threshold = max(1, min(idlist_threshold, max_idlist_ids, room // _ID_COST))
        dense = max(1, min(max(idlist_threshold, DENSE_IDLIST_THRESHOLD), max_idlist_ids, room // _ID_COST))
        return cls(max_msg_bytes, max_ranges, max_idlist_ids, max_bound_bytes, split_parts, narrow_parts,
                   tail_parts, threshold, dense, open_top)


# --- message encoding (§3, §4) ----------------------------------------------------------------


def decode_message(
    data: bytes,
    *,
    max_msg_bytes: int = limits.MAX_RECONCILE_MSG_BYTES,
    max_ranges: int = limits.MAX_RECONCILE_RANGES,
    max_idlist_ids: int = limits.MAX_IDLIST_IDS,
    max_bound_bytes: int = limits.MAX_BOUND_BYTES,
    max_sketch_symbols: int = limits.MAX_SKETCH_SYMBOLS,
) -> list[Range]:
    """Decode and check one reconciliation message into ``[(upper_bound, mode, payload), ...]``.

    Raises TooLargeError (message, range count, IdList, bound or sketch over its limit),
    MalformedError or NonCanonicalError (not the canonical msgpack of one value), VersionError
    (a version other than 1), FieldError (any other breach of §3) -- all RemoteProtocolError.
    """
    # §3: the version is checked before the rest of the shape (and before floats and
    # canonical form), so that a future version with a different shape is reported as such.
    value = wire.unpack_message(data, max_bytes=max_msg_bytes, version=PROTOCOL_VERSION,
                                what="reconciliation message")
    wire.expect_list(value, 2, "reconciliation message")
    raw_ranges = wire.expect_list(value[1], None, "reconciliation ranges")
    if len(raw_ranges) > max_ranges:
        raise TooLargeError(f"{len(raw_ranges)} ranges, the limit is {max_ranges}")
    if not raw_ranges:
        raise FieldError("reconciliation message: no ranges")
    out: list[Range] = []
    prev = b""
    last = len(raw_ranges) - 1
    # The checks of wire.expect_* written out (they raise the same errors): a message may hold
    # thousands of ranges, and this loop is a good part of a round's CPU.
    for n, item in enumerate(raw_ranges):
        if type(item) is not list or len(item) != 3:
            wire.expect_list(item, 3, "range")
        bound, mode, payload = item
        # §4: bounds strictly increase from the empty bound; only the last one is nil.
        if bound is None:
            if n != last:
                raise FieldError("range: only the last range may end at nil")
        else:
            if type(bound) is not bytes or len(bound) > max_bound_bytes:
                wire.expect_bytes(bound, "range bound", max_len=max_bound_bytes)
            if n == last:
                raise FieldError("range: the last range must end at nil")
            if not prev < bound:
                raise FieldError("range: bounds must strictly increase")
            prev = bound
        if type(mode) is not int:
            raise FieldError("range: the mode must be an integer")
        # §5: the payload of each mode.
        if mode == MODE_SKIP:
            if payload is not None:
                raise FieldError("range: a Skip range has a nil payload")
        elif mode == MODE_FINGERPRINT:
            if type(payload) is not bytes or len(payload) != FINGERPRINT_BYTES:
                wire.expect_bytes(payload, "fingerprint", length=FINGERPRINT_BYTES)
        elif mode == MODE_IDLIST:
            ids = wire.expect_list(payload, None, "id list")
            if len(ids) > max_idlist_ids:
                raise TooLargeError(f"id list of {len(ids)} ids, the limit is {max_idlist_ids}")
            for i in ids:
                if type(i) is not bytes or len(i) != ID_BYTES:
                    wire.expect_bytes(i, "id", length=ID_BYTES)
        elif mode == MODE_SKETCH_REQUEST or mode == MODE_SKETCH:
            _check_sketch(mode, payload, max_sketch_symbols)
        else:
            raise FieldError(f"range: unknown mode {mode}")
        out.append((bound, mode, payload))
    return out


def _check_sketch(mode: int, payload: Any, max_symbols: int) -> None:
    """§5.1: ``[fingerprint, first, count]`` (SketchRequest) or ``[fingerprint, first, symbols]``
    (Sketch).  Raises FieldError for a wrong shape, TooLargeError past ``max_symbols``."""
    wire.expect_list(payload, 3, "sketch")
    fp, first, last = payload
    if type(fp) is not bytes or len(fp) != FINGERPRINT_BYTES:
        wire.expect_bytes(fp, "fingerprint", length=FINGERPRINT_BYTES)
    if type(first) is not int or first < 0:
        raise FieldError("sketch: the first symbol index must be a non-negative integer")
    if mode == MODE_SKETCH_REQUEST:
        if type(last) is not int or last < 1:
            raise FieldError("sketch request: the symbol count must be a positive integer")
        count = last
    else:
        if type(last) is not bytes or not last or len(last) % sketch.SYMBOL_BYTES:
            raise FieldError(f"sketch: symbols must be a non-empty multiple of {sketch.SYMBOL_BYTES} bytes")
        count = len(last) // sketch.SYMBOL_BYTES
    if first + count > max_symbols:
        raise TooLargeError(f"sketch up to symbol {first + count}, the limit is {max_symbols}")


def encode_message(ranges: Sequence[Range]) -> bytes:
    """The canonical bytes of a message made of ``ranges`` (no checks; see :func:`decode_message`)."""
    return wire.pack([PROTOCOL_VERSION, [list(r) for r in ranges]])


class _Out:
    """A message being built: merges adjacent Skips (§6.1) and knows its exact size (§7)."""

    __slots__ = ("ranges", "size", "end")

    def __init__(self) -> None:
        self.ranges: list[list[Any]] = []
        self.size = _MSG_HEADER
        self.end: bytes | None = b""  # upper bound of the last range written

    def skip(self, bound: bytes | None) -> tuple[int, int]:
        """(bytes, ranges) that a Skip up to ``bound`` would add."""
        if bound == self.end:
            return 0, 0
        if self.ranges and self.ranges[-1][1] == MODE_SKIP:
            return _bound_cost(bound) - _bound_cost(self.ranges[-1][0]), 0
        return _range_cost(bound, MODE_SKIP), 1

    def cost(self, items: Sequence[Range]) -> tuple[int, int]:
        """(bytes, ranges) that adding ``items`` in order would add, with Skips merged."""
        size = ranges = 0
        end = self.end
        skip_bound: Any = self.ranges[-1][0] if self.ranges and self.ranges[-1][1] == MODE_SKIP else _NO_SKIP
        for bound, mode, payload in items:
            if mode == MODE_SKIP:
                if bound == end:
                    continue
                if skip_bound is not _NO_SKIP:
                    size += _bound_cost(bound) - _bound_cost(skip_bound)
                else:
                    size += _range_cost(bound, MODE_SKIP)
                    ranges += 1
                skip_bound = bound
            else:
                size += _cost(bound, mode, payload)
                ranges += 1
                skip_bound = _NO_SKIP
            end = bound
        return size, ranges

    def add(self, bound: bytes | None, mode: int, payload: Any) -> None:
        if mode == MODE_SKIP:
            if bound == self.end:
                return
            self.size += self.skip(bound)[0]
            if self.ranges and self.ranges[-1][1] == MODE_SKIP:
                self.ranges[-1][0] = bound
            else:
                self.ranges.append([bound, MODE_SKIP, None])
        else:
            self.size += _cost(bound, mode, payload)
            self.ranges.append([bound, mode, payload])
        self.end = bound

    def encode(self) -> bytes:
        return wire.pack([PROTOCOL_VERSION, self.ranges])


# --- splitting a range (§6.3) ---------------------------------------------------------------


def _common_prefix_len(a: bytes, b: bytes) -> int:
    m = min(len(a), len(b))
    x = int.from_bytes(a[:m], "big") ^ int.from_bytes(b[:m], "big")
    return m - (x.bit_length() + 7) // 8


def _separator(prev: bytes, key: bytes) -> bytes:
    """The shortest prefix of ``key`` that is greater than ``prev`` (which is below ``key``)."""
    return key[: _common_prefix_len(prev, key) + 1]


def _top_bound(key: bytes, hi: bytes | None) -> bytes | None:
    """The lowest bound above every key of ``key``'s board and millisecond (§6.3): ``board ||
    0x00 || created_at_ms + 1``, without trailing zero bytes (no key lies between the shorter
    bound and the full one).  None when that is not below ``hi`` or the time cannot grow.
    """
    t = int.from_bytes(key[-(ID_BYTES + 8) : -ID_BYTES], "big") + 1
    if t >> 64:
        return None
    bound = key[: -(ID_BYTES + 8)] + t.to_bytes(8, "big").rstrip(b"\x00")
    if hi is not None and bound >= hi:
        return None
    return bound


def _split_offsets(count: int, parts: int, tail_parts: int) -> list[int]:
    """Where to cut ``count`` keys into at most ``parts`` sub-ranges: offsets in (0, count).

    §6.3: equal shares of the keys, except that the last share is cut again into halves,
    quarters, ... (``tail_parts`` pieces) so the newest keys of a range land in small
    sub-ranges.  A node that was offline misses the newest posts of each board; this finds them
    in one split instead of several, while a difference anywhere else still lands in a
    sub-range of at most 1/(parts - tail_parts + 1) of the range.
    """
    parts = min(parts, count)
    if parts < 2:
        return []
    equal = parts - tail_parts + 1
    if equal < 2 or count < 4 * parts:
        cuts = [count * k // parts for k in range(1, parts)]
    else:
        cuts = [count * k // equal for k in range(1, equal)]
        start = count * (equal - 1) // equal
        tail = count - start
        cuts += [start + tail - (tail >> k) for k in range(1, tail_parts)]
    out = []
    prev = 0
    for c in cuts:
        if prev < c < count:
            out.append(c)
            prev = c
    return out


def _split(
    index: KeyIndex, start: int, stop: int, hi: bytes | None, parts: int, tail_parts: int
) -> list[Range]:
    """Cut own keys [start, stop) into sub-ranges, each a Fingerprint of own keys (§6.3).

    Bounds are the shortest prefixes separating a key from its predecessor (§4), so each
    sub-range holds exactly the keys between two cuts; the last sub-range ends at ``hi``.
    Each cut may move by up to an eighth of the distance to its neighbours (at most
    ``_CUT_SLACK`` keys) to where the separating prefix is shortest, which keeps bounds short.
    """
    offsets = _split_offsets(stop - start, parts, tail_parts)
    cuts = [start]
    bounds: list[bytes | None] = []
    for n, off in enumerate(offsets):
        pos = start + off
        left = pos - cuts[-1]
        right = (start + offsets[n + 1] if n + 1 < len(offsets) else stop) - pos
        slack = min(_CUT_SLACK, (left - 1) // 8, (right - 1) // 8)
        window = list(index.keys_at(pos - slack - 1, pos + slack + 1))
        best: bytes | None = None
        best_pos = pos
        for i in range(1, len(window)):
            cand = _separator(window[i - 1], window[i])
            here = pos - slack - 1 + i
            if (best is None or len(cand) < len(best)
                    or (len(cand) == len(best) and abs(here - pos) < abs(best_pos - pos))):
                best, best_pos = cand, here
        if best is not None:
            cuts.append(best_pos)
            bounds.append(best)
    cuts.append(stop)
    bounds.append(hi)
    # One more cut than bounds: fingerprints_at gives one fingerprint per bound.
    return [(b, MODE_FINGERPRINT, fp) for b, fp in zip(bounds, index.fingerprints_at(cuts), strict=True)]


def _open_top(newest: bytes, pieces: list[Range], hi: bytes | None) -> list[Range] | None:
    """``pieces`` of a range that holds the splitter's ``newest`` key of a board, with an empty
    IdList above that key (§6.3); None when no bound fits.

    A node that was offline lacks the newest posts of every board, and they lie above its own
    newest key: an empty IdList there settles them in the same round.  The last part keeps its
    fingerprint, since every own key of it lies below the new bound.  A range in the middle of
    a board gets no such part: a difference is no likelier above the splitter's last key in it
    than anywhere else.
    """
    top = _top_bound(newest, hi)
    if top is None or len(pieces) < 2 or top <= (pieces[-2][0] or b""):
        return None
    return [*pieces[:-1], (top, MODE_FINGERPRINT, pieces[-1][2]), (hi, MODE_IDLIST, [])]


def _split_cost(pieces: list[Range]) -> int:
    return sum(_cost(b, m, x) for b, m, x in pieces)


def _survey(index: KeyIndex, ranges: Sequence[Range]) -> list[tuple[int, int, bool, bool]]:
    """For each range of a message: (start, stop, same, dense).

    ``start``/``stop`` are the positions of own keys in it, ``same`` whether it is a
    Fingerprint equal to ours, and ``dense`` whether it lies in a run of ranges with work (no
    Skip between them, so most likely the parts of one split) of which at least two are
    Fingerprints, at least three quarters of those differ, and they are not too large: there,
    differences are dense, and listing beats splitting further.  Policy only (§6.3).

    Consecutive ranges share their bound, so each bound is located once, and the fingerprints
    of a run are computed together (one prefix sum per bound).
    """
    # Positions: the start of each range is the stop of the one before it.
    spans: list[tuple[int, int]] = []
    stop = 0
    for bound, _, _ in ranges:
        start = stop
        stop = max(start, index.index_of(bound))
        spans.append((start, stop))
    out = [(start, stop, False, False) for start, stop in spans]
    n = 0
    while n < len(ranges):
        if ranges[n][1] == MODE_SKIP:
            n += 1
            continue
        # A run of ranges with work: [n, end).
        end = n
        while end < len(ranges) and ranges[end][1] != MODE_SKIP:
            end += 1
        fps = differ = keys = 0
        k = n
        while k < end:
            if ranges[k][1] != MODE_FINGERPRINT:
                k += 1
                continue
            # Consecutive Fingerprints [k, j): one call, one prefix sum per bound.
            j = k
            while j < end and ranges[j][1] == MODE_FINGERPRINT:
                j += 1
            prints = index.fingerprints_at([spans[k][0]] + [spans[i][1] for i in range(k, j)])
            for i in range(k, j):
                same = prints[i - k] == ranges[i][2]
                out[i] = (*spans[i], same, False)
                fps += 1
                differ += not same
                keys += spans[i][1] - spans[i][0]
            k = j
        if fps >= 2 and differ * _DENSE_DEN >= fps * _DENSE_NUM and keys <= fps * _DENSE_MEAN_KEYS:
            for k in range(n, end):
                out[k] = (*out[k][:3], True)
        n = end
    return out


# --- the responder (§6.2) -----------------------------------------------------------------------


def respond(
    index: KeyIndex,
    msg: bytes,
    *,
    max_msg_bytes: int = limits.MAX_RECONCILE_MSG_BYTES,
    max_ranges: int = limits.MAX_RECONCILE_RANGES,
    max_idlist_ids: int = limits.MAX_IDLIST_IDS,
    max_bound_bytes: int = limits.MAX_BOUND_BYTES,
    split_parts: int = SPLIT_PARTS,
    narrow_parts: int = NARROW_PARTS,
    tail_parts: int = TAIL_PARTS,
    idlist_threshold: int = IDLIST_THRESHOLD,
    open_top: bool = True,
    sketches: bool = True,
    max_sketch_symbols: int = limits.MAX_SKETCH_SYMBOLS,
    max_sketch_work_keys: int = limits.MAX_SKETCH_WORK_KEYS,
) -> bytes:
    """Answer one reconciliation message from an Initiator; stateless between rounds.

    The keyword arguments after the limits are policy (§6.3): they change rounds and bytes,
    never the outcome; ``open_top=False`` gives splits without the empty IdList above the
    newest key.  ``sketches=False`` answers as a responder without sketches (§5.1) does: the
    marker with an empty IdList, a SketchRequest as an unknown mode.  Raises any error of
    :func:`decode_message` (all RemoteProtocolError) for a bad message, FieldError for a
    Sketch (only a responder sends one), and LocalProtocolError for limits too small to make
    progress with (§7.3).
    """
    p = _Params.make(
        max_msg_bytes=max_msg_bytes,
        max_ranges=max_ranges,
        max_idlist_ids=max_idlist_ids,
        max_bound_bytes=max_bound_bytes,
        split_parts=split_parts,
        narrow_parts=narrow_parts,
        tail_parts=tail_parts,
        idlist_threshold=idlist_threshold,
        open_top=open_top,
    )
    ranges = decode_message(
        msg,
        max_msg_bytes=p.max_msg_bytes,
        max_ranges=p.max_ranges,
        max_idlist_ids=p.max_idlist_ids,
        max_bound_bytes=p.max_bound_bytes,
        max_sketch_symbols=max_sketch_symbols,
    )
    # §5.1: the marker says the Initiator reads Sketches; it is answered with Skip.
    marker = sketches and ranges[0] == (_MARKER_BOUND, MODE_FINGERPRINT, SKETCH_MARKER)
    budget = [max_sketch_work_keys]  # keys whose symbols may still be computed afresh
    # The upper bound of the last range with work in it, for the remainder of §7.2.
    last_open: bytes | None = b""
    for bound, mode, _ in ranges:
        if mode != MODE_SKIP:
            last_open = bound
    remainder_cost = _range_cost(last_open, MODE_FINGERPRINT)
    out = _Out()
    survey = _survey(index, ranges)
    # None (the end of the key space) only after the last range, once nothing is left to do.
    lo: bytes | None = b""
    answered: bytes | None = b""  # the upper bound of the last range with work answered
    for n, ((bound, mode, payload), (start, stop, same, dense)) in enumerate(zip(ranges, survey, strict=True)):
        if mode == MODE_SKIP:
            lo = bound  # merged into the Skip written before the next range with work
            continue
        if mode == MODE_SKETCH or (mode == MODE_SKETCH_REQUEST and not sketches):
            raise FieldError(f"range: mode {mode} is not sent by an Initiator" if sketches else
                             f"range: unknown mode {mode}")
        if mode == MODE_SKETCH_REQUEST:
            same = index.fingerprint_at(start, stop) == payload[0]
        if same or (n == 0 and marker) or (mode == MODE_IDLIST and start == stop and not payload):
            # Agreement (§6.3): answered with a Skip, merged like a Skip of the message.
            lo = answered = bound
            continue
        # Room left for this range's answer, keeping back a Skip up to ``lo`` before it and a
        # remainder Fingerprint plus a trailing Skip after it (§7.2).
        skip_size, skip_count = out.skip(lo)
        room = p.max_msg_bytes - out.size - skip_size - remainder_cost - _SKIP_NIL
        room_ranges = p.max_ranges - len(out.ranges) - skip_count - 2
        answer: list[Range] | None = None
        if mode == MODE_SKETCH_REQUEST or (marker and mode == MODE_FINGERPRINT):
            answer = _sketch_answer(index, bound, mode, payload, start, stop, p, budget, max_sketch_work_keys, room)
        if answer is None:
            answer = _answer(index, hi=bound, mode=MODE_FINGERPRINT if mode == MODE_SKETCH_REQUEST else mode,
                             payload=payload, start=start, stop=stop, room=room, room_ranges=room_ranges, p=p,
                             same=same, dense=dense)
        elif not answer:
            answer = None  # out of sketch work for this message: the remainder (§7.2)
        if answer is not None:
            answer = [(lo, MODE_SKIP, None), *answer]
            size, count = out.cost(answer)
            if size > room + skip_size or count > room_ranges + skip_count:
                answer = None
        if answer is None:
            # §7.2: out of room.  Everything from the end of what was written up to the end of
            # the last range with work becomes one Fingerprint; the Initiator sends those
            # ranges again.  Agreeing ranges answered since are written as a Skip first if
            # that fits (each answer kept room for the remainder and a trailing Skip only).
            skip_size, skip_count = out.skip(answered)
            if (out.size + skip_size + remainder_cost + _SKIP_NIL <= p.max_msg_bytes
                    and len(out.ranges) + skip_count + 2 <= p.max_ranges):
                out.add(answered, MODE_SKIP, None)
            a = index.index_of(out.end)
            out.add(last_open, MODE_FINGERPRINT, index.fingerprint_at(a, max(a, index.index_of(last_open))))
            break
        for sub_bound, sub_mode, sub_payload in answer:
            out.add(sub_bound, sub_mode, sub_payload)
        lo = answered = bound
    out.add(None, MODE_SKIP, None)
    return out.encode()


def _sketch_answer(
    index: KeyIndex, hi: bytes | None, mode: int, payload: Any, start: int, stop: int,
    p: _Params, budget: list[int], max_work: int, room: int,
) -> list[Range] | None:
    """A responder's Sketch answering a SketchRequest, or a differing Fingerprint of a message
    with the marker (§6.3); None to answer as a Fingerprint instead (few keys: list them; too
    much work for any one message, or not one symbol fits: split), [] when this message's work
    is spent (§7.2).  A Sketch may hold fewer symbols than asked for, to fit ``room``."""
    count = stop - start
    if count <= p.idlist_threshold:
        return None
    own = index.fingerprint_at(start, stop)
    if mode == MODE_FINGERPRINT:
        # The open top (§6.3): when the range holds this side's newest key of a board and the
        # Initiator holds keys above it, the keys below are more likely the same than not.
        newest = index.key_at(stop - 1)
        top = _top_bound(newest, hi)
        if p.open_top and top is not None and index.index_of(newest[: -(ID_BYTES + 9)] + b"\x01") == stop:
            return [(top, MODE_FINGERPRINT, own), (hi, MODE_IDLIST, [])]
        first, n = 0, FIRST_SKETCH_SYMBOLS
    else:
        _, first, n = payload
    # Fewer symbols than asked when the message is nearly full (the bin header may grow by 2).
    n = min(n, (room - _cost(hi, MODE_SKETCH, [own, first, b""]) - 2) // sketch.SYMBOL_BYTES)
    if n < 1:
        return None
    work = index.sketch_work(start, stop, first + n)
    if work > max_work:
        return None
    if work > budget[0]:
        return []
    budget[0] -= work
    return [(hi, MODE_SKETCH, [own, first, index.sketch_at(start, stop, first, n)])]


def _answer(
    index: KeyIndex,
    *,
    hi: bytes | None,
    mode: int,
    payload: Any,
    start: int,
    stop: int,
    room: int,
    room_ranges: int,
    p: _Params,
    same: bool,
    dense: bool,
    initiator: bool = False,
) -> list[Range] | None:
    """The ranges answering one range with work in it, ending at ``hi`` (§6.3); None if none fits.

    ``start``/``stop`` are the positions of own keys in the range, ``same`` whether it is a
    Fingerprint equal to ours, ``dense`` what :func:`_survey` found.  The answer covers exactly
    the range.  ``room`` and ``room_ranges`` are what the answer may add to the message.
    """
    count = stop - start
    if mode == MODE_FINGERPRINT:
        if same:
            return [(hi, MODE_SKIP, None)]
        # The Initiator's list is answered with the peer's whole list: it lists only a few ids
        # even where differences are dense, and splits into parts the peer will list.
        list_limit = p.dense_threshold if dense and not initiator else p.idlist_threshold
    else:
        # An IdList reaching the responder is answered with its own list if that is not too
        # long, or with Skip if the lists agree; one reaching the Initiator is settled by the
        # caller (§6.4), never here.
        if count == len(payload) and set(index.ids_at(start, stop)) == set(payload):
            return [(hi, MODE_SKIP, None)]
        list_limit = p.max_idlist_ids
    if count <= list_limit and _range_cost(hi, MODE_IDLIST, count) <= room and room_ranges >= 1:
        return [(hi, MODE_IDLIST, index.ids_at(start, stop))]
    if count < 2:
        return None
    fp_max = _range_cost(b"\0" * p.max_bound_bytes, MODE_FINGERPRINT)
    # About the fourth root of the range's size, as a power of two (4 parts up to 256 keys, 8 up
    # to 4 096, 16 above; all of SPLIT_PARTS where differences are dense): wide splits of large
    # ranges keep the rounds few (a single difference among a million keys within four round
    # trips), narrow ones near the leaves cost fewer bytes per difference, since most of their
    # parts match.  And no more parts than it takes to bring each to three quarters of what the
    # peer lists at once (leaving room for moved cuts and for keys only the peer has): a finer
    # split would cost Fingerprints without saving a round.
    root = 1 << -(-(count - 1).bit_length() // 4)
    cap = p.split_parts if dense else min(p.split_parts, max(p.narrow_parts, root))
    # A range that holds the splitter's newest key of a board is where recent differences
    # are: split it fully, with the geometric tail, once it holds more than 256 keys.
    newest = index.key_at(stop - 1)
    top = index.index_of(newest[: -(ID_BYTES + 9)] + b"\x01") == stop
    if top and count > _TOP_FULL_SPLIT_KEYS:
        cap = p.split_parts
    peer_lists = DENSE_IDLIST_THRESHOLD if dense else IDLIST_THRESHOLD if initiator else INITIATOR_IDLIST_THRESHOLD
    parts = max(2, min(cap, -(-4 * count // (3 * peer_lists))))
    parts = min(parts, room_ranges, room // fp_max)
    # The newest share is cut finer only in a full split; smaller ones are the levels before
    # IdLists, where equal parts serve best.
    tail_parts = p.tail_parts if parts == p.split_parts else 1
    while parts >= 2:
        pieces = _split(index, start, stop, hi, parts, tail_parts)
        if len(pieces) >= 2 and _split_cost(pieces) <= room:
            if p.open_top and top:
                topped = _open_top(newest, pieces, hi)
                if topped is not None and _split_cost(topped) <= room and len(topped) <= room_ranges:
                    return topped
            return pieces
        parts //= 2
    return None


# --- the initiator (§6.4) ---------------------------------------------------------------------


class Initiator:
    """The asking side of one reconciliation: ``initiate()``, then ``reconcile()`` until None.

    ``boards`` are the boards both sides carry (the scope); nothing outside them is ever
    reported.  After the conversation, ``have`` holds the ids this side has and the peer
    lacks and ``need`` the ids the peer has and this side lacks (32-byte ids, no repeats).
    ``rounds`` counts replies processed; ``bytes_sent`` / ``bytes_received`` count message
    bytes.  The index may change between rounds; the result then reflects a mix of states.
    The keyword arguments after the limits are policy, as for :func:`respond` (the Initiator
    lists fewer ids by default: INITIATOR_IDLIST_THRESHOLD); ``open_top=False`` also gives the
    first message of the first release, one Fingerprint a board.  ``sketches=False`` gives
    the Initiator of the release before sketches (no marker, no SketchRequest, §5.1);
    ``max_sketch_symbols`` caps the symbols it asks for in one range (policy; a peer's Sketch
    is checked against the protocol's limit) and ``max_sketch_work_keys`` bounds, four times
    over, the keys whose symbols one reply may make it compute.

    Raises LocalProtocolError for an empty or invalid ``boards``, for limits too small to make
    progress with, and for calls out of order.
    """

    def __init__(
        self,
        index: KeyIndex,
        boards: Sequence[str],
        *,
        max_msg_bytes: int = limits.MAX_RECONCILE_MSG_BYTES,
        max_ranges: int = limits.MAX_RECONCILE_RANGES,
        max_idlist_ids: int = limits.MAX_IDLIST_IDS,
        max_bound_bytes: int = limits.MAX_BOUND_BYTES,
        split_parts: int = SPLIT_PARTS,
        narrow_parts: int = NARROW_PARTS,
        tail_parts: int = TAIL_PARTS,
        idlist_threshold: int = INITIATOR_IDLIST_THRESHOLD,
        open_top: bool = True,
        max_rounds: int = MAX_ROUNDS,
        sketches: bool = True,
        max_sketch_symbols: int = limits.MAX_SKETCH_SYMBOLS,
        max_sketch_work_keys: int = limits.MAX_SKETCH_WORK_KEYS,
    ) -> None:
        self._p = _Params.make(
            max_msg_bytes=max_msg_bytes,
            max_ranges=max_ranges,
            max_idlist_ids=max_idlist_ids,
            max_bound_bytes=max_bound_bytes,
            split_parts=split_parts,
            narrow_parts=narrow_parts,
            tail_parts=tail_parts,
            idlist_threshold=idlist_threshold,
            open_top=open_top,
        )
        if type(max_rounds) is not int or max_rounds < 1:
            raise LocalProtocolError("max_rounds must be a positive integer")
        if type(sketches) is not bool:
            raise LocalProtocolError("sketches must be True or False")
        if type(max_sketch_symbols) is not int or not 1 <= max_sketch_symbols <= limits.MAX_SKETCH_SYMBOLS:
            raise LocalProtocolError(f"max_sketch_symbols must be in [1, {limits.MAX_SKETCH_SYMBOLS}]")
        if type(max_sketch_work_keys) is not int or max_sketch_work_keys < 1:
            raise LocalProtocolError("max_sketch_work_keys must be a positive integer")
        if isinstance(boards, (str, bytes)) or not boards:
            raise LocalProtocolError("an Initiator needs at least one board")
        scope = set()
        for board in boards:
            if type(board) is not str or not board:
                raise LocalProtocolError("boards must be non-empty strings")
            raw = board.encode("utf-8", "surrogatepass")
            # §6.1: board ranges must not overlap; board names never hold 0x00 or 0x01.
            if b"\x00" in raw or b"\x01" in raw or len(raw) + 1 > self._p.max_bound_bytes:
                raise LocalProtocolError(f"board {board!r} cannot be reconciled")
            scope.add(raw)
        self._boards = sorted(scope)
        self._index = index
        self._max_rounds = max_rounds
        self.have: list[bytes] = []
        self.need: list[bytes] = []
        self._seen: set[bytes] = set()
        self.rounds = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        # Ranges [lo, hi) with work sent in the last message, with the mode they were sent in.
        self._open: list[tuple[bytes, bytes, int]] = []
        self._open_los: list[bytes] = []
        # Ranges with work that did not fit into a message yet (§7.1).
        self._pending: list[tuple[bytes, bytes, int]] = []
        self._state = "new"
        # §5.1: None until the first reply says whether the peer sends Sketches.
        self._sketches: bool | None = None if sketches else False
        self._max_symbols = max_sketch_symbols
        self._max_work = max_sketch_work_keys
        # The peer's symbols received so far for a range [lo, hi), and how many to ask next.
        self._sk: dict[tuple[bytes, bytes], bytes] = {}
        self._sk_next: dict[tuple[bytes, bytes], int] = {}
        # Ranges whose Sketch failed for good, with the symbols each part of their split should
        # start with: where a range held too many differences, its parts hold many too.
        self._hint: dict[tuple[bytes, bytes], int] = {}
        self._work = 0  # keys whose symbols this reply made us compute (a hostile peer's bound)

    @property
    def done(self) -> bool:
        """True once reconcile() has returned None."""
        return self._state == "done"

    def initiate(self) -> bytes:
        """The first message: one Fingerprint per board in scope, Skip elsewhere (§6.1).

        Raises LocalProtocolError if called twice.
        """
        if self._state != "new":
            raise LocalProtocolError("initiate() may be called once")
        self._pending = []
        if self._sketches is None:
            # The marker (§5.1): the peer's answer to it says whether it sends Sketches.
            self._pending.append((b"", _MARKER_BOUND, MODE_FINGERPRINT))
        index = self._index
        for board in self._boards:
            lo, hi = board + b"\x00", board + b"\x01"
            start, stop = index.index_of(lo), index.index_of(hi)
            if not self._p.open_top:
                self._pending.append((lo, hi, MODE_FINGERPRINT))
                continue
            top = _top_bound(index.key_at(stop - 1), hi) if stop > start else None
            if stop == start:
                # No keys of this board: "my ids here are none" (§6.1).
                self._pending.append((lo, hi, MODE_IDLIST))
            elif top is not None:
                # The board below and above this side's newest key: whatever the peer has above
                # it comes back listed in this very round (§6.1).
                self._pending += [(lo, top, MODE_FINGERPRINT), (top, hi, MODE_IDLIST)]
            else:
                self._pending.append((lo, hi, MODE_FINGERPRINT))
        msg = self._emit([])
        assert msg is not None  # every board is pending, and the first one always fits
        self._state = "waiting"
        return msg

    def reconcile(self, msg: bytes) -> bytes | None:
        """Process the peer's reply; the next message to send, or None when reconciliation is done.

        Accumulates ``have`` and ``need``.  Raises any error of :func:`decode_message`,
        ReconcileError for a reply that is not an answer to what was asked (work outside the
        ranges we sent, an IdList across them), TooLargeError when the conversation would
        exceed ``max_rounds`` round trips -- all RemoteProtocolError; after one, the
        conversation is over (``have``/``need`` keep what was settled until then).  Raises
        LocalProtocolError when called before initiate() or after the end.
        """
        if self._state != "waiting":
            raise LocalProtocolError("reconcile() needs a message sent by initiate() or reconcile()")
        self._state = "failed"  # until this reply has been processed completely
        self.bytes_received += len(msg)
        self.rounds += 1
        p = self._p
        ranges = decode_message(
            msg,
            max_msg_bytes=p.max_msg_bytes,
            max_ranges=p.max_ranges,
            max_idlist_ids=p.max_idlist_ids,
            max_bound_bytes=p.max_bound_bytes,
        )
        if self._sketches is None:
            # §5.1: a responder that knows sketches answers the marker with Skip; one of the
            # first release with an empty IdList.
            self._sketches = ranges[0][1] == MODE_SKIP
        self._work = 0
        items: list[tuple[bytes, bytes, int, Any]] = []
        lo = b""
        for (bound, mode, payload), (start, stop, same, dense) in zip(
            ranges, _survey(self._index, ranges), strict=True
        ):
            if mode != MODE_SKIP:
                self._take(lo, bound, mode, payload, items, start, stop, same, dense)
            if bound is None:
                break  # the last range (decode_message: only the last one ends at nil)
            lo = bound
        if not items and not self._pending:
            self._state = "done"
            return None
        if self.rounds >= self._max_rounds:
            raise TooLargeError(f"reconciliation not finished after {self.rounds} rounds")
        out = self._emit(items)
        assert out is not None
        self._state = "waiting"
        return out

    def _take(
        self, lo: bytes, hi: bytes | None, mode: int, payload: Any, items: list[tuple[bytes, bytes, int, Any]],
        start: int, stop: int, same: bool, dense: bool,
    ) -> None:
        """Handle one reply range with work in it (§6.4), appending what to send next to ``items``;
        ``start`` to ``dense`` are what :func:`_survey` found."""
        # Find the ranges we sent that overlap [lo, hi).
        k = bisect_right(self._open_los, lo) - 1
        if k < 0 or not lo < self._open[k][1]:
            k += 1
        overlap = []
        while k < len(self._open) and _lt(self._open[k][0], hi):
            overlap.append(self._open[k])
            k += 1
        if not overlap:
            raise ReconcileError("reconciliation reply has work in a range that was not asked about")
        olo, ohi, _ = overlap[0]
        inside = len(overlap) == 1 and olo <= lo and _le(hi, ohi)
        if mode == MODE_SKETCH_REQUEST or (mode == MODE_SKETCH and (not self._sketches or olo == b"")):
            # A SketchRequest is never an answer; a Sketch answers only a board's range, never
            # the marker (§5.1), and only a peer that answered the marker.
            raise ReconcileError(f"reconciliation reply has mode {mode}, which is not an answer")
        if mode == MODE_IDLIST or mode == MODE_SKETCH:
            if not inside:
                raise ReconcileError(
                    "reconciliation reply has an IdList or Sketch across ranges that were not asked about")
            assert hi is not None  # inside an open range, and open ranges end at a bound
            if mode == MODE_IDLIST:
                self._settle(start, stop, payload)
            else:
                self._take_sketch(lo, hi, payload, start, stop, items)
            return
        if inside and self._sketches and not same and stop - start > self._p.idlist_threshold:
            # §6.3: with a peer that sends Sketches, a differing range is sketched, not split.
            assert hi is not None
            self._sk.pop((lo, hi), None)
            self._sk_next[(lo, hi)] = self._hint.get((olo, ohi), FIRST_SKETCH_SYMBOLS)
            items.append((lo, hi, MODE_SKETCH_REQUEST, None))
            return
        if inside:
            # §6.3, as on the responder.  Room is not limited here: what does not fit into
            # the next message stays pending (§7.1).
            answer = _answer(self._index, hi=hi, mode=mode, payload=payload, start=start, stop=stop,
                             room=1 << 62, room_ranges=1 << 62, p=self._p, same=same, dense=dense, initiator=True)
            assert answer is not None and hi is not None
            sub_lo = lo
            for sub_hi, sub_mode, sub_payload in answer:
                # The answer ends at ``hi`` (not None here); its other bounds lie below it.
                assert sub_hi is not None
                if sub_mode != MODE_SKIP:
                    items.append((sub_lo, sub_hi, sub_mode, sub_payload))
                sub_lo = sub_hi
            return
        if same:
            return
        # §7.2: a remainder Fingerprint over several of our ranges (and the gaps between them)
        # that differs: send each of those ranges again, clipped to the reply range.
        for olo, ohi, omode in overlap:
            items.append((max(olo, lo), ohi if hi is None else min(ohi, hi), omode, None))

    def _take_sketch(
        self, lo: bytes, hi: bytes, payload: Any, start: int, stop: int, items: list[tuple[bytes, bytes, int, Any]]
    ) -> None:
        """§6.4: the peer's symbols of [lo, hi).  Settle the range when they decode and the result
        matches the peer's fingerprint; else ask for more symbols, or fall back to a Fingerprint
        (the peer splits) when decoding fails for good or would cost too much."""
        theirs_fp, first, cells = payload
        key = (lo, hi)
        acc = self._sk.pop(key, b"")
        self._sk_next.pop(key, None)
        if first != len(acc) // sketch.SYMBOL_BYTES:
            raise ReconcileError("reconciliation reply has a Sketch that does not continue the symbols received")
        acc += cells
        m = len(acc) // sketch.SYMBOL_BYTES
        index = self._index
        # What this costs us is bounded like the peer's work: a hostile reply of many large
        # Sketches is answered with Fingerprints instead of decoded.
        work = index.sketch_work(start, stop, m)
        if self._work + work > 4 * self._max_work:
            items.append((lo, hi, MODE_FINGERPRINT, None))
            return
        self._work += work
        ours = index.sketch_at(start, stop, 0, m)
        decoded = sketch.decode(acc, ours, max_ids=2 * m + 8)
        if decoded.complete:
            own = set(index.ids_at(start, stop))
            have = [i for i in decoded.ids if i in own]
            need = [i for i in decoded.ids if i not in own]
            total = index.sum_at(start, stop)
            total += sum(int.from_bytes(i, "little") for i in need) - sum(int.from_bytes(i, "little") for i in have)
            if fingerprint_of(total, stop - start - len(have) + len(need)) == theirs_fp:
                self._record(have, need)
                return
        elif m < self._max_symbols:
            # Policy (§6.3): about 1.5 symbols per difference decode, so ask for enough to reach
            # that for the estimated difference, at least half again as many as so far and at most
            # three times as many; symbols past the cached ones only for ranges cheap to scan.
            estimate = sketch.estimate(acc, ours)
            want = 3 * m if estimate is None else (3 * estimate + 1) // 2 + 1
            target = max(m + max(1, m // 2), min(3 * m, want))
            # Symbols past the cached ones cost the peer a scan of the range's keys, within its
            # work per message: splitting the range costs fewer rounds.
            cap = min(self._max_symbols, limits.SKETCH_CACHED_SYMBOLS)
            if target <= cap:
                self._sk[key] = acc
                self._sk_next[key] = target - m
                items.append((lo, hi, MODE_SKETCH_REQUEST, None))
                return
            # More differences than one Sketch of this range decodes: split it, and start each
            # part's Sketch at its share of them (unknown when every symbol was non-empty: then
            # at the most a Sketch may have, which decodes the part or shows it must split too).
            share = cap if estimate is None else want // SPLIT_PARTS
            self._hint[key] = max(FIRST_SKETCH_SYMBOLS, min(cap, share))
        # Decoding failed for good (or the peer's symbols do not match its fingerprint): the
        # range is split by fingerprints instead.
        items.append((lo, hi, MODE_FINGERPRINT, None))

    def _record(self, have: Sequence[bytes], need: Sequence[bytes]) -> None:
        seen = self._seen
        for i in have:
            if i not in seen:
                seen.add(i)
                self.have.append(i)
        for i in need:
            if i not in seen:
                seen.add(i)
                self.need.append(i)

    def _settle(self, start: int, stop: int, theirs: list[bytes]) -> None:
        """§6.4: the peer listed all its ids in a range; record have and need for it."""
        ours = self._index.ids_at(start, stop)
        their_set = set(theirs)
        our_set = set(ours)
        seen = self._seen
        for i in ours:
            if i not in their_set and i not in seen:
                seen.add(i)
                self.have.append(i)
        for i in theirs:
            if i not in our_set and i not in seen:
                seen.add(i)
                self.need.append(i)

    def _emit(self, items: list[tuple[bytes, bytes, int, Any]]) -> bytes | None:
        """Build the next message from new ``items`` and pending ranges; None if there is no work.

        §7.1: ranges that do not fit are sent as Skip and kept pending for a later message.
        """
        work = sorted(items + [(lo, hi, mode, None) for lo, hi, mode in self._pending], key=lambda w: w[0])
        if not work:
            return None
        p = self._p
        index = self._index
        out = _Out()
        sent: list[tuple[bytes, bytes, int]] = []
        pending: list[tuple[bytes, bytes, int]] = []
        for lo, hi, mode, payload in work:
            if payload is None:
                start = index.index_of(lo)
                stop = max(start, index.index_of(hi))
                if lo == b"":
                    # The only range that starts at b"" (§5.1), sent again after a remainder.
                    mode, payload = MODE_FINGERPRINT, SKETCH_MARKER
                elif mode == MODE_SKETCH_REQUEST:
                    got = len(self._sk.get((lo, hi), b"")) // sketch.SYMBOL_BYTES
                    want = self._sk_next.get((lo, hi), FIRST_SKETCH_SYMBOLS)
                    payload = [index.fingerprint_at(start, stop), got, want]
                elif mode == MODE_IDLIST and stop - start <= p.idlist_threshold:
                    payload = index.ids_at(start, stop)
                else:
                    mode = MODE_FINGERPRINT
                    payload = index.fingerprint_at(start, stop)
            skip_size, skip_count = out.skip(lo)
            size = out.size + skip_size + _cost(hi, mode, payload) + _SKIP_NIL
            count = len(out.ranges) + skip_count + 2
            if size <= p.max_msg_bytes and count <= p.max_ranges:
                out.add(lo, MODE_SKIP, None)
                out.add(hi, mode, payload)
                sent.append((lo, hi, mode))
            else:
                pending.append((lo, hi, mode))
        out.add(None, MODE_SKIP, None)
        self._open = sent
        self._open_los = [s[0] for s in sent]
        self._pending = pending
        data = out.encode()
        self.bytes_sent += len(data)
        return data

"""Bundles: signed posts carried as a file (docs/bundles.md).
Longer than 600 lines because the encoder and the self-synchronising decoder are one format,
byte for byte, and its damage recovery reads best beside the layout it recovers.

A bundle is how posts cross a blocked network on a USB stick, by e-mail or through any channel
that moves files.  Posts are self-authenticating, so a bundle needs no trust: the reader checks
every post it finds exactly as it would one from a peer.  What the format adds is damage
detection and recovery, so that a cut or scratched file still yields every post that survived:

* a 9-byte **preamble**: the signature ``89 44 5a 42 0d 0a 1a 0a`` and the format version;
* **frames**, each ``marker, type, length, payload, CRC-32``: one **header** frame, one
  **record** frame per post (the payload is the post's canonical bytes), one **trailer** frame;
* the trailer repeats the bundle id and part number and holds the post count and the SHA-256 of
  every byte before it, so truncation and alteration are detected even when each frame is intact.

A reader that meets a damaged frame reports it (:class:`Damaged`) and scans forward for the
next frame marker whose frame checks out, so one bad record costs only that record.

A large bundle may be **split** into numbered parts for size-limited channels.  Every part is a
complete bundle of its own (preamble, header, records, trailer) carrying the bundle id, its part
number and the number of parts, so parts can be read alone and in any order;
:class:`PartTracker` says which parts of a bundle are missing.

This module is sans-IO, in the manner of h11: the encoder turns posts into bytes
(:class:`BundleEncoder`), the decoder turns bytes into events (:class:`BundleDecoder`:
``receive_data(bytes)``, ``next_event()``).  It never opens a file, reads the clock or draws
randomness: the creation time and the bundle id are arguments.
"""

from __future__ import annotations

import collections
import enum
import hashlib
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import limits, posts, wire
from .errors import (
    BundleDamagedError,
    BundleFormatError,
    BundleMismatchError,
    BundlePartsError,
    BundleTruncatedError,
    FieldError,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "PREAMBLE",
    "FRAME_MARKER",
    "FRAME_HEADER",
    "FRAME_POST",
    "FRAME_TRAILER",
    "FRAME_OVERHEAD",
    "BUNDLE_ID_BYTES",
    "MAX_TRAILER_BYTES",
    "MAX_POST_COUNT",
    "NEED_DATA",
    "Header",
    "PostRecord",
    "Damaged",
    "Trailer",
    "End",
    "BundleEncoder",
    "BundleDecoder",
    "PartTracker",
    "encode_bundle",
    "decode_bundle",
    "plan_parts",
    "part_overhead",
    "min_split_bytes",
    "crc32",
]

FORMAT_VERSION = 1
#: The file signature, as PNG's: 0x89 catches 7-bit channels, CR LF and LF catch newline
#: conversion in either direction, 0x1A stops a DOS ``type``.
MAGIC = b"\x89DZB\r\n\x1a\n"
PREAMBLE = MAGIC + bytes([FORMAT_VERSION])
#: Starts every frame.  0xFF never occurs in UTF-8, so no post body can hold a marker.
FRAME_MARKER = b"\xffDZ\xff"
FRAME_HEADER = 0x48  # "H"
FRAME_POST = 0x50  # "P"
FRAME_TRAILER = 0x54  # "T"
#: marker (4) + type (1) + length (4) before the payload, CRC-32 (4) after it.
FRAME_OVERHEAD = 13
_HEAD_BYTES = 9
BUNDLE_ID_BYTES = 16
DIGEST_BYTES = 32
#: The largest trailer payload a reader accepts (a real one is at most 72 bytes).
MAX_TRAILER_BYTES = 128
#: The largest post count a header or trailer may state (an unsigned 32-bit integer).
MAX_POST_COUNT = 2**32 - 1
_MAX_TIME_MS = 10**13 - 1

_FRAME_LIMITS = {
    FRAME_HEADER: limits.MAX_BUNDLE_HEADER_BYTES,
    FRAME_POST: limits.MAX_POST_BYTES,
    FRAME_TRAILER: MAX_TRAILER_BYTES,
}
_FRAME_NAMES = {FRAME_HEADER: "header", FRAME_POST: "record", FRAME_TRAILER: "trailer"}


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`BundleDecoder.next_event` when it cannot go on without more bytes.
NEED_DATA = _NeedData()


def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32 as in zlib, gzip and PNG (reflected 0x04C11DB7, init and final XOR 0xFFFFFFFF)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def _utf8_key(board: str) -> bytes:
    return board.encode("utf-8")


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The header of one bundle (or of one part of a split bundle), at byte ``offset``.

    ``boards`` are the boards the writer selected, sorted by their UTF-8 bytes; empty when it
    did not select (it exported every board it had).  ``post_count`` is how many records the
    writer put in this part.
    """

    offset: int
    bundle_id: bytes
    part: int
    parts: int
    created_at_ms: int
    boards: tuple[str, ...]
    post_count: int


@dataclass(frozen=True, slots=True)
class PostRecord:
    """One record: ``raw`` is the post's bytes, not yet checked (use posts.check_post).

    ``checksum_ok`` is False when the frame's CRC did not match but its payload still decodes
    as a post: the damage may have hit the CRC itself, and the post's signature decides.
    """

    offset: int
    raw: bytes
    checksum_ok: bool = True


@dataclass(frozen=True, slots=True)
class Damaged:
    """Something at byte ``offset`` is wrong; ``code`` is a stable error code, ``reason`` says what.

    The decoder goes on after it: every frame that checks out later is still delivered.
    """

    offset: int
    code: str
    reason: str

    def __str__(self) -> str:
        return f"at byte {self.offset}: {self.code}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Trailer:
    """The trailer: what the writer says it wrote (checked against what was read)."""

    offset: int
    bundle_id: bytes
    part: int
    parts: int
    post_count: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The last event.  ``records``: records delivered; ``expected``: what the trailer (or, if
    it was lost, the header) says was written; ``complete``: nothing was damaged or missing."""

    records: int
    expected: int | None
    complete: bool
    header: Header | None
    trailer: Trailer | None


Event = Header | PostRecord | Damaged | Trailer | End


# --- header and trailer payloads ------------------------------------------------------------


def _normalize_boards(boards: Iterable[str]) -> tuple[str, ...]:
    chosen = set()
    for board in boards:
        try:
            chosen.add(posts.check_board(board))
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"bundle board {board!r}: {exc.message}") from None
    if len(chosen) > limits.MAX_BUNDLE_BOARDS:
        raise LocalProtocolError(f"a bundle names at most {limits.MAX_BUNDLE_BOARDS} boards")
    return tuple(sorted(chosen, key=_utf8_key))


def _header_payload(bundle_id: bytes, part: int, parts: int, created_at_ms: int,
                    boards: Sequence[str], post_count: int) -> bytes:
    return wire.pack([FORMAT_VERSION, bundle_id, part, parts, created_at_ms, list(boards), post_count])


def _trailer_payload(bundle_id: bytes, part: int, parts: int, post_count: int, digest: bytes) -> bytes:
    return wire.pack([FORMAT_VERSION, bundle_id, part, parts, post_count, digest])


def _check_version(value: object, what: str) -> list[Any]:
    items = wire.expect_list(value, None, what)
    if not items or type(items[0]) is not int:
        raise FieldError(f"{what}: the first item must be the format version")
    if items[0] != FORMAT_VERSION:
        raise BundleFormatError(f"{what} says format version {items[0]}; this reads version {FORMAT_VERSION}")
    return items


def _check_parts(part: object, parts: object, what: str) -> tuple[int, int]:
    parts = wire.expect_int(parts, f"{what} part total", lo=1, hi=limits.MAX_BUNDLE_PARTS)
    part = wire.expect_int(part, f"{what} part number", lo=1, hi=parts)
    return part, parts


def _decode_header(payload: bytes, offset: int) -> Header:
    value = wire.unpack_canonical(payload, max_bytes=limits.MAX_BUNDLE_HEADER_BYTES, what="bundle header")
    items = _check_version(value, "bundle header")
    wire.expect_list(items, 7, "bundle header")
    _, bundle_id, part, parts, created_at_ms, boards, post_count = items
    wire.expect_bytes(bundle_id, "bundle id", length=BUNDLE_ID_BYTES)
    part, parts = _check_parts(part, parts, "bundle header")
    wire.expect_int(created_at_ms, "bundle created_at", hi=_MAX_TIME_MS)
    wire.expect_list(boards, None, "bundle boards")
    if len(boards) > limits.MAX_BUNDLE_BOARDS:
        raise FieldError(f"bundle header names {len(boards)} boards, the limit is {limits.MAX_BUNDLE_BOARDS}")
    for board in boards:
        posts.check_board(board)
    if boards != sorted(set(boards), key=_utf8_key):
        raise FieldError("bundle boards must be sorted by their UTF-8 bytes, without repeats")
    wire.expect_int(post_count, "bundle post count", hi=MAX_POST_COUNT)
    return Header(offset, bundle_id, part, parts, created_at_ms, tuple(boards), post_count)


def _decode_trailer(payload: bytes, offset: int) -> Trailer:
    value = wire.unpack_canonical(payload, max_bytes=MAX_TRAILER_BYTES, what="bundle trailer")
    items = _check_version(value, "bundle trailer")
    wire.expect_list(items, 6, "bundle trailer")
    _, bundle_id, part, parts, post_count, digest = items
    wire.expect_bytes(bundle_id, "bundle id", length=BUNDLE_ID_BYTES)
    part, parts = _check_parts(part, parts, "bundle trailer")
    wire.expect_int(post_count, "bundle post count", hi=MAX_POST_COUNT)
    wire.expect_bytes(digest, "bundle digest", length=DIGEST_BYTES)
    return Trailer(offset, bundle_id, part, parts, post_count, digest)


def _frame(kind: int, payload: bytes) -> bytes:
    head = bytes([kind]) + len(payload).to_bytes(4, "big")
    return FRAME_MARKER + head + payload + crc32(head + payload).to_bytes(4, "big")


# --- sizes and splitting --------------------------------------------------------------------


def _max_header_payload(boards: Sequence[str]) -> int:
    # msgpack integers only grow with their value, so the largest values give an upper bound.
    return len(_header_payload(bytes(BUNDLE_ID_BYTES), limits.MAX_BUNDLE_PARTS, limits.MAX_BUNDLE_PARTS,
                               _MAX_TIME_MS, boards, MAX_POST_COUNT))


def _max_trailer_payload() -> int:
    return len(_trailer_payload(bytes(BUNDLE_ID_BYTES), limits.MAX_BUNDLE_PARTS, limits.MAX_BUNDLE_PARTS,
                                MAX_POST_COUNT, bytes(DIGEST_BYTES)))


def part_overhead(boards: Sequence[str]) -> int:
    """The most bytes of a part that are not records: preamble, header frame, trailer frame."""
    boards = _normalize_boards(boards)
    return len(PREAMBLE) + 2 * FRAME_OVERHEAD + _max_header_payload(boards) + _max_trailer_payload()


def min_split_bytes(boards: Sequence[str]) -> int:
    """The smallest part size that can hold any post: the overhead plus one largest record."""
    return part_overhead(boards) + FRAME_OVERHEAD + limits.MAX_POST_BYTES


def plan_parts(sizes: Iterable[int], split_bytes: int | None, boards: Sequence[str]) -> list[int]:
    """How many records go in each part, for posts of the given byte sizes in writing order.

    Each part holds as many records as fit in ``split_bytes`` (every part, header and trailer
    included, is at most that long); ``None`` means one part.  There is always at least one
    part, possibly empty.  Raises LocalProtocolError if ``split_bytes`` is below
    :func:`min_split_bytes`, if a size is over ``max_post_bytes``, or if more than
    ``max_bundle_parts`` parts would be needed.
    """
    if split_bytes is not None and split_bytes < min_split_bytes(boards):
        raise LocalProtocolError(f"parts must be at least {min_split_bytes(boards)} bytes")
    budget = None if split_bytes is None else split_bytes - part_overhead(boards)
    counts = [0]
    used = 0
    for size in sizes:
        if not 0 < size <= limits.MAX_POST_BYTES:
            raise LocalProtocolError(f"a post of {size} bytes cannot be put in a bundle")
        need = FRAME_OVERHEAD + size
        if budget is not None and used + need > budget and counts[-1]:
            counts.append(0)
            used = 0
            if len(counts) > limits.MAX_BUNDLE_PARTS:
                raise LocalProtocolError(f"more than {limits.MAX_BUNDLE_PARTS} parts would be needed")
        counts[-1] += 1
        used += need
    return counts


# --- encoder --------------------------------------------------------------------------------


class BundleEncoder:
    """Writes one bundle (or one part of a split bundle): ``start()``, ``add(raw)`` per post,
    ``finish()``.  Each returns the bytes to write next; nothing is buffered.

    ``post_count`` must be the number of posts that will be added (the header states it before
    the records).  Raises LocalProtocolError for bad arguments, a post over ``max_post_bytes``,
    calls out of order, or a count that does not match.
    """

    def __init__(self, *, bundle_id: bytes, created_at_ms: int, boards: Sequence[str] = (),
                 post_count: int, part: int = 1, parts: int = 1) -> None:
        if type(bundle_id) is not bytes or len(bundle_id) != BUNDLE_ID_BYTES:
            raise LocalProtocolError(f"a bundle id is {BUNDLE_ID_BYTES} bytes")
        if type(created_at_ms) is not int or not 0 <= created_at_ms <= _MAX_TIME_MS:
            raise LocalProtocolError("created_at_ms must be an integer number of milliseconds")
        if type(post_count) is not int or not 0 <= post_count <= MAX_POST_COUNT:
            raise LocalProtocolError("post_count must be an integer from 0 to 2**32 - 1")
        if not (type(parts) is int and type(part) is int and 1 <= part <= parts <= limits.MAX_BUNDLE_PARTS):
            raise LocalProtocolError(f"part must be 1 <= part <= parts <= {limits.MAX_BUNDLE_PARTS}")
        self.bundle_id = bundle_id
        self.part = part
        self.parts = parts
        self.post_count = post_count
        self.boards = _normalize_boards(boards)
        self._created_at_ms = created_at_ms
        self._hash = hashlib.sha256()
        self._added = 0
        self._state = "new"
        #: Bytes handed out so far.
        self.bytes_written = 0

    def _out(self, data: bytes, *, hashed: bool = True) -> bytes:
        if hashed:
            self._hash.update(data)
        self.bytes_written += len(data)
        return data

    def start(self) -> bytes:
        """The preamble and the header frame."""
        if self._state != "new":
            raise LocalProtocolError("start() is called once, first")
        self._state = "records"
        payload = _header_payload(self.bundle_id, self.part, self.parts, self._created_at_ms, self.boards,
                                  self.post_count)
        if len(payload) > limits.MAX_BUNDLE_HEADER_BYTES:
            raise LocalProtocolError("the bundle header is too large")
        return self._out(PREAMBLE + _frame(FRAME_HEADER, payload))

    def add(self, raw: bytes) -> bytes:
        """One record frame holding ``raw``, a post's canonical bytes."""
        if self._state != "records":
            raise LocalProtocolError("add() comes after start() and before finish()")
        if not isinstance(raw, (bytes, bytearray)) or not 0 < len(raw) <= limits.MAX_POST_BYTES:
            raise LocalProtocolError(f"a record holds one post of 1 to {limits.MAX_POST_BYTES} bytes")
        if self._added == self.post_count:
            raise LocalProtocolError(f"the header promised {self.post_count} posts")
        self._added += 1
        return self._out(_frame(FRAME_POST, bytes(raw)))

    def finish(self) -> bytes:
        """The trailer frame: the post count and the SHA-256 of everything written before it."""
        if self._state != "records":
            raise LocalProtocolError("finish() comes after start(), once")
        if self._added != self.post_count:
            raise LocalProtocolError(f"the header promised {self.post_count} posts, {self._added} were added")
        self._state = "done"
        payload = _trailer_payload(self.bundle_id, self.part, self.parts, self.post_count, self._hash.digest())
        return self._out(_frame(FRAME_TRAILER, payload), hashed=False)


def encode_bundle(raws: Sequence[bytes], *, bundle_id: bytes, created_at_ms: int, boards: Sequence[str] = (),
                  part: int = 1, parts: int = 1) -> bytes:
    """A whole bundle in memory (for small bundles and tests)."""
    enc = BundleEncoder(bundle_id=bundle_id, created_at_ms=created_at_ms, boards=boards, post_count=len(raws),
                        part=part, parts=parts)
    return enc.start() + b"".join(enc.add(raw) for raw in raws) + enc.finish()


# --- decoder --------------------------------------------------------------------------------


class _State(enum.Enum):
    PREAMBLE = "preamble"
    FRAMES = "frames"  # in step: a frame starts at the read position
    SCAN = "scan"  # after damage: looking for the next frame that checks out
    AFTER = "after"  # after the trailer
    END = "end"


@dataclass(frozen=True, slots=True)
class _Frame:
    status: str  # "ok", "crc" (complete, checksum wrong), "bad" (cannot be a frame), "need", "short"
    kind: int = 0
    payload: bytes = b""
    size: int = 0
    reason: str = ""


_NEED = _Frame("need")
_SHORT = _Frame("short")
#: A frame head that may start a frame, but is not checked: too many frames that failed their
#: checks already cover the byte where it starts (see BundleDecoder).
_SKIP = _Frame("skip", reason="not checked: it starts inside other frames that failed their checks")

# Drop consumed bytes from the front of the buffer once this many have piled up.
_COMPACT_BYTES = 1 << 16


class BundleDecoder:
    """Turns the bytes of one bundle file into events, whatever state the file is in.

    Feed bytes with :meth:`receive_data` (``b""`` means the end of the file) and call
    :meth:`next_event` until it returns :data:`NEED_DATA` (feed more) or :class:`End`.
    Events: :class:`Header`, :class:`PostRecord` per record, :class:`Damaged` for anything
    wrong, :class:`Trailer`, and last :class:`End`.  Records are *not* checked here: every
    ``raw`` must go through :func:`dazibao.protocol.posts.check_post`.

    Raises BundleFormatError when the input is not a bundle, or a bundle of a format version
    this code does not read, and BundleTruncatedError when it ends before its header; nothing
    of such input may be used.  All other trouble is reported as :class:`Damaged` events.
    Memory is bounded by the largest frame (``max_bundle_header_bytes``) plus what is fed at once.

    Work is linear in the size of the file, whatever its content.  Checking a frame costs as
    much as the length it claims, and after damage every marker is a candidate, so a file made
    of overlapping frame heads that each claim the largest length and fail their checksum would
    otherwise cost that length for every few bytes of file.  The decoder remembers where the
    frames that failed their checks (checksum, or a salvaged record) claimed to end, and does
    not check a frame starting at a byte that ``bundle_resync_overlap`` failed frames already
    cover: it is passed over like any other non-frame.  So every byte is checksummed as part of
    at most that many failed frames, plus once as part of the frame that holds it.  A file
    damaged by accident never gets there: a damaged frame's claimed extent ends at (or just
    after) the next real frame, so one byte is covered by one failed frame, rarely two.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # read position in _buf
        self._base = 0  # file offset of _buf[0]
        self._eof = False
        self._state = _State.PREAMBLE
        self._events: collections.deque[Event] = collections.deque()
        self._hash = hashlib.sha256()
        self._suspect: BundleFormatError | None = None
        self._damaged = False
        self._header: Header | None = None
        self._header_seen = False  # a header frame was met, intact or not
        self._trailer: Trailer | None = None
        self._records = 0
        self._after_reported = False
        self._trailer_damaged = False
        # File offsets where frames that failed their checks claimed to end; at most
        # bundle_resync_overlap of them still lie ahead of the read position (see class).
        self._failed_ends: list[int] = []
        # Where a frame cut short by the end of the file started, while the reader looks for
        # an intact frame after it (then the cut frame was damage, else the file was cut there).
        self._cut_at: int | None = None

    # --- public face ---

    @property
    def offset(self) -> int:
        """The file offset up to which bytes have been consumed."""
        return self._base + self._pos

    def receive_data(self, data: bytes) -> None:
        """Feed the next bytes of the file; ``b""`` marks its end."""
        if self._eof:
            if data:
                raise LocalProtocolError("receive_data() after the end of the data")
            return
        if not data:
            self._eof = True
        else:
            self._buf += data

    def next_event(self) -> Event | _NeedData:
        """The next event, or NEED_DATA.  Raises BundleFormatError or BundleTruncatedError (see class)."""
        while not self._events:
            if self._state is _State.END:
                raise LocalProtocolError("next_event() after End")
            if not self._step():
                return NEED_DATA
        return self._events.popleft()

    def events(self) -> Iterator[Event]:
        """Every event available now, ending with End once the end of the data was fed."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event  # type: ignore[misc]
            if isinstance(event, End):
                return

    # --- buffer ---

    def _avail(self) -> int:
        return len(self._buf) - self._pos

    def _consume(self, n: int, *, hashed: bool = True) -> None:
        if hashed and n:
            with memoryview(self._buf) as view:
                self._hash.update(view[self._pos : self._pos + n])
        self._pos += n
        if self._pos >= _COMPACT_BYTES and self._pos * 2 >= len(self._buf):
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0

    def _damage(self, offset: int, code: str, reason: str) -> None:
        self._damaged = True
        self._events.append(Damaged(offset, code, reason))

    # --- frames ---

    def _parse(self, at: int) -> _Frame:
        """Try to read a frame starting at index ``at`` of the buffer."""
        buf = self._buf
        avail = len(buf) - at
        if avail < _HEAD_BYTES:
            if buf[at : at + len(FRAME_MARKER)] != FRAME_MARKER[: min(avail, len(FRAME_MARKER))]:
                return _Frame("bad", reason="no frame starts here")
            return _SHORT if self._eof else _NEED
        if buf[at : at + 4] != FRAME_MARKER:
            return _Frame("bad", reason="no frame starts here")
        kind = buf[at + 4]
        length = int.from_bytes(buf[at + 5 : at + 9], "big")
        limit = _FRAME_LIMITS.get(kind)
        if limit is None:
            return _Frame("bad", reason=f"unknown frame type 0x{kind:02x}")
        if length > limit:
            return _Frame("bad", reason=f"{_FRAME_NAMES[kind]} frame says {length} bytes, over the limit of {limit}")
        size = FRAME_OVERHEAD + length
        # Before waiting for the rest of the frame, and before the checksum, which costs as
        # much as the claimed length: see the class docstring.
        if len(self._open_failures(self._base + at)) >= limits.BUNDLE_RESYNC_OVERLAP:
            return _SKIP
        if avail < size:
            return _SHORT if self._eof else _NEED
        stored = int.from_bytes(buf[at + _HEAD_BYTES + length : at + size], "big")
        with memoryview(buf) as view:
            computed = crc32(view[at + 4 : at + _HEAD_BYTES + length])
        if computed != stored:
            self._failed_ends.append(self._base + at + size)
            # Only a record's payload is used after a failed checksum (see _salvage).
            payload = bytes(buf[at + _HEAD_BYTES : at + _HEAD_BYTES + length]) if kind == FRAME_POST else b""
            return _Frame("crc", kind, payload, size, f"{_FRAME_NAMES[kind]} frame checksum does not match")
        return _Frame("ok", kind, bytes(buf[at + _HEAD_BYTES : at + _HEAD_BYTES + length]), size)

    def _open_failures(self, offset: int) -> list[int]:
        """The claimed ends of failed frames that still cover file offset ``offset``."""
        ends = self._failed_ends
        if ends and min(ends) <= offset:
            ends = self._failed_ends = [end for end in ends if end > offset]
        return ends

    # --- the state machine ---

    def _step(self) -> bool:
        state = self._state
        if state is _State.PREAMBLE:
            return self._step_preamble()
        if state is _State.FRAMES:
            return self._step_frame()
        if state is _State.SCAN:
            return self._step_scan()
        return self._step_after()

    def _step_preamble(self) -> bool:
        n = len(PREAMBLE)
        if self._avail() < n:
            if not self._eof:
                return False
            head = bytes(self._buf[self._pos :])
            if head and PREAMBLE.startswith(head):
                raise BundleTruncatedError(f"the file is {len(head)} bytes long: it was cut off before its header")
            raise BundleFormatError("not a dazibao bundle" + ("" if head else ": the file is empty"))
        head = bytes(self._buf[self._pos : self._pos + n])
        if head != PREAMBLE:
            # Maybe only these bytes were damaged: decided by the header frame that follows.
            if head[: len(MAGIC)] == MAGIC:
                self._suspect = BundleFormatError(
                    f"bundle format version {head[-1]} is not supported (this reads version {FORMAT_VERSION})"
                )
            else:
                self._suspect = BundleFormatError(
                    "not a dazibao bundle: the file does not start with a bundle signature"
                )
        self._consume(n)
        self._state = _State.FRAMES
        return True

    def _step_frame(self) -> bool:
        at = self._pos
        offset = self._base + at
        frame = self._parse(at)
        if self._suspect is not None:
            return self._step_suspect(frame, offset)
        status = frame.status
        if status == "need":
            return False
        if status == "ok":
            self._accept(frame, offset)
            return True
        if status == "short":
            if self._avail() == 0:
                self._finish()
            else:
                # Damage if an intact frame follows, the cut otherwise: the scan decides.
                self._cut_at = offset
                self._consume(1)
                self._state = _State.SCAN
            return True
        if status == "skip":
            self._damage(offset, BundleDamagedError.code, frame.reason + "; skipping to the next intact frame")
            self._consume(1)
            self._state = _State.SCAN
            return True
        if status == "crc" and frame.kind == FRAME_POST and self._salvage(frame, offset):
            return True
        if status == "crc" and frame.kind == FRAME_TRAILER:
            self._trailer_damaged = True
        self._damage(offset, BundleDamagedError.code, frame.reason + "; skipping to the next intact frame")
        self._consume(1)
        self._state = _State.SCAN
        return True

    def _step_suspect(self, frame: _Frame, offset: int) -> bool:
        # The preamble was wrong.  Only an intact version-1 header frame right after it shows
        # that this is a bundle whose first bytes were damaged; anything else is refused.
        assert self._suspect is not None
        if frame.status == "need":
            return False
        header = None
        if frame.status == "ok" and frame.kind == FRAME_HEADER:
            try:
                header = _decode_header(frame.payload, offset)
            except RemoteProtocolError:
                header = None
        if header is None:
            raise self._suspect
        self._suspect = None
        self._damage(0, BundleDamagedError.code, "the file signature (its first 9 bytes) is damaged")
        self._accept(frame, offset)
        return True

    def _salvage(self, frame: _Frame, offset: int) -> bool:
        # A record whose checksum fails but whose payload still decodes as a post may be intact
        # (the damage may be in the CRC itself); its signature will decide.  Its declared length
        # may still be wrong (a byte lost inside a signature is made up by the next frame's
        # first byte), so reading goes on with a scan from the next byte, as after any damage.
        try:
            posts.decode_post(frame.payload)
        except RemoteProtocolError:
            return False
        self._damage(offset, BundleDamagedError.code,
                     "record checksum does not match, but it still holds a well-formed post: "
                     "passed on for its signature to decide")
        self._events.append(PostRecord(offset, frame.payload, checksum_ok=False))
        self._records += 1
        self._consume(1)
        self._state = _State.SCAN
        return True

    def _accept(self, frame: _Frame, offset: int) -> None:
        kind = frame.kind
        if kind == FRAME_POST:
            self._records += 1
            self._events.append(PostRecord(offset, frame.payload))
            self._consume(frame.size)
        elif kind == FRAME_HEADER:
            self._consume(frame.size)
            if self._header_seen or self._records:
                self._damage(offset, BundleDamagedError.code, "a header frame in the middle of the bundle; ignored")
                return
            self._header_seen = True
            try:
                self._header = _decode_header(frame.payload, offset)
            except BundleFormatError:
                raise
            except RemoteProtocolError as exc:
                self._damage(offset, exc.code, f"the header cannot be read: {exc.message}")
                return
            self._events.append(self._header)
        else:
            self._consume(frame.size, hashed=False)
            self._state = _State.AFTER
            try:
                trailer = _decode_trailer(frame.payload, offset)
            except BundleFormatError:
                raise
            except RemoteProtocolError as exc:
                self._damage(offset, exc.code, f"the trailer cannot be read: {exc.message}")
                return
            self._trailer = trailer
            self._events.append(trailer)
            self._check_trailer(trailer)

    def _check_trailer(self, trailer: Trailer) -> None:
        offset = trailer.offset
        header = self._header
        if header is not None and (header.bundle_id, header.part, header.parts, header.post_count) != (
            trailer.bundle_id, trailer.part, trailer.parts, trailer.post_count
        ):
            self._damage(offset, BundleMismatchError.code,
                         "the header and the trailer disagree about the bundle id, part or post count")
        if self._damaged:
            return  # the damage already reported explains any difference below
        if trailer.post_count != self._records:
            self._damage(offset, BundleMismatchError.code,
                         f"the trailer counts {trailer.post_count} posts but {self._records} records were read")
        elif self._hash.digest() != trailer.digest:
            self._damage(offset, BundleMismatchError.code,
                         "the SHA-256 checksum in the trailer does not match the bytes before it: "
                         "the bundle was altered after it was written")

    def _step_scan(self) -> bool:
        i = self._buf.find(FRAME_MARKER, self._pos)
        if i < 0:
            # Keep a tail that may be the start of a marker cut across two chunks.
            keep = 0 if self._eof else len(FRAME_MARKER) - 1
            n = max(self._avail() - keep, 0)
            self._consume(n)
            if self._eof:
                self._finish(cut_at=self._cut_at)
                return True
            return n > 0
        skipped = i - self._pos
        self._consume(skipped)
        offset = self.offset
        frame = self._parse(self._pos)
        status = frame.status
        if status == "need":
            return skipped > 0
        if status == "ok":
            if self._cut_at is not None:
                self._damage(self._cut_at, BundleDamagedError.code, "a frame is cut short here")
                self._cut_at = None
            self._state = _State.FRAMES
            self._accept(frame, offset)  # checked once: not parsed again in step
        elif status == "skip":
            # No frame starting before the nearest claimed end is checked: jump there at once.
            target = min(self._failed_ends)
            self._consume(max(1, min(target - offset, self._avail())))
        else:
            self._consume(1)
        return True

    def _step_after(self) -> bool:
        if self._avail():
            if not self._after_reported:
                self._after_reported = True
                self._damage(self.offset, BundleDamagedError.code, "bytes after the trailer; ignored")
            self._consume(self._avail(), hashed=False)
            return True
        if self._eof:
            self._finish()
            return True
        return False

    def _finish(self, cut_at: int | None = None) -> None:
        if self._trailer is None and self._state is not _State.AFTER and not self._trailer_damaged:
            where = self.offset if cut_at is None else cut_at
            self._damage(where, BundleTruncatedError.code,
                         f"the file ends after {self.offset} bytes, before its trailer: it was cut off")
        expected = None
        if self._trailer is not None:
            expected = self._trailer.post_count
        elif self._header is not None:
            expected = self._header.post_count
        complete = not self._damaged and self._header is not None and self._trailer is not None
        self._events.append(End(self._records, expected, complete, self._header, self._trailer))
        self._state = _State.END


def decode_bundle(data: bytes) -> list[Event]:
    """Every event of a whole bundle held in memory, End last (see BundleDecoder for errors)."""
    decoder = BundleDecoder()
    decoder.receive_data(data)
    decoder.receive_data(b"")
    return list(decoder.events())


# --- split bundles --------------------------------------------------------------------------


class PartTracker:
    """Which parts of which split bundles have been seen, and which are missing.

    Call :meth:`add` with the bundle id, part number and part total of each part read (from its
    header, or its trailer if the header was lost); parts may come in any order and more than
    once.  :meth:`problems` lists missing parts by number, and parts that disagree about the
    total, as BundlePartsError values (not raised: every part that was read is still good).
    """

    def __init__(self) -> None:
        self._totals: dict[bytes, set[int]] = {}
        self._seen: dict[bytes, set[int]] = {}

    def add(self, bundle_id: bytes, part: int, parts: int) -> None:
        self._totals.setdefault(bundle_id, set()).add(parts)
        self._seen.setdefault(bundle_id, set()).add(part)

    def missing(self) -> dict[bytes, list[int]]:
        """Bundle id -> the part numbers not seen (bundles with a consistent total only)."""
        out = {}
        for bundle_id, totals in self._totals.items():
            if len(totals) == 1:
                (total,) = totals
                gone = sorted(set(range(1, total + 1)) - self._seen[bundle_id])
                if gone:
                    out[bundle_id] = gone
        return out

    def problems(self) -> list[BundlePartsError]:
        found = []
        for bundle_id, totals in sorted(self._totals.items()):
            if len(totals) > 1:
                found.append(BundlePartsError(
                    f"bundle {bundle_id.hex()}: parts disagree about how many parts there are "
                    f"({', '.join(str(t) for t in sorted(totals))})"
                ))
        for bundle_id, gone in sorted(self.missing().items()):
            (total,) = self._totals[bundle_id]
            found.append(BundlePartsError(
                f"bundle {bundle_id.hex()}: missing part{'s' if len(gone) > 1 else ''} "
                f"{_ranges(gone)} of {total} (not among the files read)"
            ))
        return found


def _ranges(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(out)

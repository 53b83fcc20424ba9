"""The gossip messages carried by the HTTP API, one frozen dataclass each.

Every message body is canonical msgpack (protocol/wire.py): an array whose first item is the
message format version (1).  docs/protocol.md, "Gossip HTTP API", gives the byte layout.

=============  ============================  =========================================
endpoint        request                       response
=============  ============================  =========================================
/v1/reconcile   reconciliation message         reconciliation message (reconcile.py)
/v1/fetch       ``[1, [id, ...]]`` IdRequest   ``[1, [post, ...]]`` PostBatch
/v1/posts       ``[1, [post, ...]]`` PostBatch ``[1, accepted, duplicates, [[id, code, index]]]``
/v1/announce    ``[2, [[board, [id, ...]]]]``  ``[1, [id, ...]]`` IdRequest (the wanted ids)
                Announcement; or the older
                ``[1, [id, ...]]`` IdRequest
=============  ============================  =========================================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import limits, wire
from .errors import FieldError, LocalProtocolError, TooLargeError, VersionError
from .posts import ID_BYTES, check_board

__all__ = [
    "MESSAGE_VERSION",
    "IdRequest",
    "PostBatch",
    "PushResult",
    "encode_ids",
    "decode_ids",
    "encode_posts",
    "decode_posts",
    "post_batches",
    "encode_push_result",
    "decode_push_result",
    "ANNOUNCE_VERSION",
    "Announcement",
    "encode_announcement",
    "decode_announcement",
    "announcement_batches",
    "MAX_ANNOUNCEMENT_BYTES",
]

MESSAGE_VERSION = 1
# Generous upper bounds of the msgpack framing: the batch's array and version, and each post's
# bin header.
_BATCH_OVERHEAD = 16
_POST_OVERHEAD = 8


#: The longest error code a push result may carry, in code points.
MAX_CODE_CHARS = 64
#: The largest push result: max_posts_per_batch rejections of a 32-byte id, a code of at most
#: 64 code points (256 bytes of UTF-8) and an index (at most 3 bytes), with their headers.  A
#: peer's answer is refused past it before it is decoded.
MAX_PUSH_RESULT_BYTES = 16 + limits.MAX_POSTS_PER_BATCH * (1 + 2 + ID_BYTES + 3 + 256 + 3)


def _open(data: bytes, length: int, what: str, max_bytes: int = limits.MAX_REQUEST_BYTES) -> list[Any]:
    value = wire.unpack_message(data, max_bytes=max_bytes, version=MESSAGE_VERSION, what=what)
    return wire.expect_list(value, length, what)


@dataclass(frozen=True, slots=True)
class IdRequest:
    """A list of post ids: what a fetch asks for, what an announce offers or wants."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PostBatch:
    """Signed posts, each still as its raw bytes (checked one by one by the receiver)."""

    posts: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PushResult:
    """What the receiver of a PostBatch did with it.

    ``rejected`` holds ``(id, code)`` for every refused post (the id is None when the bytes are
    too damaged to tell it).  ``indices`` is empty, or holds for each refusal, in the same
    order, the position of the refused post in the batch (from 0; None when the receiver did
    not say, as nodes of an earlier revision of the protocol do not), so that a refusal can
    be matched to what was sent even without an id.
    """

    accepted: int
    duplicates: int
    rejected: tuple[tuple[bytes | None, str], ...]
    indices: tuple[int | None, ...] = ()

    def __post_init__(self) -> None:
        if self.indices and len(self.indices) != len(self.rejected):
            raise LocalProtocolError("a push result needs one index per refusal, or none")


def encode_ids(ids: Sequence[bytes]) -> bytes:
    """Encode an IdRequest.  Raises TooLargeError past max_ids_per_request."""
    if len(ids) > limits.MAX_IDS_PER_REQUEST:
        raise TooLargeError(f"{len(ids)} ids, the limit is {limits.MAX_IDS_PER_REQUEST}")
    return wire.pack([MESSAGE_VERSION, list(ids)])


def decode_ids(data: bytes, what: str = "id request") -> IdRequest:
    """Decode an IdRequest.  Raises a DecodeError subclass (TooLargeError past the limit).

    The count is checked from the array header and each id as it is read, so that a body of
    millions of tiny items is refused at once (wire.unpack_bin_list).
    """
    ids = wire.unpack_bin_list(data, max_bytes=limits.MAX_REQUEST_BYTES, version=MESSAGE_VERSION,
                               max_items=limits.MAX_IDS_PER_REQUEST, item_len=ID_BYTES, what=what)
    return IdRequest(tuple(ids))


def encode_posts(raws: Sequence[bytes]) -> bytes:
    """Encode a PostBatch from raw signed posts.  Raises TooLargeError past the limits."""
    if len(raws) > limits.MAX_POSTS_PER_BATCH:
        raise TooLargeError(f"{len(raws)} posts, the limit is {limits.MAX_POSTS_PER_BATCH}")
    data = wire.pack([MESSAGE_VERSION, list(raws)])
    if len(data) > limits.MAX_REQUEST_BYTES:
        raise TooLargeError(f"batch is {len(data)} bytes, the limit is {limits.MAX_REQUEST_BYTES}")
    return data


def post_batches(raws: Sequence[bytes], max_bytes: int = limits.MAX_REQUEST_BYTES) -> Iterator[list[bytes]]:
    """Split raw posts, in order, into batches that each fit one PostBatch: at most
    max_posts_per_batch posts and (with room for the msgpack headers) ``max_bytes``, which is
    max_request_bytes unless a smaller bound is asked for.  A post larger than ``max_bytes``
    on its own still makes a batch of one."""
    batch: list[bytes] = []
    size = _BATCH_OVERHEAD
    for raw in raws:
        if batch and (len(batch) == limits.MAX_POSTS_PER_BATCH
                      or size + len(raw) + _POST_OVERHEAD > max_bytes):
            yield batch
            batch, size = [], _BATCH_OVERHEAD
        batch.append(raw)
        size += len(raw) + _POST_OVERHEAD
    if batch:
        yield batch


def decode_posts(data: bytes, what: str = "post batch") -> PostBatch:
    """Decode a PostBatch (the posts themselves are not checked here: see posts.check_post).

    Raises a DecodeError subclass; the count is checked from the array header
    (wire.unpack_bin_list).  A post longer than max_post_bytes is left for the receiver's
    check of each post, which refuses it alone.
    """
    # A post over max_post_bytes is not refused here: the receiver refuses it on its own
    # (too_large) and keeps the others of the batch (docs/protocol.md, "POST /v1/posts").
    raws = wire.unpack_bin_list(data, max_bytes=limits.MAX_REQUEST_BYTES, version=MESSAGE_VERSION,
                                max_items=limits.MAX_POSTS_PER_BATCH, what=what)
    return PostBatch(tuple(raws))


def encode_push_result(result: PushResult, *, with_index: bool = True) -> bytes:
    """Encode a PushResult: each refusal as ``[id, code, index]``, or ``[id, code]`` when its
    index is not known or ``with_index`` is false (the sender did not ask for indices: a node
    of an earlier revision reads only two-item refusals).  Raises nothing for a PushResult
    that was built."""
    indices = result.indices if result.indices and with_index else (None,) * len(result.rejected)
    rejected = [[pid, code] if index is None else [pid, code, index]
                for (pid, code), index in zip(result.rejected, indices, strict=True)]
    return wire.pack([MESSAGE_VERSION, result.accepted, result.duplicates, rejected])


def decode_push_result(data: bytes) -> PushResult:
    """Decode a PushResult.

    A refusal is ``[id, code, index]``; ``[id, code]`` (from a node of an earlier revision)
    gives the index None, and items after the third are ignored, so that a later revision may
    add some.  Raises a DecodeError subclass: TooLargeError past MAX_PUSH_RESULT_BYTES or
    max_posts_per_batch refusals, FieldError for any other breach of the shape.
    """
    _, accepted, duplicates, rejected = _open(data, 4, "push result", MAX_PUSH_RESULT_BYTES)
    wire.expect_int(accepted, "accepted", hi=limits.MAX_POSTS_PER_BATCH)
    wire.expect_int(duplicates, "duplicates", hi=limits.MAX_POSTS_PER_BATCH)
    wire.expect_list(rejected, None, "rejected")
    if len(rejected) > limits.MAX_POSTS_PER_BATCH:
        raise TooLargeError("push result lists too many rejections")
    out: list[tuple[bytes | None, str]] = []
    indices: list[int | None] = []
    for item in rejected:
        wire.expect_list(item, None, "rejection")
        if len(item) < 2:
            raise FieldError(f"rejection: expected at least 2 items, got {len(item)}")
        pid, code = item[0], item[1]
        if pid is not None:
            wire.expect_bytes(pid, "rejected id", length=ID_BYTES)
        wire.expect_str(code, "rejection code")
        if len(code) > MAX_CODE_CHARS:
            raise FieldError("rejection code is too long")
        index = None if len(item) < 3 else wire.expect_int(item[2], "rejection index",
                                                             hi=limits.MAX_POSTS_PER_BATCH - 1)
        out.append((pid, code))
        indices.append(index)
    known = tuple(indices) if any(i is not None for i in indices) else ()
    return PushResult(accepted, duplicates, tuple(out), known)


#: The version of the announcement that says which board each id is on.  The older
#: announcement, an IdRequest of version 1, is still accepted (its ids carry no board).
ANNOUNCE_VERSION = 2
#: The largest announcement: max_ids_per_request ids, each (at worst) in a group of its own
#: under a board name of max_board_bytes, with every msgpack header at its longest.
MAX_ANNOUNCEMENT_BYTES = 16 + limits.MAX_IDS_PER_REQUEST * ((2 + ID_BYTES) + (1 + 2 + limits.MAX_BOARD_BYTES + 3))


@dataclass(frozen=True, slots=True)
class Announcement:
    """Ids of fresh posts offered by a peer, grouped by board (``board`` is None for the ids of
    an older announcement, which does not say)."""

    groups: tuple[tuple[str | None, tuple[bytes, ...]], ...]

    @property
    def ids(self) -> tuple[bytes, ...]:
        return tuple(i for _, ids in self.groups for i in ids)


def encode_announcement(ids_by_board: Sequence[tuple[str, Sequence[bytes]]]) -> bytes:
    """Encode an Announcement ``[2, [[board, [id, ...]], ...]]``: groups in the order given,
    empty groups left out.  Raises TooLargeError past max_ids_per_request ids, FieldError for
    a board named twice."""
    groups = [[board, list(ids)] for board, ids in ids_by_board if ids]
    if len({board for board, _ in groups}) != len(groups):
        raise FieldError("announcement names a board twice")
    total = sum(len(ids) for _, ids in groups)
    if total > limits.MAX_IDS_PER_REQUEST:
        raise TooLargeError(f"{total} ids, the limit is {limits.MAX_IDS_PER_REQUEST}")
    return wire.pack([ANNOUNCE_VERSION, groups])


def decode_announcement(data: bytes) -> Announcement:
    """Decode an announcement of either version.  Raises a DecodeError subclass: TooLargeError
    past max_ids_per_request ids, BoardError for a board name that breaks the board-name rule,
    FieldError for a board named twice, VersionError for a version other than 1 and 2."""
    if data[:2] == bytes([0x92, MESSAGE_VERSION]):
        return Announcement(((None, decode_ids(data, "announce").ids),))
    value = wire.unpack_canonical(data, max_bytes=MAX_ANNOUNCEMENT_BYTES, what="announce")
    if type(value) is not list or not value or type(value[0]) is not int:
        raise FieldError("announce: expected an array starting with a version")
    if value[0] != ANNOUNCE_VERSION:
        raise VersionError(f"announce: message version {value[0]} is not supported")
    _, groups = wire.expect_list(value, 2, "announce")
    wire.expect_list(groups, None, "announce groups")
    if len(groups) > limits.MAX_IDS_PER_REQUEST:
        raise TooLargeError(f"announce has more than {limits.MAX_IDS_PER_REQUEST} groups")
    out: list[tuple[str | None, tuple[bytes, ...]]] = []
    seen: set[str] = set()
    total = 0
    for group in groups:
        board, ids = wire.expect_list(group, 2, "announce group")
        check_board(wire.expect_str(board, "announce board"))
        if board in seen:
            raise FieldError("announce names a board twice")
        seen.add(board)
        wire.expect_list(ids, None, "announce ids")
        total += len(ids)
        if total > limits.MAX_IDS_PER_REQUEST:
            raise TooLargeError(f"announce offers more than {limits.MAX_IDS_PER_REQUEST} ids")
        out.append((board, tuple(wire.expect_bytes(i, "announced id", length=ID_BYTES) for i in ids)))
    return Announcement(tuple(out))


def announcement_batches(
    ids_by_board: Sequence[tuple[str, Sequence[bytes]]],
) -> Iterator[list[tuple[str, list[bytes]]]]:
    """Split ids grouped by board, in order, into groups that each fit one Announcement."""
    batch: list[tuple[str, list[bytes]]] = []
    room = limits.MAX_IDS_PER_REQUEST
    for board, ids in ids_by_board:
        rest = list(ids)
        while rest:
            if room == 0:
                yield batch
                batch, room = [], limits.MAX_IDS_PER_REQUEST
            take, rest = rest[:room], rest[room:]
            batch.append((board, take))
            room -= len(take)
    if batch:
        yield batch

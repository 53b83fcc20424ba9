"""The gossip messages carried by the HTTP API, one frozen dataclass each.

Every message body is canonical msgpack (protocol/wire.py): an array whose first item is the
message format version (1).  docs/protocol.md, "Gossip HTTP API", gives the byte layout.

=============  ============================  =========================================
endpoint        request                       response
=============  ============================  =========================================
/v1/reconcile   reconciliation message         reconciliation message (reconcile.py)
/v1/fetch       ``[1, [id, ...]]`` IdRequest   ``[1, [post, ...]]`` PostBatch
/v1/posts       ``[1, [post, ...]]`` PostBatch ``[1, accepted, duplicates, [[id, code]]]``
/v1/announce    ``[1, [id, ...]]`` IdRequest   ``[1, [id, ...]]`` IdRequest (the wanted ids)
=============  ============================  =========================================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from . import limits, wire
from .errors import FieldError, TooLargeError, VersionError
from .posts import ID_BYTES

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
]

MESSAGE_VERSION = 1
# Generous upper bounds of the msgpack framing: the batch's array and version, and each post's
# bin header.
_BATCH_OVERHEAD = 16
_POST_OVERHEAD = 8


#: The largest push result: max_posts_per_batch rejections of a 32-byte id and a code of at
#: most 64 code points (256 bytes of UTF-8), with their headers.  A peer's answer is refused
#: past it before it is decoded.
MAX_PUSH_RESULT_BYTES = 16 + limits.MAX_POSTS_PER_BATCH * (1 + 2 + ID_BYTES + 3 + 256)


def _open(data: bytes, length: int, what: str, max_bytes: int = limits.MAX_REQUEST_BYTES) -> list:
    value = wire.unpack_canonical(data, max_bytes=max_bytes, what=what)
    if type(value) is not list or not value:
        raise FieldError(f"{what}: expected a non-empty array")
    if type(value[0]) is not int:
        raise FieldError(f"{what}: the version must be an integer")
    if value[0] != MESSAGE_VERSION:
        raise VersionError(f"{what}: message version {value[0]} is not supported")
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
    """What the receiver of a PostBatch did with it."""

    accepted: int
    duplicates: int
    rejected: tuple[tuple[bytes | None, str], ...]


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

    Raises a DecodeError subclass; the count is checked from the array header and each post's
    size as it is read (wire.unpack_bin_list).
    """
    raws = wire.unpack_bin_list(data, max_bytes=limits.MAX_REQUEST_BYTES, version=MESSAGE_VERSION,
                                max_items=limits.MAX_POSTS_PER_BATCH, item_max_len=limits.MAX_POST_BYTES,
                                what=what)
    return PostBatch(tuple(raws))


def encode_push_result(result: PushResult) -> bytes:
    """Encode a PushResult."""
    return wire.pack(
        [MESSAGE_VERSION, result.accepted, result.duplicates, [[pid, code] for pid, code in result.rejected]]
    )


def decode_push_result(data: bytes) -> PushResult:
    """Decode a PushResult.  Raises a DecodeError subclass."""
    _, accepted, duplicates, rejected = _open(data, 4, "push result", MAX_PUSH_RESULT_BYTES)
    wire.expect_int(accepted, "accepted", hi=limits.MAX_POSTS_PER_BATCH)
    wire.expect_int(duplicates, "duplicates", hi=limits.MAX_POSTS_PER_BATCH)
    wire.expect_list(rejected, None, "rejected")
    if len(rejected) > limits.MAX_POSTS_PER_BATCH:
        raise TooLargeError("push result lists too many rejections")
    out = []
    for item in rejected:
        pid, code = wire.expect_list(item, 2, "rejection")
        if pid is not None:
            wire.expect_bytes(pid, "rejected id", length=ID_BYTES)
        wire.expect_str(code, "rejection code")
        if len(code) > 64:
            raise FieldError("rejection code is too long")
        out.append((pid, code))
    return PushResult(accepted, duplicates, tuple(out))

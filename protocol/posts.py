"""The signed record: canonical bytes, id, create, decode, verify (docs/protocol.md, "Posts").

A signed post is the canonical msgpack encoding of::

    [ [1, kind, board, author, created_at_ms, parent, body], signature ]

* the inner array is the *unsigned body*; the post id is SHA-256 of its canonical bytes;
* ``signature`` is Ed25519 by ``author`` over ``POST_SIGNATURE_TAG + id``.

Bytes that are not exactly the canonical encoding of what they decode to are refused, so a
post has one byte form and one id.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from . import limits, wire
from .errors import (
    BoardError,
    BodyError,
    FieldError,
    FutureError,
    LocalProtocolError,
    NonCanonicalError,
    RemoteProtocolError,
    RetractionBoardError,
    RetractionError,
    UnknownKindError,
    VersionError,
)
from .identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, check_display_name, verify
from .names import check_visible_text

__all__ = [
    "POST_FORMAT_VERSION",
    "POST_SIGNATURE_TAG",
    "ID_BYTES",
    "KIND_POST",
    "KIND_REPLY",
    "KIND_RETRACT",
    "KIND_PROFILE",
    "KINDS",
    "Post",
    "create_post",
    "decode_post",
    "verify_post",
    "check_post",
    "check_retraction",
    "check_board",
    "check_text_body",
    "post_key",
    "post_id",
    "claimed_id",
    "refused_id",
]

POST_FORMAT_VERSION = 1
POST_SIGNATURE_TAG = b"dazibao/v1/post\x00"
ID_BYTES = 32

KIND_POST = "post"
KIND_REPLY = "reply"
KIND_RETRACT = "retract"
KIND_PROFILE = "profile"
KINDS = (KIND_POST, KIND_REPLY, KIND_RETRACT, KIND_PROFILE)

# Unicode category Cc is exactly U+0000..U+001F and U+007F..U+009F, fixed forever by the
# Unicode stability policy; one regular-expression search is much faster than asking
# unicodedata about every character, and this check is on the hot path of ingest.
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_C0_BYTES = bytes(b for b in range(0x20) if b not in b"\n\t") + b"\x7f"

# The largest created_at a post may carry at all (year 2286); the future-skew rule is tighter.
_MAX_TIME_MS = 10**13 - 1


@dataclass(frozen=True, slots=True)
class Post:
    """A decoded, shape-checked post.  ``raw`` is its canonical signed encoding."""

    id: bytes
    kind: str
    board: str
    author: bytes
    created_at_ms: int
    parent: bytes | None
    body: str
    signature: bytes
    raw: bytes

    @property
    def key(self) -> bytes:
        """The reconciliation key (board, created_at, id) as ordered bytes."""
        return post_key(self.board, self.created_at_ms, self.id)

    def __repr__(self) -> str:
        return f"<Post {self.id.hex()[:16]} {self.kind} board={self.board!r} at={self.created_at_ms}>"


def post_key(board: str, created_at_ms: int, post_id: bytes) -> bytes:
    """UTF-8 board, 0x00, created_at as 8 bytes big-endian, id: sorts as (board, time, id)."""
    return board.encode("utf-8") + b"\x00" + created_at_ms.to_bytes(8, "big") + post_id


def post_id(unsigned_bytes: bytes) -> bytes:
    """The 32-byte id of a post: SHA-256 of its canonical unsigned body."""
    return hashlib.sha256(unsigned_bytes).digest()


@functools.lru_cache(maxsize=4096)
def _board_ok(board: str) -> str:
    # Boards repeat from post to post; remembering the names that passed keeps the Unicode
    # checks off the hot path.  Only valid names are cached (exceptions are not).
    if not 1 <= len(board) <= limits.MAX_BOARD_CHARS:
        raise BoardError(f"board name must be 1 to {limits.MAX_BOARD_CHARS} characters")
    if len(board.encode("utf-8", "surrogatepass")) > limits.MAX_BOARD_BYTES:
        raise BoardError(f"board name is longer than {limits.MAX_BOARD_BYTES} UTF-8 bytes")
    check_visible_text(board, "board name", error=BoardError)
    return board


def claimed_id(raw: bytes) -> bytes:
    """The id that the bytes of a signed post stand for, without decoding or checking them.

    In the canonical form the outer array header is one byte and the signature is bin8
    (2 + 64 bytes), so the unsigned body is exactly the bytes between them.  Only a post that
    passes :func:`decode_post` really has this id; for other bytes it is meaningless.
    """
    return post_id(raw[1 : -(2 + SIGNATURE_BYTES)])


def check_board(board: str) -> str:
    """Check a board name against the board-name rule; return it or raise BoardError.

    1 to 64 code points and at most 192 UTF-8 bytes, NFC, no leading or trailing space, and
    none of the characters :func:`names.check_visible_text` refuses.
    """
    if type(board) is not str:
        raise BoardError("board: expected a string")
    return _board_ok(board)


def check_text_body(body: str) -> str:
    """Check the body of a post or reply; return it or raise BodyError.

    1 to 16384 UTF-8 bytes, not only white space, no control characters but tab and newline.
    """
    if type(body) is not str:
        raise BodyError("body: expected a string")
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError("body is not valid Unicode text") from None
    if len(data) > limits.MAX_BODY_BYTES:
        raise BodyError(f"body is {len(data)} bytes, the limit is {limits.MAX_BODY_BYTES}")
    if not body.strip():
        raise BodyError("body is empty")
    # Fast path on the UTF-8 bytes: C0 controls and DEL are single bytes, and the C1 controls
    # U+0080..U+009F all start with the byte 0xC2.  Only text that may hold one is searched.
    if len(data.translate(None, _C0_BYTES)) != len(data) or b"\xc2" in data:
        bad = _CONTROL_CHARS.search(body)
        if bad is not None:
            raise BodyError(f"body contains control character U+{ord(bad.group()):04X}")
    return body


def _check_fields(kind: str, board: str, parent: bytes | None, body: str) -> None:
    if kind not in KINDS:
        raise UnknownKindError(f"post kind {kind!r} is not known")
    check_board(board)
    if kind in (KIND_POST, KIND_PROFILE):
        if parent is not None:
            raise FieldError(f"a {kind} has no parent")
    elif parent is None:
        raise FieldError(f"a {kind} must name its parent post")
    if kind in (KIND_POST, KIND_REPLY):
        check_text_body(body)
    elif kind == KIND_RETRACT:
        if body != "":
            raise BodyError("a retraction has an empty body")
    else:
        check_display_name(body, "profile display name")


def _unsigned(kind: str, board: str, author: bytes, created_at_ms: int, parent: bytes | None, body: str) -> list[Any]:
    return [POST_FORMAT_VERSION, kind, board, author, created_at_ms, parent, body]


def create_post(
    key: SigningKey,
    *,
    kind: str,
    board: str,
    body: str,
    created_at_ms: int,
    parent: bytes | None = None,
) -> Post:
    """Sign a new post.

    Raises the same ValidationError subclasses a receiver would (UnknownKindError,
    BoardError, BodyError, FieldError), so a post that is created is one every node accepts.
    Raises LocalProtocolError for a time or parent of the wrong type.
    """
    if type(created_at_ms) is not int or not 0 <= created_at_ms <= _MAX_TIME_MS:
        raise LocalProtocolError("created_at_ms must be an integer number of milliseconds")
    if parent is not None and (type(parent) is not bytes or len(parent) != ID_BYTES):
        raise LocalProtocolError("parent must be a 32-byte post id")
    _check_fields(kind, board, parent, body)
    unsigned = _unsigned(kind, board, key.public_key, created_at_ms, parent, body)
    pid = post_id(wire.pack(unsigned))
    signature = key.sign(POST_SIGNATURE_TAG + pid)
    raw = wire.pack([unsigned, signature])
    if len(raw) > limits.MAX_POST_BYTES:
        raise BodyError(f"post is {len(raw)} bytes encoded, the limit is {limits.MAX_POST_BYTES}")
    return Post(pid, kind, board, key.public_key, created_at_ms, parent, body, signature, raw)


_Fields = tuple[str, str, bytes, int, "bytes | None", str, bytes]


def _decode_canonical(data: bytes) -> _Fields:
    """Steps 1 to 9 of "Checking a post from outside": the fields of a canonical post of
    format version 1, each of the right type, not yet checked against the rules of its kind.

    Raises TooLargeError, MalformedError, FieldError, VersionError or NonCanonicalError.
    """
    # Every field below is type-checked, so the generic walk for floats and extension values
    # would be redundant work on the hot path.  A float is therefore refused as a field of the
    # wrong type (bad_field), after the version: a post of another format version is
    # unsupported_version whatever it holds.
    value = wire.unpack(data, max_bytes=limits.MAX_POST_BYTES, what="post", typed=True)
    try:
        return _fields(value, bytes(data))
    except (FieldError, VersionError):
        # An extension value or a non-string map key is malformed input (step 2), which
        # comes first; the walk that finds them is only needed on this error path.
        wire.reject_malformed(value, "post")
        raise


def _fields(value: Any, raw: bytes) -> _Fields:
    outer = wire.expect_list(value, 2, "post")
    unsigned = outer[0]
    if type(unsigned) is not list or not unsigned:
        raise FieldError("post: the unsigned body must be a non-empty array")
    version = unsigned[0]
    if type(version) is not int:
        raise FieldError("post: format version must be an integer")
    if version != POST_FORMAT_VERSION:
        raise VersionError(f"post format version {version} is not supported")
    wire.expect_list(unsigned, 7, "post body")
    _, kind, board, author, created_at_ms, parent, body = unsigned
    wire.expect_str(kind, "post kind")
    wire.expect_str(board, "board")
    wire.expect_bytes(author, "author", length=PUBLIC_KEY_BYTES)
    wire.expect_int(created_at_ms, "created_at", hi=_MAX_TIME_MS)
    if parent is not None:
        wire.expect_bytes(parent, "parent", length=ID_BYTES)
    wire.expect_str(body, "body")
    signature = wire.expect_bytes(outer[1], "signature", length=SIGNATURE_BYTES)
    # Canonical form (docs/protocol.md, "Canonical encoding"): re-encode and compare.  Every
    # value here has been type-checked, so pack() cannot fail.
    if wire.pack(value) != raw:
        raise NonCanonicalError("post: bytes are not the canonical encoding")
    return kind, board, author, created_at_ms, parent, body, signature


def decode_post(data: bytes) -> Post:
    """Decode and shape-check a signed post, without verifying its signature or its time.

    Raises TooLargeError, MalformedError, NonCanonicalError, FieldError, VersionError,
    UnknownKindError, BoardError or BodyError -- all RemoteProtocolError subclasses.
    """
    kind, board, author, created_at_ms, parent, body, signature = _decode_canonical(data)
    _check_fields(kind, board, parent, body)
    raw = bytes(data)
    return Post(claimed_id(raw), kind, board, author, created_at_ms, parent, body, signature, raw)


def refused_id(data: bytes) -> bytes | None:
    """The id to report for a refused post: the id of ``data`` when the bytes are a canonical
    post of format version 1 (steps 1 to 9 of "Checking a post from outside" pass, so the id
    is that of these very bytes), None when they are too damaged to tell.  Raises nothing.
    """
    try:
        _decode_canonical(data)
    except RemoteProtocolError:
        return None
    return claimed_id(bytes(data))


def verify_post(post: Post) -> None:
    """Raise SignatureError unless ``post.signature`` is the author's signature of its id."""
    verify(post.author, POST_SIGNATURE_TAG + post.id, post.signature)


def check_post(data: bytes, now: float) -> Post:
    """The whole acceptance check for bytes from outside: decode, time window, signature.

    ``now`` is the receiver's clock in seconds since the Unix epoch.  Raises any
    RemoteProtocolError of :func:`decode_post`, FutureError or SignatureError.
    """
    post = decode_post(data)
    limit_ms = int(now * 1000) + limits.MAX_FUTURE_SKEW_S * 1000
    if post.created_at_ms > limit_ms:
        raise FutureError(
            f"post is dated {(post.created_at_ms - int(now * 1000)) // 1000} s in the future; "
            f"the limit is {limits.MAX_FUTURE_SKEW_S} s"
        )
    verify_post(post)
    return post


def check_retraction(retraction: Post, target: Post) -> None:
    """Raise RetractionError unless ``retraction`` may retract ``target``.

    A retraction is valid only for a post by the same author, on the same board
    (docs/protocol.md, "Retraction"): RetractionError for another author,
    RetractionBoardError for another board.
    Raises LocalProtocolError if ``retraction`` is not a retraction of ``target`` at all.
    """
    if retraction.kind != KIND_RETRACT or retraction.parent != target.id:
        raise LocalProtocolError("check_retraction needs a retraction and the post it names")
    if retraction.author != target.author:
        raise RetractionError("a retraction may only name a post by the same author")
    if retraction.board != target.board:
        # A node carrying only the target's board must see the retraction too.
        raise RetractionBoardError("a retraction must be on the board of the post it names")

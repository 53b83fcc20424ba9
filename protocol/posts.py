"""The signed record: canonical bytes, id, create, decode, verify (docs/protocol.md, "Posts").

A signed post is the canonical msgpack encoding of::

    [ [1, kind, board, author, created_at_ms, parent, body], signature ]
    [ [1, kind, board, author, created_at_ms, parent, body, [target, nonce]], signature ]

* the inner array is the *unsigned body*; the post id is SHA-256 of its canonical bytes;
* the optional 8th item is proof of work (protocol/work.py): the id must begin with ``target``
  zero bits.  A post without it has exactly the 7-item form;
* ``signature`` is Ed25519 by ``author`` over ``POST_SIGNATURE_TAG + id``.

Bytes that are not exactly the canonical encoding of what they decode to are refused, so a
post has one byte form and one id.

Kinds: the six known ones (post, reply, retract, profile, moderation, charter) are checked
against their own parent and body rules here, the moderation statement and the charter grammar
included (protocol/moderation.py gives them meaning).  Any other kind whose name matches
``[a-z][a-z0-9_]{0,31}`` is a kind of a later revision: it is accepted without interpretation
when its generic fields are sound (docs/protocol.md, "Objects of unknown kind").
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import fields, limits, wire
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
    WorkError,
)
from .identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, SigningKey, check_display_name, verify
from .names import check_visible_text
from .work import NONCE_BYTES, check_target, meets, mine

__all__ = [
    "POST_FORMAT_VERSION",
    "POST_SIGNATURE_TAG",
    "ID_BYTES",
    "KIND_POST",
    "KIND_REPLY",
    "KIND_RETRACT",
    "KIND_PROFILE",
    "KIND_MODERATION",
    "KIND_CHARTER",
    "KIND_REPORT",
    "KIND_CORROBORATION",
    "KIND_LETTER",
    "KIND_SIGNATURE",
    "KIND_PLEDGE",
    "KIND_PIN",
    "KIND_TRANSLATION",
    "ACTION_KINDS",
    "KINDS",
    "STATEMENT_ACTIONS",
    "STATEMENT_SUBJECTS",
    "is_known_kind",
    "is_kind_name",
    "Post",
    "create_post",
    "decode_post",
    "verify_post",
    "check_post",
    "check_decoded",
    "decode_each",
    "Undecodable",
    "check_retraction",
    "check_board",
    "check_text_body",
    "parse_statement_body",
    "parse_charter_body",
    "stored_work",
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
KIND_MODERATION = "moderation"
KIND_CHARTER = "charter"
# Collective action (docs/protocol.md, "Collective action"; protocol/organizing.py).
KIND_REPORT = "report"
KIND_CORROBORATION = "corroboration"
KIND_LETTER = "letter"
KIND_SIGNATURE = "signature"
KIND_PLEDGE = "pledge"
KIND_PIN = "pin"
KIND_TRANSLATION = "translation"
#: The collective-action kinds.
ACTION_KINDS = (KIND_REPORT, KIND_CORROBORATION, KIND_LETTER, KIND_SIGNATURE, KIND_PLEDGE, KIND_PIN,
                KIND_TRANSLATION)
#: The kinds this implementation knows and checks against their own rules.
KINDS = (KIND_POST, KIND_REPLY, KIND_RETRACT, KIND_PROFILE, KIND_MODERATION, KIND_CHARTER, *ACTION_KINDS)

# Whether each known kind must name a parent (True) or must not (False).
_HAS_PARENT = {
    KIND_POST: False, KIND_REPLY: True, KIND_RETRACT: True, KIND_PROFILE: False,
    KIND_MODERATION: True, KIND_CHARTER: False,
    KIND_REPORT: False, KIND_CORROBORATION: True, KIND_LETTER: False, KIND_SIGNATURE: True,
    KIND_PLEDGE: False, KIND_PIN: True, KIND_TRANSLATION: True,
}
# The body rule of each collective-action kind (protocol/fields.py).
_ACTION_BODY: dict[str, Callable[[str], object]] = {
    KIND_REPORT: fields.check_report_body,
    KIND_CORROBORATION: fields.check_corroboration_body,
    KIND_LETTER: fields.check_letter_body,
    KIND_SIGNATURE: fields.check_signature_body,
    KIND_PLEDGE: fields.check_pledge_body,
    KIND_PIN: fields.check_pin_body,
    KIND_TRANSLATION: fields.check_translation_body,
}
# The names a kind of this or a later revision may have (docs/protocol.md, "Objects of unknown kind").
_KIND_NAME = re.compile("[a-z][a-z0-9_]{0,31}")

#: Moderation statements (docs/protocol.md, "Moderation statements"): ``ACTION SUBJECT REASON
#: [EXPIRES]``, ASCII, single spaces.  EXPIRES has no leading zero and at most 13 digits, so it
#: is at most 10^13 - 1 by its form.
STATEMENT_ACTIONS = ("hide", "block", "vouch")
STATEMENT_SUBJECTS = ("post", "author")
_STATEMENT = re.compile("(hide|block|vouch) (post|author) ([a-z][a-z0-9_]{0,31})(?: ([1-9][0-9]{0,12}))?")
_MODERATOR_LINE = re.compile("moderator ([0-9a-f]{64})")

# The largest created_at a post may carry at all (year 2286); the future-skew rule is tighter.
_MAX_TIME_MS = 10**13 - 1


def is_known_kind(kind: str) -> bool:
    """Whether ``kind`` is one of :data:`KINDS`, the kinds this implementation interprets."""
    return kind in KINDS


def is_kind_name(kind: str) -> bool:
    """Whether ``kind`` matches ``[a-z][a-z0-9_]{0,31}``, the form of every kind, known or not."""
    return type(kind) is str and _KIND_NAME.fullmatch(kind) is not None


@dataclass(frozen=True, slots=True)
class Post:
    """A decoded, shape-checked post.  ``raw`` is its canonical signed encoding.

    ``work`` is ``(target, nonce)`` for a post that carries proof of work, else None.
    """

    id: bytes
    kind: str
    board: str
    author: bytes
    created_at_ms: int
    parent: bytes | None
    body: str
    signature: bytes
    raw: bytes
    work: tuple[int, bytes] | None = None

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
    fields.check_text_chars(body)
    if not body.strip():
        raise BodyError("body is empty")
    return body


def parse_statement_body(body: str, created_at_ms: int) -> tuple[str, str, str, int | None]:
    """The body of a moderation statement as ``(action, subject, reason, expires_at_ms)``.

    Exactly ``ACTION SUBJECT REASON`` or ``ACTION SUBJECT REASON EXPIRES`` (docs/protocol.md,
    "Moderation statements"): ACTION one of :data:`STATEMENT_ACTIONS`, SUBJECT one of
    :data:`STATEMENT_SUBJECTS` (``vouch`` only with ``author``), REASON ``[a-z][a-z0-9_]{0,31}``,
    EXPIRES decimal ms without a leading zero, later than ``created_at_ms``.  Raises BodyError
    for anything else.
    """
    match = _STATEMENT.fullmatch(body) if type(body) is str else None
    if match is None:
        raise BodyError("a moderation statement's body is 'ACTION SUBJECT REASON [EXPIRES]'")
    action, subject, reason, expires = match.groups()
    if action == "vouch" and subject != "author":
        raise BodyError("only an author can be vouched for")
    if expires is None:
        return action, subject, reason, None
    expires_at_ms = int(expires)
    if expires_at_ms <= created_at_ms:
        raise BodyError("a moderation statement must expire after it was made")
    return action, subject, reason, expires_at_ms


def parse_charter_body(body: str) -> tuple[tuple[bytes, ...], str]:
    """The body of a charter as ``(moderators, description)``.

    The text-body rule, then: 0 to ``max_charter_moderators`` lines ``moderator <64 lowercase
    hex>`` (no key twice), then either the end of the body or one empty line followed by the
    description, which may be empty and holds no line of the moderator form (docs/protocol.md,
    "Charters").  Raises BodyError for anything else.
    """
    check_text_body(body)
    lines = body.split("\n")
    moderators: list[bytes] = []
    i = 0
    while i < len(lines) and lines[i].startswith("moderator "):
        match = _MODERATOR_LINE.fullmatch(lines[i])
        if match is None:
            raise BodyError("a charter's moderator line is 'moderator ' and 64 lowercase hex digits")
        moderators.append(bytes.fromhex(match.group(1)))
        i += 1
    if len(moderators) > limits.MAX_CHARTER_MODERATORS:
        raise BodyError(f"a charter names at most {limits.MAX_CHARTER_MODERATORS} moderators")
    if len(set(moderators)) != len(moderators):
        raise BodyError("a charter names a moderator twice")
    if i == len(lines):
        return tuple(moderators), ""
    if lines[i] != "":
        raise BodyError("a charter's description follows its moderator lines after one empty line")
    rest = lines[i + 1 :]
    if any(_MODERATOR_LINE.fullmatch(line) for line in rest):
        raise BodyError("a charter's moderator lines come before its description")
    return tuple(moderators), "\n".join(rest)


def _check_unknown_kind(kind: str, board: str, body: str) -> None:
    # A kind of a later revision: only what every kind shares is checked (docs/protocol.md,
    # "Objects of unknown kind"); the parent was type-checked with the other fields.
    if _KIND_NAME.fullmatch(kind) is None:
        raise UnknownKindError(f"post kind {kind!r} is not known and is not a kind name")
    check_board(board)
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_BODY_BYTES:
        raise BodyError(f"body is {size} bytes, the limit is {limits.MAX_BODY_BYTES}")


def _check_fields(kind: str, board: str, parent: bytes | None, body: str, created_at_ms: int) -> None:
    """Steps 9 to 12 of "Checking a post from outside": kind, board, parent, body."""
    has_parent = _HAS_PARENT.get(kind)
    if has_parent is None:
        _check_unknown_kind(kind, board, body)
        return
    check_board(board)
    if has_parent:
        if parent is None:
            raise FieldError(f"a {kind} must name its {'target' if kind == KIND_MODERATION else 'parent post'}")
    elif parent is not None:
        raise FieldError(f"a {kind} has no parent")
    if kind == KIND_POST or kind == KIND_REPLY:
        check_text_body(body)
    elif kind == KIND_RETRACT:
        if body != "":
            raise BodyError("a retraction has an empty body")
    elif kind == KIND_PROFILE:
        check_display_name(body, "profile display name")
    elif kind == KIND_MODERATION:
        parse_statement_body(body, created_at_ms)
    elif kind == KIND_CHARTER:
        parse_charter_body(body)
    else:
        _ACTION_BODY[kind](body)


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
    work_bits: int | None = None,
) -> Post:
    """Sign a new post; with ``work_bits``, mine and commit proof of work of that many bits.

    Raises the same ValidationError subclasses a receiver would (UnknownKindError,
    BoardError, BodyError, FieldError), so a post that is created is one every node of this
    revision accepts; only the known kinds can be created (UnknownKindError for any other).
    A post with work is refused by nodes of the first release, which know only 7 items.
    Raises LocalProtocolError for a time or parent of the wrong type, or a work target
    outside ``min_pow_bits`` ... ``max_pow_bits``.
    """
    if type(created_at_ms) is not int or not 0 <= created_at_ms <= _MAX_TIME_MS:
        raise LocalProtocolError("created_at_ms must be an integer number of milliseconds")
    if parent is not None and (type(parent) is not bytes or len(parent) != ID_BYTES):
        raise LocalProtocolError("parent must be a 32-byte post id")
    if work_bits is not None:
        check_target(work_bits)
    if type(kind) is not str or kind not in KINDS:
        raise UnknownKindError(f"post kind {kind!r} is not one this implementation can write")
    _check_fields(kind, board, parent, body, created_at_ms)
    unsigned = _unsigned(kind, board, key.public_key, created_at_ms, parent, body)
    work: tuple[int, bytes] | None = None
    if work_bits is not None:
        work = (work_bits, mine(unsigned, work_bits))
        unsigned.append(list(work))
    pid = post_id(wire.pack(unsigned))
    signature = key.sign(POST_SIGNATURE_TAG + pid)
    raw = wire.pack([unsigned, signature])
    if len(raw) > limits.MAX_POST_BYTES:
        raise BodyError(f"post is {len(raw)} bytes encoded, the limit is {limits.MAX_POST_BYTES}")
    return Post(pid, kind, board, key.public_key, created_at_ms, parent, body, signature, raw, work)


_Fields = tuple[str, str, bytes, int, "bytes | None", str, bytes, "tuple[int, bytes] | None"]


def _decode_canonical(data: bytes) -> _Fields:
    """Steps 1 to 8 of "Checking a post from outside": the fields of a canonical post of
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
    items = len(unsigned)
    if items == 7:
        _, kind, board, author, created_at_ms, parent, body = unsigned
        item = None
    elif items == 8:
        _, kind, board, author, created_at_ms, parent, body, item = unsigned
    else:
        raise FieldError(f"post body: expected 7 items (8 with work), got {items}")
    wire.expect_str(kind, "post kind")
    wire.expect_str(board, "board")
    wire.expect_bytes(author, "author", length=PUBLIC_KEY_BYTES)
    wire.expect_int(created_at_ms, "created_at", hi=_MAX_TIME_MS)
    if parent is not None:
        wire.expect_bytes(parent, "parent", length=ID_BYTES)
    wire.expect_str(body, "body")
    work = None if items == 7 else _work_field(item)
    signature = wire.expect_bytes(outer[1], "signature", length=SIGNATURE_BYTES)
    # Canonical form (docs/protocol.md, "Canonical encoding"): re-encode and compare.  Every
    # value here has been type-checked, so pack() cannot fail.
    if wire.pack(value) != raw:
        raise NonCanonicalError("post: bytes are not the canonical encoding")
    return kind, board, author, created_at_ms, parent, body, signature, work


def _work_field(item: Any) -> tuple[int, bytes]:
    wire.expect_list(item, 2, "work")
    target = wire.expect_int(item[0], "work target", lo=limits.MIN_POW_BITS, hi=limits.MAX_POW_BITS)
    return target, wire.expect_bytes(item[1], "work nonce", length=NONCE_BYTES)


def stored_work(raw: bytes) -> tuple[int, bytes] | None:
    """The ``work`` of a post from its canonical bytes, which passed :func:`decode_post` before
    (a store's row, say), without decoding them again.

    In the canonical form the unsigned array of a post with work starts with ``98`` (raw byte 1)
    and ends with the work item, ``92``, the target (a positive fixint: 8 to 40), ``c4 08`` and
    the nonce, just before the signature's 66 bytes.
    """
    if raw[1] != 0x98:
        return None
    item = raw[-(2 + SIGNATURE_BYTES) - 4 - NONCE_BYTES : -(2 + SIGNATURE_BYTES)]
    return item[1], item[4:]


def decode_post(data: bytes) -> Post:
    """Decode and shape-check a signed post, without verifying its signature or its time.

    Steps 1 to 13 of "Checking a post from outside", the work check included (it needs only
    the id).  Raises TooLargeError, MalformedError, NonCanonicalError, FieldError,
    VersionError, UnknownKindError, BoardError, BodyError or WorkError -- all
    RemoteProtocolError subclasses.
    """
    return _finish(_decode_canonical(data), bytes(data))


def _finish(decoded: _Fields, raw: bytes) -> Post:
    """Steps 9 to 13 of "Checking a post from outside" on the fields of a canonical post."""
    kind, board, author, created_at_ms, parent, body, signature, work = decoded
    _check_fields(kind, board, parent, body, created_at_ms)
    pid = claimed_id(raw)
    if work is not None and not meets(pid, work[0]):
        raise WorkError(f"the post commits to {work[0]} bits of work, and its id has fewer leading zero bits")
    return Post(pid, kind, board, author, created_at_ms, parent, body, signature, raw, work)


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Bytes that :func:`decode_post` refuses: the error it raised, and the id to report for
    them (that of :func:`refused_id`: the id of the bytes once steps 1 to 8 passed, else None)."""

    error: RemoteProtocolError
    id: bytes | None

    @property
    def code(self) -> str:
        return self.error.code


def decode_each(raws: Iterable[bytes]) -> list[Post | Undecodable]:
    """:func:`decode_post` of each of ``raws``, with the refusals as values instead of raised:
    for each, the :class:`Post` (steps 1 to 13 passed; then :func:`check_decoded`) or an
    :class:`Undecodable` holding the error ``decode_post`` raises for it and its
    :func:`refused_id`.  Each post is decoded once, however it is then screened and checked.
    Raises nothing for bad input.
    """
    out: list[Post | Undecodable] = []
    for data in raws:
        raw = bytes(data)
        try:
            decoded = _decode_canonical(raw)
        except RemoteProtocolError as exc:
            out.append(Undecodable(exc, None))
            continue
        try:
            out.append(_finish(decoded, raw))
        except RemoteProtocolError as exc:
            out.append(Undecodable(exc, claimed_id(raw)))
    return out


def refused_id(data: bytes) -> bytes | None:
    """The id to report for a refused post: the id of ``data`` when the bytes are a canonical
    post of format version 1 (steps 1 to 8 of "Checking a post from outside" pass, so the id
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
    RemoteProtocolError of :func:`decode_post` (WorkError included), FutureError or
    SignatureError.  An object of a kind this implementation does not know passes when its
    generic fields are sound: ask :func:`is_known_kind` before interpreting one.
    """
    return check_decoded(decode_post(data), now)


def check_decoded(post: Post, now: float) -> Post:
    """The rest of :func:`check_post` for a post :func:`decode_post` (or :func:`decode_each`)
    returned: steps 14 and 15 of "Checking a post from outside", the time window, then the
    signature.  ``check_post(data, now)`` is ``check_decoded(decode_post(data), now)``: the same
    rules, errors and order, without decoding the bytes a second time.  Returns ``post``;
    raises FutureError or SignatureError.
    """
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

"""Moderation statements and charters: what they say (docs/protocol.md, "Moderation statements",
"Charters").

Both are ordinary signed posts (protocol/posts.py checks their bytes and their body grammar),
so they are gossiped, fetched, bundled, reconciled and retracted like any post:

* a **statement** (kind ``moderation``) is one moderator's word about one post or one author
  on one board: ``hide``, ``block`` or ``vouch`` (authors only), with a reason code and an
  optional expiry.  Its ``parent`` is the target: a post id, or an author's public key.  The
  moderator undoes it by retracting it (kind ``retract``, parent = the statement's id);
* a **charter** (kind ``charter``) lists the moderators a board's opener proposes, and a
  description.

This module turns such posts into plain values (:class:`Statement`, :class:`Charter`) and makes
new ones; what a node *believes* from them is protocol/trust.py.  Nothing here reads a clock:
``created_at_ms`` is always given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import limits, posts
from .errors import BodyError, FieldError, LocalProtocolError
from .identity import PUBLIC_KEY_BYTES, SigningKey
from .posts import Post

__all__ = [
    "KIND_MODERATION",
    "KIND_CHARTER",
    "ACTIONS",
    "SUBJECTS",
    "REASONS",
    "Statement",
    "parse_statement",
    "statement_body",
    "create_statement",
    "Charter",
    "parse_charter",
    "charter_body",
    "create_charter",
    "newest",
    "opener",
    "board_charter",
]

KIND_MODERATION = posts.KIND_MODERATION
KIND_CHARTER = posts.KIND_CHARTER
#: What a statement does: collapse (``hide``), refuse to store or forward (``block``), or trust
#: (``vouch``: no stranger quota, no proof of work).
ACTIONS = posts.STATEMENT_ACTIONS
#: What a statement is about: one post (the target is its id) or one author (the target is the key).
SUBJECTS = posts.STATEMENT_SUBJECTS
#: The reason codes a node knows by name.  Any code matching ``[a-z][a-z0-9_]{0,31}`` is valid;
#: an unknown one is shown as the code itself.
REASONS = ("spam", "flood", "abuse", "impersonation", "provocation", "doxxing", "off_topic", "trusted", "other")


@dataclass(frozen=True, slots=True)
class Statement:
    """One moderation statement, decoded from its post.

    ``id`` is the post's id, ``moderator`` its author, ``target`` its parent (a post id when
    ``subject`` is ``post``, an author's public key when it is ``author``).
    """

    id: bytes
    board: str
    moderator: bytes
    created_at_ms: int
    action: str
    subject: str
    target: bytes
    reason: str
    expires_at_ms: int | None

    def active(self, now_ms: int) -> bool:
        """Whether the statement is in force at ``now_ms``: it has no expiry or ``now_ms`` is before it."""
        return self.expires_at_ms is None or now_ms < self.expires_at_ms

    @property
    def key(self) -> tuple[bytes, str, str, bytes]:
        """``(moderator, board, subject, target)``: of the statements with one key, only the newest counts."""
        return self.moderator, self.board, self.subject, self.target

    @property
    def order(self) -> tuple[int, bytes]:
        """``(created_at_ms, id)``: the larger is the newer."""
        return self.created_at_ms, self.id

    def __repr__(self) -> str:
        return (f"<Statement {self.id.hex()[:16]} {self.action} {self.subject} {self.target.hex()[:16]} "
                f"by {self.moderator.hex()[:16]} board={self.board!r} reason={self.reason}>")


def parse_statement(post: Post) -> Statement:
    """The :class:`Statement` a moderation post makes.

    The post's body and parent are checked again (a post built by hand or read from a store
    is not trusted to have passed :func:`posts.decode_post`): FieldError without a 32-byte
    target, BodyError for a body outside the grammar.  LocalProtocolError if ``post`` is not of
    kind ``moderation`` at all.
    """
    if post.kind != KIND_MODERATION:
        raise LocalProtocolError(f"parse_statement needs a moderation post, not a {post.kind!r}")
    if type(post.parent) is not bytes or len(post.parent) != posts.ID_BYTES:
        raise FieldError("a moderation statement must name its 32-byte target")
    action, subject, reason, expires_at_ms = posts.parse_statement_body(post.body, post.created_at_ms)
    return Statement(post.id, post.board, post.author, post.created_at_ms, action, subject, post.parent, reason,
                     expires_at_ms)


def statement_body(action: str, subject: str, reason: str, expires_at_ms: int | None = None) -> str:
    """The body text of a statement (not checked: :func:`create_statement` checks it)."""
    body = f"{action} {subject} {reason}"
    return body if expires_at_ms is None else f"{body} {expires_at_ms}"


def _time(created_at_ms: int | None) -> int:
    if created_at_ms is None:
        # protocol/ never reads the clock: the caller says when.
        raise LocalProtocolError("created_at_ms is required (the caller's clock, in ms)")
    return created_at_ms


def create_statement(key: SigningKey, *, board: str, action: str, subject: str, target: bytes, reason: str,
                     expires_at_ms: int | None = None, created_at_ms: int | None = None,
                     work_bits: int | None = None) -> Post:
    """Sign a moderation statement by ``key`` about ``target`` on ``board``.

    ``created_at_ms`` is required (None raises LocalProtocolError: the protocol has no clock).
    Raises BodyError for an action, subject, reason or expiry outside the grammar (``vouch
    post`` included), BoardError for a bad board, LocalProtocolError for a target that is not
    32 bytes or an expiry that is not an integer.
    """
    at = _time(created_at_ms)
    if type(target) is not bytes or len(target) != posts.ID_BYTES:
        raise LocalProtocolError("target must be 32 bytes: a post id or an author's public key")
    if expires_at_ms is not None and type(expires_at_ms) is not int:
        raise LocalProtocolError("expires_at_ms must be an integer number of milliseconds")
    for value, what in ((action, "action"), (subject, "subject"), (reason, "reason")):
        if type(value) is not str:
            raise BodyError(f"the {what} of a statement must be text")
    body = statement_body(action, subject, reason, expires_at_ms)
    return posts.create_post(key, kind=KIND_MODERATION, board=board, body=body, created_at_ms=at,
                             parent=target, work_bits=work_bits)


@dataclass(frozen=True, slots=True)
class Charter:
    """A board's charter, decoded from its post: the moderators its author proposes, in order."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    moderators: tuple[bytes, ...]
    description: str

    @property
    def order(self) -> tuple[int, bytes]:
        """``(created_at_ms, id)``: the larger is the newer."""
        return self.created_at_ms, self.id


def parse_charter(post: Post) -> Charter:
    """The :class:`Charter` a charter post makes.

    FieldError if it names a parent, BodyError for a body outside the grammar,
    LocalProtocolError if ``post`` is not of kind ``charter``.
    """
    if post.kind != KIND_CHARTER:
        raise LocalProtocolError(f"parse_charter needs a charter post, not a {post.kind!r}")
    if post.parent is not None:
        raise FieldError("a charter has no parent")
    moderators, description = posts.parse_charter_body(post.body)
    return Charter(post.id, post.board, post.author, post.created_at_ms, moderators, description)


def charter_body(moderators: Sequence[bytes], description: str = "") -> str:
    """The body text of a charter: one ``moderator <hex>`` line per key, then, when there is a
    description (or no moderator at all), an empty line and the description."""
    lines = [f"moderator {key.hex()}" for key in moderators]
    if description or not lines:
        lines += ["", description]
    return "\n".join(lines)


def create_charter(key: SigningKey, *, board: str, moderators: Sequence[bytes], description: str = "",
                   created_at_ms: int | None = None, work_bits: int | None = None) -> Post:
    """Sign a charter for ``board`` naming ``moderators`` (public keys, at most
    ``max_charter_moderators``, no repeats).

    ``created_at_ms`` is required (None raises LocalProtocolError).  Raises BodyError for too
    many or repeated moderators, a description that breaks the text-body rule (a charter with no
    moderator needs a description that is not blank) or holds a moderator line;
    LocalProtocolError for a key that is not 32 bytes.
    """
    at = _time(created_at_ms)
    keys = list(moderators)
    if any(type(k) is not bytes or len(k) != PUBLIC_KEY_BYTES for k in keys):
        raise LocalProtocolError("moderators must be 32-byte public keys")
    if len(keys) > limits.MAX_CHARTER_MODERATORS:
        raise BodyError(f"a charter names at most {limits.MAX_CHARTER_MODERATORS} moderators")
    if type(description) is not str:
        raise BodyError("a charter's description must be text")
    return posts.create_post(key, kind=KIND_CHARTER, board=board, body=charter_body(keys, description),
                             created_at_ms=at, work_bits=work_bits)


def newest(items: Iterable[Statement]) -> Statement | None:
    """The newest of ``items`` by ``(created_at_ms, id)``, or None when there are none."""
    return max(items, key=lambda s: s.order, default=None)


def opener(candidates: Iterable[Post]) -> bytes | None:
    """The board's opener as far as ``candidates`` show: the author of the oldest post of kind
    ``post`` among them (smallest ``(created_at_ms, id)``), or None when there is none.

    Pass the posts one board holds (or just its oldest ``post``): other kinds are skipped.
    created_at is chosen by authors, so a backdated post makes its author the opener; that is
    why a charter is only ever adopted explicitly (docs/protocol.md, "Charters").
    """
    first = min((p for p in candidates if p.kind == posts.KIND_POST), key=lambda p: (p.created_at_ms, p.id),
                default=None)
    return None if first is None else first.author


def board_charter(charters: Iterable[Charter], opener_key: bytes | None) -> Charter | None:
    """The charter that counts on a board: the newest (largest ``(created_at_ms, id)``) of those
    by ``opener_key``; None when the opener is unknown or signed none."""
    if opener_key is None:
        return None
    return max((c for c in charters if c.author == opener_key), key=lambda c: c.order, default=None)

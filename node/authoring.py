"""How a member's pseudonym writes: the one path by which both the command line and the web UI
sign, store and announce posts, replies, retractions, moderation statements and charters.

Writing has two halves.  The first is pure: :func:`compose_post` and
:func:`compose_retraction` sign what is to be stored, from a key, the member's input and a
time given to them, and apply the rules every front end shares:

- the profile rule: a pseudonym's first post on a board is preceded by a signed ``profile``
  post carrying its name (docs/protocol.md, "Posts"), so that readers on every node see the
  name and not only the fingerprint;
- only posts and replies can be replied to;
- only posts, replies, profiles, moderation statements and charters can be retracted, and
  only by their author; a retraction is never dated before the post it retracts.  Retracting a
  statement is how a moderator undoes it (docs/moderation.md).

The second half stores what was composed, through one of two thin adapters:

- :class:`StoreAuthor`, for the command line: it writes to the store directly.  A node running
  on the same data folder picks the new posts up (``NodeCore.poll_changes``) and announces them
  to its peers, so the command needs no running node.
- :class:`CoreAuthor`, for the web UI: it goes through ``NodeCore.ingest_checked``, which
  updates the reconciliation index and tells the node's listeners (the push to peers, the
  author names, the live feed) at once.

Both raise :class:`NotStoredError` when the store refuses the new post, and let
``StorageFullError`` through (nothing was stored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dazibao.protocol import moderation, posts
from dazibao.protocol.identity import SigningKey
from dazibao.protocol.posts import (
    KIND_CHARTER,
    KIND_MODERATION,
    KIND_POST,
    KIND_PROFILE,
    KIND_REPLY,
    KIND_RETRACT,
    Post,
)

from .store import Store

if TYPE_CHECKING:  # the running node's core; the command line never loads it
    from .service import NodeCore

__all__ = [
    "REPLYABLE_KINDS", "RETRACTABLE_KINDS", "PROFILE_SCAN_ROWS", "Target", "Draft", "AuthoringError",
    "NotReplyableError", "NotRetractableError", "NotStoredError", "NoCharterError", "check_reply_target",
    "check_retractable",
    "compose_profile", "compose_post", "compose_object", "compose_retraction", "compose_statement", "compose_charter",
    "has_profile_on",
    "StoreAuthor", "CoreAuthor", "Authoring",
]

#: The kinds a reply may answer.
REPLYABLE_KINDS = (KIND_POST, KIND_REPLY)
#: The kinds a retraction may remove (a retraction itself cannot be taken back).  Retracting a
#: moderation statement undoes it.
RETRACTABLE_KINDS = (KIND_POST, KIND_REPLY, KIND_PROFILE, KIND_MODERATION, KIND_CHARTER, *posts.ACTION_KINDS)
#: How many of a board's profile posts the command line reads, newest first, to find out whether
#: a pseudonym already published its name there.  Past this many it publishes the name again:
#: a repeated profile is harmless, while an unbounded scan would let anyone who floods a board
#: with profiles slow down every `dazibao post` on it.
PROFILE_SCAN_ROWS = 10_000
_SCAN_PAGE = 500


class Target(Protocol):
    """A stored post that is replied to or retracted (``store.PostRow`` and ``posts.Post`` are)."""

    @property
    def id(self) -> bytes: ...
    @property
    def kind(self) -> str: ...
    @property
    def board(self) -> str: ...
    @property
    def author(self) -> bytes: ...
    @property
    def created_at_ms(self) -> int: ...


class AuthoringError(Exception):
    """A post, reply or retraction that cannot be made; the message says why, in one line."""


class NotReplyableError(AuthoringError):
    """The post replied to is not a post or a reply."""


class NotRetractableError(AuthoringError):
    """The post cannot be retracted: of a kind that cannot, or by another author."""


class NoCharterError(AuthoringError):
    """The board has no charter on this node (none by its opener)."""


class NotStoredError(AuthoringError):
    """The store refused the new post; ``code`` is its rejection code (node/store.py)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"not stored: {code}")
        self.code = code


@dataclass(frozen=True, slots=True)
class Draft:
    """A signed post ready to be stored, with the profile that must precede it, if any."""

    post: Post
    profile: Post | None = None

    @property
    def batch(self) -> list[Post]:
        """What to store, in order, in one batch: the profile (if any), then the post."""
        return [self.profile, self.post] if self.profile is not None else [self.post]


# --- the pure half ----------------------------------------------------------------------------


def check_reply_target(target: Target) -> None:
    """Raises NotReplyableError unless ``target`` is a post or a reply."""
    if target.kind not in REPLYABLE_KINDS:
        raise NotReplyableError("only posts and replies can be replied to")


def check_retractable(target: Target, author: bytes) -> None:
    """Raises NotRetractableError unless ``author`` may retract ``target``."""
    if target.kind not in RETRACTABLE_KINDS:
        raise NotRetractableError("only posts, replies, profiles, moderation statements and charters can be retracted")
    if target.author != author:
        raise NotRetractableError("only the pseudonym that wrote a post can retract it")


def compose_profile(key: SigningKey, name: str, *, board: str, now_ms: int) -> Post:
    """Sign a profile post: the pseudonym holding ``key`` is called ``name`` on ``board``.

    Raises BoardError or BodyError for a board or a name no node would accept.
    """
    return posts.create_post(key, kind=KIND_PROFILE, board=board, body=name, created_at_ms=now_ms)


def compose_post(key: SigningKey, name: str, *, board: str, body: str, now_ms: int, parent: bytes | None = None,
                 has_profile: bool) -> Draft:
    """Sign a post (a reply when ``parent`` is given) by the pseudonym ``name`` holding ``key``.

    Unless ``has_profile`` says the pseudonym already published a profile on ``board``, the
    draft carries one with ``name``, dated as the post.  Raises what ``posts.create_post``
    raises for a board, a body or a name no node would accept (BoardError, BodyError, ...).
    """
    profile = None
    if not has_profile:
        profile = compose_profile(key, name, board=board, now_ms=now_ms)
    post = posts.create_post(key, kind=KIND_REPLY if parent is not None else KIND_POST, board=board, body=body,
                             created_at_ms=now_ms, parent=parent)
    return Draft(post, profile)


def compose_object(key: SigningKey, name: str, make: Callable[[int], Post], *, board: str, now_ms: int,
                   has_profile: bool) -> Draft:
    """Sign a collective-action object (protocol/organizing.py) by the pseudonym ``name``:
    ``make(now_ms)`` signs it with ``key``.  The profile rule applies as to posts, so that a
    signature or a report shows its author's name on every node.  Raises what ``make`` raises
    (BoardError, BodyError, ...)."""
    profile = None if has_profile else compose_profile(key, name, board=board, now_ms=now_ms)
    made = make(now_ms)
    if made.author != key.public_key or made.board != board or made.kind not in posts.ACTION_KINDS:
        raise ValueError("compose_object: make() must sign a collective-action object on the board with the key")
    return Draft(made, profile)


def compose_retraction(key: SigningKey, target: Target, *, now_ms: int) -> Post:
    """Sign the retraction of ``target``, dated no earlier than ``target`` itself.

    Raises NotRetractableError when ``key`` may not retract ``target``.
    """
    check_retractable(target, key.public_key)
    return posts.create_post(key, kind=KIND_RETRACT, board=target.board, body="",
                             created_at_ms=max(now_ms, target.created_at_ms), parent=target.id)


def compose_statement(key: SigningKey, *, board: str, action: str, subject: str, target: bytes, reason: str,
                      expires_at_ms: int | None = None, now_ms: int) -> Post:
    """Sign a moderation statement (docs/moderation.md) by the pseudonym holding ``key``.

    Raises BodyError for an action, subject, reason or expiry outside the grammar, BoardError
    for a bad board, LocalProtocolError for a target that is not 32 bytes.
    """
    return moderation.create_statement(key, board=board, action=action, subject=subject, target=target,
                                       reason=reason, expires_at_ms=expires_at_ms, created_at_ms=now_ms)


def compose_charter(key: SigningKey, *, board: str, moderators: Sequence[bytes], description: str = "",
                    now_ms: int) -> Post:
    """Sign a charter for ``board`` naming ``moderators``.  It counts on a node only when the
    pseudonym opened the board there (wrote its oldest post).  Raises BodyError, BoardError,
    LocalProtocolError as :func:`dazibao.protocol.moderation.create_charter`."""
    return moderation.create_charter(key, board=board, moderators=moderators, description=description,
                                     created_at_ms=now_ms)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_stored(new: Post, rejected: Sequence[tuple[bytes | None, str]]) -> Post:
    """``new``, unless the store refused it (raises NotStoredError).

    A duplicate is neither refused nor added: the very same signed post is stored already
    (the same pseudonym sent the same text twice within a millisecond), which is success.
    """
    for pid, code in rejected:
        if pid == new.id:
            raise NotStoredError(code)
    return new


# --- the store's half -------------------------------------------------------------------------


def has_profile_on(store: Store, author: bytes, board: str, *, scan: int = PROFILE_SCAN_ROWS) -> bool:
    """Whether ``author`` has a profile post stored on ``board`` among its ``scan`` newest profiles."""
    before = None
    read = 0
    while read < scan:
        want = min(_SCAN_PAGE, scan - read)
        page = store.list_posts(board, want, before, kinds=[KIND_PROFILE])
        if any(row.author == author for row in page):
            return True
        if len(page) < want:
            return False
        read += len(page)
        before = (page[-1].created_at_ms, page[-1].id)
    return False


class StoreAuthor:
    """Writes straight to a store (the command line); a node on the same store announces it."""

    def __init__(self, store: Store, *, source: str = "local") -> None:
        self.store = store
        self.source = source

    def post(self, key: SigningKey, name: str, *, board: str, body: str, now_ms: int,
             parent: bytes | None = None) -> Draft:
        """Sign and store a post, and the pseudonym's profile on a board where it has none.

        Raises NotStoredError, StorageFullError, or what :func:`compose_post` raises.
        """
        draft = compose_post(key, name, board=board, body=body, now_ms=now_ms, parent=parent,
                             has_profile=has_profile_on(self.store, key.public_key, board))
        result = self.store.ingest(draft.batch, source=self.source, now_ms=now_ms)
        _check_stored(draft.post, result.rejected)
        return draft

    def publish(self, key: SigningKey, name: str, make: Callable[[int], Post], *, board: str,
                now_ms: int) -> Draft:
        """Sign and store a collective-action object (and the pseudonym's profile on a board
        where it has none); see :func:`compose_object`.  Raises NotStoredError,
        StorageFullError, or what ``make`` raises."""
        draft = compose_object(key, name, make, board=board, now_ms=now_ms,
                               has_profile=has_profile_on(self.store, key.public_key, board))
        result = self.store.ingest(draft.batch, source=self.source, now_ms=now_ms)
        _check_stored(draft.post, result.rejected)
        return draft

    def retract(self, key: SigningKey, target: Target, *, now_ms: int) -> Post:
        """Sign and store the retraction of ``target``.

        Raises NotRetractableError, NotStoredError or StorageFullError.
        """
        retraction = compose_retraction(key, target, now_ms=now_ms)
        result = self.store.ingest([retraction], source=self.source, now_ms=now_ms)
        return _check_stored(retraction, result.rejected)

    def moderate(self, key: SigningKey, *, board: str, action: str, subject: str, target: bytes, reason: str,
                 expires_at_ms: int | None = None, now_ms: int | None = None) -> Post:
        """Sign and store a moderation statement; it applies here at once (a local pseudonym is
        followed on every board).  Undo it with :meth:`retract` of the statement.

        Raises NotStoredError, StorageFullError, or what :func:`compose_statement` raises.
        """
        now_ms = _now_ms() if now_ms is None else now_ms
        statement = compose_statement(key, board=board, action=action, subject=subject, target=target,
                                      reason=reason, expires_at_ms=expires_at_ms, now_ms=now_ms)
        result = self.store.ingest([statement], source=self.source, now_ms=now_ms)
        return _check_stored(statement, result.rejected)

    def charter(self, key: SigningKey, *, board: str, moderators: Sequence[bytes], description: str = "",
                now_ms: int | None = None) -> Post:
        """Sign and store a charter for ``board``.  Raises NotStoredError, StorageFullError, or
        what :func:`compose_charter` raises."""
        now_ms = _now_ms() if now_ms is None else now_ms
        charter = compose_charter(key, board=board, moderators=moderators, description=description, now_ms=now_ms)
        result = self.store.ingest([charter], source=self.source, now_ms=now_ms)
        return _check_stored(charter, result.rejected)

    def adopt_charter(self, board: str, *, now_ms: int | None = None) -> list[bytes]:
        """Follow the moderators the board's charter names (source ``charter``); the keys that
        were new.  Raises NoCharterError when the board has none here, ValueError past
        ``max_moderators_per_board`` (nothing added)."""
        charter = self.store.charter(board)
        if charter is None:
            raise NoCharterError(f"board {board!r} has no charter here")
        now_ms = _now_ms() if now_ms is None else now_ms
        return self.store.add_moderators(board, list(charter.moderators), source="charter", now_ms=now_ms)


class CoreAuthor:
    """Writes through a running node's core (the web UI): indexed and announced at once.

    ``has_profile`` answers the profile rule from memory when the caller keeps the authors'
    profiles (the web UI's author book); without it, the store is asked on its own thread.
    """

    def __init__(self, core: NodeCore, *, has_profile: Callable[[bytes, str], bool] | None = None,
                 source: str = "local") -> None:
        self.core = core
        self.has_profile = has_profile
        self.source = source

    async def _has_profile(self, author: bytes, board: str) -> bool:
        if self.has_profile is not None:
            return self.has_profile(author, board)
        return await self.core.db.call(has_profile_on, author, board)

    async def post(self, key: SigningKey, name: str, *, board: str, body: str, parent: bytes | None = None) -> Draft:
        """Sign and store a post (see :meth:`StoreAuthor.post`), dated by the node's clock.

        Raises NotStoredError, StorageFullError, or what :func:`compose_post` raises.
        """
        draft = compose_post(key, name, board=board, body=body, now_ms=self.core.now_ms(), parent=parent,
                             has_profile=await self._has_profile(key.public_key, board))
        report = await self.core.ingest_checked(draft.batch, self.source)
        _check_stored(draft.post, report.rejected)
        return draft

    async def publish(self, key: SigningKey, name: str, make: Callable[[int], Post], *, board: str) -> Draft:
        """Sign and store a collective-action object (see :meth:`StoreAuthor.publish`), dated by
        the node's clock, and the pseudonym's profile on a board where it has none.

        Raises NotStoredError, StorageFullError, or what ``make`` raises.
        """
        draft = compose_object(key, name, make, board=board, now_ms=self.core.now_ms(),
                               has_profile=await self._has_profile(key.public_key, board))
        report = await self.core.ingest_checked(draft.batch, self.source)
        _check_stored(draft.post, report.rejected)
        return draft

    async def profile(self, key: SigningKey, name: str, *, board: str) -> Post:
        """Sign and store a profile post naming the pseudonym on ``board``.

        Raises NotStoredError, StorageFullError, or what :func:`compose_profile` raises.
        """
        profile = compose_profile(key, name, board=board, now_ms=self.core.now_ms())
        report = await self.core.ingest_checked([profile], self.source)
        return _check_stored(profile, report.rejected)

    async def retract(self, key: SigningKey, target: Target) -> Post:
        """Sign and store the retraction of ``target``, dated by the node's clock.

        Raises NotRetractableError, NotStoredError or StorageFullError.
        """
        retraction = compose_retraction(key, target, now_ms=self.core.now_ms())
        report = await self.core.ingest_checked([retraction], self.source)
        return _check_stored(retraction, report.rejected)

    async def moderate(self, key: SigningKey, *, board: str, action: str, subject: str, target: bytes,
                       reason: str, expires_at_ms: int | None = None) -> Post:
        """Sign and store a moderation statement (see :meth:`StoreAuthor.moderate`), dated by the
        node's clock; the node's reconciliation set follows at once.

        Raises NotStoredError, StorageFullError, or what :func:`compose_statement` raises.
        """
        # The pseudonym must be known to the store as local (followed on every board), even if
        # it was created a moment ago.
        await self.core.sync_identities()
        statement = compose_statement(key, board=board, action=action, subject=subject, target=target,
                                      reason=reason, expires_at_ms=expires_at_ms, now_ms=self.core.now_ms())
        report = await self.core.ingest_checked([statement], self.source)
        return _check_stored(statement, report.rejected)

    async def charter(self, key: SigningKey, *, board: str, moderators: Sequence[bytes],
                      description: str = "") -> Post:
        """Sign and store a charter for ``board``, dated by the node's clock."""
        charter = compose_charter(key, board=board, moderators=moderators, description=description,
                                  now_ms=self.core.now_ms())
        report = await self.core.ingest_checked([charter], self.source)
        return _check_stored(charter, report.rejected)

    async def adopt_charter(self, board: str) -> list[bytes]:
        """Follow the moderators the board's charter names (source ``charter``); the keys that
        were new.  Raises NoCharterError, ValueError past ``max_moderators_per_board``."""
        charter = await self.core.db.call(Store.charter, board)
        if charter is None:
            raise NoCharterError(f"board {board!r} has no charter here")
        added = await self.core.db.call(Store.add_moderators, board, list(charter.moderators), source="charter",
                                        now_ms=self.core.now_ms())
        # Posts the new moderators block left the store: the index follows now, not at the
        # next poll.
        await self.core.refresh()
        return added


#: The authoring path of a running node (the web UI): the same class as :class:`CoreAuthor`.
Authoring = CoreAuthor

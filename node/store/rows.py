"""The values the store hands out: rows of its tables and the results of its calls, and its errors.

Plain frozen dataclasses, so that a caller never holds anything tied to the database
connection.  The errors are those of the environment (the file, the disk, another process);
any other exception out of the store is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dazibao.protocol.identity import SIGNATURE_BYTES
from dazibao.protocol.posts import Post, post_key, stored_work

__all__ = [
    "StoreError",
    "SchemaVersionError",
    "NotAStoreError",
    "StoreBusyError",
    "StorageFullError",
    "IdentityExistsError",
    "PostRow",
    "IngestResult",
    "ThreadRow",
    "BoardInfo",
    "SearchHit",
    "Changes",
    "PeerRow",
    "IdentityRow",
    "ModeratorRow",
    "RefusalRow",
]


# --- errors ---------------------------------------------------------------------------------


class StoreError(Exception):
    """The store cannot do what was asked because of the database file or its environment."""


class SchemaVersionError(StoreError):
    """The database was written by a newer dazibao than this one."""


class NotAStoreError(StoreError):
    """The file is not a dazibao database (another program's, or damaged)."""


class StoreBusyError(StoreError):
    """Another process kept the database locked for longer than the busy timeout."""


class IdentityExistsError(StoreError):
    """A pseudonym with this name or public key is already recorded."""


class StorageFullError(StoreError):
    """The disk, or the store's size cap (``max_store_bytes``), is full: nothing was written.

    Reads still work.  ``code`` is the stable error code of the gossip API's answer.
    """

    code = "storage_full"


# --- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostRow:
    """A stored post.  ``raw`` is the canonical signed encoding, exactly as received."""

    seq: int
    id: bytes
    kind: str
    board: str
    author: bytes
    created_at_ms: int
    parent: bytes | None
    body: str
    raw: bytes
    received_at_ms: int
    source: str | None

    @property
    def key(self) -> bytes:
        """The reconciliation key, as :func:`dazibao.protocol.posts.post_key`."""
        return post_key(self.board, self.created_at_ms, self.id)

    @property
    def signature(self) -> bytes:
        # The canonical encoding ends with the signature as bin8 (see posts.decode_post).
        return self.raw[-SIGNATURE_BYTES:]

    def to_post(self) -> Post:
        """The :class:`~dazibao.protocol.posts.Post` this row stores."""
        return Post(
            self.id,
            self.kind,
            self.board,
            self.author,
            self.created_at_ms,
            self.parent,
            self.body,
            self.signature,
            self.raw,
            stored_work(self.raw),
        )

    def __repr__(self) -> str:
        return f"<PostRow #{self.seq} {self.id.hex()[:16]} {self.kind} board={self.board!r}>"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one :meth:`Store.ingest` call did.

    ``added``: the posts now stored, in batch order.  ``duplicates``: posts already stored (or
    repeated in the batch).  ``rejected``: ``(id, code)`` for every post refused, with one of
    the ``REJECT_*`` codes or a policy code (``blocked``, ``quota_posts``, ``quota_bytes``,
    ``pow_required``).  ``removed_keys``: reconciliation keys that left the node's set
    because of this batch (retracted targets, foreign retractions, posts a moderator's
    statement blocks, carried refusals a statement made the node forget).
    """

    added: list[Post]
    duplicates: int
    rejected: list[tuple[bytes, str]]
    removed_keys: list[bytes]


@dataclass(frozen=True, slots=True)
class ThreadRow:
    """A top-level post with the number of its direct replies and its latest activity."""

    post: PostRow
    replies: int
    last_at_ms: int


@dataclass(frozen=True, slots=True)
class BoardInfo:
    board: str
    posts: int  # stored posts and replies (the rows a reader counts)
    last_at_ms: int  # newest created_at_ms of those (0: none)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A search result.

    ``snippet`` is plain text taken from the body (with "…" where it was cut), and ``spans``
    are ``(start, end)`` code-point offsets of the matched text in ``snippet``, sorted and not
    overlapping.  To show it as HTML, escape the text between and inside the spans separately
    and wrap each span in ``<mark>``.
    """

    post: PostRow
    snippet: str
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed after a pair of sequence numbers (see :meth:`Store.changes_since`)."""

    added: list[PostRow]
    removed_keys: list[bytes]
    post_seq: int
    tomb_seq: int
    complete: bool  # False when ``limit`` cut the answer short: call again with the new seqs
    #: Keys now in the node's reconciliation set that are not stored posts (carried refusals
    #: and purges); only read when a ``log_seq`` is given.
    present_keys: list[bytes] = field(default_factory=list)
    log_seq: int = 0
    #: Log rows after the given ``log_seq`` were trimmed: rebuild the set from the store.
    log_lost: bool = False


@dataclass(frozen=True, slots=True)
class PeerRow:
    url: str
    source: str
    added_at_ms: int
    last_ok_at_ms: int | None
    last_error: str | None
    last_error_at_ms: int | None
    failures: int
    next_try_at_ms: int
    posts_received: int
    posts_rejected: int


@dataclass(frozen=True, slots=True)
class IdentityRow:
    name: str
    public_key: bytes
    created_at_ms: int



@dataclass(frozen=True, slots=True)
class ModeratorRow:
    """A moderator this node follows on ``board``; ``source`` is config, cli, ui or charter."""

    board: str
    key: bytes
    source: str
    added_at_ms: int


@dataclass(frozen=True, slots=True)
class RefusalRow:
    """A post refused by policy, remembered so that it is refused again cheaply."""

    id: bytes
    board: str
    created_at_ms: int
    author: bytes
    code: str
    at_ms: int
    carried: bool

    @property
    def key(self) -> bytes:
        return post_key(self.board, self.created_at_ms, self.id)

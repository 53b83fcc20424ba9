"""The node's storage: the only module of dazibao that talks SQL.

One SQLite file per node (DESIGN.md, "Storage").  It holds the signed posts exactly as they
were received, the tombstones of every id that must never be accepted again, the retractions
still waiting for their target, the peers, the names of the local pseudonyms and a small
key/value table.  Everything about *what is valid* lives in ``dazibao.protocol``; this module
only applies the storage rules:

* **Ingest is idempotent and all-or-nothing.**  :meth:`Store.ingest` takes a batch of posts the
  caller has already decoded and signature-checked and stores it in one transaction: a post
  already stored is a duplicate, a tombstoned id is refused, and an exception leaves nothing
  of the batch behind.
* **Retractions are permanent and order-independent.**  A retraction removes its target
  (same author only, :func:`dazibao.protocol.posts.check_retraction`) and leaves a tombstone,
  so gossip never brings the target back.  A retraction that arrives before its target is
  stored and remembered, and the target is refused when it comes.  The final state does not
  depend on the order in which the posts arrive (see :meth:`Store.ingest` for the rules).
* **Another process may write the same file** (the ``dazibao post`` command while the node
  runs).  Write transactions start with ``BEGIN IMMEDIATE`` and wait up to a busy timeout;
  a running node notices foreign writes by polling :meth:`Store.data_version` and catches up
  with :meth:`Store.changes_since`.

Search results mark the matched text as ``(start, end)`` code-point offsets into a snippet
(:class:`SearchHit`), never as markup, so a caller can HTML-escape the text and wrap the spans.

A :class:`Store` may be shared between threads: every call takes one lock, so calls run one
at a time.  Errors of the environment (the file is locked too long, the disk is full, the
file is not a database, the schema is newer than this code) raise :class:`StoreError`
subclasses; any other exception out of this module is a bug.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlite_utils

from dazibao.protocol import limits
from dazibao.protocol.errors import RetractionError
from dazibao.protocol.identity import SIGNATURE_BYTES
from dazibao.protocol.posts import (
    KIND_POST,
    KIND_REPLY,
    KIND_RETRACT,
    Post,
    check_retraction,
    post_key,
)

__all__ = [
    "SCHEMA_VERSION",
    "APPLICATION_ID",
    "REJECT_TOMBSTONED",
    "REJECT_NOT_CARRIED",
    "REJECT_RETRACTED",
    "REJECT_NOT_AUTHOR",
    "TOMBSTONE_REASONS",
    "PEER_SOURCES",
    "StoreError",
    "SchemaVersionError",
    "NotAStoreError",
    "StoreBusyError",
    "StorageFullError",
    "IdentityExistsError",
    "Store",
    "IngestResult",
    "PostRow",
    "ThreadRow",
    "BoardInfo",
    "SearchHit",
    "Changes",
    "PeerRow",
    "IdentityRow",
]

#: ``PRAGMA application_id`` of a dazibao store ("DZIB"), so that another program's SQLite
#: file is never mistaken for one (and ``file(1)`` can tell them apart).
APPLICATION_ID = 0x445A4942

# Codes of IngestResult.rejected.  None of them means the sender misbehaved: a peer may hold
# a post we deleted, a board we do not carry, or a retraction it has not been able to check.
REJECT_TOMBSTONED = "tombstoned"  # the id is tombstoned here (retracted, deleted or purged)
REJECT_NOT_CARRIED = "not_carried"  # the post's board is not one this node carries
REJECT_RETRACTED = "retracted"  # a same-author retraction of this post is known
REJECT_NOT_AUTHOR = RetractionError.code  # "retract_not_author": names another author's post

#: Why an id is tombstoned.  'rejected' marks a retraction of another author's post: refused
#: on arrival, or removed when its target arrived after it.
TOMBSTONE_REASONS = ("retracted", "deleted", "purged", "rejected")

PEER_SOURCES = ("config", "cli", "pex")
# A peer added again from a more deliberate source is upgraded (config > cli > pex), so a
# peer the member typed in is never treated as one merely learned by peer exchange.
_PEER_SOURCE_RANK = {"pex": 0, "cli": 1, "config": 2}

_CHUNK = 500  # ids per "IN (...)" query; far below SQLite's variable limit
_KEYS_CHUNK = 10_000  # rows per page of iter_keys
_ROWS_CHUNK = 500  # rows per page of iter_rows and iter_sizes (a post is at most 20 KiB)
_SNIPPET_CHARS = 200  # code points of body shown around the first match
# A batch that leaves at most this many posts unindexed is indexed at once, so a trickle of
# gossip and local posts keeps the search index current without anyone calling
# update_search_index; bulk syncs leave the work to it.
_INLINE_INDEX_ROWS = 64
_CACHE_KIB = 32_768  # page cache per connection: FTS5 segment merges touch many pages
# Checkpoint the WAL every ~32 MiB instead of SQLite's 4 MiB: index pages written by one
# batch are often written again by the next, and are then copied to the database once.
_WAL_AUTOCHECKPOINT_PAGES = 8_000
_MAX_QUERY_TERMS = 16
_MAX_ERROR_CHARS = 500

# SQLite primary result codes that describe the environment, not a bug in this module.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26
# The shared-memory index beside a WAL database could not be grown: the disk is full.
_SQLITE_IOERR_SHMSIZE = _SQLITE_IOERR | (19 << 8)
# While the store is full, writes are refused at once, without touching the disk, for this
# long after the last failed attempt; then the next write tries again (room may have come).
_FULL_RETRY_S = 30.0
# A node that starts with less free disk than this starts full (read-only): a write would fail
# at once, and the log could not even be checkpointed.
_MIN_FREE_BYTES_AT_START = 1 << 20


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


def _environment_error(err: sqlite3.Error) -> StoreError | None:
    """The StoreError for an error caused by the file or the machine; None for anything else."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL or code == _SQLITE_IOERR_SHMSIZE:
        return StorageFullError(f"the disk or the store's size cap (max_store_bytes) is full: nothing was written ({err})")
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreBusyError(f"the database is locked by another process ({err})")
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return NotAStoreError(f"the database file is damaged or not a database ({err})")
    if primary in (_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
        return StoreError(f"cannot write or read the database file ({err})")
    return None


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(method: _F) -> _F:
    """Run a public method under the store's lock; turn environment errors into StoreError."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as err:
                translated = _environment_error(err)
                if translated is None:
                    raise
                raise translated from err

    return wrapper  # type: ignore[return-value]


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
        )

    def __repr__(self) -> str:
        return f"<PostRow #{self.seq} {self.id.hex()[:16]} {self.kind} board={self.board!r}>"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one :meth:`Store.ingest` call did.

    ``added``: the posts now stored, in batch order.  ``duplicates``: posts already stored (or
    repeated in the batch).  ``rejected``: ``(id, code)`` for every post refused, with one of
    the ``REJECT_*`` codes.  ``removed_keys``: reconciliation keys of previously stored posts
    that this batch removed (retracted targets, foreign retractions).
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
    posts: int  # stored rows of every kind
    last_at_ms: int  # newest created_at_ms in the board


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


# --- schema and migrations ------------------------------------------------------------------
#
# Each migration is a small function run inside the one write transaction that opens an old
# file; its index in MIGRATIONS plus one is the schema version it produces, kept in
# PRAGMA user_version (written atomically with the migration, in the database header).
# Migrations issue plain SQL through the connection so that nothing inside them can commit
# early, and so that the on-disk schema is fixed by this file, not by a library version.
# Never edit a released migration: append a new one.


def _migration_1_initial(conn: sqlite3.Connection) -> None:
    statements = [
        f"PRAGMA application_id = {APPLICATION_ID}",
        # AUTOINCREMENT: a seq is never reused, even after the newest row is deleted, so that
        # changes_since() cannot miss a post that took the seq of a removed one.
        """CREATE TABLE posts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id BLOB NOT NULL UNIQUE CHECK (typeof(id) = 'blob' AND length(id) = 32),
            kind TEXT NOT NULL,
            board TEXT NOT NULL,
            author BLOB NOT NULL CHECK (typeof(author) = 'blob' AND length(author) = 32),
            created_at_ms INTEGER NOT NULL CHECK (created_at_ms >= 0),
            parent BLOB CHECK (parent IS NULL OR (typeof(parent) = 'blob' AND length(parent) = 32)),
            body TEXT NOT NULL,
            raw BLOB NOT NULL,
            received_at_ms INTEGER NOT NULL,
            source TEXT
        )""",
        # Ordered as the reconciliation keys (BINARY collation compares UTF-8 bytes).
        "CREATE INDEX posts_board_time ON posts (board, created_at_ms, id)",
        # Newest-first listing across all boards without sorting the whole table.
        "CREATE INDEX posts_time ON posts (created_at_ms, id)",
        "CREATE INDEX posts_parent ON posts (parent) WHERE parent IS NOT NULL",
        # No index on author: nothing reads by author yet, and since authors arrive in no
        # order, it was the costliest index to keep up (ingest 1.6x slower at 100k posts).
        # A stored post is its signed bytes: it is never changed, only deleted.
        """CREATE TRIGGER posts_immutable BEFORE UPDATE ON posts
           BEGIN SELECT RAISE(ABORT, 'stored posts are immutable'); END""",
        # Full-text search over bodies, for Chinese as well as English: trigram tokens need no
        # word boundaries.  External content: the text lives once, in posts.  Indexing costs
        # several times more than storing a post, so it is not done by a trigger on insert but
        # in large steps (Store.update_search_index): every post with seq <= indexed_seq is in
        # the index, and search scans the few above it.  Deleting an indexed row must hand FTS5
        # the old text through the 'delete' command; deleting one not yet indexed must not.
        """CREATE VIRTUAL TABLE posts_fts USING fts5(
            body, content='posts', content_rowid='seq', tokenize='trigram'
        )""",
        """CREATE TABLE search_state (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            indexed_seq INTEGER NOT NULL
        )""",
        "INSERT INTO search_state (one, indexed_seq) VALUES (1, 0)",
        """CREATE TRIGGER posts_fts_delete AFTER DELETE ON posts
           WHEN old.seq <= (SELECT indexed_seq FROM search_state) BEGIN
            INSERT INTO posts_fts (posts_fts, rowid, body) VALUES ('delete', old.seq, old.body);
        END""",
        # author is kept so that a retraction naming a tombstoned post can still be checked.
        """CREATE TABLE tombstones (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id BLOB NOT NULL UNIQUE,
            board TEXT,
            created_at_ms INTEGER,
            author BLOB,
            reason TEXT NOT NULL CHECK (reason IN ('retracted', 'deleted', 'purged', 'rejected')),
            at_ms INTEGER NOT NULL
        )""",
        # Keyed by retraction too: one author may sign several retractions of the same post,
        # and every one of them must be found when the target arrives.
        """CREATE TABLE pending_retractions (
            target_id BLOB NOT NULL,
            retraction_id BLOB NOT NULL,
            author BLOB NOT NULL,
            PRIMARY KEY (target_id, retraction_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE peers (
            url TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            added_at_ms INTEGER NOT NULL,
            last_ok_at_ms INTEGER,
            last_error TEXT,
            last_error_at_ms INTEGER,
            failures INTEGER NOT NULL DEFAULT 0,
            next_try_at_ms INTEGER NOT NULL DEFAULT 0,
            posts_received INTEGER NOT NULL DEFAULT 0,
            posts_rejected INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE identities (
            name TEXT PRIMARY KEY,
            public_key BLOB NOT NULL UNIQUE,
            created_at_ms INTEGER NOT NULL
        )""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value)",
    ]
    for sql in statements:
        conn.execute(sql)


def _migration_2_reply_order(conn: sqlite3.Connection) -> None:
    # A thread page reads one page of replies in (created_at, id) order; with only the index on
    # ``parent`` SQLite read and sorted every reply of the thread for each page.
    conn.execute("DROP INDEX posts_parent")
    conn.execute("CREATE INDEX posts_parent_time ON posts (parent, created_at_ms, id) WHERE parent IS NOT NULL")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_migration_1_initial, _migration_2_reply_order)

#: The schema version this code writes (the number of migrations).
SCHEMA_VERSION = len(MIGRATIONS)


# --- the store ------------------------------------------------------------------------------

_POST_COLUMNS = "seq, id, kind, board, author, created_at_ms, parent, body, raw, received_at_ms, source"
_POST_COLUMNS_P = ", ".join("p." + c.strip() for c in _POST_COLUMNS.split(","))
_INSERT_POST = (
    "INSERT INTO posts (id, kind, board, author, created_at_ms, parent, body, raw, received_at_ms, source)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_TOMBSTONE = (
    "INSERT OR IGNORE INTO tombstones (id, board, created_at_ms, author, reason, at_ms) VALUES (?, ?, ?, ?, ?, ?)"
)


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Store:
    """A node's SQLite database.  See the module docstring for the rules it keeps.

    ``Store(path)`` opens (creating it with mode 0600 if needed) and migrates the file;
    ``Store.memory()`` gives a private in-memory store for tests.  Use it as a context
    manager or call :meth:`close`.

    ``max_bytes`` caps the database file (``PRAGMA max_page_count``; None: the limit
    ``max_store_bytes``; 0: no cap but the disk).  A write that would pass the cap, or that
    the disk has no room for, raises StorageFullError and writes nothing; the write-ahead log
    is kept below ``max_wal_bytes`` (a quarter of the cap when that is smaller).

    ``read_only_fallback`` (the running node): when the disk is so full that the database
    cannot even be opened the usual way, open it for reading anyway, with an exclusive lock
    (SQLite then keeps its shared-memory index on the heap instead of in a file beside the
    database, so no byte of disk is needed; other processes cannot open the file meanwhile),
    and report it in :attr:`full`.  Writes are then refused with StorageFullError.

    Raises SchemaVersionError if the file was written by a newer dazibao, NotAStoreError if it
    is not a dazibao database, StoreBusyError if another process holds it locked for longer
    than ``busy_timeout_ms``, StorageFullError if the disk is full (without
    ``read_only_fallback``), StoreError if it cannot be opened at all.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5_000,
                 max_bytes: int | None = None, read_only_fallback: bool = False) -> None:
        self.path = os.fspath(path)
        self.memory = self.path == ":memory:"
        self._lock = threading.RLock()
        self.max_bytes = limits.MAX_STORE_BYTES if max_bytes is None else max_bytes
        cap = self.max_bytes or limits.MAX_WAL_BYTES * 4
        self.wal_limit = min(limits.MAX_WAL_BYTES, max(cap // 4, 1 << 20))
        #: When (time.monotonic()) a write last failed for want of room; None while writes work.
        self._full_since: float | None = None
        #: True while the database was opened for reading only (see ``read_only_fallback``).
        self.exclusive = False
        if not self.memory:
            _create_private(self.path)
        try:
            self._open(busy_timeout_ms, exclusive=False)
        except StorageFullError:
            if not read_only_fallback or self.memory:
                raise
            self._open(busy_timeout_ms, exclusive=True)
            self.exclusive = True
            self._full_since = time.monotonic()
        if read_only_fallback and not self.memory and not self.exclusive:
            self._probe_room()

    def _open(self, busy_timeout_ms: int, *, exclusive: bool) -> None:
        try:
            # isolation_level=None: this class issues BEGIN/COMMIT itself, so that no statement
            # ever opens a transaction behind its back.  check_same_thread=False: calls may come
            # from a worker thread; the lock serializes them.
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the database {self.path!r}: {err}") from err
        self._conn = conn
        try:
            #: The same connection wrapped by sqlite-utils, for inspection and maintenance.
            self.db = sqlite_utils.Database(conn)
            with self._lock:
                if exclusive:
                    # Before the first access: SQLite then never creates the -shm file.
                    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
                self._configure(busy_timeout_ms)
                if exclusive and self._check_file() != SCHEMA_VERSION:
                    raise StorageFullError("the database needs an upgrade, and the disk has no room for it")
                self._migrate()
        except sqlite3.Error as err:
            conn.close()
            translated = _environment_error(err)
            if translated is None:
                raise
            raise translated from err
        except BaseException:
            conn.close()
            raise

    @classmethod
    def memory(cls) -> Store:
        """A new, empty, private in-memory store."""
        return cls(":memory:")

    def close(self) -> None:
        """Close the database.  Calling it again does nothing."""
        with self._lock:
            if self._conn is None:
                return
            try:
                if not self.memory:
                    # Lets SQLite refresh its planner statistics where they went stale.  Only an
                    # optimization: if another process holds the file, closing must not fail.
                    self._conn.execute("PRAGMA optimize")
            except sqlite3.Error as err:
                if _environment_error(err) is None:
                    raise
            finally:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.path!r}>"

    # --- opening ---------------------------------------------------------------------------

    def _configure(self, busy_timeout_ms: int) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Overwrite deleted content with zeros, so that a retracted or deleted post does not
        # linger in free pages of a seized disk.  Old copies can still sit in the WAL until it
        # is overwritten, and in FTS5 index segments until they are merged.
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        if not self.memory:
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is safe in WAL mode (no corruption), but the newest commits may be lost on
            # power failure; writes that exist nowhere else are made durable (see _write).
            conn.execute("PRAGMA synchronous = NORMAL")
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            # Checkpoint at half the log's bound at most, and let SQLite truncate the log file
            # back to the bound after each checkpoint: without it the file keeps its largest
            # size forever, and copying a large log into the database at a checkpoint needs
            # as much free disk again.
            pages = min(_WAL_AUTOCHECKPOINT_PAGES, max(self.wal_limit // 2 // page, 16))
            conn.execute(f"PRAGMA wal_autocheckpoint = {pages}")
            conn.execute(f"PRAGMA journal_size_limit = {int(self.wal_limit)}")
        if self.max_bytes:
            # A cap below the current size leaves the file as it is and refuses growth.
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(int(self.max_bytes) // page, 1)}")

    def _migrate(self) -> None:
        conn = self._conn
        version = self._check_file()
        if version == SCHEMA_VERSION:
            return
        with self._write():
            # Another process may have migrated the file while we waited for the write lock.
            version = self._check_file()
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](conn)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    def _check_file(self) -> int:
        conn = self._conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
            raise NotAStoreError(f"{self.path!r} is not a dazibao database")
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise NotAStoreError(f"{self.path!r} is not a dazibao database")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path!r} has schema version {version}, newer than the {SCHEMA_VERSION} "
                "this version of dazibao knows: upgrade dazibao to open it"
            )
        return version

    # --- transactions ----------------------------------------------------------------------

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits or none of it does.

        BEGIN IMMEDIATE takes the write lock first (waiting up to the busy timeout), so the
        reads inside see the latest data and the transaction cannot fail later with a stale
        snapshot.  ``durable`` syncs the commit to disk, for writes that exist nowhere else.

        While the store is full (a write failed for want of room less than ``_FULL_RETRY_S``
        ago, or it was opened read-only), raises StorageFullError at once, touching nothing;
        after that the next write tries again.
        """
        conn = self._conn
        if self._full_since is not None and (
            self.exclusive or time.monotonic() - self._full_since < _FULL_RETRY_S
        ):
            raise StorageFullError("the disk or the store's size cap (max_store_bytes) is full: "
                                   "this node only serves reads until there is room again")
        if durable and not self.memory:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            if isinstance(_environment_error(err), StorageFullError):
                self._full_since = time.monotonic()
                # The frames of the transaction that did not fit are junk in the log now.
                self._bound_wal()
            raise
        else:
            self._full_since = None
        finally:
            if durable and not self.memory:
                conn.execute("PRAGMA synchronous = NORMAL")
        self._bound_wal()

    def _bound_wal(self) -> None:
        """Checkpoint and truncate the write-ahead log if it grew past its bound.

        The automatic checkpoint cannot finish while another process reads an older snapshot,
        and one large transaction can pass the bound; a best effort: a checkpoint that cannot
        run now (busy, or no room to grow the database) is tried after the next write.
        """
        if self.memory:
            return
        try:
            wal = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if wal > self.wal_limit:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as err:
                if _environment_error(err) is None:
                    raise

    def _probe_room(self) -> None:
        """At the node's start: if the disk has almost no room left, start full (see :attr:`full`).

        Only looks (``statvfs``): a trial write or checkpoint would take the last free bytes,
        which the node needs for its own small files (node.json) and the operator for theirs.
        """
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except (OSError, AttributeError):  # statvfs is not on every platform
            return
        if st.f_bavail * st.f_frsize < _MIN_FREE_BYTES_AT_START:
            self._full_since = time.monotonic()

    @property
    def full(self) -> bool:
        """Whether writes are refused for want of room (the disk, or ``max_store_bytes``)."""
        return self._full_since is not None

    @_guarded
    def storage(self) -> dict[str, Any]:
        """What the store takes on disk: ``db_bytes``, ``wal_bytes``, ``max_bytes`` (0: no
        cap), ``wal_limit``, ``full`` and ``read_only`` (opened for reading only)."""
        sizes = {}
        for name, suffix in (("db_bytes", ""), ("wal_bytes", "-wal")):
            try:
                sizes[name] = 0 if self.memory else os.path.getsize(self.path + suffix)
            except OSError:
                sizes[name] = 0
        return {**sizes, "max_bytes": self.max_bytes, "wal_limit": self.wal_limit, "full": self.full,
                "read_only": self.exclusive}

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs that see one consistent state."""
        conn = self._conn
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _select_in(self, sql: str, values: Sequence[Any]) -> Iterator[tuple]:
        """Run ``sql`` (with one ``{marks}`` placeholder list) over ``values`` in chunks."""
        for start in range(0, len(values), _CHUNK):
            part = values[start : start + _CHUNK]
            yield from self._conn.execute(sql.format(marks=_marks(len(part))), part)

    # --- ingest ----------------------------------------------------------------------------

    @_guarded
    def ingest(
        self,
        posts: Sequence[Post],
        *,
        source: str | None,
        now_ms: int,
        boards: Collection[str] | None = None,
    ) -> IngestResult:
        """Store a batch of decoded, signature-checked posts in one transaction.

        A post already stored (or repeated in the batch) is a duplicate.  Refused, with a
        code: a tombstoned id (``tombstoned``), a board not in ``boards`` when it is given
        (``not_carried``), a retraction naming another author's post (``retract_not_author``),
        a post a same-author retraction is known for (``retracted``).

        Retractions (docs/protocol.md, "Retraction"), whatever order the posts arrive in,
        within a batch or across batches:

        * a post is stored only if no retraction of it by its own author is known; when one
          is, the post is removed (or never stored) and its id tombstoned as 'retracted';
        * a retraction is stored unless its target is known to be by another author (then it
          is refused and its id tombstoned as 'rejected', a final verdict); when the target
          is unknown it is stored and remembered as pending, and if the target later turns
          out to be another author's, the retraction is removed and tombstoned the same way;
        * a retraction of a retraction is stored but removes nothing: a retraction, once
          known, stays in force, so its target cannot come back on nodes that have not yet
          seen it.

        ``source`` is recorded with each post (a peer URL, 'local', 'import'); 'local' posts
        are synced to disk before this returns, since no peer has them yet.  If anything
        raises, nothing of the batch is stored.
        """
        carried = None if boards is None else frozenset(boards)
        with self._write(durable=source == "local") as conn:
            result = _Batch(self, conn, source, now_ms, carried).run(posts)
            if result.added and self._search_backlog(conn) <= _INLINE_INDEX_ROWS:
                self._index_step(conn, _INLINE_INDEX_ROWS)
            return result

    @_guarded
    def update_search_index(self, max_rows: int = 5_000) -> int:
        """Add up to ``max_rows`` stored posts to the full-text index; return how many still wait.

        Ingesting a large batch leaves its posts out of the index, because indexing them costs
        more than storing them; search still finds them, by scanning.  A node calls this when
        it is idle, until it returns 0.  One call is one write transaction.  The number
        returned may count posts deleted before they were indexed, until the next call.
        """
        limit = _check_limit(max_rows)
        with self._write() as conn:
            self._index_step(conn, limit)
            return self._search_backlog(conn)

    @staticmethod
    def _search_backlog(conn: sqlite3.Connection) -> int:
        # An upper bound in constant time: seqs of rows deleted before they were indexed count
        # too, until the next index step moves past them.
        return conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'posts'), 0)"
            " - (SELECT indexed_seq FROM search_state)"
        ).fetchone()[0]

    @staticmethod
    def _index_step(conn: sqlite3.Connection, limit: int) -> None:
        if limit == 0:
            return
        indexed = conn.execute("SELECT indexed_seq FROM search_state").fetchone()[0]
        rows = conn.execute(
            "SELECT seq, body FROM posts WHERE seq > ? ORDER BY seq LIMIT ?", (indexed, limit)
        ).fetchall()
        if len(rows) < limit:
            # Everything stored is now indexed: move past the seqs of rows deleted meanwhile too.
            top = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'posts'").fetchone()
            new_indexed = top[0] if top else indexed
        else:
            new_indexed = rows[-1][0]
        if rows:
            conn.executemany("INSERT INTO posts_fts (rowid, body) VALUES (?, ?)", rows)
        if new_indexed != indexed:
            conn.execute("UPDATE search_state SET indexed_seq = ?", (new_indexed,))

    # --- reads -----------------------------------------------------------------------------

    @_guarded
    def has(self, ids: Iterable[bytes]) -> set[bytes]:
        """The ids among ``ids`` that are stored."""
        ids = list(ids)
        return {row[0] for row in self._select_in("SELECT id FROM posts WHERE id IN ({marks})", ids)}

    @_guarded
    def tombstoned(self, ids: Iterable[bytes]) -> set[bytes]:
        """The ids among ``ids`` that are tombstoned (will be refused)."""
        ids = list(ids)
        return {row[0] for row in self._select_in("SELECT id FROM tombstones WHERE id IN ({marks})", ids)}

    @_guarded
    def get_raw(self, ids: Iterable[bytes]) -> list[bytes]:
        """The signed bytes of the stored posts among ``ids``, in the order asked, unknown ids skipped."""
        ids = list(ids)
        found = dict(self._select_in("SELECT id, raw FROM posts WHERE id IN ({marks})", list(set(ids))))
        return [found[i] for i in ids if i in found]

    @_guarded
    def get(self, post_id: bytes) -> PostRow | None:
        """The stored post with this id, or None."""
        row = self._conn.execute(f"SELECT {_POST_COLUMNS} FROM posts WHERE id = ?", (post_id,)).fetchone()
        return None if row is None else PostRow(*row)

    @_guarded
    def list_posts(
        self,
        board: str | None = None,
        limit: int = 50,
        before: tuple[int, bytes] | None = None,
        *,
        kinds: Collection[str] | None = None,
    ) -> list[PostRow]:
        """Stored posts, newest first (by created_at, then id).

        ``before`` is a ``(created_at_ms, id)`` cursor: only posts strictly older are listed,
        so the last row of one page gives the cursor of the next.  ``kinds`` limits the kinds
        listed (all kinds when None).
        """
        where, params = [], []
        if board is not None:
            where.append("board = ?")
            params.append(board)
        if before is not None:
            where.append("(created_at_ms, id) < (?, ?)")
            params.extend(before)
        if kinds is not None:
            kinds = list(kinds)
            where.append(f"kind IN ({_marks(len(kinds))})")
            params.extend(kinds)
        sql = f"SELECT {_POST_COLUMNS} FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at_ms DESC, id DESC LIMIT ?"
        params.append(_check_limit(limit))
        return [PostRow(*row) for row in self._conn.execute(sql, params)]

    @_guarded
    def threads(self, board: str, limit: int = 50, offset: int = 0) -> list[ThreadRow]:
        """Top-level posts of ``board`` with their number of direct replies, latest activity first.

        The latest activity of a thread is the newest created_at of the post and its direct
        replies.
        """
        sql = f"""
            SELECT {_POST_COLUMNS_P}, count(r.seq), max(p.created_at_ms, coalesce(max(r.created_at_ms), 0)) AS last_at
            FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.kind = '{KIND_REPLY}'
            WHERE p.board = ? AND p.kind = '{KIND_POST}'
            GROUP BY p.seq
            ORDER BY last_at DESC, p.id DESC
            LIMIT ? OFFSET ?
        """
        if offset < 0:
            raise ValueError("offset must not be negative")
        return [
            ThreadRow(PostRow(*row[:11]), row[11], row[12])
            for row in self._conn.execute(sql, (board, _check_limit(limit), offset))
        ]

    @_guarded
    def replies(self, post_id: bytes) -> list[PostRow]:
        """The stored direct replies to ``post_id``, oldest first."""
        sql = f"SELECT {_POST_COLUMNS} FROM posts WHERE parent = ? AND kind = ? ORDER BY created_at_ms, id"
        return [PostRow(*row) for row in self._conn.execute(sql, (post_id, KIND_REPLY))]

    @_guarded
    def boards(self) -> list[BoardInfo]:
        """Every board with stored posts, by name, with its row count and newest created_at."""
        sql = "SELECT board, count(*), max(created_at_ms) FROM posts GROUP BY board ORDER BY board"
        return [BoardInfo(*row) for row in self._conn.execute(sql)]

    @_guarded
    def reply_page(
        self,
        post_id: bytes,
        limit: int,
        *,
        after: tuple[int, bytes] | None = None,
        before: tuple[int, bytes] | None = None,
    ) -> list[PostRow]:
        """One page of the direct replies to ``post_id``, oldest first (by created_at, then id).

        With neither cursor: the oldest ``limit`` replies.  ``after`` (a ``(created_at_ms, id)``
        cursor): the oldest ``limit`` replies strictly newer than it.  ``before``: the newest
        ``limit`` replies strictly older than it, still listed oldest first.  Raises ValueError
        when both cursors are given or ``limit`` is not a non-negative int.
        """
        if after is not None and before is not None:
            raise ValueError("give after or before, not both")
        where, params = "parent = ? AND kind = ?", [post_id, KIND_REPLY]
        order = "ASC"
        if after is not None:
            where += " AND (created_at_ms, id) > (?, ?)"
            params.extend(after)
        elif before is not None:
            where += " AND (created_at_ms, id) < (?, ?)"
            params.extend(before)
            order = "DESC"
        return self._reply_rows(where, params, order, limit)

    @_guarded
    def newest_replies(self, post_id: bytes, limit: int) -> list[PostRow]:
        """The newest ``limit`` direct replies to ``post_id``, listed oldest first."""
        return self._reply_rows("parent = ? AND kind = ?", [post_id, KIND_REPLY], "DESC", limit)

    def _reply_rows(self, where: str, params: list[Any], order: str, limit: int) -> list[PostRow]:
        # The parent index does not hold the time, so every reply of the thread is looked at
        # to order them; only the few columns before the body are read for that (long bodies
        # sit in overflow pages that are then never touched), and only the page's rows are
        # read in full.
        sql = (f"SELECT {_POST_COLUMNS} FROM posts WHERE seq IN ("
               f"SELECT seq FROM posts WHERE {where} ORDER BY created_at_ms {order}, id {order} LIMIT ?)"
               " ORDER BY created_at_ms, id")
        return [PostRow(*row) for row in self._conn.execute(sql, [*params, _check_limit(limit)])]

    @_guarded
    def reply_count(self, post_id: bytes) -> int:
        """The number of stored direct replies to ``post_id``."""
        sql = "SELECT count(*) FROM posts WHERE parent = ? AND kind = ?"
        return self._conn.execute(sql, (post_id, KIND_REPLY)).fetchone()[0]

    @_guarded
    def board_page(
        self,
        limit: int,
        *,
        by_name: bool = False,
        after: tuple[int, str] | str | None = None,
        contains: str = "",
    ) -> list[BoardInfo]:
        """One page of the boards with stored posts, with their row count and newest created_at.

        By default the most recently active first (newest created_at, then name), and
        ``after`` is the ``(last_at_ms, board)`` of the last row of the previous page.  With
        ``by_name``, in name order (UTF-8 bytes), and ``after`` is the last board name of the
        previous page.  ``contains`` keeps only boards whose name contains it (case-insensitive
        for ASCII letters).  Only ``limit`` rows are ever returned, however many boards there
        are.  Raises ValueError for a cursor of the wrong shape or a bad ``limit``.
        """
        where, params = [], []
        if contains:
            where.append("board LIKE ? ESCAPE '\\'")
            params.extend(_like_params([contains]))
        having, having_params = "", []
        if by_name:
            if after is not None:
                if not isinstance(after, str):
                    raise ValueError("a page by name continues after a board name")
                where.append("board > ?")
                params.append(after)
            order = "board"
        else:
            if after is not None:
                if not isinstance(after, tuple):
                    raise ValueError("a page by activity continues after (last_at_ms, board)")
                having = " HAVING last_at < ? OR (last_at = ? AND board > ?)"
                having_params = [after[0], after[0], after[1]]
            order = "last_at DESC, board"
        sql = "SELECT board, count(*), max(created_at_ms) AS last_at FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" GROUP BY board{having} ORDER BY {order} LIMIT ?"
        return [BoardInfo(*row) for row in self._conn.execute(sql, [*params, *having_params, _check_limit(limit)])]

    @_guarded
    def boards_with_posts(self, boards: Iterable[str]) -> set[str]:
        """The boards among ``boards`` that have at least one stored post."""
        boards = list(boards)
        return {row[0] for row in self._select_in("SELECT DISTINCT board FROM posts WHERE board IN ({marks})", boards)}

    @_guarded
    def board_count(self) -> int:
        """The number of boards with stored posts."""
        return self._conn.execute("SELECT count(DISTINCT board) FROM posts").fetchone()[0]

    @_guarded
    def count(self, board: str | None = None) -> int:
        """The number of stored posts (of every kind), in one board or in all."""
        if board is None:
            return self._conn.execute("SELECT count(*) FROM posts").fetchone()[0]
        return self._conn.execute("SELECT count(*) FROM posts WHERE board = ?", (board,)).fetchone()[0]

    @_guarded
    def search(self, query: str, board: str | None = None, limit: int = 50, *, offset: int = 0) -> list[SearchHit]:
        """Posts and replies whose body contains every term of ``query``, newest first.

        ``offset`` skips that many hits first, so that a page of results never holds the
        rows of the pages before it.

        Terms are separated by white space and matched literally (case-insensitively) as
        substrings, so ``query`` is never parsed as search syntax and cannot fail.  Terms of
        three or more characters use the trigram full-text index; shorter ones (common in
        Chinese, e.g. "工资") are matched by scanning, newest first, up to ``limit`` hits.
        An empty query finds nothing.
        """
        terms = _query_terms(query)
        limit = _check_limit(limit)
        if not terms:
            return []
        long_terms = [t for t in terms if len(t) >= 3]
        short_terms = [t for t in terms if len(t) < 3]
        common = f" AND p.kind IN ('{KIND_POST}', '{KIND_REPLY}')"
        common_params: list[Any] = []
        if board is not None:
            common += " AND p.board = ?"
            common_params.append(board)
        if long_terms:
            # Every term becomes one quoted string ("" escapes a quote inside it), which FTS5
            # reads as a phrase of its trigrams: no operator, column filter or prefix syntax.
            match = " ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
            indexed_sql = (
                f"SELECT {_POST_COLUMNS_P} FROM posts_fts JOIN posts AS p ON p.seq = posts_fts.rowid"
                f" WHERE posts_fts MATCH ?{common}{_like_clauses(short_terms)}"
            )
            # Posts not yet indexed (see update_search_index) are scanned.
            tail_sql = (
                f"SELECT {_POST_COLUMNS_P} FROM posts AS p"
                f" WHERE p.seq > (SELECT indexed_seq FROM search_state){common}{_like_clauses(terms)}"
            )
            sql = f"SELECT * FROM ({indexed_sql} UNION ALL {tail_sql})"
            order = " ORDER BY created_at_ms DESC, id DESC LIMIT ?"
            params = [match, *common_params, *_like_params(short_terms), *common_params, *_like_params(terms)]
        else:
            sql = f"SELECT {_POST_COLUMNS_P} FROM posts AS p WHERE 1{common}{_like_clauses(terms)}"
            order = " ORDER BY p.created_at_ms DESC, p.id DESC LIMIT ?"
            params = [*common_params, *_like_params(terms)]
        if type(offset) is not int or offset < 0:
            raise ValueError("offset must be a non-negative integer")
        sql += order + " OFFSET ?"
        params.extend([limit, offset])
        hits = []
        for row in self._conn.execute(sql, params):
            post = PostRow(*row)
            snippet, spans = _snippet(post.body, terms)
            hits.append(SearchHit(post, snippet, spans))
        return hits

    def iter_keys(self, boards: Collection[str] | None = None) -> Iterator[bytes]:
        """Every stored reconciliation key (or those of ``boards``), in ascending key order.

        Streamed in pages, so the store is not locked while the caller consumes the keys; a
        post written or removed meanwhile may or may not be yielded.  To build an index that
        stays exact, take :meth:`watermark` first, then apply ``changes_since(*watermark)``.
        """
        if boards is None:
            scopes: list[str | None] = [None]
        else:
            # Key order compares the UTF-8 bytes of the board first.
            scopes = sorted(set(boards), key=lambda b: b.encode("utf-8"))
        for board in scopes:
            after: tuple[Any, ...] | None = None
            while True:
                rows = self._keys_page(board, after)
                encoded: dict[str, bytes] = {}
                for b, created, pid in rows:
                    prefix = encoded.get(b)
                    if prefix is None:
                        prefix = encoded[b] = b.encode("utf-8") + b"\x00"
                    yield prefix + created.to_bytes(8, "big") + pid
                if len(rows) < _KEYS_CHUNK:
                    break
                after = rows[-1]

    @_guarded
    def _keys_page(self, board: str | None, after: tuple[Any, ...] | None) -> list[tuple]:
        # Keyset paging: each page starts after the last key of the previous one, on the index.
        if board is None:
            sql, params = "SELECT board, created_at_ms, id FROM posts", []
            if after is not None:
                sql += " WHERE (board, created_at_ms, id) > (?, ?, ?)"
                params.extend(after)
            sql += " ORDER BY board, created_at_ms, id LIMIT ?"
        else:
            sql, params = "SELECT board, created_at_ms, id FROM posts WHERE board = ?", [board]
            if after is not None:
                sql += " AND (created_at_ms, id) > (?, ?)"
                params.extend(after[1:])
            sql += " ORDER BY created_at_ms, id LIMIT ?"
        params.append(_KEYS_CHUNK)
        return self._conn.execute(sql, params).fetchall()

    # --- reading for bundles and static copies (node/bundles.py, node/publish.py) ----------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Hold one read transaction: every read inside the block sees the same state.

        For exports and static copies that read the store several times and must agree with
        themselves while another process writes.  The store's lock is held for the whole
        block, so other threads wait; nested blocks join the outer one.  Do not write inside.
        """
        with self._lock:
            if self._conn.in_transaction:
                yield
                return
            with self._snapshot():
                yield

    def iter_rows(self, boards: Collection[str] | None = None, *, since_ms: int | None = None) -> Iterator[PostRow]:
        """Stored posts (of ``boards``; created at or after ``since_ms``), in ascending key order.

        Paged like :meth:`iter_keys`: memory stays bounded however large the store.  Inside
        :meth:`snapshot` the posts yielded are exactly those stored when the block began.
        """
        for board, after in self._board_scopes(boards):
            while True:
                rows = self._rows_page(board, after, since_ms, _POST_COLUMNS)
                yield from (PostRow(*row) for row in rows)
                if len(rows) < _ROWS_CHUNK:
                    break
                after = (rows[-1][3], rows[-1][5], rows[-1][1])

    def iter_sizes(self, boards: Collection[str] | None = None, *, since_ms: int | None = None) -> Iterator[int]:
        """The byte length of each post :meth:`iter_rows` would yield, in the same order."""
        for board, after in self._board_scopes(boards):
            while True:
                rows = self._rows_page(board, after, since_ms, "length(raw), board, created_at_ms, id")
                yield from (row[0] for row in rows)
                if len(rows) < _ROWS_CHUNK:
                    break
                after = (rows[-1][1], rows[-1][2], rows[-1][3])

    @staticmethod
    def _board_scopes(boards: Collection[str] | None) -> list[tuple[str | None, None]]:
        if boards is None:
            return [(None, None)]
        return [(b, None) for b in sorted(set(boards), key=lambda b: b.encode("utf-8"))]

    @_guarded
    def _rows_page(self, board: str | None, after: tuple[Any, ...] | None, since_ms: int | None,
                   columns: str) -> list[tuple]:
        where: list[str] = []
        params: list[Any] = []
        if board is not None:
            where.append("board = ?")
            params.append(board)
        if since_ms is not None:
            where.append("created_at_ms >= ?")
            params.append(since_ms)
        if after is not None:
            where.append("(board, created_at_ms, id) > (?, ?, ?)")
            params.extend(after)
        sql = f"SELECT {columns} FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY board, created_at_ms, id LIMIT ?"
        params.append(_ROWS_CHUNK)
        return self._conn.execute(sql, params).fetchall()

    @_guarded
    def watermark(self) -> tuple[int, int]:
        """The ``(post_seq, tomb_seq)`` to pass to :meth:`changes_since` to see only later changes."""
        return self._watermark()

    def _watermark(self) -> tuple[int, int]:
        # The highest seq ever given out, even if that row has been deleted since.
        seqs = dict(self._conn.execute("SELECT name, seq FROM sqlite_sequence"))
        return seqs.get("posts", 0), seqs.get("tombstones", 0)

    @_guarded
    def changes_since(self, post_seq: int, tomb_seq: int, *, limit: int = 10_000) -> Changes:
        """Posts stored and keys removed after the given sequence numbers.

        Lets a running node pick up what another process wrote to the same file.  Apply
        ``added`` before ``removed_keys``: a removed id never comes back, so that order is
        always right.  ``removed_keys`` may name keys that were never added (a post refused
        because its retraction came first).  Pass the returned ``post_seq`` and ``tomb_seq`` to
        the next call; if ``complete`` is False, call again at once.  A complete answer
        returns the current :meth:`watermark`, so ``changes_since(2**62, 2**62)`` is another
        way to read it.
        """
        limit = _check_limit(limit)
        with self._snapshot() as conn:
            added = [
                PostRow(*row)
                for row in conn.execute(
                    f"SELECT {_POST_COLUMNS} FROM posts WHERE seq > ? ORDER BY seq LIMIT ?", (post_seq, limit)
                )
            ]
            tombs = conn.execute(
                "SELECT seq, board, created_at_ms, id FROM tombstones WHERE seq > ? ORDER BY seq LIMIT ?",
                (tomb_seq, limit),
            ).fetchall()
            top_post, top_tomb = self._watermark()
        # Seqs are never reused (AUTOINCREMENT) and a commit is all-or-nothing, so once every
        # row after the given seq has been returned, everything up to the watermark has been.
        posts_done, tombs_done = len(added) < limit, len(tombs) < limit
        removed = [post_key(board, created, pid) for _, board, created, pid in tombs if board is not None]
        return Changes(
            added=added,
            removed_keys=removed,
            post_seq=top_post if posts_done else added[-1].seq,
            tomb_seq=top_tomb if tombs_done else tombs[-1][0],
            complete=posts_done and tombs_done,
        )

    @_guarded
    def data_version(self) -> int:
        """A number that changes when another connection commits to the file (cheap to poll)."""
        return self._conn.execute("PRAGMA data_version").fetchone()[0]

    # --- local deletion and retention ------------------------------------------------------

    @_guarded
    def delete(self, ids: Iterable[bytes], reason: str = "deleted", *, now_ms: int) -> list[bytes]:
        """Delete stored posts and tombstone them, so gossip never brings them back.

        For a member hiding content locally (``reason`` 'deleted') or a mirror dropping it
        ('purged').  Ids that are not stored are ignored; an empty ``ids`` deletes nothing.
        Returns the reconciliation keys removed.
        """
        if reason not in ("deleted", "purged"):
            raise ValueError(f"delete reason must be 'deleted' or 'purged', not {reason!r}")
        ids = list(set(ids))
        if not ids:
            return []
        with self._write(durable=True) as conn:
            rows = list(
                self._select_in("SELECT seq, id, board, created_at_ms, author FROM posts WHERE id IN ({marks})", ids)
            )
            return self._remove_rows(conn, rows, reason, now_ms)

    @_guarded
    def purge_older_than(self, board: str, cutoff_ms: int, *, now_ms: int) -> int:
        """Delete and tombstone the posts of ``board`` created before ``cutoff_ms``; return how many.

        For mirrors with a retention period.  Pending retractions are kept, so a purged
        retraction still refuses its target if that arrives later.
        """
        # In SQL rather than row by row: a first purge may remove most of a large board.
        with self._write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO tombstones (id, board, created_at_ms, author, reason, at_ms)"
                " SELECT id, board, created_at_ms, author, 'purged', ? FROM posts"
                " WHERE board = ? AND created_at_ms < ? ORDER BY created_at_ms, id",
                (now_ms, board, cutoff_ms),
            )
            return conn.execute(
                "DELETE FROM posts WHERE board = ? AND created_at_ms < ?", (board, cutoff_ms)
            ).rowcount

    @staticmethod
    def _remove_rows(conn: sqlite3.Connection, rows: list[tuple], reason: str, now_ms: int) -> list[bytes]:
        conn.executemany("DELETE FROM posts WHERE seq = ?", [(r[0],) for r in rows])
        conn.executemany(
            _INSERT_TOMBSTONE,
            [(pid, board, created, author, reason, now_ms) for _, pid, board, created, author in rows],
        )
        return [post_key(board, created, pid) for _, pid, board, created, _ in rows]

    # --- peers -----------------------------------------------------------------------------

    @_guarded
    def add_peer(self, url: str, source: str, now_ms: int) -> bool:
        """Remember a peer; True if it was new.  Adding a known peer only upgrades its source."""
        if source not in PEER_SOURCES:
            raise ValueError(f"peer source must be one of {PEER_SOURCES}, not {source!r}")
        with self._write() as conn:
            row = conn.execute("SELECT source FROM peers WHERE url = ?", (url,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO peers (url, source, added_at_ms) VALUES (?, ?, ?)", (url, source, now_ms))
                return True
            if _PEER_SOURCE_RANK[source] > _PEER_SOURCE_RANK.get(row[0], -1):
                conn.execute("UPDATE peers SET source = ? WHERE url = ?", (source, url))
            return False

    @_guarded
    def list_peers(self) -> list[PeerRow]:
        """Every known peer, by URL."""
        sql = (
            "SELECT url, source, added_at_ms, last_ok_at_ms, last_error, last_error_at_ms, failures,"
            " next_try_at_ms, posts_received, posts_rejected FROM peers ORDER BY url"
        )
        return [PeerRow(*row) for row in self._conn.execute(sql)]

    @_guarded
    def record_peer_success(
        self, url: str, now_ms: int, received: int, rejected: int, *, next_try_at_ms: int = 0
    ) -> bool:
        """Note a successful exchange: clears the failure count, adds the post counts.  False if unknown."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE peers SET last_ok_at_ms = ?, failures = 0, last_error = NULL, next_try_at_ms = ?,"
                " posts_received = posts_received + ?, posts_rejected = posts_rejected + ? WHERE url = ?",
                (now_ms, next_try_at_ms, received, rejected, url),
            )
            return cur.rowcount > 0

    @_guarded
    def record_peer_failure(self, url: str, now_ms: int, error: str, next_try_at_ms: int) -> bool:
        """Note a failed exchange and when to try again.  False if the peer is unknown."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE peers SET failures = failures + 1, last_error = ?, last_error_at_ms = ?,"
                " next_try_at_ms = ? WHERE url = ?",
                (error[:_MAX_ERROR_CHARS], now_ms, next_try_at_ms, url),
            )
            return cur.rowcount > 0

    @_guarded
    def remove_peer(self, url: str) -> bool:
        """Forget a peer; True if it was known."""
        with self._write() as conn:
            return conn.execute("DELETE FROM peers WHERE url = ?", (url,)).rowcount > 0

    # --- identities and meta ---------------------------------------------------------------

    @_guarded
    def add_identity(self, name: str, public_key: bytes, now_ms: int) -> None:
        """Record a local pseudonym.  Raises IdentityExistsError if the name or key is taken."""
        try:
            with self._write(durable=True) as conn:
                conn.execute(
                    "INSERT INTO identities (name, public_key, created_at_ms) VALUES (?, ?, ?)",
                    (name, public_key, now_ms),
                )
        except sqlite3.IntegrityError as err:
            if "UNIQUE" not in str(err):
                raise
            raise IdentityExistsError(f"a pseudonym with the name {name!r} or the same key already exists") from err

    @_guarded
    def list_identities(self) -> list[IdentityRow]:
        """The local pseudonyms, by name."""
        sql = "SELECT name, public_key, created_at_ms FROM identities ORDER BY name"
        return [IdentityRow(*row) for row in self._conn.execute(sql)]

    @_guarded
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @_guarded
    def set_meta(self, key: str, value: str | int | bytes | None) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


# --- one ingest batch -----------------------------------------------------------------------


class _Batch:
    """The work of one :meth:`Store.ingest` call, inside its write transaction.

    Everything the rules need is read first (which ids are stored or tombstoned, the targets
    of the batch's retractions, the pending retractions naming the batch's posts); the
    decisions are then made in memory; the writes go out last, each as one executemany.
    Within a batch, non-retractions are decided first and retractions after, which gives the
    same outcome as any order because the rules do not depend on it.
    """

    def __init__(
        self, store: Store, conn: sqlite3.Connection, source: str | None, now_ms: int, carried: frozenset[str] | None
    ) -> None:
        self.store = store
        self.conn = conn
        self.source = source
        self.now_ms = now_ms
        self.carried = carried
        self.new: dict[bytes, Post] = {}  # posts to insert, in batch order
        self.duplicates = 0
        self.rejected: list[tuple[bytes, str]] = []
        self.removed_keys: list[bytes] = []
        self.delete_seqs: list[int] = []
        self.tombstones: list[tuple] = []
        self.tomb_authors: dict[bytes, bytes | None] = {}  # tombstoned target id -> its author
        self.pending_add: list[tuple[bytes, bytes, bytes]] = []
        self.pending_drop: list[tuple[bytes, bytes]] = []

    def run(self, posts: Sequence[Post]) -> IngestResult:
        self._admit(posts)
        if self.new:
            self._apply_pending()
            self._apply_retractions()
            self._write()
        return IngestResult(list(self.new.values()), self.duplicates, self.rejected, self.removed_keys)

    def _admit(self, posts: Sequence[Post]) -> None:
        batch: dict[bytes, Post] = {}
        for post in posts:
            if post.id in batch:
                self.duplicates += 1
            else:
                batch[post.id] = post
        ids = list(batch)
        stored = {r[0] for r in self.store._select_in("SELECT id FROM posts WHERE id IN ({marks})", ids)}
        tombs = {r[0] for r in self.store._select_in("SELECT id FROM tombstones WHERE id IN ({marks})", ids)}
        for pid, post in batch.items():
            if pid in stored:
                self.duplicates += 1
            elif pid in tombs:
                self.rejected.append((pid, REJECT_TOMBSTONED))
            elif self.carried is not None and post.board not in self.carried:
                self.rejected.append((pid, REJECT_NOT_CARRIED))
            else:
                self.new[pid] = post

    def _apply_pending(self) -> None:
        """Posts of this batch that retractions stored earlier were waiting for."""
        arriving = dict(self.new)  # decisions below must not depend on the order of the rows
        pending = list(
            self.store._select_in(
                "SELECT target_id, retraction_id, author FROM pending_retractions WHERE target_id IN ({marks})",
                list(arriving),
            )
        )
        if not pending:
            return
        retractions = {
            row[1]: PostRow(*row)
            for row in self.store._select_in(
                f"SELECT {_POST_COLUMNS} FROM posts WHERE id IN ({{marks}})", [r[1] for r in pending]
            )
        }
        for target_id, retraction_id, author in pending:
            self.pending_drop.append((target_id, retraction_id))
            target = arriving[target_id]
            row = retractions.get(retraction_id)
            if _may_retract(None if row is None else row.to_post(), author, target):
                if target.kind != KIND_RETRACT and target_id in self.new:
                    self._retract_new(target)
            elif row is not None:
                # Stored while its target was unknown; now known to name another author's post.
                self.delete_seqs.append(row.seq)
                self.removed_keys.append(row.key)
                self._tombstone(row, "rejected")

    def _apply_retractions(self) -> None:
        batch_retractions = [p for p in self.new.values() if p.kind == KIND_RETRACT]
        if not batch_retractions:
            return
        wanted = list({r.parent for r in batch_retractions if r.parent not in self.new})
        stored = {
            row[1]: PostRow(*row)
            for row in self.store._select_in(f"SELECT {_POST_COLUMNS} FROM posts WHERE id IN ({{marks}})", wanted)
        }
        for pid, author in self.store._select_in("SELECT id, author FROM tombstones WHERE id IN ({marks})", wanted):
            self.tomb_authors.setdefault(pid, author)
        for retraction in batch_retractions:
            if retraction.id not in self.new:
                continue  # removed by an earlier decision of this batch
            target_id = retraction.parent
            assert target_id is not None  # decode_post guarantees a retraction names a parent
            row = None
            if target_id in self.new:
                target: Post | None = self.new[target_id]
            elif target_id in stored and target_id not in self.tomb_authors:
                row = stored[target_id]
                target = row.to_post()
            else:
                target = None
            if target is not None:
                try:
                    check_retraction(retraction, target)
                except RetractionError as err:
                    self._refuse_retraction(retraction, err.code)
                    continue
                if target.kind == KIND_RETRACT:
                    continue  # stored, but a retraction stays in force
                if row is None:
                    self._retract_new(target)
                else:
                    self.delete_seqs.append(row.seq)
                    self.removed_keys.append(row.key)
                    self._tombstone(target, "retracted")
            elif target_id in self.tomb_authors:
                # The target is gone for good; only its author is left to check against.
                author = self.tomb_authors[target_id]
                if author is not None and author != retraction.author:
                    self._refuse_retraction(retraction, REJECT_NOT_AUTHOR)
            else:
                self.pending_add.append((target_id, retraction.id, retraction.author))

    def _refuse_retraction(self, retraction: Post, code: str) -> None:
        # The verdict is final (a post's author never changes), and a node that stored this
        # retraction while its target was unknown removes it the same way (_apply_pending):
        # tombstoning it here makes both end in the same state, whatever the order.
        del self.new[retraction.id]
        self.rejected.append((retraction.id, code))
        self._tombstone(retraction, "rejected")

    def _retract_new(self, target: Post) -> None:
        del self.new[target.id]
        self.rejected.append((target.id, REJECT_RETRACTED))
        self._tombstone(target, "retracted")

    def _tombstone(self, post: Post | PostRow, reason: str) -> None:
        self.tombstones.append((post.id, post.board, post.created_at_ms, post.author, reason, self.now_ms))
        self.tomb_authors[post.id] = post.author

    def _write(self) -> None:
        conn = self.conn
        if self.delete_seqs:
            conn.executemany("DELETE FROM posts WHERE seq = ?", [(s,) for s in self.delete_seqs])
        if self.tombstones:
            conn.executemany(_INSERT_TOMBSTONE, self.tombstones)
        if self.pending_drop:
            conn.executemany(
                "DELETE FROM pending_retractions WHERE target_id = ? AND retraction_id = ?", self.pending_drop
            )
        if self.pending_add:
            conn.executemany(
                "INSERT OR IGNORE INTO pending_retractions (target_id, retraction_id, author) VALUES (?, ?, ?)",
                self.pending_add,
            )
        source, now_ms = self.source, self.now_ms
        conn.executemany(
            _INSERT_POST,
            [
                (p.id, p.kind, p.board, p.author, p.created_at_ms, p.parent, p.body, p.raw, now_ms, source)
                for p in self.new.values()
            ],
        )


def _may_retract(retraction: Post | None, author: bytes, target: Post) -> bool:
    """Whether a pending retraction may retract ``target`` (by check_retraction while we have it)."""
    if retraction is None:  # deleted or purged here since; its author was recorded with it
        return author == target.author
    try:
        check_retraction(retraction, target)
    except RetractionError:
        return False
    return True


# --- helpers --------------------------------------------------------------------------------


def _create_private(path: str) -> None:
    """Create an empty database file readable by its owner only (SQLite gives its -wal and
    -shm files the same mode), unless it exists.  It holds which pseudonyms are one member's."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as err:
        raise StoreError(f"cannot create the database {path!r}: {err.strerror}") from err
    os.close(fd)


def _check_limit(limit: int) -> int:
    if type(limit) is not int or limit < 0:
        raise ValueError("limit must be a non-negative integer")
    return limit


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _query_terms(query: str) -> list[str]:
    # Control characters cannot occur in a body (posts.check_text_body), and a NUL would cut
    # the FTS5 query string short, so they separate terms like white space.
    terms: list[str] = []
    for term in _CONTROL.sub(" ", query).split():
        if term not in terms:
            terms.append(term)
    return terms[:_MAX_QUERY_TERMS]


def _like_clauses(terms: Sequence[str]) -> str:
    return " AND p.body LIKE ? ESCAPE '\\'" * len(terms)


def _like_params(terms: Sequence[str]) -> list[str]:
    # LIKE is case-insensitive for ASCII letters only (the trigram index folds all of Unicode).
    return ["%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in terms]


def _snippet(body: str, terms: Sequence[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """About _SNIPPET_CHARS of ``body`` around the first match, and the spans of the matches in it."""
    found = sorted(
        (m.start(), m.end()) for term in terms for m in re.finditer(re.escape(term), body, re.IGNORECASE)
    )
    spans: list[tuple[int, int]] = []
    for start, end in found:
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    if len(body) <= _SNIPPET_CHARS:
        return body, tuple(spans)
    first = spans[0][0] if spans else 0
    lo = max(0, min(first - _SNIPPET_CHARS // 4, len(body) - _SNIPPET_CHARS))
    hi = lo + _SNIPPET_CHARS
    prefix = "…" if lo > 0 else ""
    suffix = "…" if hi < len(body) else ""
    shift = len(prefix) - lo
    clipped = tuple((max(s, lo) + shift, min(e, hi) + shift) for s, e in spans if e > lo and s < hi)
    return prefix + body[lo:hi] + suffix, clipped

"""The node's storage: the only part of dazibao that talks SQL.

One SQLite file per node (DESIGN.md, "Storage").  It holds the signed posts exactly as they
were received, the tombstones of every id that must never be accepted again, the retractions
still waiting for their target, the peers, the names of the local pseudonyms and a small
key/value table.  Everything about *what is valid* lives in ``dazibao.protocol`` (who may
retract what included: :mod:`dazibao.protocol.retraction`); the store keeps the books.

:class:`Store` is the one class the rest of the node uses.  It is built from rooms, one module
each, all on the same connection:

* :mod:`.connection` -- opening, configuring and migrating the file; write transactions
  (``BEGIN IMMEDIATE``, durable for local posts); the storage-full handling, the read-only
  fallback and the bound on the write-ahead log;
* :mod:`.schema` -- the tables, the migrations and what a healthy file holds;
* :mod:`.ingest` -- storing batches of posts, retraction bookkeeping, deletion and retention;
* :mod:`.moderation` -- followed moderators, moderation statements and each board's trust
  view, the stranger quotas, and what a change of trust does to stored posts;
* :mod:`.refusals` -- the policy refusals remembered, and the keys of the reconciliation set
  that are not stored posts (carried refusals and purges);
* :mod:`.queries` -- reads of posts, boards and threads, key and row streams, the change feed;
* :mod:`.search` -- full-text search and its index;
* :mod:`.peers` -- peers, local pseudonyms and meta;
* :mod:`.marks` -- the member UI's visit marks and the replies to the local pseudonyms;
* :mod:`.organizing` -- reports, letters, pledges, pins and translations as this node counts them;
* :mod:`.rows` -- the values handed out, and the errors.

**Another process may write the same file** (the ``dazibao post`` command while the node runs);
a running node notices by polling :meth:`Store.data_version` and catches up with
:meth:`Store.changes_since`.  A :class:`Store` may be shared between threads: every call takes
one lock, so calls run one at a time.  Errors of the environment (the file is locked too long,
the disk is full, the file is not a database, the schema is newer than this code) raise
:class:`StoreError` subclasses; any other exception out of this package is a bug.
"""

from __future__ import annotations

from .ingest import (
    REJECT_BLOCKED,
    REJECT_NOT_AUTHOR,
    REJECT_NOT_CARRIED,
    REJECT_POW_REQUIRED,
    REJECT_QUOTA_BYTES,
    REJECT_QUOTA_POSTS,
    REJECT_RETRACTED,
    REJECT_TOMBSTONED,
    IngestRoom,
)
from .marks import MarksRoom
from .moderation import MODERATOR_SOURCES
from .organizing import OrganizingRoom
from .peers import PEER_SOURCES, PeersRoom
from .queries import QueryRoom
from .refusals import POLICY_CODES
from .rows import (
    BoardInfo,
    Changes,
    IdentityExistsError,
    IdentityRow,
    IngestResult,
    ModeratorRow,
    NotAStoreError,
    PeerRow,
    PostRow,
    RefusalRow,
    SchemaVersionError,
    SearchHit,
    StorageFullError,
    StoreBusyError,
    StoreError,
    ThreadRow,
)
from .schema import APPLICATION_ID, SCHEMA_VERSION, TOMBSTONE_REASONS

__all__ = [
    "SCHEMA_VERSION",
    "APPLICATION_ID",
    "REJECT_TOMBSTONED",
    "REJECT_NOT_CARRIED",
    "REJECT_RETRACTED",
    "REJECT_NOT_AUTHOR",
    "REJECT_BLOCKED",
    "REJECT_QUOTA_POSTS",
    "REJECT_QUOTA_BYTES",
    "REJECT_POW_REQUIRED",
    "POLICY_CODES",
    "TOMBSTONE_REASONS",
    "PEER_SOURCES",
    "MODERATOR_SOURCES",
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
    "ModeratorRow",
    "RefusalRow",
]


class Store(IngestRoom, QueryRoom, PeersRoom, MarksRoom, OrganizingRoom):
    """A node's SQLite database.  See the package docstring for the rules it keeps.

    ``Store(path)`` opens (creating it with mode 0600 if needed) and migrates the file;
    ``Store.memory()`` gives a private in-memory store for tests.  Use it as a context
    manager or call :meth:`close`.

    ``max_bytes`` caps the database file (``PRAGMA max_page_count``; None: the limit
    ``max_store_bytes``; 0: no cap but the disk).  A write that would pass the cap, or that
    the disk has no room for, raises StorageFullError and writes nothing; the write-ahead log
    is kept below ``max_wal_bytes`` (a quarter of the cap when that is smaller).

    ``read_only`` opens an existing store at the current schema version for reading only
    (the running node's read pool): every read method works on it, every write raises
    StoreError; it reads beside the writer (WAL), each read seeing the last commit.

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

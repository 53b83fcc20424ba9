"""The store's connection: opening, configuring and migrating the file, write transactions,
the storage-full machinery and the bound on the write-ahead log.

:class:`StoreBase` is the one room every other room of the store builds on: it owns the SQLite
connection and its lock, and it is the only place that opens a transaction.

* **Another process may write the same file** (the ``dazibao post`` command while the node
  runs).  Write transactions start with ``BEGIN IMMEDIATE`` and wait up to a busy timeout.
* **A full disk or a full store is a typed error.**  A write that does not fit raises
  StorageFullError and leaves nothing behind; for ``_FULL_RETRY_S`` after that, writes are
  refused at once without touching the disk; the write-ahead log is kept below its bound.
* **Environment errors are typed.**  Every public method runs under :func:`guarded`, which takes
  the lock and turns SQLite's errors of the file or the machine into StoreError subclasses.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import sqlite_utils

from dazibao.protocol import limits

from . import schema
from .rows import NotAStoreError, StorageFullError, StoreBusyError, StoreError

__all__ = [
    "StoreBase",
    "guarded",
    "environment_error",
    "check_limit",
    "marks",
    "wal_limit_for",
    "MIN_FREE_BYTES_AT_START",
]

_CHUNK = 500  # ids per "IN (...)" query; far below SQLite's variable limit
_CACHE_KIB = 32_768  # page cache per connection: FTS5 segment merges touch many pages
# Checkpoint the WAL every ~32 MiB instead of SQLite's 4 MiB: index pages written by one
# batch are often written again by the next, and are then copied to the database once.
_WAL_AUTOCHECKPOINT_PAGES = 8_000
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
MIN_FREE_BYTES_AT_START = 1 << 20


def environment_error(err: sqlite3.Error) -> StoreError | None:
    """The StoreError for an error caused by the file or the machine; None for anything else."""
    code = getattr(err, "sqlite_errorcode", None)
    if code is None:
        return None
    primary = code & 0xFF
    if primary == _SQLITE_FULL or code == _SQLITE_IOERR_SHMSIZE:
        return StorageFullError(
            f"the disk or the store's size cap (max_store_bytes) is full: nothing was written ({err})"
        )
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreBusyError(f"the database is locked by another process ({err})")
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return NotAStoreError(f"the database file is damaged or not a database ({err})")
    if primary in (_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
        return StoreError(f"cannot write or read the database file ({err})")
    return None



_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(method: _F) -> _F:
    """Run a public method under the store's lock; turn environment errors into StoreError."""

    @functools.wraps(method)
    def wrapper(self: StoreBase, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error as err:
                translated = environment_error(err)
                if translated is None:
                    raise
                raise translated from err

    return wrapper  # type: ignore[return-value]


def wal_limit_for(max_bytes: int) -> int:
    """The bound on the write-ahead log of a store capped at ``max_bytes`` (0: no cap):
    ``max_wal_bytes``, or a quarter of the cap when that is smaller (at least 1 MiB)."""
    cap = max_bytes or limits.MAX_WAL_BYTES * 4
    return min(limits.MAX_WAL_BYTES, max(cap // 4, 1 << 20))


def marks(n: int) -> str:
    """``n`` comma-separated SQL parameter marks."""
    return ",".join("?" * n)


def check_limit(limit: int) -> int:
    """``limit``, if it is a non-negative int; raises ValueError otherwise."""
    if type(limit) is not int or limit < 0:
        raise ValueError("limit must be a non-negative integer")
    return limit


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


class StoreBase:
    """The connection of a :class:`~dazibao.node.store.Store`; see that class for the arguments."""

    _conn: sqlite3.Connection

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5_000,
                 max_bytes: int | None = None, read_only_fallback: bool = False,
                 read_only: bool = False) -> None:
        self.path = os.fspath(path)
        #: True for the private in-memory store of :meth:`memory`.
        self.in_memory = self.path == ":memory:"
        #: True for a connection that only reads (see :meth:`_open_read_only`).
        self.read_only = read_only
        self._lock = threading.RLock()
        self.max_bytes = limits.MAX_STORE_BYTES if max_bytes is None else max_bytes
        self.wal_limit = wal_limit_for(self.max_bytes)
        #: When (time.monotonic()) a write last failed for want of room; None while writes work.
        self._full_since: float | None = None
        #: True while the database was opened for reading only (see ``read_only_fallback``).
        self.exclusive = False
        if read_only:
            self._open_read_only(busy_timeout_ms)
            return
        if not self.in_memory:
            _create_private(self.path)
        try:
            self._open(busy_timeout_ms, exclusive=False)
        except StorageFullError:
            if not read_only_fallback or self.in_memory:
                raise
            self._open(busy_timeout_ms, exclusive=True)
            self.exclusive = True
            self._full_since = time.monotonic()
        if read_only_fallback and not self.in_memory and not self.exclusive:
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
            #: The same connection wrapped by sqlite-utils, for migrations and inspection.  No
            #: plugins: nothing installed beside dazibao may register functions on the node's
            #: connection.  recursive_triggers stays off, as SQLite has it (sqlite-utils would
            #: turn it on, which no trigger of the schema needs).
            self.db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
            with self._lock:
                if exclusive:
                    # Before the first access: SQLite then never creates the -shm file.
                    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
                self._configure(busy_timeout_ms)
                if exclusive and self._check_file() != schema.SCHEMA_VERSION:
                    raise StorageFullError("the database needs an upgrade, and the disk has no room for it")
                self._migrate()
        except sqlite3.Error as err:
            conn.close()
            translated = environment_error(err)
            if translated is None:
                raise
            raise translated from err
        except BaseException:
            conn.close()
            raise

    def _open_read_only(self, busy_timeout_ms: int) -> None:
        """Open an existing, current store for reading only: a ``mode=ro`` URI (SQLite refuses
        every write on it) with ``query_only`` on as well.  In WAL mode it reads beside the one
        writer, each read seeing the last commit before it began.  Raises StoreError if the file
        does not exist, is another program's or needs a migration (only the writer migrates).
        """
        if self.in_memory:
            raise StoreError("a private in-memory store cannot be opened a second time")
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the database {self.path!r} for reading: {err}") from err
        self._conn = conn
        try:
            self.db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            version = self._check_file()
            if version != schema.SCHEMA_VERSION:
                raise StoreError(f"{self.path!r} has schema version {version}: open it for writing first")
        except sqlite3.Error as err:
            conn.close()
            raise environment_error(err) or StoreError(f"cannot read the database {self.path!r}: {err}") from err
        except BaseException:
            conn.close()
            raise

    @classmethod
    def memory(cls) -> Self:
        """A new, empty, private in-memory store."""
        return cls(":memory:")

    def close(self) -> None:
        """Close the database.  Calling it again does nothing."""
        with self._lock:
            if self._conn is None:
                return
            try:
                if not self.in_memory and not self.read_only:
                    # Lets SQLite refresh its planner statistics where they went stale.  Only an
                    # optimization: if another process holds the file, closing must not fail.
                    self._conn.execute("PRAGMA optimize")
            except sqlite3.Error as err:
                if environment_error(err) is None:
                    raise
            finally:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Self:
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
        if not self.in_memory:
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
        # Read through the module, so that tests can add migrations.
        if version == schema.SCHEMA_VERSION:
            return
        with self._write():
            # Another process may have migrated the file while we waited for the write lock.
            version = self._check_file()
            for number in range(version, schema.SCHEMA_VERSION):
                schema.MIGRATIONS[number](self.db)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    def _check_file(self) -> int:
        return schema.check_file(self._conn, self.path)

    def _forget_caches(self) -> None:
        """Drop what the rooms cache from the database (a write was rolled back)."""

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
        if durable and not self.in_memory:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                # What was cached from inside the transaction may hold what it wrote.
                self._forget_caches()
                raise
        except sqlite3.Error as err:
            if isinstance(environment_error(err), StorageFullError):
                self._full_since = time.monotonic()
                # The frames of the transaction that did not fit are junk in the log now.
                self._bound_wal()
            raise
        else:
            self._full_since = None
        finally:
            if durable and not self.in_memory:
                conn.execute("PRAGMA synchronous = NORMAL")
        self._bound_wal()

    def _bound_wal(self) -> None:
        """Checkpoint and truncate the write-ahead log if it grew past its bound.

        The automatic checkpoint cannot finish while another process reads an older snapshot,
        and one large transaction can pass the bound; a best effort: a checkpoint that cannot
        run now (busy, or no room to grow the database) is tried after the next write.
        """
        if self.in_memory:
            return
        try:
            wal = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if wal > self.wal_limit:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as err:
                if environment_error(err) is None:
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
        if st.f_bavail * st.f_frsize < MIN_FREE_BYTES_AT_START:
            self._full_since = time.monotonic()

    @property
    def full(self) -> bool:
        """Whether writes are refused for want of room (the disk, or ``max_store_bytes``)."""
        return self._full_since is not None

    @guarded
    def storage(self) -> dict[str, Any]:
        """What the store takes on disk: ``db_bytes``, ``wal_bytes``, ``max_bytes`` (0: no
        cap), ``wal_limit``, ``full`` and ``read_only`` (opened for reading only)."""
        sizes = {}
        for name, suffix in (("db_bytes", ""), ("wal_bytes", "-wal")):
            try:
                sizes[name] = 0 if self.in_memory else os.path.getsize(self.path + suffix)
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

    def _select_in(self, sql: str, values: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        """Run ``sql`` (with one ``{marks}`` placeholder list) over ``values`` in chunks."""
        for start in range(0, len(values), _CHUNK):
            part = values[start : start + _CHUNK]
            yield from self._conn.execute(sql.format(marks=marks(len(part))), part)

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

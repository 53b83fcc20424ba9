"""`dazibao doctor`: a health check of a node's store that changes nothing.

:func:`examine` looks at the database file the way an operator would want before trusting it,
and returns a :class:`Report`: the facts it found and one line per problem.  It checks

* that the file is an SQLite database, not truncated, and a dazibao store of a schema version
  this code knows (``PRAGMA application_id`` and ``user_version``, read as the store reads them);
* SQLite's own consistency check (``PRAGMA quick_check``, or ``integrity_check`` with ``full``);
* that every table, index and trigger the schema version calls for exists (compared with a
  private in-memory store migrated to the same version, so the list never drifts), and the
  row count of each of the store's tables, read through sqlite-utils;
* the full-text index: the table exists and FTS5's own ``integrity-check`` passes (against the
  posts themselves when no post waits to be indexed), and how many posts wait;
* the write-ahead log against its bound, the database against ``max_store_bytes``, and the free
  disk against what a node needs to start writable.

It never writes and never migrates: the file is opened without being created, every read runs
in one read transaction, and FTS5's check (which SQLite runs as a write statement) is rolled
back.  That check holds the store's write lock while it runs, so a running node's writes wait
for it (up to their busy timeout).  A damaged file is a problem like any other, reported in a
line, never a traceback.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import sqlite_utils

from .store import schema
from .store.connection import MIN_FREE_BYTES_AT_START, environment_error, wal_limit_for
from .store.rows import NotAStoreError, SchemaVersionError, StoreBusyError
from .store.search import SearchRoom

__all__ = ["Report", "examine", "STORE_TABLES"]

#: The tables whose rows are counted, in the order they are shown.
STORE_TABLES = ("posts", "tombstones", "pending_retractions", "peers", "identities", "meta",
                "moderators", "statements", "refusals", "quota_usage", "key_log")

_SQLITE_HEADER = b"SQLite format 3\x00"
_HEADER_BYTES = 100
_MAX_INTEGRITY_LINES = 10  # SQLite's check lists up to 100 errors; the first few say enough
_BUSY_TIMEOUT_S = 5.0
_MIB = 1 << 20


@dataclass
class Report:
    """What :func:`examine` found.  ``healthy`` when ``problems`` is empty."""

    path: str
    problems: list[str] = field(default_factory=list)
    schema_version: int | None = None
    integrity: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # "index posts_time", ...
    search: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            "path": self.path,
            "healthy": self.healthy,
            "problems": self.problems,
            "schema_version": self.schema_version,
            "current_schema_version": schema.SCHEMA_VERSION,
            "integrity": self.integrity,
            "counts": self.counts,
            "missing": self.missing,
            "search": self.search,
            "storage": self.storage,
            "notes": self.notes,
        }

    def text(self) -> str:
        """The report as lines for a terminal: the facts, then one line per problem."""
        lines = [f"store: {self.path}"]
        if self.schema_version is not None:
            lines.append(f"schema version: {self.schema_version} (this dazibao writes {schema.SCHEMA_VERSION})")
        if self.integrity:
            lines.append("integrity: " + ("ok" if self.integrity == ["ok"] else "FAILED"))
        if self.counts:
            lines.append("rows: " + ", ".join(f"{name} {n}" for name, n in self.counts.items()))
        if self.search:
            if not self.search.get("exists"):
                lines.append("search index: missing")
            else:
                state = "ok" if self.search.get("ok") else "FAILED"
                lines.append(f"search index: {state}, {self.search.get('backlog', 0)} posts waiting to be indexed")
        st = self.storage
        if "db_bytes" in st:
            cap = f" of at most {st['max_bytes'] / _MIB:.1f} MiB (max_store_bytes)" if st["max_bytes"] else ""
            lines.append(f"database: {st['db_bytes'] / _MIB:.1f} MiB{cap}; write-ahead log "
                         f"{st['wal_bytes'] / _MIB:.1f} MiB of at most {st['wal_limit'] / _MIB:.1f} MiB")
        if st.get("free_disk_bytes") is not None:
            lines.append(f"free disk: {st['free_disk_bytes'] / _MIB:.1f} MiB")
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"problem: {p}" for p in self.problems]
        n = len(self.problems)
        lines.append("healthy" if not n else f"{n} problem{'s' if n > 1 else ''} found")
        return "\n".join(lines)


def examine(path: str | os.PathLike[str], *, max_bytes: int, full: bool = False) -> Report:
    """Check the store at ``path`` (capped at ``max_bytes``; 0: no cap) and report.

    ``full`` runs ``PRAGMA integrity_check`` instead of the quicker ``quick_check`` (which
    skips the check that index entries match their rows).  Raises nothing for a damaged or
    foreign file: that is a problem in the report.
    """
    path = os.fspath(path)
    report = Report(path)
    if not _check_file_bytes(path, report):
        return report
    try:
        with _open(path) as conn:
            _examine_open(conn, path, report, max_bytes=max_bytes, full=full)
    except sqlite3.Error as err:
        report.problems.append(_describe(err))
    return report


def _check_file_bytes(path: str, report: Report) -> bool:
    """Look at the file's first bytes before SQLite does; False when there is nothing to open."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            header = f.read(_HEADER_BYTES)
    except FileNotFoundError:
        report.problems.append(f"there is no database at {path}: `dazibao init` creates one")
        return False
    except OSError as err:
        report.problems.append(f"cannot read the database: {err.strerror or err}")
        return False
    if size == 0:
        report.problems.append("the database file is empty: the node creates its tables when it next starts")
        return False
    if len(header) < _HEADER_BYTES or not header.startswith(_SQLITE_HEADER):
        report.problems.append("the file is not an SQLite database (it does not start with SQLite's header)")
        return False
    # The page count in the header is valid only when "version-valid-for" (offset 92) matches
    # the change counter (offset 24); SQLite has written both since 3.7.0.
    raw_page_size, = struct.unpack(">H", header[16:18])
    page_size = 65536 if raw_page_size == 1 else raw_page_size
    counter, pages = struct.unpack(">II", header[24:32])
    valid_for, = struct.unpack(">I", header[92:96])
    if counter == valid_for and pages and size < pages * page_size:
        report.problems.append(
            f"the database file is truncated: {size} bytes, where its header counts {pages} pages "
            f"of {page_size} bytes ({pages * page_size} bytes)"
        )
    return True


@contextmanager
def _open(path: str) -> Iterator[sqlite3.Connection]:
    # mode=rw: never create a missing file.  isolation_level=None: this module opens and ends
    # every transaction itself, and never commits one.
    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=rw", uri=True,
                           isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        yield conn
    finally:
        conn.close()


def _examine_open(conn: sqlite3.Connection, path: str, report: Report, *, max_bytes: int, full: bool) -> None:
    try:
        version = schema.check_file(conn, path)
    except (NotAStoreError, SchemaVersionError) as err:
        report.problems.append(str(err))
        return
    report.schema_version = version
    if version == 0:
        report.problems.append("the database has no tables yet: the node creates them when it next starts")
        return
    if version < schema.SCHEMA_VERSION:
        report.notes.append(f"schema version {version} is upgraded to {schema.SCHEMA_VERSION} "
                            "when dazibao next opens the store")
    db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
    conn.execute("BEGIN")  # one snapshot for every read below
    try:
        pragma = "integrity_check" if full else "quick_check"
        report.integrity = [row[0] for row in conn.execute(f"PRAGMA {pragma}({_MAX_INTEGRITY_LINES})")]
        if report.integrity != ["ok"]:
            report.problems += [f"SQLite's {pragma}: {line}" for line in report.integrity]
        _check_objects(db, version, report)
        tables = set(db.table_names())
        for name in STORE_TABLES:
            if name in tables:
                report.counts[name] = db.table(name).count
        has_fts = "posts_fts" in tables
        backlog = SearchRoom.search_backlog(conn) if has_fts and "search_state" in tables else 0
        _storage(conn, path, report, max_bytes=max_bytes)
    finally:
        if conn.in_transaction:  # SQLite may have ended it on an error already
            conn.execute("ROLLBACK")
    report.search = {"exists": has_fts, "backlog": backlog}
    if has_fts:
        _check_search(conn, backlog, report)


def _check_objects(db: sqlite_utils.Database, version: int, report: Report) -> None:
    """Every table, index and trigger of the schema version, by name, read through sqlite-utils."""
    found = {
        "table": set(db.table_names()),
        "index": {index.name for table in db.tables for index in table.indexes},
        "trigger": {trigger.name for trigger in db.triggers},
    }
    missing = {(kind, name) for kind, names in schema.expected_objects(version).items()
               for name in names - found.get(kind, set())}
    # A full-text table that is gone takes its shadow tables (posts_fts_data, ...) with it:
    # one problem, not five.
    gone_fts = {name for kind, name in missing if kind == "table" and name == "posts_fts"}
    for kind, name in sorted(missing):
        if any(name.startswith(f"{fts}_") for fts in gone_fts):
            continue
        report.missing.append(f"{kind} {name}")
        what = "the full-text search table" if name == "posts_fts" else f"the {kind}"
        report.problems.append(f"{what} {name} is missing")


def _check_search(conn: sqlite3.Connection, backlog: int, report: Report) -> None:
    # rank 1 also compares the index with the posts it was built from; that holds only when
    # no post waits to be indexed, so with a backlog only the index's own structure is checked.
    against_posts = 1 if backlog <= 0 else 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO posts_fts (posts_fts, rank) VALUES ('integrity-check', ?)", (against_posts,))
    except sqlite3.Error as err:
        if isinstance(environment_error(err), StoreBusyError):
            raise
        report.search["ok"] = False
        report.problems.append(f"the full-text search index is damaged ({err}): "
                               "rebuild it with INSERT INTO posts_fts (posts_fts) VALUES ('rebuild')")
    else:
        report.search["ok"] = True
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    report.search["checked_against_posts"] = bool(against_posts)


def _storage(conn: sqlite3.Connection, path: str, report: Report, *, max_bytes: int) -> None:
    sizes = {}
    for name, suffix in (("db_bytes", ""), ("wal_bytes", "-wal")):
        try:
            sizes[name] = os.path.getsize(path + suffix)
        except OSError:
            sizes[name] = 0
    page_size: int = conn.execute("PRAGMA page_size").fetchone()[0]
    page_count: int = conn.execute("PRAGMA page_count").fetchone()[0]
    free_pages: int = conn.execute("PRAGMA freelist_count").fetchone()[0]
    wal_limit = wal_limit_for(max_bytes)
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        free_disk: int | None = st.f_bavail * st.f_frsize
    except (OSError, AttributeError):  # statvfs is not on every platform
        free_disk = None
    report.storage = {**sizes, "page_size": page_size, "pages": page_count, "free_pages": free_pages,
                      "max_bytes": max_bytes, "wal_limit": wal_limit, "free_disk_bytes": free_disk}
    if sizes["wal_bytes"] > wal_limit:
        report.problems.append(
            f"the write-ahead log is {sizes['wal_bytes'] / _MIB:.1f} MiB, above its bound of "
            f"{wal_limit / _MIB:.1f} MiB: a reader kept it from being checkpointed; the node "
            "truncates it after its next write"
        )
    if max_bytes:
        # Pages on the free list are reused before the file grows.
        room = max_bytes - (page_count - free_pages) * page_size
        if room < MIN_FREE_BYTES_AT_START:
            report.problems.append(
                f"the store is full: {(page_count - free_pages) * page_size / _MIB:.1f} MiB in use of its cap "
                f"of {max_bytes / _MIB:.1f} MiB (max_store_bytes); raise max_store_bytes or purge old posts"
            )
    if free_disk is not None and free_disk < MIN_FREE_BYTES_AT_START:
        report.problems.append(f"the disk is almost full ({free_disk} bytes free): "
                               "a node started now would run read-only")


def _describe(err: sqlite3.Error) -> str:
    kind = environment_error(err)
    if isinstance(kind, StoreBusyError):
        return (f"the database is locked by another process ({err}): a node running read-only "
                "holds it alone; stop it, or try again")
    if isinstance(kind, NotAStoreError):
        return f"the database is damaged ({err}): restore it from a backup, or start a new one and sync"
    return f"cannot read the database ({err})"

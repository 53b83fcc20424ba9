"""The store's schema: its tables, its migrations, and what a healthy file holds.

One SQLite file per node.  ``PRAGMA application_id`` marks it as dazibao's, and ``PRAGMA
user_version`` holds the schema version: the number of migrations applied.  Each migration is a
small function run inside the one write transaction that opens an old file (written atomically
with the new version number, in the database header), so that a file is always at one version
or the next, never in between.  Never edit a released migration: append a new one.

**Where sqlite-utils is used, and where not.**  A migration receives the store's connection
wrapped in a :class:`sqlite_utils.Database`.  The installed sqlite-utils (4.x) keeps its work
inside a transaction that is already open: ``Database.execute`` commits only a transaction it
opened itself, and ``Table.add_column``, ``Table.create_index`` and ``Table.transform`` (through
``Database.atomic``, a savepoint when a transaction is open) run inside ours, so a future
migration may use them and still roll back whole (tests/node/test_store.py checks this).  Its
3.x versions did not: several methods, among them ``transform`` and ``enable_fts``, ended in
``with conn:``, which commits the open transaction halfway through a migration.  The two
released migrations stay plain SQL, and must: sqlite-utils cannot declare ``AUTOINCREMENT``
(its ``_autoincrement`` is private), ``CHECK`` constraints or ``WITHOUT ROWID`` tables, which
migration 1 needs, nor a partial index (``CREATE INDEX ... WHERE``), which migration 2 creates;
and its ``enable_fts`` would add the insert trigger that the store leaves out on purpose
(search.py indexes in steps).  Plain SQL also keeps the on-disk schema fixed by this file
rather than by the SQL text a library version happens to generate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from .rows import NotAStoreError, SchemaVersionError

__all__ = [
    "APPLICATION_ID",
    "TOMBSTONE_REASONS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "POST_COLUMNS",
    "POST_COLUMNS_P",
    "INSERT_POST",
    "INSERT_TOMBSTONE",
    "check_file",
    "expected_objects",
]

#: ``PRAGMA application_id`` of a dazibao store ("DZIB"), so that another program's SQLite
#: file is never mistaken for one (and ``file(1)`` can tell them apart).
APPLICATION_ID = 0x445A4942

#: Why an id is tombstoned.  'rejected' marks a retraction of another author's post (or on
#: another board): refused on arrival, or removed when its target arrived after it.
TOMBSTONE_REASONS = ("retracted", "deleted", "purged", "rejected")


# --- migrations -----------------------------------------------------------------------------


def _migration_1_initial(db: sqlite_utils.Database) -> None:
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
        db.execute(sql)


def _migration_2_reply_order(db: sqlite_utils.Database) -> None:
    # A thread page reads one page of replies in (created_at, id) order; with only the index on
    # ``parent`` SQLite read and sorted every reply of the thread for each page.  Plain SQL:
    # Table.create_index cannot make a partial index.
    db.execute("DROP INDEX posts_parent")
    db.execute("CREATE INDEX posts_parent_time ON posts (parent, created_at_ms, id) WHERE parent IS NOT NULL")


def _migration_3_moderation(db: sqlite_utils.Database) -> None:
    # Moderation and trust (docs/moderation.md).  Plain SQL, like the released migrations:
    # CHECK constraints, WITHOUT ROWID tables and partial indexes, and a fixed on-disk schema.
    statements = [
        # The moderators this node follows, per board.  The local pseudonyms (identities) are
        # followed on every board without a row here.
        """CREATE TABLE moderators (
            board TEXT NOT NULL,
            key BLOB NOT NULL CHECK (typeof(key) = 'blob' AND length(key) = 32),
            source TEXT NOT NULL CHECK (source IN ('config', 'cli', 'ui', 'charter')),
            added_at_ms INTEGER NOT NULL,
            PRIMARY KEY (board, key)
        ) WITHOUT ROWID""",
        # Derived from the stored posts of kind 'moderation' (one row per stored statement):
        # inserted on ingest, deleted with the post (the trigger below), whatever removes it.
        """CREATE TABLE statements (
            id BLOB PRIMARY KEY CHECK (typeof(id) = 'blob' AND length(id) = 32),
            board TEXT NOT NULL,
            moderator BLOB NOT NULL,
            action TEXT NOT NULL,
            subject TEXT NOT NULL,
            target BLOB NOT NULL,
            reason TEXT NOT NULL,
            expires_at_ms INTEGER,
            created_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX statements_board ON statements (board, moderator)",
        "CREATE INDEX statements_target ON statements (target)",
        "CREATE INDEX statements_expiry ON statements (expires_at_ms) WHERE expires_at_ms IS NOT NULL",
        """CREATE TRIGGER statements_follow_posts AFTER DELETE ON posts WHEN old.kind = 'moderation' BEGIN
            DELETE FROM statements WHERE id = old.id;
        END""",
        # Charters and statements are few among many posts: found without scanning a board.
        """CREATE INDEX posts_moderation ON posts (kind, board, created_at_ms, id)
           WHERE kind IN ('moderation', 'charter')""",
        # Ids refused by policy (blocked, quota_*, pow_required), remembered so that the same
        # post is refused again without a signature check, bounded by max_refusals (the
        # oldest, lowest seq, forgotten first).  ``carried``: a peer was found holding it, so
        # its key is part of this node's reconciliation set (docs/protocol.md, "Reconciliation").
        """CREATE TABLE refusals (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id BLOB NOT NULL UNIQUE CHECK (typeof(id) = 'blob' AND length(id) = 32),
            board TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            author BLOB NOT NULL,
            code TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            carried INTEGER NOT NULL DEFAULT 0 CHECK (carried IN (0, 1))
        )""",
        "CREATE INDEX refusals_author ON refusals (board, author)",
        "CREATE INDEX refusals_carried ON refusals (board, created_at_ms, id) WHERE carried = 1",
        # Posts and bytes stored per stranger, board and UTC day of this node's clock.
        """CREATE TABLE quota_usage (
            board TEXT NOT NULL,
            author BLOB NOT NULL,
            day INTEGER NOT NULL,
            posts INTEGER NOT NULL,
            bytes INTEGER NOT NULL,
            PRIMARY KEY (author, board, day)
        ) WITHOUT ROWID""",
        "ALTER TABLE tombstones ADD COLUMN carried INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX tombstones_carried ON tombstones (board, created_at_ms, id) WHERE carried = 1",
        # Keys whose place in the reconciliation set changed other than by a post stored or a
        # tombstone written (a post removed into refusals, a refusal or purge marked carried,
        # a carried refusal forgotten): another process on the same file reads them here
        # (Store.changes_since) and asks the store what each key is now.
        """CREATE TABLE key_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            key BLOB NOT NULL
        )""",
    ]
    for sql in statements:
        db.execute(sql)


#: The migrations, in order: the one at index ``n`` turns version ``n`` into ``n + 1``.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1_initial, _migration_2_reply_order, _migration_3_moderation,
)

#: The schema version this code writes (the number of migrations).
SCHEMA_VERSION = len(MIGRATIONS)


# --- statements the rooms share -------------------------------------------------------------

POST_COLUMNS = "seq, id, kind, board, author, created_at_ms, parent, body, raw, received_at_ms, source"
POST_COLUMNS_P = ", ".join("p." + c.strip() for c in POST_COLUMNS.split(","))
INSERT_POST = (
    "INSERT INTO posts (id, kind, board, author, created_at_ms, parent, body, raw, received_at_ms, source)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_TOMBSTONE = (
    "INSERT OR IGNORE INTO tombstones (id, board, created_at_ms, author, reason, at_ms) VALUES (?, ?, ?, ?, ?, ?)"
)


# --- checking a file ------------------------------------------------------------------------


def check_file(conn: sqlite3.Connection, path: str) -> int:
    """The schema version of the open file; 0 for a new, empty one.

    Raises NotAStoreError if it is another program's database, SchemaVersionError if a newer
    dazibao wrote it, and lets sqlite3.DatabaseError through for a file that is not SQLite.
    """
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    app_id: int = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and version != 0):
        raise NotAStoreError(f"{path!r} is not a dazibao database")
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise NotAStoreError(f"{path!r} is not a dazibao database")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{path!r} has schema version {version}, newer than the {SCHEMA_VERSION} "
            "this version of dazibao knows: upgrade dazibao to open it"
        )
    return version


def expected_objects(version: int | None = None) -> dict[str, set[str]]:
    """The tables, indexes and triggers a store at ``version`` (None: the current one) holds,
    as ``{type: {name, ...}}``.

    Read from a private in-memory database migrated to ``version``, so the answer can never
    drift from the migrations.  SQLite's own objects (``sqlite_*``) are left out.  Raises
    ValueError for a version this code does not know.
    """
    if version is None:
        version = SCHEMA_VERSION
    if not 0 <= version <= SCHEMA_VERSION:
        raise ValueError(f"unknown schema version {version}")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db = sqlite_utils.Database(conn, recursive_triggers=False, execute_plugins=False)
        conn.execute("BEGIN")
        for migration in MIGRATIONS[:version]:
            migration(db)
        objects: dict[str, set[str]] = {"table": set(), "index": set(), "trigger": set()}
        for kind, name in conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
            objects.setdefault(kind, set()).add(name)
        conn.execute("ROLLBACK")
        return objects
    finally:
        conn.close()

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


def _migration_4_reading_tables(db: sqlite_utils.Database) -> None:
    # A board page listed its threads by grouping every post of the board with its replies and
    # sorting the groups (a scan and a temporary B-tree per request, seconds on a large
    # board), and the boards list and /v1/info grouped every post of the store.  These two
    # tables keep those answers instead, so that every page reads one page of an index.  They
    # are kept by triggers on posts (stored posts are never updated, only inserted and
    # deleted), so that no write path -- ingest, retraction, retention, moderation purge,
    # import, another process -- can leave them behind.  Plain SQL, like the other migrations:
    # WITHOUT ROWID tables, triggers and an upsert.
    #
    # Kept per row, the insert triggers doubled what Store.ingest spends per post (each row
    # ran three trigger programs: an upsert of its board's row with its two indexes, and a
    # thread row or update).  So the ingest room, which stores almost every post, turns them
    # off for its own inserts inside its write transaction (``reading_state.deferred``) and
    # keeps both tables with a few set-based statements per batch instead
    # (node/store/ingest.py, ``keep_reading_tables``).  The flag is set and cleared inside that
    # one transaction, so no other connection ever sees it set: any other insert, by another
    # program or a raw statement, still goes through the triggers.  Deletes are rare and stay
    # per row.
    statements = [
        """CREATE TABLE reading_state (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            deferred INTEGER NOT NULL CHECK (deferred IN (0, 1))
        )""",
        "INSERT INTO reading_state (one, deferred) VALUES (1, 0)",
        # One row per stored top-level post (kind 'post'): its board, its latest activity (the
        # newest created_at of the post and its direct replies of kind 'reply') and the number
        # of those replies.  A reply stored before its parent is counted when the parent comes.
        # Keyed by the post's seq, so that a new thread is appended rather than written into a
        # random page (keyed by id it made ingest write half as many pages again).
        """CREATE TABLE threads (
            seq INTEGER PRIMARY KEY,
            id BLOB NOT NULL,
            board TEXT NOT NULL,
            last_at_ms INTEGER NOT NULL,
            replies INTEGER NOT NULL
        )""",
        "CREATE INDEX threads_board_activity ON threads (board, last_at_ms DESC, id DESC)",
        # One row per board with stored rows: ``posts`` counts the rows a reader counts (kinds
        # 'post' and 'reply'), ``rows`` every row; ``last_at_ms`` is the newest created_at of
        # any row, ``last_post_at_ms`` of the rows a reader counts (0: none).
        """CREATE TABLE board_stats (
            board TEXT PRIMARY KEY,
            posts INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            last_at_ms INTEGER NOT NULL,
            last_post_at_ms INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX board_stats_activity ON board_stats (last_post_at_ms DESC, board)",
        "CREATE INDEX board_stats_any_activity ON board_stats (last_at_ms DESC, board)",
        """CREATE TRIGGER board_stats_insert AFTER INSERT ON posts
           WHEN (SELECT deferred FROM reading_state) = 0 BEGIN
            INSERT INTO board_stats (board, posts, rows, last_at_ms, last_post_at_ms)
            VALUES (new.board, new.kind IN ('post', 'reply'), 1, new.created_at_ms,
                    CASE WHEN new.kind IN ('post', 'reply') THEN new.created_at_ms ELSE 0 END)
            ON CONFLICT (board) DO UPDATE SET
                posts = posts + excluded.posts, rows = rows + 1,
                last_at_ms = max(last_at_ms, excluded.last_at_ms),
                last_post_at_ms = max(last_post_at_ms, excluded.last_post_at_ms);
        END""",
        # The newest times are looked up again only when the newest row itself goes, on the
        # (board, created_at_ms, id) index.
        """CREATE TRIGGER board_stats_delete AFTER DELETE ON posts BEGIN
            UPDATE board_stats SET
                posts = posts - (old.kind IN ('post', 'reply')), rows = rows - 1,
                last_at_ms = CASE WHEN old.created_at_ms < last_at_ms THEN last_at_ms ELSE coalesce(
                    (SELECT max(created_at_ms) FROM posts WHERE board = old.board), 0) END,
                last_post_at_ms = CASE
                    WHEN old.kind NOT IN ('post', 'reply') OR old.created_at_ms < last_post_at_ms
                    THEN last_post_at_ms
                    ELSE coalesce((SELECT created_at_ms FROM posts WHERE board = old.board
                                   AND kind IN ('post', 'reply') ORDER BY created_at_ms DESC LIMIT 1), 0) END
            WHERE board = old.board;
            DELETE FROM board_stats WHERE board = old.board AND rows <= 0;
        END""",
        # "parent IS NOT NULL" repeats the WHERE of the partial index posts_parent_time, so that
        # SQLite reads the replies off that index (and the newest without sorting them).
        # One look at the replies stored before their thread (usually none): an aggregate
        # without GROUP BY gives one row, zero replies included.
        """CREATE TRIGGER threads_insert_post AFTER INSERT ON posts
           WHEN new.kind = 'post' AND (SELECT deferred FROM reading_state) = 0 BEGIN
            INSERT OR REPLACE INTO threads (seq, id, board, last_at_ms, replies)
            SELECT new.seq, new.id, new.board, max(new.created_at_ms, coalesce(max(created_at_ms), 0)), count(*)
            FROM posts WHERE parent = new.id AND parent IS NOT NULL AND kind = 'reply';
        END""",
        """CREATE TRIGGER threads_insert_reply AFTER INSERT ON posts
           WHEN new.kind = 'reply' AND new.parent IS NOT NULL AND (SELECT deferred FROM reading_state) = 0 BEGIN
            UPDATE threads SET replies = replies + 1, last_at_ms = max(last_at_ms, new.created_at_ms)
            WHERE seq = (SELECT seq FROM posts WHERE id = new.parent);
        END""",
        """CREATE TRIGGER threads_delete_post AFTER DELETE ON posts WHEN old.kind = 'post' BEGIN
            DELETE FROM threads WHERE seq = old.seq;
        END""",
        """CREATE TRIGGER threads_delete_reply AFTER DELETE ON posts
           WHEN old.kind = 'reply' AND old.parent IS NOT NULL BEGIN
            UPDATE threads SET replies = replies - 1,
                last_at_ms = CASE WHEN old.created_at_ms < last_at_ms THEN last_at_ms ELSE max(
                    coalesce((SELECT created_at_ms FROM posts WHERE id = old.parent), 0),
                    coalesce((SELECT created_at_ms FROM posts
                              WHERE parent = old.parent AND parent IS NOT NULL AND kind = 'reply'
                              ORDER BY created_at_ms DESC LIMIT 1), 0)) END
            WHERE seq = (SELECT seq FROM posts WHERE id = old.parent);
        END""",
        # Fill both from the rows already stored (an existing store upgrades in place).
        """INSERT INTO board_stats (board, posts, rows, last_at_ms, last_post_at_ms)
           SELECT board, sum(kind IN ('post', 'reply')), count(*), max(created_at_ms),
                  coalesce(max(CASE WHEN kind IN ('post', 'reply') THEN created_at_ms END), 0)
           FROM posts GROUP BY board""",
        """INSERT INTO threads (seq, id, board, last_at_ms, replies)
           SELECT p.seq, p.id, p.board, max(p.created_at_ms, coalesce(max(r.created_at_ms), 0)), count(r.seq)
           FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'
           WHERE p.kind = 'post' GROUP BY p.seq""",
    ]
    for sql in statements:
        db.execute(sql)


def _migration_5_member_marks(db: sqlite_utils.Database) -> None:
    # What the member UI remembers of the member's reading, on this node only (node/store/marks.py).
    statements = [
        # The newest post seq stored when the member last opened a board or a thread.
        """CREATE TABLE visits (
            scope TEXT NOT NULL CHECK (scope IN ('board', 'thread')),
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX visits_age ON visits (at_ms)",
        # Replies to a post of a local pseudonym, by a key that is not one: kept by the
        # triggers below, so that the "replies to your pseudonyms" page reads one index page.
        """CREATE TABLE replies_to_me (
            seq INTEGER PRIMARY KEY,
            id BLOB NOT NULL,
            created_at_ms INTEGER NOT NULL,
            parent_author BLOB NOT NULL
        )""",
        "CREATE INDEX replies_to_me_time ON replies_to_me (created_at_ms, id)",
        "CREATE INDEX replies_to_me_author ON replies_to_me (parent_author)",
        # A reply whose parent is already here and is a local pseudonym's.
        """CREATE TRIGGER replies_to_me_reply AFTER INSERT ON posts
           WHEN new.kind = 'reply' AND new.parent IS NOT NULL
                AND new.author NOT IN (SELECT public_key FROM identities) BEGIN
            INSERT OR IGNORE INTO replies_to_me (seq, id, created_at_ms, parent_author)
            SELECT new.seq, new.id, new.created_at_ms, p.author FROM posts AS p
            WHERE p.id = new.parent AND p.author IN (SELECT public_key FROM identities);
        END""",
        # A local pseudonym's post that arrives after replies to it (gossip keeps no order).
        """CREATE TRIGGER replies_to_me_parent AFTER INSERT ON posts
           WHEN new.author IN (SELECT public_key FROM identities) BEGIN
            INSERT OR IGNORE INTO replies_to_me (seq, id, created_at_ms, parent_author)
            SELECT r.seq, r.id, r.created_at_ms, new.author FROM posts AS r
            WHERE r.parent = new.id AND r.kind = 'reply' AND r.author NOT IN (SELECT public_key FROM identities);
        END""",
        """CREATE TRIGGER replies_to_me_delete AFTER DELETE ON posts WHEN old.kind = 'reply' BEGIN
            DELETE FROM replies_to_me WHERE seq = old.seq;
        END""",
        # A pseudonym created or imported here: its posts are found by reading every post once.
        """CREATE TRIGGER replies_to_me_identity AFTER INSERT ON identities BEGIN
            INSERT OR IGNORE INTO replies_to_me (seq, id, created_at_ms, parent_author)
            SELECT r.seq, r.id, r.created_at_ms, p.author FROM posts AS p
            JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'
            WHERE p.author = new.public_key AND r.author NOT IN (SELECT public_key FROM identities);
        END""",
        """CREATE TRIGGER replies_to_me_identity_gone AFTER DELETE ON identities BEGIN
            DELETE FROM replies_to_me WHERE parent_author = old.public_key;
        END""",
        # A store upgraded in place: fill the table from what is stored.
        """INSERT OR IGNORE INTO replies_to_me (seq, id, created_at_ms, parent_author)
           SELECT r.seq, r.id, r.created_at_ms, p.author FROM identities AS i
           JOIN posts AS p ON p.author = i.public_key
           JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'
           WHERE r.author NOT IN (SELECT public_key FROM identities)""",
    ]
    for sql in statements:
        db.execute(sql)


#: The kinds read by board (collective action, and the profiles that name their authors) and the
#: kinds read by parent (a report's corroborations, a letter's or pledge's signatures, a post's
#: translations): each has a partial index of its own (migration 6).
BOARD_INDEXED_KINDS = ("profile", "report", "corroboration", "letter", "signature", "pledge", "pin", "translation")
PARENT_INDEXED_KINDS = ("corroboration", "signature", "translation")


def _migration_6_object_indexes(db: sqlite_utils.Database) -> None:
    # The collective-action pages read the objects of one kind on one board, or the children of
    # one kind of one post (node/store/organizing.py).  Without an index each read walked the
    # whole board or thread.  One partial index per kind: a post or a reply (almost every row)
    # is in none of them, so ingest of posts and replies pays nothing, and each object kind pays
    # one index entry.  The reads name the kind as a literal, so SQLite can use these indexes.
    statements = [f"CREATE INDEX posts_{kind}_board ON posts (board, created_at_ms, id) WHERE kind = '{kind}'"
                  for kind in BOARD_INDEXED_KINDS]
    statements += [f"CREATE INDEX posts_{kind}_parent ON posts (parent, created_at_ms, id) WHERE kind = '{kind}'"
                   for kind in PARENT_INDEXED_KINDS]
    for statement in statements:
        db.execute(statement)


#: The migrations, in order: the one at index ``n`` turns version ``n`` into ``n + 1``.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1_initial, _migration_2_reply_order, _migration_3_moderation, _migration_4_reading_tables,
    _migration_5_member_marks, _migration_6_object_indexes,
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

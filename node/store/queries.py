"""The store's query room: every read of posts, boards, threads and the change feed.

Reads never open a write transaction.  Pages are read by keyset (each page starts after the
last key of the previous one, on an index), so memory stays bounded however large the store.
A running node notices writes by another process by polling :meth:`QueryRoom.data_version` and
catches up with :meth:`QueryRoom.changes_since`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from dazibao.protocol.posts import KIND_POST, KIND_REPLY, post_key

from .connection import StoreBase, check_limit, guarded, marks
from .rows import BoardInfo, Changes, PostRow, ThreadRow
from .schema import PARENT_INDEXED_KINDS, POST_COLUMNS, POST_COLUMNS_P
from .search import like_params

__all__ = ["QueryRoom"]

_KEYS_CHUNK = 10_000  # rows per page of iter_keys
#: The kinds a reader counts as posts; the maintained ``board_stats`` table counts these.
READER_KINDS = (KIND_POST, KIND_REPLY)
_ROWS_CHUNK = 500  # rows per page of iter_rows and iter_sizes (a post is at most 20 KiB)


class QueryRoom(StoreBase):
    """Reads of posts and boards, the key and row streams, and the change feed."""

    @guarded
    def ids_with_prefix(self, prefix: str, limit: int = 6) -> list[bytes]:
        """Stored ids whose hex form starts with ``prefix`` (lowercase hex), at most ``limit``,
        in id order: a range of the id index, not a scan."""
        check_limit(limit)
        if any(c not in "0123456789abcdef" for c in prefix) or len(prefix) > 64:
            raise ValueError("an id prefix is up to 64 lowercase hex digits")
        # The ids from prefix000... up to (prefix + 1)000..., as 32-byte bounds.
        shift = 4 * (64 - len(prefix))
        value = int(prefix, 16) if prefix else 0
        low = (value << shift).to_bytes(32, "big")
        high = None if value + 1 == 16 ** len(prefix) else ((value + 1) << shift).to_bytes(32, "big")
        sql = "SELECT id FROM posts WHERE id >= ?" + ("" if high is None else " AND id < ?") + " ORDER BY id"
        out = []
        for (pid,) in self._conn.execute(sql, (low,) if high is None else (low, high)):
            if bytes(pid).hex().startswith(prefix):
                out.append(bytes(pid))
                if len(out) >= limit:
                    break
            elif out:
                break
        return out

    @guarded
    def board_counts_of(self, kinds: Collection[str]) -> list[tuple[str, int, int | None]]:
        """Every board with stored rows, by name: ``(board, rows of these kinds, newest of them)``.

        For the kinds a reader counts (``post`` and ``reply``) this reads the maintained
        ``board_stats`` table, one row per board; any other set of kinds groups every stored
        row, so it takes time in proportion to the store.
        """
        kinds = list(kinds)
        if set(kinds) == set(READER_KINDS):
            sql = ("SELECT board, posts, CASE WHEN posts > 0 THEN last_post_at_ms END"
                   " FROM board_stats ORDER BY board")
            return [(str(b), int(n), last) for b, n, last in self._conn.execute(sql)]
        sql = (f"SELECT board, coalesce(sum(kind IN ({marks(len(kinds))})), 0),"
               f" max(CASE WHEN kind IN ({marks(len(kinds))}) THEN created_at_ms END)"
               " FROM posts GROUP BY board ORDER BY board")
        return [(str(b), int(n), last) for b, n, last in self._conn.execute(sql, (*kinds, *kinds))]

    @guarded
    def has(self, ids: Iterable[bytes]) -> set[bytes]:
        """The ids among ``ids`` that are stored."""
        ids = list(ids)
        return {row[0] for row in self._select_in("SELECT id FROM posts WHERE id IN ({marks})", ids)}

    @guarded
    def tombstoned(self, ids: Iterable[bytes]) -> set[bytes]:
        """The ids among ``ids`` that are tombstoned (will be refused)."""
        ids = list(ids)
        return {row[0] for row in self._select_in("SELECT id FROM tombstones WHERE id IN ({marks})", ids)}

    @guarded
    def get_raw(self, ids: Iterable[bytes]) -> list[bytes]:
        """The signed bytes of the stored posts among ``ids``, in the order asked, unknown ids skipped."""
        ids = list(ids)
        found = dict(self._select_in("SELECT id, raw FROM posts WHERE id IN ({marks})", list(set(ids))))
        return [found[i] for i in ids if i in found]

    @guarded
    def get(self, post_id: bytes) -> PostRow | None:
        """The stored post with this id, or None."""
        row = self._conn.execute(f"SELECT {POST_COLUMNS} FROM posts WHERE id = ?", (post_id,)).fetchone()
        return None if row is None else PostRow(*row)

    @guarded
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
        where: list[str] = []
        params: list[Any] = []
        if board is not None:
            where.append("board = ?")
            params.append(board)
        if before is not None:
            where.append("(created_at_ms, id) < (?, ?)")
            params.extend(before)
        if kinds is not None:
            kinds = list(kinds)
            where.append(f"kind IN ({marks(len(kinds))})")
            params.extend(kinds)
        sql = f"SELECT {POST_COLUMNS} FROM posts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at_ms DESC, id DESC LIMIT ?"
        params.append(check_limit(limit))
        return [PostRow(*row) for row in self._conn.execute(sql, params)]

    @guarded
    def threads(self, board: str, limit: int = 50, offset: int = 0, *,
                before: tuple[int, bytes] | None = None) -> list[ThreadRow]:
        """Top-level posts of ``board`` with their number of direct replies, latest activity first
        (by last activity, then id, both descending).

        The latest activity of a thread is the newest created_at of the post and its direct
        replies.  ``before`` is a ``(last_at_ms, id)`` cursor: only threads strictly after it in
        that order are listed, so the last row of one page gives the cursor of the next, and a
        page costs the same however deep it is.  ``offset`` skips that many threads first
        (after the cursor, if any); it walks the maintained ``threads`` index only, never the
        posts, but in proportion to ``offset``.  Raises ValueError for a negative offset or a
        bad ``limit``.
        """
        if type(offset) is not int or offset < 0:
            raise ValueError("offset must be a non-negative integer")
        where = "t.board = ?"
        params: list[Any] = [board]
        if before is not None:
            where += " AND (t.last_at_ms, t.id) < (?, ?)"
            params.extend(before)
        sql = (f"SELECT {POST_COLUMNS_P}, t.replies, t.last_at_ms FROM threads AS t"
               f" JOIN posts AS p ON p.seq = t.seq WHERE {where}"
               " ORDER BY t.last_at_ms DESC, t.id DESC LIMIT ? OFFSET ?")
        return [
            ThreadRow(PostRow(*row[:11]), row[11], row[12])
            for row in self._conn.execute(sql, (*params, check_limit(limit), offset))
        ]

    @guarded
    def thread_cursor(self, board: str, offset: int) -> tuple[int, bytes] | None:
        """The ``(last_at_ms, id)`` of the thread at ``offset`` (0: the newest) of ``board`` in
        :meth:`threads` order, or None past the last one: the cursor that continues after it.

        Reads the maintained index only (for a page number given in a link), in proportion to
        ``offset``.  Raises ValueError for a negative offset.
        """
        if type(offset) is not int or offset < 0:
            raise ValueError("offset must be a non-negative integer")
        row = self._conn.execute(
            "SELECT last_at_ms, id FROM threads WHERE board = ? ORDER BY last_at_ms DESC, id DESC LIMIT 1 OFFSET ?",
            (board, offset)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    @guarded
    def replies(self, post_id: bytes) -> list[PostRow]:
        """The stored direct replies to ``post_id``, oldest first."""
        sql = f"SELECT {POST_COLUMNS} FROM posts WHERE parent = ? AND kind = ? ORDER BY created_at_ms, id"
        return [PostRow(*row) for row in self._conn.execute(sql, (post_id, KIND_REPLY))]

    @guarded
    def newer_thread_cursor(self, board: str, bound: tuple[int, bytes], count: int) -> tuple[int, bytes] | None:
        """The cursor of the page of ``count`` threads that ends with the thread at ``bound``
        (a ``(last_at_ms, id)`` in :meth:`threads` order): the key of the ``count``-th thread
        newer than ``bound``, or None when there are fewer (that page is the first).  For a
        "newer" link; reads ``count`` entries of the maintained index.  Raises ValueError for
        a ``count`` below 1.
        """
        if type(count) is not int or count < 1:
            raise ValueError("count must be a positive integer")
        row = self._conn.execute(
            "SELECT last_at_ms, id FROM threads WHERE board = ? AND (last_at_ms, id) > (?, ?)"
            " ORDER BY last_at_ms, id LIMIT 1 OFFSET ?", (board, *bound, count - 1)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    @guarded
    def boards(self) -> list[BoardInfo]:
        """Every board with stored rows, by name, with its posts and replies counted and the
        newest created_at of them (0 when it has none): one row of ``board_stats`` each."""
        sql = "SELECT board, posts, last_post_at_ms FROM board_stats ORDER BY board"
        return [BoardInfo(*row) for row in self._conn.execute(sql)]

    @guarded
    def active_boards(self, limit: int, boards: Collection[str] | None = None) -> list[tuple[str, int]]:
        """``(board, newest created_at of any of its rows)`` for at most ``limit`` boards with
        stored rows, the most recently active first (then by name); only those among
        ``boards`` when given.  Reads ``limit`` rows of an index, or one row per board asked."""
        check_limit(limit)
        if boards is None:
            sql = "SELECT board, last_at_ms FROM board_stats ORDER BY last_at_ms DESC, board LIMIT ?"
            return [(str(b), int(t)) for b, t in self._conn.execute(sql, (limit,))]
        rows = [(str(b), int(t)) for b, t in self._select_in(
            "SELECT board, last_at_ms FROM board_stats WHERE board IN ({marks})", list(set(boards)))]
        rows.sort(key=lambda r: (-r[1], r[0].encode("utf-8", "surrogatepass")))
        return rows[:limit]

    @guarded
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
        # "parent IS NOT NULL" repeats what the partial index's WHERE says: without it SQLite
        # finds the rows by that index but does not see that it also gives their order.
        where = "parent = ? AND parent IS NOT NULL AND kind = ?"
        params: list[Any] = [post_id, KIND_REPLY]
        order = "ASC"
        if after is not None:
            where += " AND (created_at_ms, id) > (?, ?)"
            params.extend(after)
        elif before is not None:
            where += " AND (created_at_ms, id) < (?, ?)"
            params.extend(before)
            order = "DESC"
        return self._reply_rows(where, params, order, limit)

    @guarded
    def newest_replies(self, post_id: bytes, limit: int) -> list[PostRow]:
        """The newest ``limit`` direct replies to ``post_id``, listed oldest first."""
        return self._reply_rows("parent = ? AND parent IS NOT NULL AND kind = ?", [post_id, KIND_REPLY], "DESC", limit)

    def _reply_rows(self, where: str, params: list[Any], order: str, limit: int) -> list[PostRow]:
        # One walk of the (parent, created_at_ms, id) index in the order asked, stopping after
        # the page; a page read newest first is turned round here rather than sorted again
        # in SQL.  The body of a row is only read if the row is on the page.
        sql = f"SELECT {POST_COLUMNS} FROM posts WHERE {where} ORDER BY created_at_ms {order}, id {order} LIMIT ?"
        rows = [PostRow(*row) for row in self._conn.execute(sql, [*params, check_limit(limit)])]
        if order == "DESC":
            rows.reverse()
        return rows

    @guarded
    def parents_with_children(self, parents: Collection[bytes], kind: str) -> set[bytes]:
        """Which of ``parents`` have at least one stored direct child of ``kind`` (one of the
        kinds with an index by parent: ``schema.PARENT_INDEXED_KINDS``).

        One statement for a whole page of posts (a thread page asks it of its hundred
        replies), each parent one look-up in the kind's index, instead of a read per post.
        Raises ValueError for another kind.
        """
        if kind not in PARENT_INDEXED_KINDS:
            raise ValueError(f"not a kind indexed by parent: {kind!r}")
        wanted = list(dict.fromkeys(parents))
        found: set[bytes] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start:start + 500]
            # The kind is a literal, so that SQLite can use the kind's partial index.
            sql = (f"SELECT ids.column1 FROM (VALUES {', '.join(['(?)'] * len(part))}) AS ids WHERE EXISTS"
                   f" (SELECT 1 FROM posts WHERE parent = ids.column1 AND kind = '{kind}')")
            found.update(bytes(row[0]) for row in self._conn.execute(sql, part))
        return found

    @guarded
    def reply_count(self, post_id: bytes) -> int:
        """The number of stored direct replies to ``post_id``."""
        row = self._conn.execute("SELECT replies FROM threads WHERE seq = (SELECT seq FROM posts WHERE id = ?)",
                                 (post_id,)).fetchone()
        if row is not None:
            return int(row[0])
        # Not a stored top-level post (a reply, or a parent not stored): count them.
        sql = "SELECT count(*) FROM posts WHERE parent = ? AND kind = ?"
        return int(self._conn.execute(sql, (post_id, KIND_REPLY)).fetchone()[0])

    @guarded
    def board_page(
        self,
        limit: int,
        *,
        by_name: bool = False,
        after: tuple[int, str] | str | None = None,
        contains: str = "",
    ) -> list[BoardInfo]:
        """One page of the boards with stored rows, with their posts and replies counted and the
        newest created_at of those (0: none), from the maintained ``board_stats`` table.

        By default the most recently active first (newest created_at, then name), and
        ``after`` is the ``(last_at_ms, board)`` of the last row of the previous page.  With
        ``by_name``, in name order (UTF-8 bytes), and ``after`` is the last board name of the
        previous page.  ``contains`` keeps only boards whose name contains it (case-insensitive
        for ASCII letters).  Only ``limit`` rows are ever returned, however many boards there
        are.  Raises ValueError for a cursor of the wrong shape or a bad ``limit``.
        """
        where: list[str] = []
        params: list[Any] = []
        if contains:
            where.append("board LIKE ? ESCAPE '\\'")
            params.extend(like_params([contains]))
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
                # The first term bounds the range of the activity index; the second drops the
                # few boards of the same time up to the cursor's name.
                where.append("last_post_at_ms <= ? AND (last_post_at_ms < ? OR board > ?)")
                params.extend([after[0], after[0], after[1]])
            order = "last_post_at_ms DESC, board"
        sql = "SELECT board, posts, last_post_at_ms FROM board_stats"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        return [BoardInfo(*row) for row in self._conn.execute(sql, [*params, check_limit(limit)])]

    @guarded
    def boards_with_posts(self, boards: Iterable[str]) -> set[str]:
        """The boards among ``boards`` that have at least one stored post."""
        boards = list(boards)
        return {row[0] for row in self._select_in("SELECT board FROM board_stats WHERE board IN ({marks})", boards)}

    @guarded
    def board_count(self) -> int:
        """The number of boards with stored rows."""
        return int(self._conn.execute("SELECT count(*) FROM board_stats").fetchone()[0])

    @guarded
    def count(self, board: str | None = None) -> int:
        """The number of stored rows (of every kind), in one board or in all: one row of
        ``board_stats``, or one per board."""
        if board is None:
            return int(self._conn.execute("SELECT coalesce(sum(rows), 0) FROM board_stats").fetchone()[0])
        row = self._conn.execute("SELECT rows FROM board_stats WHERE board = ?", (board,)).fetchone()
        return 0 if row is None else int(row[0])

    @guarded
    def post_count(self, board: str | None = None) -> int:
        """The number of stored posts and replies (the rows a reader counts; not retractions,
        profiles, moderation statements, charters or unknown kinds), in one board or in all."""
        if board is None:
            return int(self._conn.execute("SELECT coalesce(sum(posts), 0) FROM board_stats").fetchone()[0])
        row = self._conn.execute("SELECT posts FROM board_stats WHERE board = ?", (board,)).fetchone()
        return 0 if row is None else int(row[0])

    def iter_keys(self, boards: Collection[str] | None = None) -> Iterator[bytes]:
        """Every stored reconciliation key (or those of ``boards``), in ascending key order.

        Streamed in pages, so the store is not locked while the caller consumes the keys; a
        post written or removed meanwhile may or may not be yielded.  To build an index that
        stays exact, take :meth:`watermark` first, then apply ``changes_since(*watermark)``.
        """
        scopes: list[str | None] = [None]
        if boards is not None:
            # Key order compares the UTF-8 bytes of the board first.
            scopes = [*sorted(set(boards), key=lambda b: b.encode("utf-8"))]
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

    @guarded
    def _keys_page(self, board: str | None, after: tuple[Any, ...] | None) -> list[tuple[Any, ...]]:
        # Keyset paging: each page starts after the last key of the previous one, on the index.
        params: list[Any]
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

    def iter_rows(self, boards: Collection[str] | None = None, *, since_ms: int | None = None) -> Iterator[PostRow]:
        """Stored posts (of ``boards``; created at or after ``since_ms``), in ascending key order.

        Paged like :meth:`iter_keys`: memory stays bounded however large the store.  Inside
        :meth:`snapshot` the posts yielded are exactly those stored when the block began.
        """
        for board, after in self._board_scopes(boards):
            while True:
                rows = self._rows_page(board, after, since_ms, POST_COLUMNS)
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

    @guarded
    def _rows_page(self, board: str | None, after: tuple[Any, ...] | None, since_ms: int | None,
                   columns: str) -> list[tuple[Any, ...]]:
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

    @guarded
    def watermark(self) -> tuple[int, int]:
        """The ``(post_seq, tomb_seq)`` to pass to :meth:`changes_since` to see only later changes."""
        return self._watermark()

    def _watermark(self) -> tuple[int, int]:
        # The highest seq ever given out, even if that row has been deleted since.
        seqs = dict(self._conn.execute("SELECT name, seq FROM sqlite_sequence"))
        return seqs.get("posts", 0), seqs.get("tombstones", 0)

    @guarded
    def changes_since(self, post_seq: int, tomb_seq: int, log_seq: int | None = None, *,
                      limit: int = 10_000) -> Changes:
        """Posts stored and keys removed after the given sequence numbers.

        Lets a running node pick up what another process wrote to the same file.  Apply
        ``added``, then ``removed_keys``, then ``present_keys``.  Every key named by a tombstone
        written (or, with ``log_seq``, a ``key_log`` row added) after the given seqs is placed by
        what it is *now*: in ``present_keys`` when it is in the reconciliation set although no
        post holds it (a carried refusal or purge), else in ``removed_keys`` -- so the answer is
        right whatever order the changes happened in, and reading a change twice is harmless.
        ``removed_keys`` may name keys that were never added (a post refused because its
        retraction came first).  Pass the returned ``post_seq``, ``tomb_seq`` and ``log_seq``
        to the next call; if ``complete`` is False, call again at once.  A complete answer
        returns the current :meth:`watermark`, so ``changes_since(2**62, 2**62)`` is another
        way to read it.  ``log_lost``: rows after ``log_seq`` were already trimmed from the
        log, so the caller must rebuild its set from :meth:`iter_keys` and
        :meth:`iter_extra_keys`.
        """
        limit = check_limit(limit)
        with self._snapshot() as conn:
            added = [
                PostRow(*row)
                for row in conn.execute(
                    f"SELECT {POST_COLUMNS} FROM posts WHERE seq > ? ORDER BY seq LIMIT ?", (post_seq, limit)
                )
            ]
            tombs = conn.execute(
                "SELECT seq, board, created_at_ms, id FROM tombstones WHERE seq > ? ORDER BY seq LIMIT ?",
                (tomb_seq, limit),
            ).fetchall()
            logged: list[tuple[int, bytes]] = []
            lost = False
            top_log = 0
            if log_seq is not None:
                logged = conn.execute("SELECT seq, key FROM key_log WHERE seq > ? ORDER BY seq LIMIT ?",
                                      (log_seq, limit)).fetchall()
                first = conn.execute("SELECT min(seq) FROM key_log").fetchone()[0]
                lost = first is not None and first > log_seq + 1
                top_log = self._log_top(conn)
            top_post, top_tomb = self._watermark()
            touched = [post_key(board, created, pid) for _, board, created, pid in tombs if board is not None]
            touched += [key for _, key in logged]
            present = self._in_set(conn, touched)
        # Seqs are never reused (AUTOINCREMENT) and a commit is all-or-nothing, so once every
        # row after the given seq has been returned, everything up to the watermark has been.
        posts_done, tombs_done, log_done = len(added) < limit, len(tombs) < limit, len(logged) < limit
        removed = [k for k in dict.fromkeys(touched) if k not in present]
        stored = {row.id for row in added}
        return Changes(
            added=added,
            removed_keys=removed,
            post_seq=top_post if posts_done else added[-1].seq,
            tomb_seq=top_tomb if tombs_done else tombs[-1][0],
            complete=posts_done and tombs_done and log_done,
            present_keys=[k for k in dict.fromkeys(touched) if k in present and k[-32:] not in stored],
            log_seq=(top_log if log_done else logged[-1][0]) if log_seq is not None else 0,
            log_lost=lost,
        )

    def _in_set(self, conn: sqlite3.Connection, keys: list[bytes]) -> set[bytes]:
        """The keys among ``keys`` in the node's reconciliation set now: stored posts, carried
        refusals, carried tombstones of purged posts."""
        if not keys:
            return set()
        by_id = {k[-32:]: k for k in keys}
        ids = list(by_id)
        found: set[bytes] = set()
        for sql in ("SELECT id FROM posts WHERE id IN ({marks})",
                    "SELECT id FROM refusals WHERE carried = 1 AND id IN ({marks})",
                    "SELECT id FROM tombstones WHERE carried = 1 AND reason = 'purged' AND id IN ({marks})"):
            found.update(r[0] for r in self._select_in(sql, ids))
        return {k for k in keys if k[-32:] in found}

    @staticmethod
    def _log_top(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'key_log'").fetchone()
        return int(row[0]) if row is not None else 0

    @guarded
    def key_log_seq(self) -> int:
        """The ``log_seq`` to pass to :meth:`changes_since` to see only later changes."""
        return self._log_top(self._conn)

    @guarded
    def change_marks(self) -> tuple[int, int]:
        """``(data_version, key_log_seq)``: one cheap call that tells whether anything was
        written by another connection, or whether this one changed the reconciliation set
        other than by ingest."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0]), self._log_top(self._conn)

    def iter_extra_keys(self, boards: Collection[str] | None = None) -> Iterator[bytes]:
        """The keys of the reconciliation set that no stored post holds: carried refusals and
        carried tombstones of purged posts (of ``boards``), in no particular order."""
        wanted = None if boards is None else set(boards)
        for table, extra in (("refusals", ""), ("tombstones", " AND reason = 'purged'")):
            after: tuple[Any, ...] = ("", -1, b"")
            while True:
                rows = self._extra_page(table, extra, after)
                for board, created, pid in rows:
                    if wanted is None or board in wanted:
                        yield post_key(board, created, pid)
                if len(rows) < _KEYS_CHUNK:
                    break
                after = rows[-1]

    @guarded
    def _extra_page(self, table: str, extra: str, after: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._conn.execute(
            f"SELECT board, created_at_ms, id FROM {table} WHERE carried = 1{extra}"
            " AND (board, created_at_ms, id) > (?, ?, ?) ORDER BY board, created_at_ms, id LIMIT ?",
            (*after, _KEYS_CHUNK)).fetchall()

    @guarded
    def data_version(self) -> int:
        """A number that changes when another connection commits to the file (cheap to poll)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])


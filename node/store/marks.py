"""The store's marks room: what the member UI remembers of the member's reading, on this node
only (nothing of it is ever sent to a peer).

* **Visits** (table ``visits``, migration 5): the newest post ``seq`` that was stored when the
  member last opened a board or a thread.  A post with a higher ``seq`` arrived after that
  visit, so it is "new since your last visit".  Marks use the arrival order (``seq``), not the
  author's ``created_at``, which anyone can backdate.  A thread never opened falls back on its board's mark, and a
  board never opened on the node's first mark (``visits_base`` in ``meta``): the point at which
  the UI was first used, so that a node full of old posts does not show all of them as new.
  Posts of the local pseudonyms are never new.  At most
  ``max_visit_marks`` marks are kept, the least recently visited forgotten first.
* **Replies to my pseudonyms** (table ``replies_to_me``): each stored reply whose parent was
  written by a local pseudonym (``identities``) and whose own author is not one.  Triggers on
  ``posts`` keep it whichever way a post arrives (a reply before its parent included), and
  triggers on ``identities`` fill or empty it when a pseudonym is created, imported or removed
  here.  Filling it for a new pseudonym reads every post once (there is no index on authors,
  which would slow every ingest down); a page never does.

Every read here is index-driven: the visit and reply tables by their keys, posts by ``seq``
(the rowid) or by ``parent``; tests/web/test_member_flows.py checks the query plans.
"""

from __future__ import annotations

from typing import Any

from dazibao.protocol import limits
from dazibao.protocol.posts import KIND_REPLY

from .connection import StoreBase, check_limit, guarded, marks
from .rows import PostRow
from .schema import POST_COLUMNS_P

__all__ = ["MarksRoom", "VISIT_SCOPES", "VISITS_BASE_META"]

VISIT_SCOPES = ("board", "thread")
VISITS_BASE_META = "visits_base"


class MarksRoom(StoreBase):
    """Visit marks and replies to the local pseudonyms."""

    @guarded
    def newest_seq(self) -> int:
        """The ``seq`` of the newest stored post (0 for an empty store)."""
        row = self._conn.execute("SELECT max(seq) FROM posts").fetchone()
        return int(row[0] or 0)

    @guarded
    def visit_marks(self, scope: str, keys: list[str]) -> dict[str, int]:
        """The marks of those of ``keys`` (board names, or thread ids in hex) in ``scope`` that
        were visited."""
        if scope not in VISIT_SCOPES:
            raise ValueError(f"scope must be one of {VISIT_SCOPES}")
        found: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            sql = f"SELECT key, seq FROM visits WHERE scope = ? AND key IN ({marks(len(chunk))})"
            for key, seq in self._conn.execute(sql, [scope, *chunk]):
                found[key] = int(seq)
        return found

    @guarded
    def record_visit(self, scope: str, key: str, seq: int, now_ms: int) -> None:
        """Note that ``key`` was seen with every post up to ``seq``; sets the node's first mark
        if there is none, and forgets the least recently visited marks beyond the limit."""
        if scope not in VISIT_SCOPES:
            raise ValueError(f"scope must be one of {VISIT_SCOPES}")
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (VISITS_BASE_META, seq))
            conn.execute("INSERT INTO visits (scope, key, seq, at_ms) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key)"
                         " DO UPDATE SET seq = max(seq, excluded.seq), at_ms = excluded.at_ms",
                         (scope, key, seq, now_ms))
            over = conn.execute("SELECT count(*) FROM visits").fetchone()[0] - limits.MAX_VISIT_MARKS
            if over > 0:
                conn.execute("DELETE FROM visits WHERE (scope, key) IN"
                             " (SELECT scope, key FROM visits ORDER BY at_ms LIMIT ?)", (over,))

    @guarded
    def start_marks(self) -> int:
        """The node's first mark, set to the newest post now if there is none yet."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (VISITS_BASE_META,)).fetchone()
        if row is not None and isinstance(row[0], int):
            return row[0]
        with self._write() as conn:
            seq = int(conn.execute("SELECT coalesce(max(seq), 0) FROM posts").fetchone()[0])
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (VISITS_BASE_META, seq))
            return seq

    @guarded
    def new_by_board(self, since: dict[str, int]) -> dict[str, int]:
        """How many posts and replies of each board of ``since`` arrived after its mark.

        Reads the newest posts by ``seq`` only, down to the lowest mark and at most
        ``max_unread_scan`` of them: a count that reaches that many is a lower bound.
        """
        return self._newest_counts("board", since, "kind IN ('post', 'reply')")

    @guarded
    def new_replies_by_thread(self, since: dict[bytes, int]) -> dict[bytes, int]:
        """How many direct replies of each thread of ``since`` arrived after its mark (read
        as :meth:`new_by_board` reads)."""
        return self._newest_counts("parent", since, f"kind = '{KIND_REPLY}'")

    def _newest_counts(self, column: str, since: dict[Any, int], kinds: str) -> dict[Any, int]:
        counts = dict.fromkeys(since, 0)
        if not since:
            return counts
        low = min(since.values())
        keys = list(since)
        # "+column" keeps SQLite on the rowid range (the newest posts) instead of an index
        # on the column, which would read every post of a large board.
        sql = (f"SELECT seq, {column} FROM posts WHERE seq > ? AND +{column} IN ({marks(len(keys))}) AND {kinds}"
               " AND author NOT IN (SELECT public_key FROM identities) ORDER BY seq DESC LIMIT ?")
        for seq, key in self._conn.execute(sql, [low, *keys, limits.MAX_UNREAD_SCAN]):
            if seq > since[key]:
                counts[key] += 1
        return counts

    @guarded
    def replies_to_me(self, limit: int, before: tuple[int, bytes] | None = None) -> list[PostRow]:
        """Replies to the local pseudonyms' posts, newest first (by created_at, then id);
        ``before`` is the ``(created_at_ms, id)`` of the last row of the previous page."""
        where, params = "", []
        if before is not None:
            where = " WHERE (m.created_at_ms, m.id) < (?, ?)"
            params = list(before)
        sql = (f"SELECT {POST_COLUMNS_P} FROM replies_to_me AS m JOIN posts AS p ON p.seq = m.seq{where}"
               " ORDER BY m.created_at_ms DESC, m.id DESC LIMIT ?")
        return [PostRow(*row) for row in self._conn.execute(sql, [*params, check_limit(limit)])]

    @guarded
    def get_many(self, ids: list[bytes]) -> dict[bytes, PostRow]:
        """The stored posts among ``ids``, by id."""
        out: dict[bytes, PostRow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            sql = f"SELECT {POST_COLUMNS_P} FROM posts AS p WHERE p.id IN ({marks(len(chunk))})"
            for row in self._conn.execute(sql, chunk):
                post = PostRow(*row)
                out[post.id] = post
        return out

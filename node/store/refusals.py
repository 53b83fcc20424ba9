"""The store's refusals room: the ids refused by policy, and the keys of the reconciliation set
that are not stored posts (docs/moderation.md, "A refusal must not cost forever").

* ``refusals`` remembers ids refused by policy (``blocked``, ``quota_posts``, ``quota_bytes``,
  ``pow_required``) with what is needed to name their key, so that the same post is refused
  again without a signature check; bounded by ``max_refusals``, the oldest (lowest seq)
  forgotten first.
* A refusal or a tombstone of a purged post is marked ``carried`` when a sync finds a peer
  holding that id: its key is then part of this node's reconciliation set, so that the peer
  and this node do not differ there at every sync.  Refusals that came by push are never
  carried (a flood pushed into one node does not make its set differ from its peers').
* ``key_log`` lists every key whose place in the set changed other than by a post stored or a
  tombstone written (a post removed into refusals, a key carried, a carried refusal
  forgotten); :meth:`QueryRoom.changes_since` reads it so that another process on the file
  (the running node) keeps its in-memory index exact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from dazibao.protocol import limits
from dazibao.protocol.errors import BLOCKED, POW_REQUIRED, QUOTA_BYTES, QUOTA_POSTS
from dazibao.protocol.posts import post_key

from .connection import StoreBase, guarded
from .rows import RefusalRow

__all__ = ["RefusalRoom", "POLICY_CODES", "QUOTA_CODES", "log_keys"]

#: The refusal codes of policy (remembered in ``refusals``).
POLICY_CODES = (BLOCKED, QUOTA_POSTS, QUOTA_BYTES, POW_REQUIRED)
#: The codes a vouch (or following the author as a moderator) makes the node forget.
QUOTA_CODES = (QUOTA_POSTS, QUOTA_BYTES, POW_REQUIRED)


class RefusalRoom(StoreBase):
    """Refusals, the carried marks, and the log of the reconciliation set's other changes."""

    @guarded
    def refusal_counts(self) -> dict[str, int]:
        """How many refused ids are remembered, by code."""
        return dict(self._conn.execute("SELECT code, count(*) FROM refusals GROUP BY code ORDER BY code"))

    @guarded
    def refusals(self, ids: Iterable[bytes]) -> dict[bytes, str]:
        """The remembered refusal code of each of ``ids`` that has one."""
        return dict(self._select_in("SELECT id, code FROM refusals WHERE id IN ({marks})", list(ids)))

    @guarded
    def refusal_rows(self, board: str | None = None, limit: int = 100) -> list[RefusalRow]:
        """The newest remembered refusals (of ``board``)."""
        sql = "SELECT id, board, created_at_ms, author, code, at_ms, carried FROM refusals"
        params: list[Any] = []
        if board is not None:
            sql += " WHERE board = ?"
            params.append(board)
        params.append(int(limit))
        return [RefusalRow(id=r[0], board=r[1], created_at_ms=r[2], author=r[3], code=r[4], at_ms=r[5],
                           carried=bool(r[6]))
                for r in self._conn.execute(sql + " ORDER BY seq DESC LIMIT ?", params)]

    @guarded
    def skip_and_carry(self, ids: Sequence[bytes]) -> tuple[set[bytes], set[bytes], list[bytes]]:
        """For ids a peer holds and this node lacks (a sync's ``need``): the tombstoned ones and
        the refused ones (neither is fetched), and the keys that joined the reconciliation set
        because they are now marked carried (refusals, and tombstones of purged posts)."""
        ids = list(ids)
        if not ids:
            return set(), set(), []
        tombs = list(self._select_in("SELECT id, reason, carried FROM tombstones WHERE id IN ({marks})", ids))
        refused = list(self._select_in("SELECT id, carried FROM refusals WHERE id IN ({marks})", ids))
        to_mark = [r[0] for r in tombs if r[1] == "purged" and not r[2]] + [r[0] for r in refused if not r[1]]
        keys = self._mark_carried(to_mark) if to_mark else []
        return {r[0] for r in tombs}, {r[0] for r in refused}, keys

    @guarded
    def mark_carried(self, ids: Sequence[bytes]) -> list[bytes]:
        """Mark the refusals and purged tombstones among ``ids`` as carried: a peer holds them.
        Returns the keys that joined the reconciliation set."""
        return self._mark_carried(list(ids))

    def _mark_carried(self, ids: list[bytes]) -> list[bytes]:
        if not ids:
            return []
        with self._write() as conn:
            keys: list[bytes] = []
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                for table, extra in (("refusals", ""), ("tombstones", " AND reason = 'purged'")):
                    rows = conn.execute(f"SELECT board, created_at_ms, id FROM {table}"
                                        f" WHERE carried = 0 AND id IN ({marks}){extra}", part).fetchall()
                    if rows:
                        conn.executemany(f"UPDATE {table} SET carried = 1 WHERE id = ?", [(r[2],) for r in rows])
                        keys += [post_key(b, c, i) for b, c, i in rows if b is not None]
            log_keys(conn, keys)
            return keys

    def _refuse_stored(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], code: str,
                       now_ms: int) -> list[bytes]:
        """Remove stored posts ``(seq, id, board, created_at_ms, author, ...)`` into refusals."""
        unique = {r[0]: r for r in rows}
        rows = list(unique.values())
        conn.executemany("DELETE FROM posts WHERE seq = ?", [(r[0],) for r in rows])
        self._remember(conn, [(r[1], r[2], r[3], r[4], code) for r in rows], now_ms)
        keys = [post_key(r[2], r[3], r[1]) for r in rows]
        log_keys(conn, keys)
        return keys

    def _forget_refusals(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[bytes]:
        """Forget refusals ``(seq, id, board, created_at_ms, author, code, carried)``; the keys of the
        carried ones, which leave the reconciliation set."""
        unique = {r[0]: r for r in rows}
        conn.executemany("DELETE FROM refusals WHERE seq = ?", [(s,) for s in unique])
        keys = [post_key(r[2], r[3], r[1]) for r in unique.values() if r[6]]
        log_keys(conn, keys)
        return keys

    def _remember(self, conn: sqlite3.Connection, refused: Sequence[tuple[bytes, str, int, bytes, str]],
                  now_ms: int) -> None:
        """Remember refused ``(id, board, created_at_ms, author, code)``, within ``max_refusals``."""
        if not refused:
            return
        conn.executemany(
            "INSERT INTO refusals (id, board, created_at_ms, author, code, at_ms) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET code = excluded.code, at_ms = excluded.at_ms",
            [(*r, now_ms) for r in refused])
        top, bottom = conn.execute("SELECT max(seq), min(seq) FROM refusals").fetchone()
        if top is None or top - bottom + 1 <= limits.MAX_REFUSALS:
            return
        cut = conn.execute("SELECT seq FROM refusals ORDER BY seq DESC LIMIT 1 OFFSET ?",
                           (limits.MAX_REFUSALS,)).fetchone()
        if cut is None:
            return
        carried = conn.execute("SELECT board, created_at_ms, id FROM refusals WHERE seq <= ? AND carried = 1",
                               (cut[0],)).fetchall()
        conn.execute("DELETE FROM refusals WHERE seq <= ?", (cut[0],))
        log_keys(conn, [post_key(b, c, i) for b, c, i in carried])


def log_keys(conn: sqlite3.Connection, keys: Sequence[bytes]) -> None:
    """Note keys whose place in the reconciliation set may have changed (see the module doc),
    keeping the log within ``max_refusals`` rows."""
    if not keys:
        return
    conn.executemany("INSERT INTO key_log (key) VALUES (?)", [(k,) for k in keys])
    top = conn.execute("SELECT max(seq) FROM key_log").fetchone()[0]
    conn.execute("DELETE FROM key_log WHERE seq <= ?", (top - limits.MAX_REFUSALS,))

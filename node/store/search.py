"""The store's search room: full-text search over post bodies, English and Chinese alike.

Trigram tokens (FTS5 ``tokenize='trigram'``) need no word boundaries.  The index is external
content (the text lives once, in ``posts``) and is built in steps rather than by a trigger on
insert, because indexing costs several times more than storing a post: every post with
``seq <= indexed_seq`` is in the index, and search scans the few above it.  A batch that
leaves at most ``_INLINE_INDEX_ROWS`` posts unindexed is indexed at once (``_index_inline``),
so a trickle of gossip and local posts keeps the index current; bulk syncs leave the work to
:meth:`SearchRoom.update_search_index`, which a node calls when it is idle.

Search results mark the matched text as ``(start, end)`` code-point offsets into a snippet
(:class:`~dazibao.node.store.rows.SearchHit`), never as markup, so a caller can HTML-escape the
text and wrap the spans.  A query is never parsed as search syntax and cannot fail.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from typing import Any

from dazibao.protocol.posts import KIND_POST, KIND_REPLY

from .connection import StoreBase, check_limit, guarded
from .rows import PostRow, SearchHit
from .schema import POST_COLUMNS_P

__all__ = ["SearchRoom", "like_params"]

_SNIPPET_CHARS = 200  # code points of body shown around the first match
# A batch that leaves at most this many posts unindexed is indexed at once, so a trickle of
# gossip and local posts keeps the search index current without anyone calling
# update_search_index; bulk syncs leave the work to it.
_INLINE_INDEX_ROWS = 64
_MAX_QUERY_TERMS = 16


class SearchRoom(StoreBase):
    """Full-text search, and the index behind it."""

    @guarded
    def update_search_index(self, max_rows: int = 5_000) -> int:
        """Add up to ``max_rows`` stored posts to the full-text index; return how many still wait.

        Ingesting a large batch leaves its posts out of the index, because indexing them costs
        more than storing them; search still finds them, by scanning.  A node calls this when
        it is idle, until it returns 0.  One call is one write transaction.  The number
        returned may count posts deleted before they were indexed, until the next call.
        """
        limit = check_limit(max_rows)
        with self._write() as conn:
            self._index_step(conn, limit)
            return self.search_backlog(conn)

    @staticmethod
    def search_backlog(conn: sqlite3.Connection) -> int:
        # An upper bound in constant time: seqs of rows deleted before they were indexed count
        # too, until the next index step moves past them.
        backlog: int = conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'posts'), 0)"
            " - (SELECT indexed_seq FROM search_state)"
        ).fetchone()[0]
        return backlog

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

    def _index_inline(self, conn: sqlite3.Connection) -> None:
        """Index a small backlog at once, inside the caller's write transaction."""
        # Read through the module at each call, so that tests can turn inline indexing off.
        if self.search_backlog(conn) <= _INLINE_INDEX_ROWS:
            self._index_step(conn, _INLINE_INDEX_ROWS)

    @guarded
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
        limit = check_limit(limit)
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
                f"SELECT {POST_COLUMNS_P} FROM posts_fts JOIN posts AS p ON p.seq = posts_fts.rowid"
                f" WHERE posts_fts MATCH ?{common}{_like_clauses(short_terms)}"
            )
            # Posts not yet indexed (see update_search_index) are scanned.
            tail_sql = (
                f"SELECT {POST_COLUMNS_P} FROM posts AS p"
                f" WHERE p.seq > (SELECT indexed_seq FROM search_state){common}{_like_clauses(terms)}"
            )
            sql = f"SELECT * FROM ({indexed_sql} UNION ALL {tail_sql})"
            order = " ORDER BY created_at_ms DESC, id DESC LIMIT ?"
            params = [match, *common_params, *like_params(short_terms), *common_params, *like_params(terms)]
        else:
            sql = f"SELECT {POST_COLUMNS_P} FROM posts AS p WHERE 1{common}{_like_clauses(terms)}"
            order = " ORDER BY p.created_at_ms DESC, p.id DESC LIMIT ?"
            params = [*common_params, *like_params(terms)]
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


def like_params(terms: Sequence[str]) -> list[str]:
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

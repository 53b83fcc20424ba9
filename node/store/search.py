"""The store's search room: full-text search over post bodies, English and Chinese alike.

Trigram tokens (FTS5 ``tokenize='trigram'``) need no word boundaries.  The index is external
content (the text lives once, in ``posts``) and is built in steps rather than by a trigger on
insert, because indexing costs several times more than storing a post: every post with
``seq <= indexed_seq`` is in the index, and search scans the few above it.  A batch that
leaves at most ``_INLINE_INDEX_ROWS`` posts unindexed is indexed at once (``_index_inline``),
so a trickle of gossip and local posts keeps the index current; bulk syncs leave the work to
:meth:`SearchRoom.update_search_index`, which a node calls when it is idle.

**What a query is.**  :func:`parse_query` splits the member's text into terms at white space
and punctuation of any script (``overtime,`` and ``加班费？`` are ``overtime`` and ``加班费``;
``e-mail`` and ``don't`` stay whole), and reads ``author:FINGERPRINT`` as a filter on the
author.  Terms are matched literally and case-insensitively as substrings, so a query is never
parsed as FTS5 syntax and cannot fail.

**How it runs.**  A query with a term of three or more characters is driven by the index:
the index's matches are read first (and the few posts not yet indexed are scanned), and only
those rows are joined to ``posts`` and filtered by board and author.  SQLite's planner would
otherwise walk a board newest first and ask the index about each row, which took seconds on a
large board.  A common word is found faster by reading the newest ``search_scan_rows`` posts
of the board: when they hold a full count of hits, the index is not read at all.  Queries of
short terms only (one or two characters, common in Chinese) scan newest first and stop at the
count cap.  At most ``max_search_results`` hits are counted.
:meth:`SearchRoom.search_page` interrupts a search that runs past ``search_timeout_ms``
(SQLite's progress handler) with :class:`SearchTimeout`; the node runs it on a read connection
of its read pool, so that a search never waits for, nor holds up, the store's one writer.

Search results mark the matched text as ``(start, end)`` code-point offsets into a snippet
(:class:`~dazibao.node.store.rows.SearchHit`), never as markup, so a caller can HTML-escape the
text and wrap the spans.
"""

from __future__ import annotations

import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dazibao.protocol import identity, limits
from dazibao.protocol.posts import KIND_POST, KIND_REPLY

from .connection import StoreBase, check_limit, guarded
from .rows import PostRow, SearchHit
from .schema import POST_COLUMNS_P

__all__ = ["SearchRoom", "SearchQuery", "SearchResults", "SearchTimeout", "parse_query",
           "run_search", "like_params"]

_SNIPPET_CHARS = 200  # code points of body shown around the first match
# A batch that leaves at most this many posts unindexed is indexed at once, so a trickle of
# gossip and local posts keeps the search index current without anyone calling
# update_search_index; bulk syncs leave the work to it.
_INLINE_INDEX_ROWS = 64
_MAX_QUERY_TERMS = 16
# The progress handler runs every this many SQLite virtual-machine steps (about a millisecond).
_PROGRESS_STEPS = 10_000
# Fewest characters of a fingerprint (dashes aside) that ``author:`` accepts: 8 base32
# characters are 40 bits, enough that a prefix names one of a node's authors.
_MIN_FINGERPRINT_CHARS = 8
_FINGERPRINT_CHARS = 24
# How far up a chain of replies to replies a search result looks for its thread's title.
_MAX_ROOT_HOPS = 16


class SearchTimeout(Exception):
    """A search ran past ``search_timeout_ms`` and was interrupted; nothing was changed."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What a member asked for: body terms, and fingerprint prefixes of authors (any of them)."""

    terms: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.terms or self.authors)


@dataclass(frozen=True, slots=True)
class SearchResults:
    """One page of hits, newest first, and how many there are in all (at most ``capped_at``).

    ``roots`` holds the thread's first post of every reply among the hits (by id), so that a
    page can show the thread's title; a root that is no longer stored is absent.
    """

    hits: list[SearchHit]
    total: int
    capped_at: int
    roots: dict[bytes, PostRow] = field(default_factory=dict)

    @property
    def capped(self) -> bool:
        return self.total > self.capped_at


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Punctuation that joins the two halves of one word when it stands between letters or digits:
# "e-mail", "don't", "3.5", "U.S".
_JOINERS = frozenset("-'’.·_")


def _is_break(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def parse_query(text: str) -> SearchQuery:
    """Split a member's search text into terms and author filters; never raises.

    White space and punctuation of every script (``，`` ``。`` ``？`` ``、`` ``“`` as well as
    ``,`` ``?`` ``"``) separate terms.  A joiner (``-`` ``'`` ``.`` ...) between two letters or
    digits stays in the term.  ``author:FP`` (or ``作者:FP``) asks for posts by the author
    whose fingerprint starts with FP (at least 8 characters; dashes and case do not matter).
    """
    text = _CONTROL.sub(" ", text)
    terms: list[str] = []
    authors: list[str] = []
    for chunk in text.split():
        prefix, sep, rest = chunk.partition(":")
        if not sep:
            prefix, sep, rest = chunk.partition("：")
        if sep and prefix.casefold() in ("author", "作者"):
            fp = rest.replace("-", "").casefold()
            if len(fp) >= _MIN_FINGERPRINT_CHARS and re.fullmatch(r"[a-z2-7]+", fp) and fp not in authors:
                authors.append(fp[:_FINGERPRINT_CHARS])
                continue
        for term in _split_punctuation(chunk):
            if term not in terms:
                terms.append(term)
    return SearchQuery(tuple(terms[:_MAX_QUERY_TERMS]), tuple(authors[:_MAX_QUERY_TERMS]))


def _split_punctuation(chunk: str) -> Iterator[str]:
    start = 0
    n = len(chunk)
    for i, ch in enumerate(chunk):
        if not _is_break(ch):
            continue
        if ch in _JOINERS and 0 < i < n - 1 and chunk[i - 1].isalnum() and chunk[i + 1].isalnum():
            continue
        if i > start:
            yield chunk[start:i]
        start = i + 1
    if start < n:
        yield chunk[start:]


class _Deadline:
    """A progress handler that interrupts the statement running once ``deadline`` has passed."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False

    def __call__(self) -> int:
        if time.monotonic() > self.deadline:
            self.expired = True
            return 1
        return 0


@contextmanager
def _time_bound(conn: sqlite3.Connection, timeout_ms: int | None) -> Iterator[None]:
    if timeout_ms is None:
        yield
        return
    deadline = _Deadline(timeout_ms / 1000)
    conn.set_progress_handler(deadline, _PROGRESS_STEPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if deadline.expired:
            raise SearchTimeout(f"the search took longer than {timeout_ms} ms") from exc
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _author_keys(conn: sqlite3.Connection, prefixes: Sequence[str]) -> list[bytes]:
    # There is no index on author (schema.py says why), so the node's authors are read once
    # and their fingerprints computed here: a few hundred hashes, not one per post.
    found = []
    for (author,) in conn.execute("SELECT DISTINCT author FROM posts"):
        fp = identity.fingerprint(author).replace("-", "")
        if any(fp.startswith(p) for p in prefixes):
            found.append(author)
    return found


def run_search(conn: sqlite3.Connection, query: SearchQuery, board: str | None = None, limit: int = 50, *,
               offset: int = 0, timeout_ms: int | None = None) -> SearchResults:
    """One page of the posts and replies matching ``query`` on ``conn``, newest first.

    Every term must occur in the body; with author filters, the author must be one of them.
    At most ``max_search_results`` hits are counted and paged.  Raises SearchTimeout when
    ``timeout_ms`` passes first, and ValueError for a negative offset.
    """
    limit = check_limit(limit)
    if type(offset) is not int or offset < 0:
        raise ValueError("offset must be a non-negative integer")
    cap = limits.MAX_SEARCH_RESULTS
    if not query or limit == 0 or offset >= cap:
        return SearchResults([], 0, cap)
    with _time_bound(conn, timeout_ms):
        seqs = _matching_seqs(conn, query, board, cap + 1)
        page = seqs[offset:min(offset + limit, cap)]
        rows = _rows_by_seq(conn, page)
        roots = _roots(conn, [r.parent for r in rows if r.kind == KIND_REPLY and r.parent is not None])
    hits = []
    for post in rows:
        snippet, spans = _snippet(post.body, query.terms)
        hits.append(SearchHit(post, snippet, spans))
    return SearchResults(hits, len(seqs), cap, roots)


def _matching_seqs(conn: sqlite3.Connection, query: SearchQuery, board: str | None, cap: int) -> list[int]:
    terms = query.terms
    long_terms = [t for t in terms if len(t) >= 3]
    short_terms = [t for t in terms if len(t) < 3]
    where = f" AND p.kind IN ('{KIND_POST}', '{KIND_REPLY}')"
    params: list[Any] = []
    if query.authors:
        keys = _author_keys(conn, query.authors)
        if not keys:
            return []
        where += f" AND p.author IN ({', '.join('?' * len(keys))})"
        params.extend(keys)
    order = " ORDER BY p.created_at_ms DESC, p.id DESC LIMIT ?"
    match = " ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
    if long_terms and all(_like_matches_as_index_does(t) for t in terms) and _common(conn, match, cap):
        # A common word: the newest posts hold enough hits, and reading them beats reading
        # every match in the index.  Exact when it finds ``cap`` hits among them (every newer
        # row was looked at); otherwise the index answers.
        recent = _recent_hits(conn, where, params, terms, board, cap)
        if len(recent) >= cap:
            return recent
    if long_terms:
        if board is not None:
            # The unary + keeps SQLite from walking the board's index: the candidates come
            # from the full-text index, and the board is checked on each of them.
            where += " AND +p.board = ?"
            params.append(board)
        # Every term became one quoted string ("" escapes a quote inside it), which FTS5
        # reads as a phrase of its trigrams: no operator, column filter or prefix syntax.
        # CROSS JOIN fixes the order of the loops: candidates first, then their rows.
        sql = (
            "WITH c(seq, scanned) AS MATERIALIZED ("
            " SELECT rowid, 0 FROM posts_fts WHERE posts_fts MATCH ?"
            " UNION ALL SELECT seq, 1 FROM posts WHERE seq > (SELECT indexed_seq FROM search_state))"
            f" SELECT p.seq FROM c CROSS JOIN posts AS p ON p.seq = c.seq WHERE 1{where}"
            f"{_like_clauses(short_terms)}"
            # Posts not yet indexed (see update_search_index) must contain the long terms too.
            f" AND (c.scanned = 0 OR (1{_like_clauses(long_terms)})){order}"
        )
        args = [match, *params, *like_params(short_terms), *like_params(long_terms), cap]
    else:
        if board is not None:
            where += " AND p.board = ?"
            params.append(board)
        sql = f"SELECT p.seq FROM posts AS p WHERE 1{where}{_like_clauses(terms)}{order}"
        args = [*params, *like_params(terms), cap]
    return [seq for (seq,) in conn.execute(sql, args)]


def _like_matches_as_index_does(term: str) -> bool:
    # LIKE folds the case of ASCII letters only; the trigram index folds all of Unicode.  A
    # term of ASCII and caseless characters (Chinese, digits, punctuation) matches the same
    # rows either way.
    return all(ch.isascii() or ch.lower() == ch.upper() for ch in term)


def _common(conn: sqlite3.Connection, match: str, cap: int) -> bool:
    # Whether the index holds many matches: a few thousand rowids are read at most to tell.
    # A rarer word is answered by the index at once, without reading the newest posts first.
    (count,) = conn.execute("SELECT count(*) FROM (SELECT 1 FROM posts_fts WHERE posts_fts MATCH ? LIMIT ?)",
                            (match, 4 * cap)).fetchone()
    return bool(count >= 4 * cap)


def _recent_hits(conn: sqlite3.Connection, where: str, params: list[Any], terms: Sequence[str], board: str | None,
                 cap: int) -> list[int]:
    """The newest ``cap`` hits among the newest ``search_scan_rows`` posts (fewer if not there)."""
    scope = " AND board = ?" if board is not None else ""
    sql = (
        f"SELECT p.seq FROM (SELECT seq, id, author, created_at_ms, kind, board, body FROM posts"
        f" WHERE kind IN ('{KIND_POST}', '{KIND_REPLY}'){scope}"
        f" ORDER BY created_at_ms DESC, id DESC LIMIT ?) AS p WHERE 1{where}{_like_clauses(terms)}"
        " ORDER BY p.created_at_ms DESC, p.id DESC LIMIT ?"
    )
    args: list[Any] = [*([board] if board is not None else []), limits.SEARCH_SCAN_ROWS, *params,
                       *like_params(terms), cap]
    return [seq for (seq,) in conn.execute(sql, args)]


def _rows_by_seq(conn: sqlite3.Connection, seqs: Sequence[int]) -> list[PostRow]:
    if not seqs:
        return []
    by_seq = {
        post.seq: post
        for post in (PostRow(*row) for row in conn.execute(
            f"SELECT {POST_COLUMNS_P} FROM posts AS p WHERE p.seq IN ({', '.join('?' * len(seqs))})", list(seqs)))
    }
    return [by_seq[s] for s in seqs if s in by_seq]


def _roots(conn: sqlite3.Connection, ids: Sequence[bytes]) -> dict[bytes, PostRow]:
    """The first post of the thread of each parent in ``ids``, by that parent's id.

    A reply may answer a reply: the walk up goes ``_MAX_ROOT_HOPS`` steps at most, one query
    each, and stops at a post that is not stored (that parent is then left out)."""
    found: dict[bytes, PostRow] = {}
    pending = {pid: pid for pid in dict.fromkeys(ids)}  # the id asked for -> the id to read next
    for _ in range(_MAX_ROOT_HOPS):
        if not pending:
            break
        wanted = list(dict.fromkeys(pending.values()))
        rows = {row.id: row for row in (PostRow(*r) for r in conn.execute(
            f"SELECT {POST_COLUMNS_P} FROM posts AS p WHERE p.id IN ({', '.join('?' * len(wanted))})", wanted))}
        still: dict[bytes, bytes] = {}
        for asked, current in pending.items():
            row = rows.get(current)
            if row is None:
                continue
            if row.kind == KIND_REPLY and row.parent is not None:
                still[asked] = row.parent
            else:
                found[asked] = row
        pending = still
    return found


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

        ``query`` is read by :func:`parse_query`; ``offset`` skips that many hits first.  At
        most ``max_search_results`` hits are found.  An empty query finds nothing.  Raises
        ValueError for a negative offset.  The node's pages search through
        :meth:`search_page` instead.
        """
        return run_search(self._conn, parse_query(query), board, limit, offset=offset).hits

    @guarded
    def search_page(self, query: SearchQuery, board: str | None = None, limit: int = 50, *, offset: int = 0,
                    timeout_ms: int | None = None) -> SearchResults:
        """One page of :func:`run_search`, interrupted after ``timeout_ms`` (by default
        ``search_timeout_ms``) with SearchTimeout.  The pages call it on a read connection of
        the node's read pool, so that a search neither waits for the writer nor holds it up.
        """
        bound = limits.SEARCH_TIMEOUT_MS if timeout_ms is None else timeout_ms
        # One read transaction: the page, its count and its threads' titles agree.
        with self._snapshot():
            return run_search(self._conn, query, board, limit, offset=offset, timeout_ms=bound)


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

"""Every page query reads one page of an index: ``EXPLAIN QUERY PLAN`` of each, on a populated
store, shows no scan of ``posts`` and no temporary B-tree (a sort of the rows read).

The statements are the ones the store really runs (caught with a trace callback while each
read method is called), so a change to a query is checked as it is.  Search is left out: it
has its own bounds (tests/node/test_store.py, tests/web/test_page_bounds.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from dazibao.node.store import Store
from dazibao.node.web.pages.authors import _recent_by_author
from tests.factories import T0_MS, key, make_post, reply

NOW = T0_MS + 86_400_000
SIGNERS = [key(400 + i) for i in range(4)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three boards, 1,200 threads and 1,200 replies: enough rows that a scan would be chosen
    only where no index serves, few enough to build in about a second."""
    path = tmp_path_factory.mktemp("plans") / "node.db"
    s = Store(path)
    for i, signer in enumerate(SIGNERS):
        s.add_identity(f"me{i}", signer.public_key, NOW)
    roots = [make_post(SIGNERS[i % 4], board=("general", "labor", "劳动")[i % 3], body=f"t{i}",
                       created_at_ms=T0_MS + i * 1_000) for i in range(1_200)]
    replies = [reply(roots[(i * 7) % len(roots)], f"r{i}", signer=SIGNERS[(i + 1) % 4],
                     created_at_ms=T0_MS + 2_000_000 + i) for i in range(1_200)]
    s.ingest(roots + replies, source="import", now_ms=NOW)
    # The planner's statistics, as a node has them after PRAGMA optimize on close.
    s._conn.execute("ANALYZE")
    yield s
    s.close()


def plans_of(store: Store, call: Callable[[Store], object]) -> list[tuple[str, list[str]]]:
    """Each statement ``call`` runs, with the detail lines of its query plan."""
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    try:
        call(store)
    finally:
        store._conn.set_trace_callback(None)
    out = []
    for sql in statements:
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql)]
        out.append((sql, plan))
    assert out, "the call ran no SELECT"
    return out


_SCAN_POSTS = re.compile(r"^SCAN (posts|p|r)\b")


def _cursor(store: Store, board: str, offset: int) -> tuple[int, bytes]:
    cursor = store.thread_cursor(board, offset)
    assert cursor is not None
    return cursor


PAGE_QUERIES: dict[str, Callable[[Store], object]] = {
    "threads, page 1": lambda s: s.threads("general", 26),
    "threads, by cursor": lambda s: s.threads("general", 26, before=_cursor(s, "general", 300)),
    "thread cursor of a page number": lambda s: s.thread_cursor("labor", 100),
    "newer page's cursor": lambda s: s.newer_thread_cursor("labor", _cursor(s, "labor", 200), 25),
    "replies, first page": lambda s: s.reply_page(s.threads("general", 1)[0].post.id, 51),
    "replies, by cursor": lambda s: s.reply_page(s.threads("general", 1)[0].post.id, 51,
                                                  after=(T0_MS, b"\x00" * 32)),
    "newest replies": lambda s: s.newest_replies(s.threads("labor", 1)[0].post.id, 51),
    "reply count": lambda s: s.reply_count(s.threads("labor", 1)[0].post.id),
    "which replies have translations": lambda s: s.parents_with_children(
        [r.post.id for r in s.threads("general", 100)], "translation"),
    "boards by activity": lambda s: s.board_page(51),
    "boards by activity, by cursor": lambda s: s.board_page(51, after=(T0_MS + 5_000_000, "general")),
    "boards by name": lambda s: s.board_page(51, by_name=True, after="general"),
    "boards list": lambda s: s.boards(),
    "boards with posts": lambda s: s.boards_with_posts(["general", "nowhere"]),
    "board count": lambda s: s.board_count(),
    "reader counts": lambda s: s.board_counts_of(("post", "reply")),
    "post count": lambda s: (s.post_count(), s.post_count("labor")),
    "row count": lambda s: (s.count(), s.count("labor")),
    "info: most active boards": lambda s: s.active_boards(1025),
    "info: configured boards": lambda s: s.active_boards(2, ["general", "labor"]),
    "one post": lambda s: s.get(s.threads("general", 1)[0].post.id),
    "newest posts": lambda s: s.list_posts("general", 51, kinds=("post", "reply")),
    "author page": lambda s: _recent_by_author(s, SIGNERS[0].public_key, 2_000, 50),
}


#: The one walk along an index that is allowed: the author page reads the newest posts in
#: index order, a page of 500 at a time, and stops after a bounded number of them (there is no
#: index by author; node/web/pages/authors.py says why).
_ALLOWED = {"author page": "SCAN posts USING INDEX posts_time"}


@pytest.mark.parametrize("name", list(PAGE_QUERIES))
def test_a_page_query_reads_one_page_of_an_index(store, name):
    for sql, plan in plans_of(store, PAGE_QUERIES[name]):
        for line in plan:
            if _ALLOWED.get(name) == line:
                continue
            assert not _SCAN_POSTS.match(line), f"{name}: {line} in\n{sql}"
            assert "TEMP B-TREE" not in line, f"{name}: {line} in\n{sql}"


def test_the_old_grouping_query_is_what_this_test_catches(store):
    # The board page's query before the threads table: it must fail the check above, or the
    # check proves nothing.
    sql = ("SELECT p.id, count(r.seq), max(p.created_at_ms, coalesce(max(r.created_at_ms), 0)) AS last_at"
           " FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'"
           " WHERE p.board = 'general' AND p.kind = 'post' GROUP BY p.seq ORDER BY last_at DESC, p.id DESC LIMIT 26")
    plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert any("TEMP B-TREE" in line or _SCAN_POSTS.match(line) for line in plan), plan

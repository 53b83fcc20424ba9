"""Search: how a member's text becomes terms, the author filter, the count, thread titles, the
time bound, and that a board-scoped search is driven by the full-text index."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dazibao.node.store import Store
from dazibao.node.store import search as search_module
from dazibao.node.store.search import SearchQuery, SearchTimeout, parse_query, run_search
from dazibao.protocol import identity, limits
from dazibao.protocol.identity import SigningKey
from dazibao.protocol.posts import create_post

A = SigningKey(bytes([1]) * 32)
B = SigningKey(bytes([2]) * 32)
NOW = 1_700_000_000_000


def mk(key, body, t, board="labor", kind="post", parent=None):
    return create_post(key, kind=kind, board=board, body=body, created_at_ms=t, parent=parent)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "node.db")
    yield s
    s.close()


def ingest(store, batch):
    store.ingest(batch, source="http://peer.example", now_ms=NOW)
    store.update_search_index(100_000)


@pytest.mark.parametrize(("text", "terms"), [
    ("overtime,", ("overtime",)),
    ("加班费？", ("加班费",)),
    ("工资，加班", ("工资", "加班")),
    ("“拖欠工资”", ("拖欠工资",)),
    ("《劳动法》第三十六条", ("劳动法", "第三十六条")),
    ("(strike) wages!", ("strike", "wages")),
    ("e-mail don't 3.5 U.S.", ("e-mail", "don't", "3.5", "U.S")),
    ("...  ，。！", ()),
    ("wages wages, WAGES", ("wages", "WAGES")),
])
def test_punctuation_separates_terms_in_both_scripts(text, terms):
    assert parse_query(text).terms == terms


def test_author_filter_takes_a_fingerprint_or_its_start():
    fp = identity.fingerprint(A.public_key)
    assert parse_query(f"author:{fp} wages") == SearchQuery(("wages",), (fp.replace("-", ""),))
    assert parse_query(f"作者：{fp[:9].upper()}").authors == (fp.replace("-", "")[:8],)
    # Too short to name one author, or not base32: an ordinary term instead.
    assert parse_query("author:abc").authors == ()
    assert parse_query("author:abc").terms == ("author", "abc")


@given(st.text(max_size=300))
def test_any_text_parses(text):
    q = parse_query(text)
    assert len(q.terms) <= 16 and all(t and not t.isspace() for t in q.terms)


def test_punctuated_queries_find_posts(store):
    ingest(store, [mk(A, "Unpaid overtime again this week.", 1), mk(B, "老板不给加班费，怎么办？", 2)])
    assert [h.post.body for h in store.search("overtime,")] == ["Unpaid overtime again this week."]
    assert [h.post.body for h in store.search("加班费？")] == ["老板不给加班费，怎么办？"]


def test_author_search_count_and_thread_titles(store):
    root = mk(A, "# Wage theft at the depot\nThey kept our wages.", 1)
    batch = [root] + [mk(B, f"reply {i}: wages still missing", 10 + i, kind="reply", parent=root.id)
                      for i in range(30)] + [mk(A, "other board wages", 5, board="misc")]
    ingest(store, batch)
    everything = run_search(store._conn, parse_query("wages"), None, 10)
    assert everything.total == 32 and len(everything.hits) == 10 and not everything.capped
    assert everything.roots[root.id].body.startswith("# Wage theft")
    # A reply to a reply finds the thread's first post too.
    deep = mk(B, "nested question", 100, kind="reply", parent=batch[5].id)
    ingest(store, [deep])
    (hit,) = run_search(store._conn, parse_query("nested"), None, 10).hits
    assert run_search(store._conn, parse_query("nested"), None, 10).roots[hit.post.parent].id == root.id
    on_board = run_search(store._conn, parse_query("wages"), "labor", 50)
    assert on_board.total == 31
    fp = identity.fingerprint(A.public_key)
    by_a = run_search(store._conn, parse_query(f"author:{fp[:14]}"), None, 50)
    assert sorted(h.post.body for h in by_a.hits) == sorted([root.body, "other board wages"])
    by_a_here = run_search(store._conn, parse_query(f"wages author:{fp}"), "labor", 50)
    assert [h.post.id for h in by_a_here.hits] == [root.id]
    nobody = run_search(store._conn, parse_query("author:aaaaaaaaaaaa wages"), None, 50)
    assert nobody.total == 0


def test_count_stops_at_the_cap(store, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SEARCH_RESULTS", 20)
    ingest(store, [mk(A, f"strike day {i}", i) for i in range(25)])
    found = run_search(store._conn, parse_query("strike"), "labor", 10, offset=10)
    assert found.capped and found.total == 21 and len(found.hits) == 10
    assert run_search(store._conn, parse_query("strike"), "labor", 10, offset=20).hits == []


def test_a_board_scoped_search_is_driven_by_the_index(store, monkeypatch):
    # The plan must read the full-text index first, and never walk a board's rows asking the
    # index about each one (which took seconds on a large board).
    seen = []
    real = search_module._matching_seqs

    def spy(conn, query, board, cap):
        conn.set_trace_callback(seen.append)
        try:
            return real(conn, query, board, cap)
        finally:
            conn.set_trace_callback(None)

    monkeypatch.setattr(search_module, "_matching_seqs", spy)
    ingest(store, [mk(A, "wages", 1)])
    run_search(store._conn, parse_query("wages"), "labor", 10)
    (sql,) = [s for s in seen if "MATCH" in s and "JOIN" in s]
    plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql)]
    assert not any("posts_board_time" in step or "posts_moderation" in step for step in plan), plan
    assert any("VIRTUAL TABLE INDEX" in step for step in plan), plan


def test_a_search_past_its_time_is_interrupted(store, monkeypatch):
    monkeypatch.setattr(search_module, "_PROGRESS_STEPS", 100)  # a small store: look often
    ingest(store, [mk(A, f"post number {i} about rent", i) for i in range(300)])
    with pytest.raises(SearchTimeout):
        store.search_page(parse_query("号码"), timeout_ms=0)
    # The connection is usable afterwards, and a search within its time is answered.
    assert store.search_page(parse_query("rent"), "labor", 5).total == store.count() > 100


@pytest.mark.parametrize("scan_rows", [0, 7, 10_000])
def test_the_newest_posts_and_the_index_give_the_same_hits(store, monkeypatch, scan_rows):
    # Common words are read from the newest posts first; whichever way a search goes, the
    # hits, their order and their count are those of the index.
    words = ["strike", "Strike", "工资拖欠", "overtime", "加班费"]
    batch = [mk(A if i % 2 else B, " ".join(words[j] for j in range(5) if (i >> j) & 1) or "nothing", i,
                board="labor" if i % 3 else "misc") for i in range(128)]
    ingest(store, batch)
    monkeypatch.setattr(limits, "MAX_SEARCH_RESULTS", 12)  # "strike" is in 64 posts: common
    used = []
    real = search_module._recent_hits
    def spy(*args):
        hits = real(*args)
        used.append(len(hits))
        return hits

    monkeypatch.setattr(search_module, "_recent_hits", spy)
    expected = {}
    monkeypatch.setattr(limits, "SEARCH_SCAN_ROWS", 0)
    for text in ("strike", "工资拖欠", "STRIKE 加班费", "overtime"):
        for board in ("labor", None):
            found = run_search(store._conn, parse_query(text), board, 50)
            expected[text, board] = ([h.post.id for h in found.hits], found.total)
    monkeypatch.setattr(limits, "SEARCH_SCAN_ROWS", scan_rows)
    for (text, board), want in expected.items():
        found = run_search(store._conn, parse_query(text), board, 50)
        assert ([h.post.id for h in found.hits], found.total) == want, (text, board)
    if scan_rows == 10_000:
        assert max(used) >= 12, "the newest posts never answered a search"

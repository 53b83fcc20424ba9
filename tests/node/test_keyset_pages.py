"""Keyset pages of a board's threads (``Store.threads`` with a ``(last_at_ms, id)`` cursor)
against the full ordered list, with posts, replies and retractions arriving between pages."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.node.store import Store
from dazibao.protocol import posts
from tests.factories import T0_MS, examples, key, make_post, reply, retraction

NOW = T0_MS + 86_400_000
WRITERS = [key(500), key(501), key(502)]
BOARD = "general"


def full_order(store: Store) -> list[tuple[int, bytes]]:
    """Every thread of the board as the grouping query computed the board page, in page order."""
    rows = store._conn.execute(
        "SELECT max(p.created_at_ms, coalesce(max(r.created_at_ms), 0)) AS last_at, p.id"
        " FROM posts AS p LEFT JOIN posts AS r ON r.parent = p.id AND r.kind = 'reply'"
        " WHERE p.board = ? AND p.kind = 'post' GROUP BY p.seq ORDER BY last_at DESC, p.id DESC", (BOARD,))
    return [(int(t), bytes(i)) for t, i in rows]


def new_store() -> Store:
    store = Store.memory()
    for i, signer in enumerate(WRITERS):
        store.add_identity(f"w{i}", signer.public_key, NOW)
    return store


# Between two page requests: a new thread (at the top, or dated back), a reply to one of the
# threads (new activity, or dated back so that nothing moves), a thread retracted, a reply retracted.
_event = st.one_of(
    st.tuples(st.just("post"), st.integers(0, 20_000)),
    st.tuples(st.just("reply"), st.integers(0, 10_000), st.integers(-20_000, 2_000)),
    st.tuples(st.just("retract_thread"), st.integers(0, 10_000)),
    st.tuples(st.just("retract_reply"), st.integers(0, 10_000)),
)


@settings(max_examples=examples(60), deadline=None)
@given(
    times=st.lists(st.integers(0, 30), min_size=0, max_size=40),  # few distinct times: many ties
    page_sizes=st.lists(st.integers(1, 7), min_size=1, max_size=20),
    events=st.lists(st.lists(_event, max_size=3), max_size=20),
)
def test_keyset_pages_match_the_full_order_as_it_is_when_each_page_is_read(times, page_sizes, events):
    store = new_store()
    roots = [make_post(WRITERS[i % 3], body=f"t{i}", created_at_ms=T0_MS + t * 1_000) for i, t in enumerate(times)]
    store.ingest(roots, source="import", now_ms=NOW)
    replies: list[posts.Post] = []
    clock = T0_MS + 100_000
    initial = dict((i, t) for t, i in full_order(store))
    shown: list[bytes] = []
    moved: set[bytes] = set()  # threads whose last activity changed during the walk
    gone: set[bytes] = set()
    cursor: tuple[int, bytes] | None = None
    for n, size in enumerate(page_sizes):
        page = store.threads(BOARD, size, before=cursor)
        expected = [k for k in full_order(store) if cursor is None or k < cursor][:size]
        assert [(t.last_at_ms, t.post.id) for t in page] == expected
        shown += [t.post.id for t in page]
        if len(page) < size:
            break
        cursor = (page[-1].last_at_ms, page[-1].post.id)
        before = dict((i, t) for t, i in full_order(store))
        for event in events[n] if n < len(events) else []:
            clock += 1_000
            alive = [r for r in roots if r.id not in gone]
            if event[0] == "post":
                roots.append(make_post(WRITERS[0], body=f"new {clock}", created_at_ms=clock - event[1]))
                store.ingest([roots[-1]], source="import", now_ms=NOW)
            elif event[0] == "reply" and alive:
                parent = alive[event[1] % len(alive)]
                replies.append(reply(parent, f"r {clock}", signer=WRITERS[1],
                                     created_at_ms=max(parent.created_at_ms, clock + event[2] - 100_000)))
                store.ingest([replies[-1]], source="import", now_ms=NOW)
            elif event[0] == "retract_thread" and alive:
                target = alive[event[1] % len(alive)]
                store.ingest([retraction(target, signer=WRITERS[roots.index(target) % 3] if target in roots[:len(times)]
                                         else WRITERS[0], created_at_ms=clock)], source="import", now_ms=NOW)
                gone.add(target.id)
            elif event[0] == "retract_reply" and replies:
                target = replies.pop(event[1] % len(replies))
                store.ingest([retraction(target, signer=WRITERS[1], created_at_ms=clock)], source="import", now_ms=NOW)
        after = dict((i, t) for t, i in full_order(store))
        moved |= {i for i, t in after.items() if i in before and before[i] != t}
    # No thread shown twice, unless its activity changed while the member paged.
    twice = {i for i in shown if shown.count(i) > 1}
    assert twice <= moved
    # No thread of the board skipped: every thread there from the start to the end of the
    # walk, whose activity never changed, was shown -- if the walk reached its place.
    if cursor is None or len(page) < size:
        final = {i for _, i in full_order(store)}
        steady = {i for i in initial if i in final and i not in moved and i not in gone}
        assert steady <= set(shown)


@settings(max_examples=examples(30), deadline=None)
@given(times=st.lists(st.integers(0, 12), min_size=1, max_size=60), size=st.integers(1, 9))
def test_page_numbers_and_newer_links_land_where_the_cursor_pages_do(times, size):
    store = new_store()
    store.ingest([make_post(WRITERS[i % 3], body=f"t{i}", created_at_ms=T0_MS + t) for i, t in enumerate(times)],
                 source="import", now_ms=NOW)
    order = full_order(store)
    pages = [order[i : i + size] for i in range(0, len(order), size)]
    for number, page in enumerate(pages, start=1):
        # Page N by number starts after the last thread of page N - 1.
        start = None if number == 1 else store.thread_cursor(BOARD, (number - 1) * size - 1)
        assert [(t.last_at_ms, t.post.id) for t in store.threads(BOARD, size, before=start)] == page
        assert start is None or start == pages[number - 2][-1]
        # The newer link of page N + 1 (whose cursor is the last thread of page N) leads to page N.
        if len(page) == size:
            assert store.newer_thread_cursor(BOARD, page[-1], size) == (
                None if number == 1 else pages[number - 2][-1])
    assert store.thread_cursor(BOARD, len(order)) is None

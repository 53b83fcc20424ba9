"""Every page of the member UI holds one page of rows, however much the node stores
(docs/security.md, "Unbounded pages"), and its pagination still reaches every row.

The attack test runs against a real `dazibao run` process whose store holds a thread with
20,000 replies and 12,000 boards; the HTTP tests run the UI in process over a real store.
"""

from __future__ import annotations

import html
import re
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pytest

from dazibao.node.config import DataDir
from dazibao.node.store import Store
from dazibao.protocol import limits, posts

from ..node.attack import peak_rss_kib, rss_kib
from .conftest import T0_MS, UiNode, key, node_env

REPLIES = 20_000
BOARDS = 12_000
REPLY_BODY = "工资拖欠 overtime " * 50  # about 1 KiB of UTF-8: an ordinary reply
#: One page of replies is ~100 of these; the whole thread would be ~35 MB of HTML.
MAX_THREAD_PAGE_BYTES = 1_000_000
#: One page of boards is ~100 rows of ~700 bytes; all of them would be ~8 MB.
MAX_BOARDS_PAGE_BYTES = 500_000
#: The patched node grows by a few MiB; rendering the whole thread took ~300 MiB.
MAX_RSS_GROWTH_KIB = 80 * 1024
PAGE_IDS = re.compile(r'id="p-([0-9a-f]{64})"')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
PREV = re.compile(r'<a href="([^"]+)" rel="prev">')
BOARD_LINKS = re.compile(r'<a class="board" href="/b/([^"]+)">')


def _root() -> posts.Post:
    return posts.create_post(key(1), kind="post", board="labor", body="Overtime pay\nhow is it counted?",
                             created_at_ms=T0_MS)


def seed_big_store(data: Path) -> posts.Post:
    """A store with one thread of REPLIES replies and BOARDS other boards of one post each."""
    folder = DataDir(data)
    folder.create()
    root = _root()
    signers = [key(n) for n in range(2, 10)]
    store = Store(str(folder.database))
    # Eight keys write 20,000 replies in one day: far past the stranger quota, which is not
    # what this test is about (tests/node covers the quota), so it is lifted for the seeding.
    store.configure_policy(stranger_posts_per_day=10 * REPLIES, stranger_bytes_per_day=1 << 40)
    try:
        store.ingest([root], source="http://peer.test:7470", now_ms=T0_MS)
        # Replies every 10 ms, so that a test can slip a new one in between two of them.
        batch: list[posts.Post] = []
        for i in range(REPLIES):
            batch.append(posts.create_post(signers[i % len(signers)], kind="reply", board="labor",
                                           body=f"reply {i} " + REPLY_BODY, created_at_ms=T0_MS + 10 * (i + 1),
                                           parent=root.id))
            if len(batch) == 2_000:
                store.ingest(batch, source="http://peer.test:7470", now_ms=T0_MS)
                batch = []
        for j in range(BOARDS):
            batch.append(posts.create_post(signers[j % len(signers)], kind="post", board=f"board-{j:05d}",
                                           body=f"post {j}", created_at_ms=T0_MS + 7 * j))
            if len(batch) == 2_000:
                store.ingest(batch, source="http://peer.test:7470", now_ms=T0_MS)
                batch = []
        store.ingest(batch, source="http://peer.test:7470", now_ms=T0_MS)
        store.update_search_index(1_000_000)
    finally:
        store.close()
    return root


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        assert resp.status == 200, url
        return resp.read()


def reply_ids(page: bytes, root: posts.Post) -> list[bytes]:
    return [bytes.fromhex(h) for h in PAGE_IDS.findall(page.decode()) if h != root.id.hex()]


def board_names(page: bytes) -> list[str]:
    text = page.decode()
    start = text.find('<ul class="boards">')
    if start < 0:
        return []
    return [unquote(html.unescape(m)) for m in BOARD_LINKS.findall(text[start: text.index("</ul>", start)])]


def link(pattern: re.Pattern, page: bytes) -> str | None:
    m = pattern.search(page.decode())
    return html.unescape(m.group(1)) if m else None


def add_reply(data: Path, root: posts.Post, at_ms: int, n: int) -> bytes:
    """A reply stored by another process while the node runs (as a sync or `dazibao post` would)."""
    reply = posts.create_post(key(20 + n), kind="reply", board="labor", body=f"late reply {n}",
                              created_at_ms=at_ms, parent=root.id)
    store = Store(str(DataDir(data).database))
    try:
        assert store.ingest([reply], source="http://peer.test:7470", now_ms=T0_MS).added
    finally:
        store.close()
    return reply.id


@pytest.mark.slow
def test_long_thread_and_many_boards_stay_one_page(tmp_path):
    data = tmp_path / "big"
    root = seed_big_store(data)
    node = UiNode(data, env=node_env()).start()
    try:
        ui = node.ui_url.rstrip("/")
        pid = node.proc.pid
        for warm in ("/ids", "/search", "/status"):  # templates compiled, caches warm
            get(ui + warm)
        before = peak_rss_kib(pid)

        thread = get(f"{ui}/p/{root.id.hex()}")
        boards = get(ui + "/")
        by_name = get(ui + "/?order=name")
        assert len(thread) < MAX_THREAD_PAGE_BYTES, len(thread)
        assert len(reply_ids(thread, root)) == limits.UI_THREAD_PAGE_REPLIES
        assert f"{REPLIES:,} replies".encode() in thread  # the heading counts them all, with separators
        for page in (boards, by_name):
            assert len(page) < MAX_BOARDS_PAGE_BYTES, len(page)
            assert len(board_names(page)) == limits.UI_BOARDS_PAGE_BOARDS
        assert peak_rss_kib(pid) - before < MAX_RSS_GROWTH_KIB, (before, peak_rss_kib(pid), rss_kib(pid))

        # Every reply is reachable: walk the "newer" links from the first page to the last.
        # Between two pages, other nodes deliver two replies: one later than every other, and
        # one between two replies not yet reached.  Both are found.
        walked: list[bytes] = []
        url: str | None = f"/p/{root.id.hex()}"
        pages = 0
        late: list[bytes] = []
        while url is not None:
            page = get(ui + url)
            assert len(page) < MAX_THREAD_PAGE_BYTES
            walked += reply_ids(page, root)
            url = link(NEXT, page)
            pages += 1
            if pages == 3:
                late.append(add_reply(data, root, T0_MS + 10 * (REPLIES + 5), 1))
                late.append(add_reply(data, root, T0_MS + 10 * 15_000 + 5, 2))
            assert pages < 400
        with Store(str(DataDir(data).database)) as store:
            everything = [r.id for r in store.replies(root.id)]
        assert len(everything) == REPLIES + 2
        assert walked == everything
        assert set(late) <= set(walked)
        assert peak_rss_kib(pid) - before < MAX_RSS_GROWTH_KIB

        # And back from the newest page with the "older" links, a few pages.
        page = get(f"{ui}/p/{root.id.hex()}?newest=1")
        back = reply_ids(page, root)
        for _ in range(4):
            page = get(ui + link(PREV, page))
            back = reply_ids(page, root) + back
        assert back == everything[-len(back):] and len(back) == 5 * limits.UI_THREAD_PAGE_REPLIES

        # Every board is reachable in name order, a board that starts between two pages
        # included; and in activity order.
        with Store(str(DataDir(data).database)) as store:
            all_boards = sorted(b.board for b in store.boards())
        seen: list[str] = []
        url = "/?order=name"
        pages = 0
        while url is not None:
            page = get(ui + url)
            assert len(page) < MAX_BOARDS_PAGE_BYTES
            seen += board_names(page)
            url = link(NEXT, page)
            pages += 1
            if pages == 2:
                new = posts.create_post(key(30), kind="post", board="board-zzz new", body="new board",
                                        created_at_ms=T0_MS)
                with Store(str(DataDir(data).database)) as store:
                    store.ingest([new], source="http://peer.test:7470", now_ms=T0_MS)
            assert pages < 400
        assert seen == sorted(all_boards + ["board-zzz new"], key=lambda b: b.encode())
        seen = []
        url = "/"
        while url is not None:
            page = get(ui + url)
            seen += board_names(page)
            url = link(NEXT, page)
        assert sorted(seen) == sorted(all_boards + ["board-zzz new"])
        assert seen[:2] == ["labor", f"board-{BOARDS - 1:05d}"]  # the most recently active first

        # The name filter finds a board among thousands.
        found = get(ui + "/?order=name&filter=RD-0421")
        assert board_names(found) == [f"board-0421{d}" for d in range(10)]
        assert peak_rss_kib(pid) - before < MAX_RSS_GROWTH_KIB
    finally:
        node.stop()



# --- in process, over a real store --------------------------------------------------------------


async def _seed(h, batch: list[posts.Post]) -> None:
    report = await h.core.ingest_checked(batch, "http://peer.test:7470")
    assert len(report.accepted) == len(batch)


def _thread(n: int) -> tuple[posts.Post, list[posts.Post]]:
    root = _root()
    replies = [posts.create_post(key(2 + i % 5), kind="reply", board="labor", body=f"reply number {i}",
                                 created_at_ms=T0_MS + 1_000 + 10 * i, parent=root.id) for i in range(n)]
    return root, replies


async def _walk(h, url: str, pattern: re.Pattern, ids) -> tuple[list, int]:
    seen: list = []
    pages = 0
    while url is not None:
        resp = await h.client.get(url)
        assert resp.status == 200, url
        page = await resp.read()
        seen += ids(page)
        url = link(pattern, page)
        pages += 1
        assert pages < 100
    return seen, pages


async def test_thread_pages_walk_both_ways_and_only_the_last_one_goes_live(harness, monkeypatch):
    from dazibao.node.web.pages import thread

    monkeypatch.setattr(thread, "REPLIES_PAGE_SIZE", 7)
    root, replies = _thread(30)
    await _seed(harness, [root, *replies])
    everything = [r.id for r in sorted(replies, key=lambda r: (r.created_at_ms, r.id))]
    forward, pages = await _walk(harness, f"/p/{root.id.hex()}", NEXT, lambda p: reply_ids(p, root))
    assert forward == everything and pages == 5
    backward, _ = await _walk(harness, f"/p/{root.id.hex()}?newest=1", PREV,
                              lambda p: list(reversed(reply_ids(p, root))))
    assert list(reversed(backward)) == everything

    first = await (await harness.client.get(f"/p/{root.id.hex()}")).text()
    assert "30 replies" in first and 'data-url=""' in first  # not the last page: no live additions
    last = await (await harness.client.get(f"/p/{root.id.hex()}?newest=1")).text()
    assert f'data-url="/api/updates?thread={root.id.hex()}"' in last


async def test_a_short_thread_has_no_pager(harness):
    root, replies = _thread(3)
    await _seed(harness, [root, *replies])
    page = await (await harness.client.get(f"/p/{root.id.hex()}")).text()
    assert 'class="pager"' not in page and len(reply_ids(page.encode(), root)) == 3


async def test_reply_to_a_long_thread_lands_on_its_last_page(harness, monkeypatch):
    from dazibao.node.web.pages import thread

    monkeypatch.setattr(thread, "REPLIES_PAGE_SIZE", 5)
    root, replies = _thread(12)
    await _seed(harness, [root, *replies])
    resp = await harness.post("/ids/new", {"name": "alice", "passphrase": "correct horse battery staple",
                                           "passphrase2": "correct horse battery staple"})
    assert resp.status == 303
    resp = await harness.post("/compose", {"parent": root.id.hex(), "body": "me too", "action": "publish"})
    assert resp.status == 303
    location = resp.headers["Location"]
    assert location.startswith(f"/p/{root.id.hex()}?newest=1#p-")
    page = await (await harness.client.get(location.split("#")[0])).text()
    assert location.split("#")[1] in page


@pytest.mark.parametrize("query", [
    "after=123", "after=12-zz", "before=" + "0" * 64, f"after=1-{'ab' * 32}&before=1-{'ab' * 32}",
    f"after=1-{'ab' * 32}&newest=1", "after=" + "9" * 20 + "-" + "ab" * 32,
])
async def test_bad_thread_positions_are_refused(harness, query):
    root, replies = _thread(2)
    await _seed(harness, [root, *replies])
    before = await harness.snapshot()
    resp = await harness.client.get(f"/p/{root.id.hex()}?{query}")
    assert resp.status == 400
    assert "page number is not valid" in await resp.text()
    assert await harness.snapshot() == before


@pytest.mark.parametrize("query", ["after=", "at=5", "after=x&at=abc", "order=name&after=x&at=5",
                                   "after=%20x", "after=" + "b" * 65 + "&order=name"])
async def test_bad_boards_positions_are_refused(harness, query):
    resp = await harness.client.get(f"/?{query}")
    assert resp.status == 400
    assert "page number is not valid" in await resp.text()


async def test_boards_pages_include_followed_boards_without_posts(harness, monkeypatch):
    from dazibao.node.web.pages import boards

    monkeypatch.setattr(boards, "BOARDS_PAGE_SIZE", 3)
    names = [f"b{i:02d}" for i in range(10)]
    await _seed(harness, [posts.create_post(key(2), kind="post", board=b, body="x", created_at_ms=T0_MS + i)
                          for i, b in enumerate(names)])
    await harness.core.set_boards([*names, "a-empty", "m-empty", "z-empty"])
    by_name, pages = await _walk(harness, "/?order=name", NEXT, board_names)
    assert by_name == sorted([*names, "a-empty", "m-empty", "z-empty"]) and pages == 5
    recent, _ = await _walk(harness, "/", NEXT, board_names)
    assert recent == list(reversed(names)) + ["a-empty", "m-empty", "z-empty"]
    filtered, _ = await _walk(harness, "/?filter=EMPTY", NEXT, board_names)
    assert filtered == ["a-empty", "m-empty", "z-empty"]
    none = await (await harness.client.get("/?filter=nothing%25here")).text()
    assert "No board name contains “nothing%here”." in none


async def test_search_reads_only_its_page(harness, monkeypatch):
    from dazibao.node.store import Store as RealStore

    batch = [posts.create_post(key(2 + i % 3), kind="post", board="labor", body=f"wage theft report {i}",
                               created_at_ms=T0_MS + i) for i in range(60)]
    await _seed(harness, batch)
    asked: list[tuple] = []
    search = RealStore.search_page

    def spy(store, query, board=None, limit=50, *, offset=0):
        asked.append((limit, offset))
        return search(store, query, board, limit, offset=offset)

    monkeypatch.setattr(RealStore, "search_page", spy)
    newest_first = [p.id.hex() for p in sorted(batch, key=lambda p: (p.created_at_ms, p.id), reverse=True)]
    seen = []
    for page in (1, 2, 3):
        text = await (await harness.client.get(f"/search?q=theft&page={page}")).text()
        seen += re.findall(r'<p class="snippet" dir="auto"[^>]*><a href="/p/([0-9a-f]{64})">', text)
    assert seen == newest_first
    assert asked == [(26, 0), (26, 25), (26, 50)]
    # The board field is a text box now: the page lists no boards, however many there are.
    assert "<option" not in text


async def test_hidden_authors_are_paged(harness, monkeypatch):
    from dazibao.node.web.pages import authors

    monkeypatch.setattr(authors, "HIDDEN_PAGE_SIZE", 2)
    for n in range(2, 7):
        assert (await harness.post("/authors/hide", {"author": key(n).public_key.hex(), "confirm": "1"})).status == 303
    shown = []
    for page in (1, 2, 3):
        text = await (await harness.client.get(f"/hidden?page={page}")).text()
        shown += re.findall(r'name="author" value="([0-9a-f]{64})"', text)
        assert (f"/hidden?page={page + 1}" in text) == (page < 3)
    assert sorted(shown) == sorted(key(n).public_key.hex() for n in range(2, 7))


async def test_status_counts_boards_without_listing_them(harness):
    await _seed(harness, [posts.create_post(key(2), kind="post", board=f"b{i}", body="x", created_at_ms=T0_MS)
                          for i in range(4)])
    text = await (await harness.client.get("/status")).text()
    assert "<dd>4 (" in text


async def test_one_key_with_thousands_of_names_neither_stalls_nor_floods_its_page(harness):
    k = key(3)
    batch = [posts.create_post(k, kind="profile", board=f"b{i % 40}", body=f"name {i}", created_at_ms=T0_MS + i)
             for i in range(8_000)]
    start = time.monotonic()
    await _seed(harness, batch)  # the names are added on the event loop as the posts are stored
    await harness.ui.authors._load_profiles()  # a full read, as after a retraction
    elapsed = time.monotonic() - start
    # Adding the names one by one re-sorted the key's whole history: about 9 s for each of
    # these two steps on an idle machine, and four times that for twice the names.
    assert elapsed < 6.0, elapsed
    assert harness.ui.authors.name(k.public_key) == "name 7999"
    resp = await harness.client.get(f"/a/{k.public_key.hex()}")
    text = await resp.text()
    assert resp.status == 200 and len(text) < 200_000
    assert text.count("<bdi>name ") == limits.UI_AUTHOR_NAMES_SHOWN + 1  # the heading, and the list
    assert "7950 older names are not shown." in text

"""A board's pages by cursor, the counts a reader sees, and pages served from the read pool
while the store's writer (or another reader) is busy, over real HTTP and a real store."""

from __future__ import annotations

import asyncio
import re
import threading

import pytest

from dazibao.node.config import DataDir, load_config
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.node.web.pages.boards import PAGE_SIZE
from dazibao.node.web.public import make_public_app
from dazibao.protocol import limits, posts

from .conftest import T0_MS, key

WAIT_S = 20


def threads_of(html: str) -> list[str]:
    return re.findall(r'href="/p/([0-9a-f]{64})"', html)


def link(html: str, label: str) -> str | None:
    match = re.search(r'<a href="([^"]+)">[^<]*' + label, html)
    return None if match is None else match.group(1).replace("&amp;", "&")


async def seed(core: NodeCore, count: int, board: str = "labor") -> list[posts.Post]:
    writer = key(7)
    await core.db.call(Store.add_identity, "writer", writer.public_key, T0_MS)
    batch = [posts.create_post(writer, kind="post", board=board, body=f"thread {i}", created_at_ms=T0_MS + i)
             for i in range(count)]
    await core.db.call(Store.ingest, batch, source="import", now_ms=T0_MS)
    return batch


async def test_older_and_newer_links_walk_every_thread_once(harness):
    batch = await seed(harness.core, 2 * PAGE_SIZE + 3)
    newest_first = [p.id.hex() for p in reversed(batch)]
    seen: list[str] = []
    url: str | None = "/b/labor"
    pages = []
    while url is not None:
        resp = await harness.client.get(url)
        assert resp.status == 200
        html = await resp.text()
        found = list(dict.fromkeys(threads_of(html)))
        seen += found
        pages.append((url, html))
        url = link(html, "Older")
    assert seen == newest_first and len(pages) == 3
    # Older links carry a cursor; the newer link of page 3 leads to page 2, page 2's to page 1.
    assert "at=" in pages[1][0] and "after=" in pages[1][0] and "page=2" in pages[1][0]
    assert link(pages[2][1], "Newer") == pages[1][0]
    assert link(pages[1][1], "Newer") == "/b/labor"
    # A page number alone still works, and gives the same threads as the cursor.
    resp = await harness.client.get("/b/labor?page=3")
    assert threads_of(await resp.text())[:3] == newest_first[2 * PAGE_SIZE:]


@pytest.mark.parametrize("query", [
    "at=1&after=" + "0" * 64,  # a cursor is never page 1
    "page=2&at=1",  # half a cursor
    "page=2&after=" + "0" * 64,
    "page=2&at=-1&after=" + "0" * 64,
    "page=2&at=1&after=" + "0" * 63,
    "page=2&at=1&after=" + "G" * 64,
    "page=2&at=99999999999999999999&after=" + "0" * 64,
    "page=0",
])
async def test_a_bad_position_is_the_bad_position_error(harness, query):
    await seed(harness.core, 3)
    resp = await harness.client.get("/b/labor?" + query)
    assert resp.status == 400
    assert "That page number is not valid." in await resp.text()


async def test_the_boards_list_and_status_count_only_posts_and_replies(harness):
    core = harness.core
    writer = key(7)
    await core.db.call(Store.add_identity, "writer", writer.public_key, T0_MS)
    root = posts.create_post(writer, kind="post", board="labor", body="root", created_at_ms=T0_MS)
    batch = [
        root,
        posts.create_post(writer, kind="reply", board="labor", body="re", created_at_ms=T0_MS + 1, parent=root.id),
        posts.create_post(writer, kind="profile", board="labor", body="writer", created_at_ms=T0_MS + 2),
        gone := posts.create_post(writer, kind="post", board="labor", body="gone", created_at_ms=T0_MS + 3),
        posts.create_post(writer, kind="retract", board="labor", body="", created_at_ms=T0_MS + 4, parent=gone.id),
    ]
    await core.db.call(Store.ingest, batch, source="import", now_ms=T0_MS)
    html = await (await harness.client.get("/")).text()
    assert re.search(r"\b2 posts\b", html) and not re.search(r"\b[34] posts\b", html)
    status = await (await harness.client.get("/status")).text()
    assert re.search(r"Posts stored</dt><dd>2<", status), status


async def _held(core: NodeCore, reads: int, *, writer: bool = True) -> tuple[threading.Event, list[asyncio.Future]]:
    """Hold ``reads`` read connections (and the writer thread, with ``writer``), each inside a
    read transaction, until the returned event is set."""
    release = threading.Event()
    entered = threading.Semaphore(0)

    def hold(store: Store) -> None:
        with store.snapshot():
            store.count()
            entered.release()
            release.wait(WAIT_S)

    held = [asyncio.ensure_future(core.db.call(hold))] if writer else []
    held += [asyncio.ensure_future(core.reads.call(hold)) for _ in range(reads)]
    for _ in held:
        assert await asyncio.to_thread(entered.acquire, timeout=WAIT_S)
    return release, held


async def test_a_page_answers_while_other_readers_are_in_long_reads(harness):
    # Every read connection but one is held.  (The member's own pages also record the visit,
    # a write, so the writer stays free here; the public view below has no such write.)
    core = harness.core
    batch = await seed(core, 3)
    release, held = await _held(core, reads=limits.READ_POOL_CONNECTIONS - 1, writer=False)
    try:
        for path in ["/b/labor", f"/p/{batch[0].id.hex()}"]:
            resp = await asyncio.wait_for(harness.client.get(path), WAIT_S)
            assert resp.status == 200 and "thread 0" in await resp.text()
    finally:
        release.set()
        await asyncio.gather(*held)


async def test_the_public_view_answers_while_the_writer_is_busy(tmp_path, aiohttp_client):
    data = DataDir(tmp_path / "mirror")
    data.create()
    config = load_config(data, environ={"DAZIBAO_PUBLIC_VIEW_LISTEN": "127.0.0.1:0"})
    core = NodeCore(data, config)
    await core.open()
    try:
        await seed(core, 3)
        client = await aiohttp_client(make_public_app(core, config))
        release, held = await _held(core, reads=limits.READ_POOL_CONNECTIONS - 1)
        try:
            for path in ["/", "/b/labor"]:
                resp = await asyncio.wait_for(client.get(path), WAIT_S)
                assert resp.status == 200 and "labor" in await resp.text()
        finally:
            release.set()
            await asyncio.gather(*held)
        await client.close()
    finally:
        await core.close()

"""What pages keep between requests (docs/web-ui.md, "What pages keep"): the rendered bodies by
post id (node/web/bodycache.py) and the public view's rendered pages (node/web/pagecache.py).

A kept body or page must show exactly what rendering it again would show, and never a post
that was retracted since; both stay within their bounds.
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.node.config import DataDir, load_config
from dazibao.node.service import NodeCore
from dazibao.node.web import textlang
from dazibao.node.web.bodycache import BODIES, BodyCache
from dazibao.node.web.pagecache import PageCache, etag_matches, etag_of
from dazibao.node.web.public import PAGES, make_public_app
from dazibao.node.web.render import render_body
from dazibao.protocol import posts

from .conftest import T0_MS, key

ZONES = ["UTC", "Asia/Shanghai", "America/St_Johns", "Asia/Kathmandu", "Africa/Monrovia", "America/Los_Angeles"]


# --- the kept bodies ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_a_kept_body_is_what_rendering_it_shows(body: str) -> None:
    cache = BodyCache(max_entries=4, max_chars=100_000)
    first = cache.get(b"i" * 32, body)
    again = cache.get(b"i" * 32, body)
    assert first.html == render_body(body) and first.lang == textlang.lang_attr(body)
    assert again is first


def test_kept_bodies_stay_within_entries_and_characters() -> None:
    cache = BodyCache(max_entries=3, max_chars=1_000)
    ids = [bytes([n]) * 32 for n in range(6)]
    for pid in ids[:3]:
        cache.get(pid, "short")
    cache.get(ids[0], "short")  # the least recently shown is now ids[1]
    cache.get(ids[3], "short")
    assert ids[1] not in cache and all(pid in cache for pid in (ids[0], ids[2], ids[3]))
    cache.get(ids[4], "x" * 600)  # over the characters with the others: the oldest go
    assert cache.chars <= 1_000 and ids[4] in cache
    huge = cache.get(ids[5], "y" * 2_000)  # larger than the whole bound: shown, never kept
    assert "y" * 2_000 in huge.html and ids[5] not in cache and cache.chars <= 1_000
    cache.forget([ids[4], b"z" * 32])
    assert ids[4] not in cache and cache.chars == sum(cache.get(p, "short").chars for p in ids[:4] if p in cache)


@pytest.mark.parametrize("zone", ZONES)
def test_fast_times_are_the_datetime_times(zone: str) -> None:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        samples = [0, -1, 1, T0_MS, 1_711_846_799_999, 1_711_846_800_000, -62_000_000_000_000,
                   252_999_999_999_999, 253_000_000_000_000, 253_402_300_800_000, 10**18, -(10**18)]
        samples += list(range(-3_000_000_000_000, 4_000_000_000_000, 7_777_777_777))
        for ms in samples:
            assert textlang.when_zoned(ms) == textlang._when_zoned_datetime(ms), (zone, ms)
            assert textlang.iso_utc(ms) == textlang._iso_utc_datetime(ms), (zone, ms)
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


# --- the kept pages -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_kept_pages_expire_and_stay_within_their_bounds() -> None:
    clock = Clock()
    cache = PageCache(max_pages=2, max_bytes=100, max_age_s=2, clock=clock)
    page = cache.put("a", b"A" * 10, cache.generation)
    assert cache.get("a") == page and page.etag == etag_of(b"A" * 10)
    clock.now += 2
    assert cache.get("a") is None and len(cache) == 0  # too old
    cache.put("a", b"A" * 10, cache.generation)
    cache.put("b", b"B" * 10, cache.generation)
    cache.get("a")
    cache.put("c", b"C" * 10, cache.generation)  # three pages: the least recently served goes
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    cache.put("d", b"D" * 95, cache.generation)  # over the bytes with the others
    assert cache.bytes <= 100 and cache.get("d") and cache.get("c") is None
    cache.put("e", b"E" * 101, cache.generation)  # larger than the bound: not kept
    assert cache.get("e") is None


def test_a_rendering_begun_before_a_post_was_stored_is_not_kept() -> None:
    cache = PageCache()
    began = cache.generation
    cache.on_new_posts([object()])  # a post stored while the page read the store
    cache.put("a", b"old", began)
    assert cache.get("a") is None
    cache.put("a", b"new", cache.generation)
    assert cache.get("a").body == b"new"


def test_if_none_match() -> None:
    tag = etag_of(b"page")
    assert etag_matches(tag, tag) and etag_matches(f'"x", W/{tag}', tag) and etag_matches("*", tag)
    assert not etag_matches(None, tag) and not etag_matches('"x"', tag) and not etag_matches(tag[:-2] + '"', tag)


# --- over HTTP: the public view ---------------------------------------------------------------------


@pytest.fixture
async def mirror(tmp_path, aiohttp_client):
    data = DataDir(tmp_path / "mirror")
    data.create()
    config = load_config(data, environ={"DAZIBAO_PUBLIC_VIEW_LISTEN": "127.0.0.1:0"})
    core = NodeCore(data, config)
    await core.open()
    alice, bob = key(1), key(2)
    root = posts.create_post(alice, kind="post", board="labor", body="Overtime pay\nhow is it counted?",
                             created_at_ms=T0_MS)
    replies = [posts.create_post(bob, kind="reply", board="labor", body=f"**reply {n}**: ask the union",
                                 created_at_ms=T0_MS + 1_000 * (n + 1), parent=root.id) for n in range(3)]
    await core.ingest_checked([root, *replies], "http://peer.test:7470")
    client = await aiohttp_client(make_public_app(core, config))
    try:
        yield client, core, root, replies, bob
    finally:
        await client.close()
        await core.close()


async def test_a_page_is_rendered_once_and_dropped_when_a_post_is_stored(mirror):
    client, core, root, replies, bob = mirror
    pages = client.app[PAGES]
    path = f"/p/{root.id.hex()}"
    first = await client.get(path)
    text = await first.text()
    assert first.status == 200 and "<strong>reply 2</strong>" in text
    again = await client.get(path)
    assert await again.text() == text and pages.hits == 1
    assert again.headers["ETag"] == first.headers["ETag"] == etag_of(text.encode())
    assert again.headers["Cache-Control"] == "no-store"
    # The same page in another language is another page.
    other = await client.get(path, headers={"Accept-Language": "zh-Hans"})
    assert await other.text() != text and pages.hits == 1
    new = posts.create_post(bob, kind="reply", board="labor", body="a fourth reply", created_at_ms=T0_MS + 9_000,
                            parent=root.id)
    await core.ingest_checked([new], "http://peer.test:7470")
    fresh = await (await client.get(path)).text()
    assert "a fourth reply" in fresh and pages.hits == 1


async def test_a_retracted_reply_is_never_shown_again(mirror):
    client, core, root, replies, bob = mirror
    path = f"/p/{root.id.hex()}"
    assert "<strong>reply 1</strong>" in await (await client.get(path)).text()
    assert "<strong>reply 1</strong>" in await (await client.get(path)).text()  # from the kept page
    assert replies[1].id in BODIES
    retraction = posts.create_post(bob, kind="retract", board="labor", body="", created_at_ms=T0_MS + 10_000,
                                   parent=replies[1].id)
    await core.ingest_checked([retraction], "http://peer.test:7470")
    text = await (await client.get(path)).text()
    assert "reply 1" not in text and "<strong>reply 2</strong>" in text
    assert replies[1].id not in BODIES  # its text is not kept in memory either
    assert (await client.get(f"/p/{replies[1].id.hex()}")).status == 404


async def test_conditional_requests_get_304(mirror):
    client, core, root, replies, bob = mirror
    for path in ["/", "/b/labor", f"/p/{root.id.hex()}"]:
        first = await client.get(path)
        tag = first.headers["ETag"]
        for _ in range(2):  # rendered (the first time) and kept
            resp = await client.get(path, headers={"If-None-Match": tag})
            assert resp.status == 304 and await resp.read() == b"" and resp.headers["ETag"] == tag, path
            assert resp.headers["Content-Security-Policy"], path
            client.app[PAGES].clear()
        resp = await client.get(path, headers={"If-None-Match": '"something else"'})
        assert resp.status == 200 and await resp.text() == await first.text()
    # Nothing but pages is kept: the live feed answers for its cursor, an unknown page is a 404.
    client.app[PAGES].clear()
    for path in ["/api/updates", "/p/" + "ab" * 32, "/static/style.css"]:
        await client.get(path)
    assert len(client.app[PAGES]) == 0


async def test_only_plain_pages_are_kept(tmp_path, aiohttp_client):
    """A kept page is given back with the headers every page has: a page that says more in its
    headers (here a made-up route) is rendered for each request."""
    from aiohttp import web

    data = DataDir(tmp_path / "mirror")
    data.create()
    config = load_config(data, environ={"DAZIBAO_PUBLIC_VIEW_LISTEN": "127.0.0.1:0"})
    core = NodeCore(data, config)
    await core.open()
    app = make_public_app(core, config)

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="<p>plain</p>", content_type="text/html", headers={"Cache-Control": "no-store"})

    async def more(request: web.Request) -> web.Response:
        return web.Response(text="<p>more</p>", content_type="text/html", headers={"Content-Language": "fr"})

    app.router.add_get("/plain", plain)
    app.router.add_get("/more", more)
    client = await aiohttp_client(app)
    try:
        for _ in range(2):
            resp = await client.get("/more")
            assert resp.status == 200 and resp.headers["Content-Language"] == "fr" and "ETag" not in resp.headers
        assert len(client.app[PAGES]) == 0
        await client.get("/plain")
        assert len(client.app[PAGES]) == 1
    finally:
        await client.close()
        await core.close()


# --- the templates ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh-Hans"])
def test_a_post_shows_its_author_as_the_author_macro_does(lang: str) -> None:
    """post_article writes the author() macro's markup out (one macro call less per post): the
    two must stay the same for every kind of author."""
    from dazibao.node.store import PostRow
    from dazibao.node.web import i18n
    from dazibao.node.web.authors import AuthorView
    from dazibao.node.web.base import Templates
    from dazibao.node.web.pages.common import PostView

    templates = Templates(i18n.load_translations())
    macros = templates.envs[lang].get_template("macros.html").module
    post = posts.create_post(key(3), kind="post", board="labor", body="hello", created_at_ms=T0_MS)
    row = PostRow(1, post.id, post.kind, post.board, post.author, post.created_at_ms, None, post.body, post.raw,
                  T0_MS, "import")
    for name in [None, "alice", "<b>&\u202e"]:
        for shared in (False, True):
            for local in (False, True):
                view = AuthorView(post.author, name, shared, local, False)
                article = str(macros.post_article(PostView(row, view, False), "", "/", public=True))
                assert str(macros.author(view)) in article, (name, shared, local)


# --- the reads of a thread page -------------------------------------------------------------------


def test_translations_of_a_page_of_replies_are_found_with_one_read(tmp_path) -> None:
    """A thread page asks which of its replies have translations once, then reads only those."""
    from dazibao.node.store import Store
    from dazibao.node.web.pages.organizing_reads import translations_of
    from dazibao.protocol import organizing

    alice, bob = key(1), key(2)
    root = posts.create_post(alice, kind="post", board="labor", body="root", created_at_ms=T0_MS)
    replies = [posts.create_post(bob, kind="reply", board="labor", body=f"r{n}", created_at_ms=T0_MS + n + 1,
                                 parent=root.id) for n in range(30)]
    translated = [replies[3], replies[17]]
    extra = [organizing.create_translation(alice, r, lang="zh-Hans", text=f"译{n}", created_at_ms=T0_MS + 100 + n)
             for n, r in enumerate(translated)]
    store = Store(tmp_path / "s.db")
    try:
        store.ingest([root, *replies, *extra], source="import", now_ms=T0_MS + 1_000)
        ids = [r.id for r in replies] + [b"\x00" * 32]
        assert store.parents_with_children(ids, posts.KIND_TRANSLATION) == {r.id for r in translated}
        assert store.parents_with_children([], posts.KIND_TRANSLATION) == set()
        with pytest.raises(ValueError):
            store.parents_with_children(ids, "post' OR 1=1 --")
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        found = translations_of(store, ids, ["zh-Hans"])
        store._conn.set_trace_callback(None)
        assert {pid: [t.text for t in ts] for pid, ts in found.items()} == {replies[3].id: ["译0"],
                                                                          replies[17].id: ["译1"]}
        assert found == {pid: store.translations(pid, languages=["zh-Hans"]) for pid in found}
        # One read for the page, and a few for each of the two translated replies only.
        assert len([s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]) <= 1 + 2 * 3
    finally:
        store.close()

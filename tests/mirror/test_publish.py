"""`publish`: the static read-only copy, read in a real browser from file://.

The folder must show every post of each published board and thread, run no script, and make
no request outside itself; publishing again updates it in place without touching anything
that is not its own.
"""

from __future__ import annotations

import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from dazibao.node.bundles import import_bundles, store_ingest
from dazibao.node.publish import BUNDLE_NAME, MANIFEST_NAME, PublishError, board_slug, publish
from dazibao.node.store import Store
from dazibao.protocol import identity, posts

from .helpers import ids_by_board, make_posts, now_ms, reply, retraction, store_with

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
HOSTILE = 'He said <script>alert("x")</script> & <img src="https://tracker.example/p.gif" onerror="alert(1)">'


@pytest.fixture
def site(tmp_path):
    labor = make_posts("labor", 4)
    thread = labor[0]
    r1 = reply(thread, "I agree.\nsecond line\n\nnew paragraph: 加班费怎么算？")
    r2 = reply(r1, "nested: مرحبا بالعالم", author=2, at_ms=r1.created_at_ms + 10)
    hostile = reply(thread, HOSTILE, author=2, at_ms=thread.created_at_ms + 20)
    zh = make_posts("劳动法", 3, author=1, text="关于")
    other = make_posts("secret", 2, text="unpublished")
    # A reply on labor to a post of a board that is not published.
    cross = posts.create_post(identity.SigningKey(bytes(32)), kind="reply", board="labor",
                              body="answers a post of another board", created_at_ms=now_ms() - 5000,
                              parent=other[0].id)
    store = store_with(tmp_path / "m.db", labor + [r1, r2, hostile] + zh + other + [cross])
    out = tmp_path / "site"
    report = publish(store, out, ["labor", "劳动法"], now_ms=now_ms())
    yield {"store": store, "out": out, "report": report, "labor": labor, "replies": [r1, r2, hostile],
           "zh": zh, "other": other, "cross": cross}
    store.close()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        #: Links in post bodies to http(s) addresses: followed only when a reader clicks them.
        self.external: list[tuple[str, str]] = []
        self.tags: list[str] = []
        self.handlers: list[str] = []
        self.ids: set[str] = set()
        self.csp: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs_d = dict(attrs)
        for name, value in attrs:
            if tag == "a" and name == "href" and urlsplit(value or "").scheme in ("http", "https"):
                self.external.append((value or "", attrs_d.get("rel") or ""))
            elif name in ("href", "src", "action", "srcset", "poster", "data"):
                self.urls.append(value or "")
            if name.startswith("on"):
                self.handlers.append(name)
            if name == "id":
                self.ids.add(value)
        if tag == "meta" and (attrs_d.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = attrs_d.get("content")


def parse(path: Path) -> _Links:
    links = _Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_folder_is_self_contained_static_html(site):
    out: Path = site["out"]
    pages = sorted(out.glob("*.html"))
    assert (out / "index.html") in pages and (out / "style.css").is_file() and (out / BUNDLE_NAME).is_file()
    parsed = {p.name: parse(p) for p in pages}
    for name, links in parsed.items():
        assert "script" not in links.tags and not links.handlers, name
        assert links.csp and "default-src 'none'" in links.csp and "script-src" not in links.csp, name
        for url in links.urls:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and not url.startswith("/"), (name, url)
            target = unquote(parts.path) or name
            assert (out / target).is_file(), (name, url)
            if parts.fragment:
                assert parts.fragment in parsed.get(target, links).ids or parts.fragment == "verify", (name, url)
        for url, rel in links.external:
            assert set(rel.split()) >= {"noopener", "noreferrer", "nofollow"}, (name, url)
    assert "<script" not in "".join(p.read_text(encoding="utf-8") for p in pages).lower()


def test_every_post_and_reply_is_shown_with_fingerprint_and_id(site):
    out: Path = site["out"]
    thread_page = (out / f"thread-{site['labor'][0].id.hex()}.html").read_text(encoding="utf-8")
    for post in [site["labor"][0], *site["replies"]]:
        assert post.id.hex() in thread_page
        assert identity.fingerprint(post.author) in thread_page
    # The web UI's formatting subset, rendered by its one renderer: paragraphs and line
    # breaks; markup in a body is text, and an address in it only a link.
    assert "<p>I agree.<br>\nsecond line</p>" in thread_page
    assert "<p>new paragraph: 加班费怎么算？</p>" in thread_page
    assert "&lt;script&gt;alert(\"x\")&lt;/script&gt;" in thread_page
    links = parse(out / f"thread-{site['labor'][0].id.hex()}.html")
    assert "img" not in links.tags and "tracker.example" not in " ".join(links.urls)
    board = (out / f"board-{board_slug('labor')}.html").read_text(encoding="utf-8")
    for post in site["labor"]:
        assert f"thread-{post.id.hex()}.html" in board
    # The reply to a post of an unpublished board is shown, without that post.
    orphan = (out / f"thread-{site['other'][0].id.hex()}.html").read_text(encoding="utf-8")
    assert "answers a post of another board" in orphan and "unpublished" not in orphan
    # Nothing of the unpublished board anywhere.
    everything = "".join(p.read_text(encoding="utf-8") for p in out.glob("*.html"))
    assert "secret" not in everything and "unpublished 0" not in everything
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f"dazibao import {BUNDLE_NAME}" in index


async def test_the_bundle_beside_the_pages_verifies_the_copy(site, tmp_path):
    with Store(tmp_path / "reader.db") as reader:
        result = await import_bundles([site["out"] / BUNDLE_NAME], store_ingest(reader, now=time.time))
        assert result.ok
        published = ids_by_board(site["store"])
        assert ids_by_board(reader) == {b: published[b] for b in ("labor", "劳动法")}


def test_in_chromium_from_file_no_script_no_network(site):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Chromium is needed for this test: apt-get install chromium"
    out: Path = site["out"].resolve()
    base = out.as_uri() + "/"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            # Start at the index and follow the links as a reader would.
            page.goto(base + "index.html")
            assert page.title().startswith("dazibao")
            page.get_by_role("link", name="labor", exact=True).first.click()
            page.wait_for_load_state()
            assert page.url == base + f"board-{board_slug('labor')}.html"
            for post in site["labor"]:
                assert page.locator(f"a[href='thread-{post.id.hex()}.html']").count() == 1
            page.locator(f"a[href='thread-{site['labor'][0].id.hex()}.html']").click()
            page.wait_for_load_state()
            text = page.locator("main").inner_text()
            for post in [site["labor"][0], *site["replies"]]:
                assert post.id.hex() in text
                assert identity.fingerprint(post.author) in text
            assert HOSTILE in text  # shown as text, not run or loaded
            assert page.locator(".depth-2").count() == 1  # the nested reply is indented under its parent
            # The stylesheet applied (it is the only resource a page loads).
            assert page.evaluate("getComputedStyle(document.body).maxWidth") != "none"
            for html in sorted(out.glob("*.html")):
                page.goto(html.as_uri())
                assert page.evaluate("document.scripts.length") == 0
                assert page.evaluate(
                    "[...document.querySelectorAll('*')].filter(e => [...e.attributes]"
                    ".some(a => a.name.startsWith('on'))).length") == 0
                csp = page.locator("meta[http-equiv='Content-Security-Policy']").get_attribute("content")
                assert "default-src 'none'" in csp
            zh_board = base + f"board-{board_slug('劳动法')}.html"
            page.goto(zh_board)
            for post in site["zh"]:
                assert post.body in page.locator("main").inner_text()
        finally:
            browser.close()
    assert requests
    for url in requests:
        assert url.startswith(base), url
        assert Path(unquote(urlsplit(url).path)).resolve().parent == out, url


def test_publish_again_updates_in_place(site, tmp_path):
    out: Path = site["out"]
    store: Store = site["store"]
    (out / "CNAME").write_text("mirror.example.org\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (out / "notes").mkdir()
    gone = site["labor"][1]
    store.ingest([retraction(gone)], source="local", now_ms=now_ms())
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    time.sleep(0.01)
    report = publish(store, out, ["labor", "劳动法"], now_ms=now_ms())
    assert report.removed == [f"thread-{gone.id.hex()}.html"]
    assert not (out / f"thread-{gone.id.hex()}.html").exists()
    assert (out / "CNAME").read_text() == "mirror.example.org\n" and (out / "notes").is_dir()
    assert outside.read_text() == "not yours"
    assert gone.id.hex() not in (out / f"board-{board_slug('labor')}.html").read_text(encoding="utf-8")
    # Pages that did not change are left alone (so a sync tool copies only what changed).
    unchanged_thread = f"thread-{site['labor'][2].id.hex()}.html"
    assert (out / unchanged_thread).stat().st_mtime_ns == before[unchanged_thread]
    assert report.unchanged >= 3
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_refuses_a_folder_that_is_not_a_previous_copy(site, tmp_path):
    store: Store = site["store"]
    foreign = tmp_path / "homepage"
    foreign.mkdir()
    (foreign / "index.html").write_text("my own page")
    with pytest.raises(PublishError, match="not empty"):
        publish(store, foreign, ["labor"], now_ms=now_ms())
    assert [p.name for p in foreign.iterdir()] == ["index.html"]
    assert (foreign / "index.html").read_text() == "my own page"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(PublishError, match="not a folder"):
        publish(store, a_file, ["labor"], now_ms=now_ms())
    with pytest.raises(PublishError, match="bad_board|board"):
        publish(store, tmp_path / "new", ["bad\u202eboard"], now_ms=now_ms())
    assert not (tmp_path / "new").exists()


def test_a_tampered_manifest_cannot_make_it_touch_anything(site, tmp_path):
    out: Path = site["out"]
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    manifest = out / MANIFEST_NAME
    text = manifest.read_text()
    manifest.write_text(text.replace('"index.html"', '"../victim.txt", "index.html"'))
    with pytest.raises(PublishError, match="damaged or was not written by dazibao"):
        publish(site["store"], out, ["labor"], now_ms=now_ms())
    assert victim.read_text() == "keep me"
    # A symbolic link planted under one of its names is replaced, not written through.
    manifest.write_text(text)
    (out / "style.css").unlink()
    (out / "style.css").symlink_to(victim)
    publish(site["store"], out, ["labor"], now_ms=now_ms())
    assert victim.read_text() == "keep me"
    assert not (out / "style.css").is_symlink()


def test_board_pages_are_paginated(tmp_path):
    many = make_posts("busy", 120)
    with store_with(tmp_path / "b.db", many) as store:
        out = tmp_path / "site"
        publish(store, out, ["busy"], now_ms=now_ms())
        slug = board_slug("busy")
        pages = sorted(out.glob(f"board-{slug}*.html"))
        assert [p.name for p in pages] == [f"board-{slug}-2.html", f"board-{slug}-3.html", f"board-{slug}.html"]
        first = (out / f"board-{slug}.html").read_text(encoding="utf-8")
        assert f'href="board-{slug}-2.html"' in first and "page 1 of 3" in first
        shown = set(re.findall(r'href="thread-([0-9a-f]{64})\.html"', "".join(p.read_text() for p in pages)))
        assert shown == {p.id.hex() for p in many}
        # Newest first: the newest post is on the first page.
        assert many[-1].id.hex() in first


def test_board_slugs_are_safe_and_distinct():
    names = ["labor", "Labor", "劳动法", "a/b", "../x", "x" * 64, "مرحبا", "a b"]
    slugs = [board_slug(n) for n in names]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[a-z0-9-]{1,80}", s) for s in slugs)
    assert len({s.lower() for s in slugs}) == len(slugs)

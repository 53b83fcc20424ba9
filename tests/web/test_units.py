"""The UI's pure parts: formatting, highlighting, Host/Origin rules, languages and the catalog,
sessions and the live feed.  No server, no browser."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from dazibao.node.keys import Pseudonym
from dazibao.node.web import i18n, render, security, textlang
from dazibao.node.web.live import LiveFeed
from dazibao.node.web.sessions import SessionStore
from dazibao.protocol import limits, posts

from . import hostile
from .conftest import key

WEB = Path(__file__).resolve().parents[2] / "node" / "web"
LOCALE = WEB / "locale"

# --- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize("body,html", [
    ("plain", "<p>plain</p>"),
    ("*em* **strong** _em_", "<p><em>em</em> <strong>strong</strong> <em>em</em></p>"),
    ("line one\nline two", "<p>line one<br>\nline two</p>"),
    ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
    ("`a<b`", "<p><code>a&lt;b</code></p>"),
    ("```\n<b>\n```", "<pre><code>&lt;b&gt;\n</code></pre>"),
    ("- one\n- two", "<ul>\n<li>one</li>\n<li>two</li>\n</ul>"),
    ("# not a heading", "<p># not a heading</p>"),
    ("<b>raw</b>", "<p>&lt;b&gt;raw&lt;/b&gt;</p>"),
])
def test_formatting_subset(body, html):
    assert render.render_body(body).strip() == html


def test_links_are_http_only_and_marked():
    out = render.render_body("[a](https://example.org/x?y=1&z=2) [b](http://example.org) https://bare.example/p")
    assert out.count("<a ") == 3
    assert out.count('rel="noopener noreferrer nofollow"') == 3
    assert 'href="https://example.org/x?y=1&amp;z=2"' in out
    for bad in ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x", "vbscript:x", "file:///etc",
                "/ids", "//evil.example/x", "mailto:a@b.example", "ftp://x.example"]:
        html = render.render_body(f"[x]({bad}) <{bad}>")
        assert "<a " not in html, bad


def test_images_are_never_loaded():
    out = render.render_body("![x](https://evil.example/t.png) <img src=https://evil.example/u.png>")
    assert "<img" not in out
    # The image syntax leaves at most a link the reader may choose to follow.
    assert 'href="https://evil.example/t.png"' in out


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))


def test_every_hostile_body_renders_to_the_allowlist():
    for body in hostile.bodies():
        parser = _Tags()
        parser.feed(str(render.render_body(body)))
        parser.close()
        for tag, attrs in parser.tags:
            assert tag in render.ALLOWED_TAGS, (body[:80], tag)
            names = {name for name, _ in attrs}
            assert names <= {"href", "title", "target", "rel", "start"}, (body[:80], names)
            for name, value in attrs:
                if name == "href":
                    assert value.lower().startswith(("http://", "https://")), (body[:80], value)
                if name == "rel":
                    assert value == render.LINK_REL


@pytest.mark.parametrize("snippet,spans,html", [
    ("abc", [(1, 2)], "a<mark>b</mark>c"),
    ("<b>工资</b>", [(3, 5)], "&lt;b&gt;<mark>工资</mark>&lt;/b&gt;"),
    ("a<script>", [(1, 9)], "a<mark>&lt;script&gt;</mark>"),
    ("abc", [(0, 10), (1, 2)], "<mark>abc</mark>"),  # out of range and overlapping spans
    ("abc", [(2, 1)], "abc"),
    ("\"'&", [(0, 3)], "<mark>&#34;&#39;&amp;</mark>"),
])
def test_highlight_escapes_every_segment(snippet, spans, html):
    assert str(render.highlight(snippet, spans)) == html


def test_title_is_the_first_line_shortened():
    assert render.title_of("\n\n> # Hello\nworld") == "Hello"
    assert render.title_of("x" * 300).endswith("…") and len(render.title_of("x" * 300)) == 100


# --- Host, Origin, redirects ----------------------------------------------------------------------


def test_allowed_hosts():
    assert security.allowed_hosts("127.0.0.1", 7471) == {"127.0.0.1:7471", "localhost:7471", "[::1]:7471"}
    assert "192.168.1.5:7471" in security.allowed_hosts("192.168.1.5", 7471)
    assert "[fe80::1]:7471" in security.allowed_hosts("[fe80::1]", 7471)
    assert security.allowed_hosts("0.0.0.0", 7471) == security.allowed_hosts("127.0.0.1", 7471)
    assert "localhost" in security.allowed_hosts("localhost", 80)
    allowed = security.allowed_hosts("127.0.0.1", 7471)
    assert security.host_allowed("LocalHost:7471", allowed)
    for host in [None, "", "evil.example", "127.0.0.1", "127.0.0.1:7470", "127.0.0.1:7471.evil.example"]:
        assert not security.host_allowed(host, allowed), host


def test_origin_and_fetch_site():
    assert security.origin_allowed(None, "127.0.0.1:7471")
    assert security.origin_allowed("http://127.0.0.1:7471", "127.0.0.1:7471")
    # Under Referrer-Policy: no-referrer a page's own form says "Origin: null"; Fetch Metadata
    # tells whether it came from this origin.
    assert security.origin_allowed("null", "127.0.0.1:7471", "same-origin")
    for site in [None, "none", "same-site", "cross-site"]:
        assert not security.origin_allowed("null", "127.0.0.1:7471", site), site
    for origin in ["null", "http://evil.example", "https://127.0.0.1:7471", "http://127.0.0.1:7472",
                   "http://localhost:7471"]:
        assert not security.origin_allowed(origin, "127.0.0.1:7471"), origin
    assert security.fetch_site_allowed(None) and security.fetch_site_allowed("same-origin")
    assert not security.fetch_site_allowed("same-site") and not security.fetch_site_allowed("cross-site")


def test_tokens_and_next():
    assert security.tokens_equal("abc", "abc")
    assert not security.tokens_equal("abd", "abc") and not security.tokens_equal("", "") and not \
        security.tokens_equal(None, "abc")
    assert security.safe_next("/b/x?page=2") == "/b/x?page=2"
    for bad in ["//evil.example", "/\\evil.example", "https://evil.example", "javascript:x", "", None, "/a\r\nb"]:
        assert security.safe_next(bad) == "/", bad


# --- languages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("header,expected", [
    (None, "en"), ("", "en"), ("fr-FR,fr;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"),
    ("en-US,en;q=0.9,zh;q=0.8", "en"), ("fr;q=1, zh-TW;q=0.5, en;q=0.4", "zh-Hans"), ("zh-Hans", "zh-Hans"),
    ("en;q=0.1, zh;q=0.9", "zh-Hans"), ("zh;q=0, en", "en"), ("zh;q=nan, en", "en"), ("*", "en"),
])
def test_accept_language(header, expected):
    assert i18n.negotiate(header) == expected


def test_cookie_then_setting_then_browser():
    assert i18n.negotiate("zh-CN", cookie="en") == "en"
    assert i18n.negotiate("en", setting="zh-Hans") == "zh-Hans"
    assert i18n.negotiate("en", cookie="zh-hans", setting="en") == "zh-Hans"
    assert i18n.negotiate("zh", cookie="klingon") == "zh-Hans"


def _ids(catalog) -> set:
    return {m.id for m in catalog if m.id}


def test_both_languages_have_exactly_the_same_messages():
    """The catalog template, the messages in the sources and the Chinese catalog agree."""
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true",
                                        "lstrip_blocks": "true"}}
    in_sources = set()
    for _, _, message, _, _ in extract_from_dir(str(WEB), method_map, options):
        in_sources.add(message if isinstance(message, str) else tuple(message))
    with open(LOCALE / "messages.pot", "rb") as fh:
        template = _ids(read_po(fh))
    with open(LOCALE / "zh_Hans" / "LC_MESSAGES" / "messages.po", "rb") as fh:
        chinese = read_po(fh, locale="zh_Hans")
    assert in_sources == template, "run pybabel extract (see node/web/i18n.py)"
    assert _ids(chinese) == template, "run pybabel update and translate (see node/web/i18n.py)"
    for message in chinese:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"untranslated: {message.id!r}"
        assert not message.fuzzy, f"fuzzy: {message.id!r}"
        source = message.id if isinstance(message.id, str) else message.id[0]
        for text in strings:
            assert sorted(re.findall(r"%\(\w+\)[sd]", text)) == sorted(re.findall(r"%\(\w+\)[sd]", source)), \
                message.id


def test_translations_load_and_differ():
    translations = i18n.load_translations()
    assert set(translations) == set(i18n.LANGUAGES)
    assert translations["en"].gettext("Boards") == "Boards"
    assert translations["zh-Hans"].gettext("Boards") == "版块"
    replies = translations["zh-Hans"].ngettext("%(num)s reply", "%(num)s replies", 1234)
    # Counts are shown with separators, as both languages write them (node/web/textlang.py).
    assert replies % {"num": textlang.number(1234)} == "1,234 条回复"


# --- sessions and the live feed ----------------------------------------------------------------------


def _pseudonym(n: int) -> tuple[Pseudonym, object]:
    k = key(n)
    return Pseudonym(f"p{n}", k.public_key, Path(f"/nonexistent/{n}")), k


def test_sessions_lock_when_idle_and_are_bounded():
    now = [0.0]
    store = SessionStore(60, clock=lambda: now[0], max_sessions=3, max_age_s=3600)
    a = store.create()
    a.unlock(*_pseudonym(1))
    assert a.active_key() is not None
    now[0] = 59
    store.touch(a)
    now[0] = 118
    store.sweep()
    assert a.unlocked  # 59 s idle
    now[0] = 178
    store.touch(a)
    assert not a.unlocked and a.take_notices()
    # The session that holds keys is the last to be evicted.
    a.unlock(*_pseudonym(2))
    others = [store.create() for _ in range(5)]
    assert store.get(a.id) is a and len(store) == 3
    assert store.get(others[0].id) is None
    now[0] = 178 + 3600
    assert store.get(a.id) is None


def test_live_feed_cursors():
    feed = LiveFeed(keep=3)
    start = feed.cursor
    made = [posts.create_post(key(1), kind="post", board="b", body=str(i), created_at_ms=i) for i in range(5)]
    feed.on_new_posts(made[:2])
    since = feed.since(start)
    assert since.complete and [p.body for p in since.posts] == ["0", "1"]
    assert feed.since(since.cursor).posts == []
    feed.on_new_posts(made[2:])
    assert not feed.since(start).complete  # posts 0 and 1 fell out of the window
    assert [p.body for p in feed.since(since.cursor).posts] == ["2", "3", "4"]
    for bad in ["", "x", "other.1", f"{feed.epoch}.99", f"{feed.epoch}.-1"]:
        assert not feed.since(bad).complete, bad


def test_a_session_keeps_a_bounded_number_of_drafts_and_spent_forms():
    from dazibao.node.web.pages.writing import keep_draft
    from dazibao.node.web.sessions import Draft, Session

    session = Session(id="s", csrf="c", last_active_s=0.0)
    for i in range(limits.MAX_DRAFTS_PER_SESSION + 5):
        session.save_draft(f"board:b{i}", Draft(f"text {i}"))
    assert len(session.drafts) == limits.MAX_DRAFTS_PER_SESSION
    assert "board:b0" not in session.drafts and f"board:b{limits.MAX_DRAFTS_PER_SESSION + 4}" in session.drafts
    # A body too long to post is not kept at all.
    keep_draft(session, {"board": "big", "parent": "", "body": "x" * (limits.MAX_BODY_BYTES + 1), "as": ""})
    assert "board:big" not in session.drafts
    for i in range(limits.MAX_SPENT_FORMS_PER_SESSION + 10):
        session.spend_form(f"0-t{i}")
    assert len(session.spent_forms) == limits.MAX_SPENT_FORMS_PER_SESSION
    assert session.form_is_stale(f"0-t{limits.MAX_SPENT_FORMS_PER_SESSION + 9}")

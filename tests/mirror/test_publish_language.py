"""`dazibao publish` shows what the public view shows, in the operator's language: authors'
names, the formatting subset rendered by the web UI's one renderer (a script in a post stays
text), and an English or Chinese copy with the right ``lang`` attributes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dazibao.node.config import DataDir
from dazibao.node.publish_text import ZH
from dazibao.protocol import identity, posts

from ..node.procs import dazibao
from .helpers import key, now_ms, reply, store_with

TEMPLATES = Path(__file__).resolve().parents[2] / "node" / "publish_templates"


def _node(path: Path, config: str = "") -> Path:
    data = DataDir(path)
    data.create()
    if config:
        data.config.write_text(config, encoding="utf-8")
    t = now_ms() - 60_000
    root = posts.create_post(key(0), kind="post", board="labor", created_at_ms=t,
                             body="**Strike** on Friday\n\nDetails: [the plan](https://example.org/plan) "
                                  "<script>alert(1)</script>")
    items = [
        posts.create_post(key(0), kind="profile", board="labor", body="小明", created_at_ms=t - 10),
        posts.create_post(key(1), kind="profile", board="labor", body="Li Wei", created_at_ms=t - 10),
        root,
        reply(root, "我们都去。加班费的事也要谈。", author=1, at_ms=t + 10),
    ]
    store_with(data.database, items).close()
    return path


def _thread(site: Path) -> str:
    (page,) = [p for p in site.glob("thread-*.html")]
    return page.read_text(encoding="utf-8")


@pytest.mark.slow
def test_publish_shows_names_formatting_and_links_safely(tmp_path):
    src = _node(tmp_path / "src")
    site = tmp_path / "site"
    dazibao(src, "publish", "--board", "labor", "--out", str(site))
    thread = _thread(site)
    assert '<html lang="en">' in thread
    assert '<bdi class="name">小明</bdi>' in thread and '<bdi class="name">Li Wei</bdi>' in thread
    assert identity.fingerprint(key(0).public_key) in thread
    assert "<strong>Strike</strong>" in thread
    assert re.search(r'<a href="https://example.org/plan" [^>]*rel="noopener noreferrer nofollow"[^>]*>the plan</a>',
                     thread)
    assert "<script>" not in thread and "&lt;script&gt;alert(1)&lt;/script&gt;" in thread
    # The Chinese reply says it is Chinese; the English post does not claim a language.
    assert '<div class="body" dir="auto" lang="zh"><p>我们都去。' in thread
    assert '<div class="body" dir="auto" lang=""><p><strong>Strike' in thread
    board = next(site.glob("board-*.html")).read_text(encoding="utf-8")
    assert '<bdi class="name">小明</bdi>' in board and "1 reply" in board


@pytest.mark.slow
def test_publish_in_chinese_by_option_and_by_setting(tmp_path):
    src = _node(tmp_path / "src")
    site = tmp_path / "site"
    dazibao(src, "publish", "--board", "labor", "--out", str(site), "--lang", "zh")
    index = (site / "index.html").read_text(encoding="utf-8")
    assert '<html lang="zh-Hans">' in index
    assert "只读副本" in index and "验证这份副本" in index and "2 条帖子" in index
    assert "Read-only copy" not in index
    thread = _thread(site)
    assert "帖子编号" in thread and "post id" not in thread
    # The setting chooses the language when --lang is not given.
    configured = _node(tmp_path / "configured", 'publish_language = "zh"\n')
    dazibao(configured, "publish", "--board", "labor", "--out", str(tmp_path / "site2"))
    assert '<html lang="zh-Hans">' in (tmp_path / "site2" / "index.html").read_text(encoding="utf-8")
    bad = _node(tmp_path / "bad", 'publish_language = "fr"\n')
    proc = dazibao(bad, "publish", "--board", "labor", "--out", str(tmp_path / "site3"), check=False)
    assert proc.returncode != 0 and "publish_language must be en or zh" in proc.stderr
    assert not (tmp_path / "site3").exists()


def test_every_message_of_the_copy_has_a_chinese_translation():
    messages = set()
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        messages.update(re.findall(r'_\("([^"]*)"', text))
        messages.update(re.findall(r"_\('([^']*)'", text))
        messages.update(m for pair in re.findall(r'ngettext\("([^"]*)", "([^"]*)"', text) for m in pair)
    assert messages, "no messages found"
    missing = sorted(messages - set(ZH))
    assert not missing, missing
    unused = sorted(set(ZH) - messages)
    assert not unused, unused
    for source, translated in ZH.items():
        assert sorted(re.findall(r"%\(\w+\)s", source)) == sorted(re.findall(r"%\(\w+\)s", translated)), source

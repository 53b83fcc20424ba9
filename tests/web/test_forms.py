"""Bad input from the UI's forms: a clear message in the member's language, status 400, and
nothing written.  Also the pseudonym lifecycle (create, unlock, lock, idle lock, export)."""

from __future__ import annotations

import html
import re

import pytest

from dazibao.node.store import Store
from dazibao.protocol import limits, posts

from .conftest import PASSPHRASE, key


def _errors(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="error" role="alert">([^<]*)</p>', page)]


async def _alice(h, board: str = "labor") -> None:
    resp = await h.post("/ids/new", {"name": "alice", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE,
                                     "board": board})
    assert resp.status == 303


# (path, fields, English fragment, Chinese fragment)
BAD_COMPOSE = [
    ({"board": "labor", "body": ""}, "the text is empty", "正文是空的"),
    ({"board": "labor", "body": "   \n\t  "}, "the text is empty", "正文是空的"),
    ({"board": "labor", "body": "x" * (limits.MAX_BODY_BYTES + 1)}, "1 character too long", "超出 1 个字"),
    # 6,000 Chinese characters are 18,000 bytes: 539 of them are over the 16,384-byte limit.
    ({"board": "labor", "body": "工" * 6000}, "539 characters too long", "超出 539 个字"),
    ({"board": "labor", "body": "bell \x07 character"}, "invisible control character", "不可见控制字符"),
    ({"board": "", "body": "hello"}, "board name is not allowed", "版块名不可用"),
    ({"board": "b" * 65, "body": "hello"}, "board name is not allowed", "版块名不可用"),
    ({"board": "bad\u202ename", "body": "hello"}, "board name is not allowed", "版块名不可用"),
    ({"board": "zero\u200bwidth", "body": "hello"}, "board name is not allowed", "版块名不可用"),
    ({"board": "labor", "body": "hello", "parent": "not-an-id"}, "not a post id", "不是帖子编号"),
    ({"board": "labor", "body": "hello", "parent": "ab" * 31}, "not a post id", "不是帖子编号"),
    ({"board": "labor", "body": "hello", "parent": "ab" * 32}, "not on this node", "不在（或已不在）本节点上"),
    ({"board": "labor", "body": "hello", "as": "nope-nope"}, "Unlock a pseudonym first", "请先在“化名”页面解锁"),
]


@pytest.mark.parametrize("lang", ["en", "zh-CN,zh;q=0.9"])
@pytest.mark.parametrize("fields,english,chinese", BAD_COMPOSE)
async def test_bad_compose_is_explained_and_writes_nothing(harness, fields, english, chinese, lang):
    await _alice(harness)
    before = await harness.snapshot()
    resp = await harness.post("/compose", {**fields, "action": "publish"}, lang=lang)
    assert resp.status == 400
    text = await resp.text()
    errors = " ".join(_errors(text))
    assert (english if lang == "en" else chinese) in errors, errors
    # The form comes back with what was typed.
    if fields.get("body", "").strip() and len(fields["body"]) < 100:
        assert fields["body"].replace("\x07", "&#7;") in text or "bell" in text
    assert await harness.snapshot() == before


async def test_compose_without_unlocked_pseudonym(harness):
    before = await harness.snapshot()
    resp = await harness.post("/compose", {"board": "labor", "body": "hello", "action": "publish"})
    assert resp.status == 400
    assert "Unlock a pseudonym first" in " ".join(_errors(await resp.text()))
    assert await harness.snapshot() == before


async def test_preview_writes_nothing_and_renders_the_subset(harness):
    await _alice(harness)
    before = await harness.snapshot()
    resp = await harness.post("/compose", {"board": "labor", "body": "**strong** <b>raw</b>", "action": "preview"})
    assert resp.status == 200
    text = await resp.text()
    assert "<strong>strong</strong>" in text and "&lt;b&gt;raw&lt;/b&gt;" in text
    assert await harness.snapshot() == before


async def test_posting_publishes_the_profile_once_per_board(harness):
    await _alice(harness, board="")
    for board, body in [("labor", "one"), ("labor", "two"), ("news", "three")]:
        resp = await harness.post("/compose", {"board": board, "body": body, "action": "publish"})
        assert resp.status == 303
    rows = await harness.core.db.call(Store.list_posts, None, 100)
    profiles = sorted((r.board, r.body) for r in rows if r.kind == posts.KIND_PROFILE)
    assert profiles == [("labor", "alice"), ("news", "alice")]
    # A post on a board the node does not carry follows it first (else it would not be stored).
    await harness.core.set_boards(["labor"])
    resp = await harness.post("/compose", {"board": "elsewhere", "body": "four", "action": "publish"})
    assert resp.status == 303
    assert harness.core.carries("elsewhere")


@pytest.mark.parametrize("fields,english,chinese", [
    ({"name": "", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE}, "name is not allowed", "名字不可用"),
    ({"name": "n" * 65, "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE}, "name is not allowed", "名字不可用"),
    ({"name": "rtl\u202ename", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE}, "direction-changing",
     "改变文字方向"),
    ({"name": "bob", "passphrase": "short", "passphrase2": "short"}, "at least 8 characters", "至少需要 8 个字符"),
    ({"name": "bob", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE + "x"}, "not the same", "不一致"),
    ({"name": "bob", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE, "board": "bad\u200bname"}, "board name",
     "版块名不可用"),
    ({"name": "alice", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE}, "already exists", "已有名为 alice"),
])
@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_bad_new_pseudonym_is_explained_and_writes_nothing(harness, fields, english, chinese, lang):
    await _alice(harness)
    before = await harness.snapshot()
    resp = await harness.post("/ids/new", fields, lang=lang)
    assert resp.status == 400
    errors = " ".join(_errors(await resp.text()))
    assert (english if lang == "en" else chinese) in errors, errors
    assert await harness.snapshot() == before


async def test_unlock_errors(harness):
    await _alice(harness)
    fp = harness.session().active
    await harness.post("/ids/lock", {"fp": "all"})
    before = await harness.snapshot()
    for fields, english, chinese in [
        ({"fp": fp, "passphrase": "wrong passphrase"}, "Wrong passphrase for alice", "alice 的密码不对"),
        ({"fp": fp, "passphrase": ""}, "Type the pseudonym's passphrase", "请输入这个化名的密码"),
        ({"fp": "no-such-fingerprint", "passphrase": PASSPHRASE}, "no such pseudonym", "没有这个化名"),
    ]:
        for lang, fragment in [("en", english), ("zh-Hans", chinese)]:
            resp = await harness.post("/ids/unlock", fields, lang=lang)
            assert resp.status == 400
            assert fragment in " ".join(_errors(await resp.text()))
            assert await harness.snapshot() == before
    resp = await harness.post("/ids/unlock", {"fp": fp, "passphrase": PASSPHRASE})
    assert resp.status == 303
    assert harness.session().active == fp


async def test_other_bad_inputs(harness):
    await _alice(harness)
    before = await harness.snapshot()
    cases = [
        ("POST", "/authors/hide", {"author": "zz"}, 400, "not an author's public key", "不是作者的公钥"),
        ("POST", "/authors/unhide", {"author": "ab" * 40}, 400, "not an author's public key", "不是作者的公钥"),
        ("POST", "/boards/follow", {"board": ""}, 400, "board name is not allowed", "版块名不可用"),
        ("POST", "/boards/unfollow", {"board": "x" * 100}, 400, "board name is not allowed", "版块名不可用"),
        ("POST", "/p/nothex/retract", {}, 404, "not on this node", "不在本节点上"),
        ("POST", f"/p/{'cd' * 32}/retract", {}, 404, "not on this node", "不在本节点上"),
        ("POST", "/ids/use", {"fp": "nope"}, 400, "Unlock this pseudonym first", "请先解锁这个化名"),
        ("POST", "/ids/export", {"fp": "nope"}, 400, "no such pseudonym", "没有这个化名"),
        ("GET", "/b?name=%E2%80%AEx", None, 400, "board name is not allowed", "版块名不可用"),
        ("GET", "/b/labor?page=0", None, 400, "page number is not valid", "页码无效"),
        ("GET", "/b/labor?page=abc", None, 400, "page number is not valid", "页码无效"),
        ("GET", "/search?q=" + "x" * 201, None, 400, "too long", "太长"),
        ("GET", "/search?q=x&page=-1", None, 400, "page number is not valid", "页码无效"),
        ("GET", "/p/" + "0" * 63, None, 404, "not on this node", "不在本节点上"),
        ("GET", "/a/xyz", None, 404, "not an author's public key", "不是作者的公钥"),
        ("GET", "/nowhere", None, 404, "no such page", "没有这个页面"),
    ]
    for method, path, fields, status, english, chinese in cases:
        for lang, fragment in [("en", english), ("zh-CN", chinese)]:
            if method == "POST":
                resp = await harness.post(path, fields, lang=lang)
            else:
                resp = await harness.client.get(path, headers={"Accept-Language": lang})
            assert resp.status == status, (path, resp.status)
            errors = " ".join(_errors(await resp.text()))
            assert fragment in errors, (path, lang, errors)
    assert await harness.snapshot() == before


async def test_unfollowing_the_last_board_is_refused(harness):
    await _alice(harness)
    await harness.core.set_boards(["labor"])
    before = await harness.snapshot()
    resp = await harness.post("/boards/unfollow", {"board": "labor"})
    assert resp.status == 400
    assert "only board this node carries" in " ".join(_errors(await resp.text()))
    assert await harness.snapshot() == before


async def test_follow_unfollow_and_carry_all(harness):
    stranger = key(3)
    await harness.core.ingest_checked([
        posts.create_post(stranger, kind="post", board=b, body=b, created_at_ms=harness.core.now_ms())
        for b in ("a", "b", "c")
    ], "test")
    assert not harness.core.boards
    resp = await harness.post("/boards/unfollow", {"board": "b"})
    assert resp.status == 303
    assert harness.core.boards == {"a", "c"}
    resp = await harness.post("/boards/follow", {"board": "b"})
    assert harness.core.boards == {"a", "b", "c"}
    resp = await harness.post("/boards/all", {})
    assert harness.core.boards == frozenset()
    page = await (await harness.client.get("/")).text()
    assert "carries every board" in page


async def test_idle_pseudonyms_are_locked(harness):
    await _alice(harness)
    session = harness.session()
    assert session.unlocked
    harness.clock.now += harness.ui.config.ui_idle_lock_s - 1
    assert (await harness.client.get("/")).status == 200
    assert session.unlocked  # activity restarts the idle time
    harness.clock.now += harness.ui.config.ui_idle_lock_s
    text = await (await harness.client.get("/ids")).text()
    assert not session.unlocked
    assert "locked after a time without activity" in text
    before = await harness.snapshot()
    resp = await harness.post("/compose", {"board": "labor", "body": "too late", "action": "publish"})
    assert resp.status == 400
    assert await harness.snapshot() == before


async def test_background_sweep_locks_without_any_request(harness):
    await _alice(harness)
    session = harness.session()
    harness.clock.now += harness.ui.config.ui_idle_lock_s + 1
    harness.ui.sessions.sweep()
    assert not session.unlocked and session.active is None


async def test_export_is_the_encrypted_key_file(harness):
    await _alice(harness)
    fp = harness.session().active
    resp = await harness.post("/ids/export", {"fp": fp})
    assert resp.status == 200
    assert resp.headers["Content-Disposition"] == f'attachment; filename="{fp}.dzbkey"'
    data = await resp.read()
    assert data == (harness.data.keys / f"{fp}.dzbkey").read_bytes()
    assert data[:4] == b"DZBK"


async def test_sessions_do_not_share_unlocked_keys(harness, aiohttp_client):
    await _alice(harness)
    other = await aiohttp_client(harness.client.server)
    page = await (await other.get("/ids")).text()
    assert "No pseudonym unlocked." in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    before = await harness.snapshot()
    resp = await other.post("/compose", data={"csrf_token": token, "board": "labor", "body": "as alice?",
                                              "action": "publish"}, allow_redirects=False)
    assert resp.status == 400
    assert await harness.snapshot() == before

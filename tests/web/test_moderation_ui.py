"""Moderation in the member UI and the public view, over real HTTP and a real store
(docs/web-ui.md, "Moderation"; docs/moderation.md).

A post hidden by a followed moderator is shown collapsed with who hid it and why, on every page
that lists it, and can be revealed without a script; a member leaves a moderator, follows a
key's moderation, adopts a charter, signs and undoes statements, each in one form that is
refused without its CSRF token and writes nothing on bad input.
"""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from dazibao.node.store import Store
from dazibao.node.web.public import make_public_app
from dazibao.protocol import identity, posts
from dazibao.protocol.moderation import KIND_MODERATION, create_charter, create_statement

from .conftest import PASSPHRASE, key

BOARD = "labor"
#: A moderator's key, its published name, and a stranger whose post it hides.
MOD, MOD_NAME = key(5), "ming<b>"
STRANGER = key(7)


def _errors(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="error" role="alert">([^<]*)</p>', page)]


def _fp(k: identity.SigningKey) -> str:
    return identity.fingerprint(k.public_key)


async def _pseudonym(h, name: str = "alice", board: str = BOARD) -> str:
    """Create and unlock a pseudonym; returns its fingerprint (it becomes the active one)."""
    resp = await h.post("/ids/new", {"name": name, "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE,
                                     "board": board})
    assert resp.status == 303, await resp.text()
    return h.session().active


async def _ingest(h, batch: list[posts.Post]) -> None:
    report = await h.core.ingest_checked(batch, "http://peer.test:7470")
    assert [p.id for p in report.accepted] == [p.id for p in batch], report.rejected


async def _seed(h) -> dict:
    """A thread by a stranger with a reply, the moderator's profile, and its hide of the root."""
    now = h.core.now_ms()
    root = posts.create_post(STRANGER, kind="post", board=BOARD, body="Cheap watches\n\nbuy now 低价手表",
                             created_at_ms=now - 5_000)
    reply = posts.create_post(key(8), kind="reply", board=BOARD, body="an honest reply", created_at_ms=now - 4_000,
                              parent=root.id)
    profile = posts.create_post(MOD, kind="profile", board=BOARD, body=MOD_NAME, created_at_ms=now - 3_000)
    hide = create_statement(MOD, board=BOARD, action="hide", subject="post", target=root.id, reason="spam",
                            created_at_ms=now - 2_000)
    await _ingest(h, [root, reply, profile, hide])
    await h.core.db.call(Store.update_search_index, 10_000)
    return {"root": root, "reply": reply, "hide": hide}


async def _follow(h, k: identity.SigningKey = MOD, board: str = BOARD) -> None:
    await h.core.db.call(Store.add_moderator, board, k.public_key, source="ui", now_ms=h.core.now_ms())


async def _page(h, path: str, lang: str = "en") -> str:
    resp = await h.client.get(path, headers={"Accept-Language": lang})
    assert resp.status == 200, (path, resp.status)
    return await resp.text()


async def _moderators(h, board: str | None = None) -> list[tuple[str, bytes, str]]:
    rows = await h.core.db.call(Store.moderators, board)
    return sorted((r.board, r.key, r.source) for r in rows)


async def _state(h) -> tuple:
    """Everything a moderation form could change: the harness's snapshot and the followed moderators."""
    return await h.snapshot(), await _moderators(h)


def _hidden_by(text: str) -> list[str]:
    """The "hidden by" lines of a page, as text."""
    return [re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", m))).strip()
            for m in re.findall(r'<ul class="hidden-by">(.*?)</ul>', text, re.S)]


# --- showing hidden posts ----------------------------------------------------------------------


async def test_hidden_post_says_who_and_why_and_can_be_revealed_everywhere(harness):
    s = await _seed(harness)
    root = s["root"].id.hex()
    pages = [f"/b/{BOARD}", f"/p/{root}", "/search?q=watches", f"/a/{STRANGER.public_key.hex()}"]
    # Not followed yet: the statement has no effect here.
    for path in pages:
        assert not _hidden_by(await _page(harness, path)), path
    await _follow(harness)
    for path in pages:
        text = await _page(harness, path)
        lines = _hidden_by(text)
        assert len(lines) == 1, (path, lines)
        assert lines[0].startswith("Hidden by ming<b> · " + _fp(MOD) + " (spam)"), (path, lines)
        assert "ming&lt;b&gt;" in text and "ming<b>" not in text  # escaped, never markup
        # The content is still on the page, inside a <details> the member opens (no script needed).
        reveal = re.search(r'<details class="reveal">(.*?)</details>', text, re.S)
        assert reveal and ("Cheap watches" in reveal.group(1) or "watches" in reveal.group(1)), path
        assert "Leave this moderator" in text, path
    # The thread's title is not put in the window title of a hidden post.
    text = await _page(harness, f"/p/{root}")
    assert "<title>dazibao</title>" in text
    # The reply (not hidden) is shown as usual.
    assert "an honest reply" in text and len(_hidden_by(text)) == 1
    # In Chinese too, with the reason's label translated.
    text = await _page(harness, f"/p/{root}", lang="zh-Hans")
    assert "垃圾信息" in " ".join(_hidden_by(text))


async def test_an_author_hide_covers_their_posts_and_unknown_reasons_show_as_codes(harness):
    s = await _seed(harness)
    await _follow(harness)
    hide_author = create_statement(MOD, board=BOARD, action="hide", subject="author", target=key(8).public_key,
                                   reason="weird_code", created_at_ms=harness.core.now_ms())
    await _ingest(harness, [hide_author])
    text = await _page(harness, f"/p/{s['root'].id.hex()}")
    lines = _hidden_by(text)
    assert len(lines) == 2
    assert any("(weird_code)" in line and "every post by this author" in line for line in lines), lines
    text = await _page(harness, f"/a/{key(8).public_key.hex()}")
    assert "weird_code" in text and "What the moderators this node follows say about this author" in text


async def test_public_view_keeps_hidden_posts_collapsed_without_forms(harness, aiohttp_client):
    s = await _seed(harness)
    await _follow(harness)
    config = dataclasses.replace(harness.ui.config, public_view_listen="127.0.0.1:0")
    public = await aiohttp_client(make_public_app(harness.core, config))
    for path in [f"/b/{BOARD}", f"/p/{s['root'].id.hex()}", "/search?q=watches",
                 f"/a/{STRANGER.public_key.hex()}"]:
        resp = await public.get(path)
        text = await resp.text()
        assert resp.status == 200, path
        lines = _hidden_by(text)
        assert len(lines) == 1 and lines[0].startswith("Hidden by ming<b> · " + _fp(MOD) + " (spam)"), path
        assert '<details class="reveal">' in text
        assert 'method="post"' not in text and "/moderat" not in text and "Leave" not in text, path
    resp = await public.get(f"/p/{s['root'].id.hex()}/moderate")
    assert resp.status == 404


async def test_live_updates_do_not_add_a_hidden_post_silently(harness):
    await _seed(harness)
    await _follow(harness)
    page = await _page(harness, f"/b/{BOARD}")
    cursor = re.search(r'data-cursor="([^"]+)"', page).group(1)
    now = harness.core.now_ms()
    spam = posts.create_post(STRANGER, kind="post", board=BOARD, body="more watches", created_at_ms=now)
    hide = create_statement(MOD, board=BOARD, action="hide", subject="author", target=STRANGER.public_key,
                            reason="spam", created_at_ms=now)
    await _ingest(harness, [hide, spam])
    data = await (await harness.client.get(f"/api/updates?board={BOARD}&after={cursor}")).json()
    assert data["reload"] is True and data["items"] == []


# --- following and leaving ----------------------------------------------------------------------


async def test_leave_removes_the_moderator_and_its_hides(harness):
    s = await _seed(harness)
    await _follow(harness)
    board_page = await _page(harness, f"/b/{BOARD}")
    assert "Moderation on this board:" in board_page and _fp(MOD) in board_page
    resp = await harness.post("/moderators/leave", {"board": BOARD, "key": MOD.public_key.hex(),
                                                    "next": f"/p/{s['root'].id.hex()}"})
    assert resp.status == 303 and resp.headers["Location"] == f"/p/{s['root'].id.hex()}"
    assert await _moderators(harness) == []
    text = await _page(harness, f"/p/{s['root'].id.hex()}")
    assert not _hidden_by(text)
    assert "You left ming&lt;b&gt;" in text  # the notice after the redirect
    assert "Cheap watches" in text


async def test_leaving_a_moderator_of_the_config_file_says_where_it_comes_from(harness):
    await _seed(harness)
    await harness.core.db.call(Store.add_moderator, BOARD, MOD.public_key, source="config",
                               now_ms=harness.core.now_ms())
    page = await _page(harness, f"/b/{BOARD}")
    assert "(set in config.toml)" in page
    resp = await harness.post("/moderators/leave", {"board": BOARD, "key": MOD.public_key.hex()})
    assert resp.status == 303 and resp.headers["Location"] == f"/b/{BOARD}"
    assert await _moderators(harness) == []
    text = await _page(harness, f"/b/{BOARD}")
    assert "remove it there too" in text


async def test_follow_a_key_from_its_author_page(harness):
    await _seed(harness)
    page = await _page(harness, f"/a/{MOD.public_key.hex()}")
    assert 'action="/moderators/add"' in page and "Use this key's moderation on this board" in page
    resp = await harness.post("/moderators/add", {"board": BOARD, "key": MOD.public_key.hex(),
                                                  "next": f"/a/{MOD.public_key.hex()}"})
    assert resp.status == 303
    assert await _moderators(harness) == [(BOARD, MOD.public_key, "ui")]
    page = await _page(harness, f"/a/{MOD.public_key.hex()}")
    assert "You now follow ming&lt;b&gt;" in page
    assert "This node follows this key's moderation on:" in page
    # Again: nothing changes, and the member is told.
    before = await _state(harness)
    resp = await harness.post("/moderators/add", {"board": BOARD, "key": MOD.public_key.hex()})
    assert resp.status == 303 and await _state(harness) == before


async def test_status_page_lists_moderators_with_leave_and_refusals(harness):
    await _seed(harness)
    await _follow(harness)
    text = await _page(harness, "/status")
    assert "Moderation" in text and _fp(MOD) in text and 'action="/moderators/leave"' in text
    assert "Posts refused and remembered" in text


async def test_adopt_a_charter_from_the_board_page(harness):
    now = harness.core.now_ms()
    opener, m1, m2 = key(1), key(2), key(3)
    first = posts.create_post(opener, kind="post", board="news", body="first post", created_at_ms=now - 10_000)
    charter = create_charter(opener, board="news", moderators=[m1.public_key, m2.public_key],
                             description="Be kind.\n<script>x</script>", created_at_ms=now - 5_000)
    await _ingest(harness, [first, charter])
    await _follow(harness, m1, "news")
    page = await _page(harness, "/b/news")
    assert "This board's charter suggests moderators" in page
    assert opener.public_key.hex() in page and m2.public_key.hex() in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x" not in page
    assert "Adopt these moderators" in page
    resp = await harness.post("/moderators/adopt", {"board": "news", "next": "/b/news"})
    assert resp.status == 303
    found = await _moderators(harness, "news")
    assert {(k, src) for _, k, src in found} == {(m1.public_key, "ui"), (m2.public_key, "charter")}
    page = await _page(harness, "/b/news")
    assert "Adopt these moderators" not in page  # every suggestion is followed now
    assert "from the board's charter" in html.unescape(page)  # where each key came from


# --- signing and undoing statements --------------------------------------------------------------


async def test_moderation_form_signs_under_the_chosen_pseudonym_after_confirming(harness):
    s = await _seed(harness)
    alice = await _pseudonym(harness, "alice")
    bob = await _pseudonym(harness, "bob")
    root = s["root"].id.hex()
    thread = await _page(harness, f"/p/{root}")
    assert f'href="/p/{root}/moderate"' in thread
    page = await _page(harness, f"/p/{root}/moderate")
    assert 'name="reason"' in page and "Publish as" in page and alice in page and bob in page
    fields = {"subject": "post", "action": "hide", "reason": "flood", "expires": "7", "as": alice}
    before = await _state(harness)
    resp = await harness.post(f"/p/{root}/moderate", {**fields, "step": "review"})
    assert resp.status == 200
    text = await resp.text()
    assert "Publish this statement?" in text and "public and signed" in text
    assert re.search(r"Publishing as .*alice.*" + alice, text, re.S)
    assert await _state(harness) == before  # the review writes nothing
    resp = await harness.post(f"/p/{root}/moderate", {**fields, "step": "sign"})
    assert resp.status == 303, await resp.text()
    rows = await harness.core.db.call(Store.list_posts, BOARD, 100, kinds=[KIND_MODERATION])
    mine = [r for r in rows if r.author != MOD.public_key]
    assert len(mine) == 1 and mine[0].parent == s["root"].id
    alice_key = harness.session().unlocked[alice].pseudonym.public_key
    assert mine[0].author == alice_key and mine[0].body.startswith("hide post flood ")
    # Its own pseudonyms' statements always apply on this node: the post is now hidden by alice.
    text = await _page(harness, resp.headers["Location"].split("#")[0])
    lines = _hidden_by(text)
    assert len(lines) == 1 and lines[0].startswith(f"Hidden by alice · {alice} you (flooding)"), lines


async def test_undo_withdraws_ones_own_statement(harness):
    s = await _seed(harness)
    alice = await _pseudonym(harness, "alice")
    root = s["root"].id.hex()
    fields = {"subject": "author", "action": "hide", "reason": "provocation", "expires": "", "as": alice,
              "step": "sign"}
    assert (await harness.post(f"/p/{root}/moderate", fields)).status == 303
    assert _hidden_by(await _page(harness, f"/p/{root}"))
    page = await _page(harness, f"/p/{root}/moderate")
    assert "Your statements about this post and its author" in page
    statement = re.search(r'name="statement" value="([0-9a-f]{64})"', page).group(1)
    before = await _state(harness)
    resp = await harness.post("/moderation/undo", {"statement": statement, "step": "review",
                                                   "next": f"/p/{root}/moderate"})
    assert resp.status == 200 and "Undo this statement?" in await resp.text()
    assert await _state(harness) == before
    resp = await harness.post("/moderation/undo", {"statement": statement, "step": "sign",
                                                   "next": f"/p/{root}/moderate"})
    assert resp.status == 303 and resp.headers["Location"] == f"/p/{root}/moderate"
    assert await harness.core.db.call(Store.get, bytes.fromhex(statement)) is None
    assert not _hidden_by(await _page(harness, f"/p/{root}"))


async def test_block_removes_the_post_and_goes_back_to_the_board(harness):
    s = await _seed(harness)
    alice = await _pseudonym(harness, "alice")
    reply = s["reply"].id.hex()
    fields = {"subject": "post", "action": "block", "reason": "abuse", "expires": "", "as": alice, "step": "sign"}
    resp = await harness.post(f"/p/{reply}/moderate", fields)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/p/{s['root'].id.hex()}"
    assert await harness.core.db.call(Store.get, s["reply"].id) is None


async def test_someone_elses_statement_cannot_be_undone(harness):
    s = await _seed(harness)
    await _pseudonym(harness, "alice")
    before = await _state(harness)
    resp = await harness.post("/moderation/undo", {"statement": s["hide"].id.hex(), "step": "sign"})
    assert resp.status == 403
    assert "your own pseudonyms" in " ".join(_errors(await resp.text()))
    assert await _state(harness) == before


# --- refused and bad requests --------------------------------------------------------------------


async def _forms(h) -> list[tuple[str, dict]]:
    s = await _seed(h)
    fp = await _pseudonym(h, "alice")
    await _follow(h)
    now = h.core.now_ms()
    own = create_statement(h.session().unlocked[fp].key, board=BOARD, action="vouch", subject="author",
                           target=key(8).public_key, reason="trusted", created_at_ms=now)
    await _ingest(h, [own])
    root = s["root"].id.hex()
    return [
        ("/moderators/leave", {"board": BOARD, "key": MOD.public_key.hex()}),
        ("/moderators/add", {"board": BOARD, "key": key(9).public_key.hex()}),
        (f"/p/{root}/moderate", {"subject": "post", "action": "hide", "reason": "spam", "as": fp, "step": "sign"}),
        ("/moderation/undo", {"statement": own.id.hex(), "step": "sign"}),
    ]


@pytest.mark.parametrize("attack", ["no_token", "wrong_token", "foreign_origin"])
async def test_forms_without_a_valid_token_are_refused_and_change_nothing(harness, attack):
    forms = await _forms(harness)
    for path, fields in forms:
        before = await _state(harness)
        if attack == "no_token":
            resp = await harness.post(path, fields, token=None)
        elif attack == "wrong_token":
            resp = await harness.post(path, fields, token="A" * 43)
        else:
            resp = await harness.post(path, fields, headers={"Origin": "http://evil.example"})
        assert resp.status == 403, (path, attack)
        assert "Request refused" in await resp.text()
        assert await _state(harness) == before, (path, attack)
    # The same forms, genuine, each change something.
    for path, fields in forms:
        before = await _state(harness)
        resp = await harness.post(path, fields)
        assert resp.status == 303, (path, await resp.text())
        assert await _state(harness) != before, path


async def test_adopt_is_refused_without_a_token(harness):
    now = harness.core.now_ms()
    first = posts.create_post(key(1), kind="post", board="news", body="first", created_at_ms=now - 10)
    charter = create_charter(key(1), board="news", moderators=[key(2).public_key], created_at_ms=now)
    await _ingest(harness, [first, charter])
    before = await _state(harness)
    resp = await harness.post("/moderators/adopt", {"board": "news"}, token=None)
    assert resp.status == 403 and await _state(harness) == before


BAD = [
    # (path template, fields, status, English, Chinese)
    ("/moderators/leave", {"board": BOARD, "key": "zz"}, 400, "not an author's public key", "不是作者的公钥"),
    ("/moderators/add", {"board": BOARD, "key": "ab" * 31}, 400, "not an author's public key", "不是作者的公钥"),
    ("/moderators/add", {"board": "", "key": "ab" * 32}, 400, "board name is not allowed", "版块名不可用"),
    ("/moderators/add", {"board": "elsewhere", "key": "ab" * 32}, 400, "does not carry elsewhere",
     "本节点没有保存和同步 elsewhere"),
    ("/moderators/adopt", {"board": "elsewhere"}, 400, "does not carry elsewhere", "本节点没有保存和同步 elsewhere"),
    ("/moderators/adopt", {"board": BOARD}, 400, "has no charter", "没有"),
    ("/p/{root}/moderate", {"subject": "post", "action": "hide", "reason": "bogus", "step": "sign"}, 400,
     "Choose one of the reasons", "请从列表中选择一个理由"),
    ("/p/{root}/moderate", {"subject": "post", "action": "vouch", "reason": "trusted", "step": "sign"}, 400,
     "Only an author can be vouched for", "只能为作者担保"),
    ("/p/{root}/moderate", {"subject": "board", "action": "nuke", "reason": "spam", "step": "sign"}, 400,
     "Choose an action", "请选择一个操作"),
    ("/p/{root}/moderate", {"subject": "post", "action": "hide", "reason": "spam", "expires": "-3",
                            "step": "sign"}, 400, "number of days from 1 to 3650", "1 到 3650"),
    ("/p/{root}/moderate", {"subject": "post", "action": "hide", "reason": "spam", "expires": "99999",
                            "step": "review"}, 400, "number of days from 1 to 3650", "1 到 3650"),
    ("/p/{root}/moderate", {"subject": "post", "action": "hide", "reason": "spam", "as": "nobody",
                            "step": "sign"}, 400, "Unlock a pseudonym first", "请先在“化名”页面解锁"),
    ("/p/{missing}/moderate", {"subject": "post", "action": "hide", "reason": "spam", "step": "sign"}, 404,
     "not on this node", "不在本节点上"),
    ("/moderation/undo", {"statement": "xyz", "step": "sign"}, 400, "not a statement id", "不是声明编号"),
    ("/moderation/undo", {"statement": "cd" * 32, "step": "sign"}, 404, "not on this node", "不在本节点上"),
]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
async def test_bad_input_is_explained_and_writes_nothing(harness, lang):
    s = await _seed(harness)
    await _pseudonym(harness, "alice")
    await harness.core.set_boards([BOARD])
    for path, fields, status, english, chinese in BAD:
        path = path.format(root=s["root"].id.hex(), missing="ef" * 32)
        before = await _state(harness)
        resp = await harness.post(path, fields, lang=lang)
        assert resp.status == status, (path, fields, resp.status)
        errors = " ".join(_errors(await resp.text()))
        assert (english if lang == "en" else chinese) in errors, (path, fields, errors)
        assert await _state(harness) == before, (path, fields)


async def test_moderating_a_board_not_carried_is_refused(harness):
    s = await _seed(harness)
    fp = await _pseudonym(harness, "alice", board="news")
    await harness.core.set_boards(["news"])
    before = await _state(harness)
    resp = await harness.post(f"/p/{s['root'].id.hex()}/moderate", {"subject": "post", "action": "hide",
                                                                    "reason": "spam", "as": fp, "step": "sign"})
    assert resp.status == 400
    assert "does not carry labor" in " ".join(_errors(await resp.text()))
    assert await _state(harness) == before


async def test_moderate_page_without_an_unlocked_pseudonym_offers_no_form(harness):
    s = await _seed(harness)
    thread = await _page(harness, f"/p/{s['root'].id.hex()}")
    assert "/moderate" not in thread
    page = await _page(harness, f"/p/{s['root'].id.hex()}/moderate")
    assert "Unlock a pseudonym first" in page and 'name="reason"' not in page

"""Signer clarity, drafts and hiding authors, through the member UI's HTTP forms (in process).

- every writing form says "Publishing as NAME · fingerprint" next to its button; the reply form
  defaults to the pseudonym the member last used in the thread, and publishing under another
  one asks to confirm first (it links the two pseudonyms publicly);
- drafts are kept in the session (memory only); a resubmitted form, or one shown before the
  idle lock, is shown again with its text instead of being published;
- hiding an author hides their posts only, is local to the node, is confirmed first, and is
  refused for one's own pseudonyms.
"""

from __future__ import annotations

import html
import re

from dazibao.node.store import Store
from dazibao.node.web.authors import fingerprint
from dazibao.protocol import posts

from .conftest import PASSPHRASE, key


async def _new_id(h, name: str, board: str = "labor") -> str:
    resp = await h.post("/ids/new", {"name": name, "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE,
                                     "board": board})
    assert resp.status == 303, await resp.text()
    return next(fp for fp, u in h.session().unlocked.items() if u.pseudonym.name == name)


async def _stranger_thread(h, board: str = "labor") -> posts.Post:
    root = posts.create_post(key(9), kind="post", board=board, body="a stranger asks", created_at_ms=h.core.now_ms())
    await h.core.ingest_checked([root], "http://peer.test:7470")
    return root


async def _page(h, path: str) -> str:
    resp = await h.client.get(path)
    assert resp.status == 200, path
    return await resp.text()


def _form_token(text: str) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', text)
    assert match, text
    return match.group(1)


def _selected(text: str) -> str:
    match = re.search(r'<option value="([^"]+)" selected>', text)
    assert match, text
    return match.group(1)


async def _replies(h, root: posts.Post) -> list:
    return await h.core.db.call(Store.replies, root.id)


# --- signer clarity ----------------------------------------------------------------------------


async def test_every_writing_form_says_who_publishes(harness):
    fp = await _new_id(harness, "alice")
    root = await _stranger_thread(harness)
    for path in ("/b/labor", f"/p/{root.id.hex()}", "/compose?board=labor"):
        text = await _page(harness, path)
        assert re.search(r'class="publishing-as">Publishing as <bdi class="name">alice</bdi>.*' + fp, text), path
    zh = await (await harness.client.get("/b/labor", headers={"Accept-Language": "zh"})).text()
    assert "发布者" in zh
    await _new_id(harness, "bob")
    text = await _page(harness, f"/p/{root.id.hex()}")
    assert 'class="publishing-as">Publishing as' in text and "alice · " + fp in text


async def test_reply_form_defaults_to_the_pseudonym_used_in_the_thread_and_confirms_another(harness):
    alice = await _new_id(harness, "alice")
    bob = await _new_id(harness, "bob")
    assert (await harness.post("/ids/use", {"fp": alice})).status == 303
    assert harness.session().active == alice
    root = await _stranger_thread(harness)
    thread = f"/p/{root.id.hex()}"
    assert _selected(await _page(harness, thread)) == alice  # nothing posted here yet: the active one

    resp = await harness.post("/compose", {"parent": root.id.hex(), "body": "as bob", "as": bob, "action": "publish"})
    assert resp.status == 303
    text = await _page(harness, thread)
    assert _selected(text) == bob
    assert "In this thread you last posted as" in text

    # Alice in the same thread: a confirmation page, nothing published yet.
    before = await harness.snapshot()
    resp = await harness.post("/compose", {"parent": root.id.hex(), "body": "as alice", "as": alice,
                                           "action": "publish", "form_token": _form_token(text)})
    assert resp.status == 200
    page = html.unescape(await resp.text())
    assert "Publish under another pseudonym?" in page and "links them publicly" in page
    assert f"Publish as alice ({alice})" in page and f"Publish as bob ({bob}) instead" in page
    assert await harness.snapshot() == before
    zh = await harness.post("/compose", {"parent": root.id.hex(), "body": "as alice", "as": alice,
                                         "action": "publish"}, lang="zh")
    assert "换一个化名发布" in await zh.text()

    # Confirmed: published as alice.
    resp = await harness.post("/compose", {"parent": root.id.hex(), "body": "as alice", "as": alice,
                                           "confirm_signer": alice, "action": "publish"})
    assert resp.status == 303
    authors = [fingerprint(r.author) for r in await _replies(harness, root)]
    assert authors == [bob, alice]
    assert _selected(await _page(harness, thread)) == alice  # the latest one used here now


# --- drafts and resubmissions --------------------------------------------------------------------


async def test_a_draft_is_kept_by_form_and_dropped_once_published(harness):
    await _new_id(harness, "alice")
    root = await _stranger_thread(harness)
    resp = await harness.post("/compose", {"board": "labor", "body": "draft <b>one</b>", "action": "preview"})
    assert resp.status == 200
    assert "draft &lt;b&gt;one&lt;/b&gt;</textarea>" in await _page(harness, "/b/labor")
    assert "<details class=\"new-post\" open>" in await _page(harness, "/b/labor")
    assert "draft &lt;b&gt;one" not in await _page(harness, f"/p/{root.id.hex()}")  # another form
    assert "draft &lt;b&gt;one" in await _page(harness, "/compose?board=labor")
    resp = await harness.post("/compose", {"board": "labor", "body": "draft <b>one</b>", "action": "publish"})
    assert resp.status == 303
    assert "draft &lt;b&gt;one&lt;/b&gt;</textarea>" not in await _page(harness, "/b/labor")


async def test_a_resubmitted_form_is_shown_again_not_published(harness):
    await _new_id(harness, "alice")
    token = _form_token(await _page(harness, "/b/labor"))
    fields = {"board": "labor", "body": "only once", "action": "publish", "form_token": token}
    assert (await harness.post("/compose", fields)).status == 303
    before = await harness.snapshot()
    resp = await harness.post("/compose", fields)  # the browser's "resubmit the form"
    assert resp.status == 409
    text = await resp.text()
    assert "Nothing was published" in text and "only once</textarea>" in text
    assert await harness.snapshot() == before
    resp = await harness.post("/compose", {**fields, "form_token": _form_token(text)})  # the member decides
    assert resp.status == 303


async def test_after_the_idle_lock_the_draft_waits_and_unlocking_leads_back_to_it(harness):
    fp = await _new_id(harness, "alice")
    root = await _stranger_thread(harness)
    thread = f"/p/{root.id.hex()}"
    token = _form_token(await _page(harness, thread))
    harness.clock.now += harness.ui.config.ui_idle_lock_s + 1
    before = await harness.snapshot()
    fields = {"parent": root.id.hex(), "body": "written before the lock", "action": "publish", "form_token": token}
    resp = await harness.post("/compose", fields)
    assert resp.status == 400
    text = await resp.text()
    assert "kept as a draft" in text
    unlock = re.search(r'class="notice draft-kept">[^<]*<a href="(/ids\?next=[^"]+)"', text).group(1)
    assert (await harness.snapshot())[:3] == before[:3]  # nothing stored (the keys were locked)

    # Unlock from the link: back to the thread, the draft in its reply form.
    ids = await _page(harness, html.unescape(unlock))
    assert f'name="next" value="{thread}#reply"' in ids
    resp = await harness.post("/ids/unlock", {"fp": fp, "passphrase": PASSPHRASE, "next": f"{thread}#reply"})
    assert resp.status == 303 and resp.headers["Location"] == f"{thread}#reply"
    assert "written before the lock</textarea>" in await _page(harness, thread)

    # The browser resubmits the form it sent before the lock: shown, not published.
    resp = await harness.post("/compose", fields)
    assert resp.status == 409
    assert "written before the lock</textarea>" in await resp.text()
    assert await _replies(harness, root) == []


# --- hiding an author ------------------------------------------------------------------------------


async def test_hiding_an_author_asks_first_says_it_is_local_and_hides_only_their_posts(harness):
    await _new_id(harness, "alice")
    root = await _stranger_thread(harness)
    resp = await harness.post("/compose", {"parent": root.id.hex(), "body": "my answer", "action": "publish"})
    assert resp.status == 303
    other = posts.create_post(key(8), kind="reply", board="labor", body="another answer", parent=root.id,
                              created_at_ms=harness.core.now_ms() + 1)
    lonely = posts.create_post(key(9), kind="post", board="labor", body="nobody answered this",
                               created_at_ms=harness.core.now_ms() + 2)
    await harness.core.ingest_checked([other, lonely], "http://peer.test:7470")
    stranger = key(9).public_key.hex()

    # The thread's button leads to a confirmation page; nothing is hidden before it is confirmed.
    thread = await _page(harness, f"/p/{root.id.hex()}")
    assert 'action="/authors/hide"' in thread and 'method="get" action="/authors/hide"' in thread
    before = await harness.snapshot()
    page = await _page(harness, f"/authors/hide?author={stranger}&next=/b/labor")
    assert "Hide this author?" in page and "local to this node" in page
    zh = await (await harness.client.get(f"/authors/hide?author={stranger}", headers={"Accept-Language": "zh"})).text()
    assert "只在本节点生效" in zh
    resp = await harness.post("/authors/hide", {"author": stranger})
    assert resp.status == 200 and "local to this node" in await resp.text()
    assert await harness.snapshot() == before

    resp = await harness.post("/authors/hide", {"author": stranger, "confirm": "1", "next": "/b/labor"})
    assert resp.status == 303
    # The thread stays, without the hidden author's post, with the others' replies.
    thread = await _page(harness, f"/p/{root.id.hex()}")
    assert "a stranger asks" not in thread
    assert "my answer" in thread and "another answer" in thread
    board = await _page(harness, "/b/labor")
    assert "A post by an author you hid" in board and "a stranger asks" not in board
    assert "nobody answered this" not in board and "1 post by a hidden author is not shown." in board


async def test_own_pseudonyms_cannot_be_hidden(harness):
    fp = await _new_id(harness, "alice")
    mine = harness.session().unlocked[fp].pseudonym.public_key.hex()
    before = await harness.snapshot()
    for fields in ({"author": mine}, {"author": mine, "confirm": "1"}):
        resp = await harness.post("/authors/hide", fields)
        assert resp.status == 400
        assert "one of your own pseudonyms" in await resp.text()
    resp = await harness.client.get(f"/authors/hide?author={mine}")
    assert resp.status == 400
    assert await harness.snapshot() == before
    assert 'action="/authors/hide"' not in await _page(harness, f"/a/{mine}")

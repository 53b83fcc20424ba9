"""Member flows of the web UI over HTTP, against an in-process UI on a real store: peers added
and removed, key files imported and pseudonyms removed, a post form sent after a restart, and
the replies and last-visit marks kept in the store (node/store/marks.py), with their query
plans.  The same flows in a real browser are in test_member_flows_browser.py."""

from __future__ import annotations

import asyncio
import html
import os
import re
from dataclasses import replace

import aiohttp
import pytest

from dazibao.node.config import DataDir, load_config
from dazibao.node.keys import KeyStore
from dazibao.node.service import NodeCore
from dazibao.node.store import StorageFullError, Store
from dazibao.node.web import make_ui_app
from dazibao.protocol import identity, limits, posts

from .conftest import FAST_KDF, PASSPHRASE, T0_MS, key


def _errors(text: str) -> list[str]:
    return [html.unescape(e) for e in re.findall(r'<p class="error" role="alert">(.*?)</p>', text, re.S)]


async def _alice(h) -> str:
    resp = await h.post("/ids/new", {"name": "alice", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE})
    assert resp.status == 303
    return h.session().active


async def _peers(h) -> list[tuple[str, str]]:
    return [(p.url, p.source) for p in await h.core.db.call(Store.list_peers)]


# --- peers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, english, chinese", [
    ("", "Type the peer's address", "请输入其他节点的地址"),
    ("ftp://127.0.0.1:7470", "not a peer address this node can use", "不是本节点可用的节点地址"),
    ("http://", "not a peer address this node can use", "不是本节点可用的节点地址"),
    ("http://127.0.0.1:7470/path?q", "not a peer address this node can use", "不是本节点可用的节点地址"),
    ("http://" + "a" * 2_100 + ":1", "too long", "太长"),
])
@pytest.mark.parametrize("lang", ["en", "zh-Hans"])
async def test_a_bad_peer_address_is_explained_and_writes_nothing(harness, url, english, chinese, lang):
    before = await harness.snapshot()
    resp = await harness.post("/peers/add", {"url": url}, lang=lang)
    assert resp.status == 400
    assert (english if lang == "en" else chinese) in " ".join(_errors(await resp.text()))
    assert await harness.snapshot() == before
    assert await _peers(harness) == []


async def test_peers_are_added_and_removed_as_the_command_line_does(harness):
    resp = await harness.post("/peers/add", {"url": " HTTP://127.0.0.1:7470/ "})
    assert resp.status == 303 and resp.headers["Location"] == "/peers"
    assert await _peers(harness) == [("http://127.0.0.1:7470", "cli")]
    page = await (await harness.client.get("/peers")).text()
    assert "Peer http://127.0.0.1:7470 added" in page and 'action="/peers/remove"' in page
    resp = await harness.post("/peers/add", {"url": "http://127.0.0.1:7470"})
    assert "already a peer" in await (await harness.client.get("/peers")).text()
    resp = await harness.post("/peers/remove", {"url": "http://127.0.0.1:7471"})
    assert resp.status == 400 and "is not a peer of this node" in " ".join(_errors(await resp.text()))
    # A peer of config.toml comes back at the next start: it is removed there, not here.
    harness.ui.config = replace(harness.ui.config, peers=("http://127.0.0.1:7470",))
    resp = await harness.post("/peers/remove", {"url": "http://127.0.0.1:7470"})
    assert resp.status == 400 and "config.toml" in " ".join(_errors(await resp.text()))
    harness.ui.config = replace(harness.ui.config, peers=())
    resp = await harness.post("/peers/remove", {"url": "http://127.0.0.1:7470"})
    assert resp.status == 303
    assert await _peers(harness) == []


async def test_sync_now_without_peers_is_explained(harness):
    resp = await harness.post("/peers/sync", {})
    assert resp.status == 400 and "Add a peer first" in " ".join(_errors(await resp.text()))


async def test_the_empty_node_shows_first_steps_and_no_command(harness):
    text = await (await harness.client.get("/")).text()
    assert 'class="first-steps' in text and 'href="/peers"' in text and 'href="/welcome"' in text
    assert "dazibao peers add" not in text and "`" not in text
    welcome = await (await harness.client.get("/welcome")).text()
    for fragment in ("public and permanent", "which boards this node follows", "header shows its pseudonym",
                     "cannot tell whether this node wrote it"):  # origin privacy (stem) is on by default
        assert fragment in welcome
    harness.ui.config = replace(harness.ui.config, stem=False)
    welcome = await (await harness.client.get("/welcome")).text()
    assert "first sent out by this node" in welcome and "cannot tell" not in welcome
    status = await (await harness.client.get("/status")).text()
    assert "dazibao peers add" not in status


# --- key files ------------------------------------------------------------------------------------


def _key_file(seed: int, name: str, passphrase: str = PASSPHRASE) -> bytes:
    return identity.seal_key_file(key(seed), name, passphrase, os.urandom, FAST_KDF)


async def _import(h, data: bytes, passphrase: str, *, token: str | None = None, headers: dict | None = None):
    form = aiohttp.FormData()
    form.add_field("csrf_token", token if token is not None else await h.token())
    form.add_field("passphrase", passphrase)
    form.add_field("keyfile", data, filename="backup.dzbkey", content_type="application/octet-stream")
    return await h.client.post("/ids/import", data=form, allow_redirects=False,
                               headers={"Origin": h.origin, **(headers or {})})


async def test_a_key_file_is_imported_after_the_same_checks_as_the_command_line(harness):
    await _alice(harness)
    before = await harness.snapshot()
    for data, passphrase, fragment in [
        (_key_file(4, "bob"), "not the passphrase", "Wrong passphrase for bob"),
        (b"DZBK not a key file", PASSPHRASE, "not a dazibao key file"),
        (_key_file(4, "bob")[:-3], PASSPHRASE, "not a dazibao key file"),
        (b"", PASSPHRASE, "Choose the key file"),
        (_key_file(4, "alice"), PASSPHRASE, "called alice already exists"),
        (_key_file(4, "bob"), "", "Type the pseudonym's passphrase"),
    ]:
        resp = await _import(harness, data, passphrase)
        assert resp.status == 400, fragment
        assert fragment in " ".join(_errors(await resp.text()))
        assert await harness.snapshot() == before
    # The forms' guard: no token, another site, a form that is not multipart or urlencoded.
    for token, headers in [("", {}), ("A" * 43, {}), (None, {"Origin": "http://evil.example"}),
                           (None, {"Sec-Fetch-Site": "cross-site"}), (None, {"Sec-Fetch-Site": "same-site"})]:
        resp = await _import(harness, _key_file(4, "bob"), PASSPHRASE, token=token, headers=headers)
        assert resp.status == 403
        assert await harness.snapshot() == before

    data = _key_file(4, "bob")
    resp = await _import(harness, data, PASSPHRASE)
    assert resp.status == 303 and resp.headers["Location"] == "/ids"
    fp = identity.fingerprint(key(4).public_key)
    target = harness.data.keys / f"{fp}.dzbkey"
    assert target.read_bytes() == data and target.stat().st_mode & 0o777 == 0o600
    assert fp in harness.session().unlocked
    assert "imported and unlocked" in await (await harness.client.get("/ids")).text()
    resp = await _import(harness, _key_file(4, "robert"), PASSPHRASE)
    assert resp.status == 400 and "already on this machine, as bob" in " ".join(_errors(await resp.text()))


async def test_a_pseudonym_is_removed_only_when_its_name_is_typed(harness):
    fp = await _alice(harness)
    page = await (await harness.client.get(f"/ids/remove?fp={fp}")).text()
    assert "stay public and signed" in page and "for good" in page
    before = await harness.snapshot()
    for typed in ("", "Alice", "bob"):
        resp = await harness.post("/ids/remove", {"fp": fp, "confirm_name": typed})
        assert resp.status == 400 and "nothing was removed" in " ".join(_errors(await resp.text()))
        assert await harness.snapshot() == before
    resp = await harness.post("/ids/remove", {"fp": "no-such", "confirm_name": "alice"})
    assert resp.status == 404
    resp = await harness.post("/ids/remove", {"fp": fp, "confirm_name": " alice "})
    assert resp.status == 303
    assert not list(harness.data.keys.glob("*.dzbkey"))
    assert harness.session().unlocked == {}
    rows = await harness.core.db.call(Store.list_identities)
    assert rows == []


# --- a post form after a restart -------------------------------------------------------------------


def _thread_root() -> posts.Post:
    return posts.create_post(key(9), kind="post", board="labor", body="overtime?", created_at_ms=T0_MS)


async def _forget_session(h) -> None:
    # What a restart of the node does to the sessions: all of them are gone.
    h.ui.sessions._forget(h.session())


async def test_a_reply_sent_after_a_restart_is_kept_and_not_published(harness):
    root = _thread_root()
    await harness.core.ingest_checked([root], "http://peer.test:7470")
    fp = await _alice(harness)
    token = await harness.token(f"/p/{root.id.hex()}")
    await _forget_session(harness)
    before = await harness.snapshot()
    resp = await harness.client.post("/compose", allow_redirects=False, data={
        "csrf_token": token, "form_token": "0-old", "board": "labor", "parent": root.id.hex(),
        "body": "kept across the restart", "as": fp, "action": "publish"},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert resp.status == 303
    assert resp.headers["Location"] == f"/ids?next=%2Fp%2F{root.id.hex()}%23reply"
    assert "Set-Cookie" in resp.headers
    assert await harness.snapshot() == before  # nothing published
    ids = await (await harness.client.get(resp.headers["Location"])).text()
    assert "Nothing was published: your text is kept" in ids
    thread = await (await harness.client.get(f"/p/{root.id.hex()}")).text()
    assert "kept across the restart</textarea>" in thread


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}, {},
])
async def test_another_site_cannot_leave_a_draft(harness, headers):
    root = _thread_root()
    await harness.core.ingest_checked([root], "http://peer.test:7470")
    harness.client.session.cookie_jar.clear()
    resp = await harness.client.post("/compose", allow_redirects=False, headers=headers, data={
        "csrf_token": "x", "board": "labor", "parent": root.id.hex(), "body": "forged", "action": "publish"})
    assert resp.status == 403
    assert "Set-Cookie" not in resp.headers
    assert len(harness.ui.sessions) == 0


# --- replies to me and last-visit marks in the store --------------------------------------------------


def _post(n: int, body: str, at: int, parent: posts.Post | None = None, board: str = "labor") -> posts.Post:
    return posts.create_post(key(n), kind="reply" if parent else "post", board=board, body=body,
                             created_at_ms=at, parent=parent.id if parent else None)


def test_replies_to_me_follow_posts_and_pseudonyms_in_any_order():
    store = Store.memory()
    try:
        mine = _post(5, "mine", T0_MS)
        early = _post(9, "a reply stored before its parent", T0_MS + 1, mine)
        store.ingest([early], source=None, now_ms=T0_MS)
        store.sync_identities([("me", key(5).public_key)], now_ms=T0_MS)
        assert store.replies_to_me(10) == []
        store.ingest([mine], source=None, now_ms=T0_MS)
        assert [r.id for r in store.replies_to_me(10)] == [early.id]
        late = _post(8, "a later reply", T0_MS + 2, mine)
        own = _post(5, "my own reply", T0_MS + 3, mine)
        other = _post(7, "a reply to someone else", T0_MS + 4, _post(6, "theirs", T0_MS))
        store.ingest([late, own, other], source=None, now_ms=T0_MS)
        assert [r.id for r in store.replies_to_me(10)] == [late.id, early.id]
        assert [r.id for r in store.replies_to_me(1, (late.created_at_ms, late.id))] == [early.id]
        # A pseudonym removed from this machine: its replies go; added again: they come back.
        store.sync_identities([], now_ms=T0_MS)
        assert store.replies_to_me(10) == []
        store.sync_identities([("me", key(5).public_key)], now_ms=T0_MS)
        assert [r.id for r in store.replies_to_me(10)] == [late.id, early.id]
    finally:
        store.close()


def test_new_since_the_last_visit_counts_arrivals_not_claimed_times():
    store = Store.memory()
    try:
        root = _post(9, "root", T0_MS)
        store.ingest([root, _post(8, "old reply", T0_MS + 1, root)], source=None, now_ms=T0_MS)
        base = store.start_marks()
        store.record_visit("board", "labor", store.newest_seq(), T0_MS)
        # Backdated by its author: still new, since it arrived after the visit.
        backdated = _post(7, "backdated", T0_MS - 10_000, root)
        store.ingest([backdated, _post(6, "elsewhere", T0_MS, board="news")], source=None, now_ms=T0_MS)
        since = store.visit_marks("board", ["labor", "news"])
        assert "news" not in since
        counts = store.new_by_board({"labor": since["labor"], "news": base})
        assert counts == {"labor": 1, "news": 1}
        assert store.new_replies_by_thread({root.id: since["labor"]}) == {root.id: 1}
        store.record_visit("thread", root.id.hex(), store.newest_seq(), T0_MS)
        mark = store.visit_marks("thread", [root.id.hex()])[root.id.hex()]
        assert store.new_replies_by_thread({root.id: mark}) == {root.id: 0}
    finally:
        store.close()


def test_visit_marks_are_bounded():
    store = Store.memory()
    try:
        for i in range(limits.MAX_VISIT_MARKS + 5):
            store.record_visit("thread", f"{i:064x}", i, T0_MS + i)
        found = store.visit_marks("thread", [f"{i:064x}" for i in range(limits.MAX_VISIT_MARKS + 5)])
        assert len(found) == limits.MAX_VISIT_MARKS
        assert f"{0:064x}" not in found and f"{limits.MAX_VISIT_MARKS + 4:064x}" in found
    finally:
        store.close()


def _plan(store: Store, sql: str, params: list) -> str:
    rows = store._conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " | ".join(row[-1] for row in rows)


def test_the_marks_queries_read_indexes_not_every_post(monkeypatch):
    store = Store.memory()
    try:
        seen: list[tuple[str, list]] = []
        real = store._conn

        class Recorder:
            def __getattr__(self, name):
                return getattr(real, name)

            def execute(self, sql, params=()):
                if sql.lstrip().upper().startswith("SELECT"):
                    seen.append((sql, list(params)))
                return real.execute(sql, params)

        monkeypatch.setattr(store, "_conn", Recorder())
        store.replies_to_me(50)
        store.replies_to_me(50, (T0_MS, bytes(32)))
        store.new_by_board({"labor": 3, "news": 4})
        store.new_replies_by_thread({bytes(32): 1, bytes([1]) * 32: 2})
        store.visit_marks("board", ["labor"])
        store.newest_seq()
        store.get_many([bytes(32)])
        monkeypatch.undo()
        assert len(seen) == 7
        for sql, params in seen:
            plan = _plan(store, sql, params)
            # A full scan of posts reads "SCAN posts" (or "SCAN p"); a rowid range or an index
            # search reads "SEARCH".
            assert not re.search(r"SCAN (posts|p|r)\b(?! USING)", plan), (sql, plan)
            if "seq > ?" in sql:
                # The newest posts only, by the rowid: not every post of a board by its index.
                assert "USING INTEGER PRIMARY KEY (rowid>?)" in plan, (sql, plan)
            if "replies_to_me" in sql:
                assert "USING COVERING INDEX replies_to_me_time" in plan, (sql, plan)
    finally:
        store.close()


async def test_sync_now_shows_progress_and_reloads_itself_until_done(harness):
    # A peer that accepts the connection and says nothing, until it hangs up.
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        assert (await harness.post("/peers/add", {"url": url})).status == 303
        resp = await harness.post("/peers/sync", {})
        assert resp.status == 303 and resp.headers["Location"] == "/peers"
        page = await (await harness.client.get("/peers")).text()
        # Reloads itself (without a fragment, which a browser would not reload), no script needed.
        assert '<noscript><meta http-equiv="refresh" content="2; url=/peers"></noscript>' in page
        assert 'data-phase="connecting"' in page and 'data-url="/api/sync"' in page
        # With scripts, static/live.js follows the same lines here, in the member's language.
        live = await (await harness.client.get("/api/sync", headers={"Accept-Language": "zh-CN"})).json()
        assert live == {"running": True, "peers": [{"url": url, "phase": "connecting", "text": "正在连接…"}]}
        assert "A sync is already running" not in page
        await harness.post("/peers/sync", {})
        assert "A sync is already running" in await (await harness.client.get("/peers")).text()
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    for _ in range(100):  # bounded: the client sees the hang-up at once
        page = await (await harness.client.get("/peers")).text()
        if 'data-phase="failed"' in page and 'data-url="/api/sync"' not in page:
            break
        await asyncio.sleep(0.1)
    assert 'data-phase="failed"' in page and "unreachable" in page
    assert 'http-equiv="refresh"' not in page and 'data-url="/api/sync"' not in page
    assert (await (await harness.client.get("/api/sync")).json())["running"] is False
    rows = await harness.core.db.call(Store.list_peers)
    assert rows[0].failures == 1 and rows[0].last_error.startswith("unreachable")


async def test_a_text_too_long_to_keep_is_not_said_to_be_kept(harness):
    root = _thread_root()
    await harness.core.ingest_checked([root], "http://peer.test:7470")
    harness.client.session.cookie_jar.clear()
    resp = await harness.client.post("/compose", allow_redirects=False, headers={"Sec-Fetch-Site": "same-origin"},
                                     data={"csrf_token": "old", "board": "labor", "parent": root.id.hex(),
                                           "body": "x" * (limits.MAX_BODY_BYTES + 1), "action": "publish"})
    assert resp.status == 303
    page = await (await harness.client.get(resp.headers["Location"])).text()
    assert "too long to keep" in page and "your text is kept" not in page
    assert harness.session().drafts == {}


async def test_pages_still_show_when_the_store_is_full(tmp_path, aiohttp_client):
    """Marks are written while a page is read; a full store must not stop the reading."""
    data = DataDir(tmp_path / "node")
    data.create()
    config = load_config(data, environ={"DAZIBAO_MAX_STORE_BYTES": str(1 << 20)})
    core = NodeCore(data, config)
    await core.open()
    client = await aiohttp_client(make_ui_app(core, KeyStore(data.keys, kdf=FAST_KDF), config))
    try:
        root = _thread_root()
        await core.ingest_checked([root], None)
        filler = "x" * 16_000
        with pytest.raises(StorageFullError):
            for i in range(200):  # bounded: 200 x 16 kB is three times the cap
                await core.db.call(Store.set_meta, f"filler-{i}", filler)
        for path in ("/", "/b/labor", f"/p/{root.id.hex()}", "/replies", "/peers", "/welcome"):
            resp = await client.get(path)
            assert resp.status == 200, path
    finally:
        await client.close()
        await core.close()

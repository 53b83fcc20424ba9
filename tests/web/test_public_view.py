"""The read-only public web view of a mirror (docs/mirror.md, "A live read-only view"), over
real HTTP and a real store: it shows posts, changes nothing, has no member-only page, answers
only its own host names and carries the member UI's security headers."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from dazibao.node.config import Config, ConfigError, DataDir, load_config
from dazibao.node.keys import KeyStore
from dazibao.node.server import Node
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.node.web import UI
from dazibao.node.web.authors import HIDDEN_META
from dazibao.node.web.public import make_public_app
from dazibao.node.web.security import CONTENT_SECURITY_POLICY, public_allowed_hosts
from dazibao.protocol import posts

from .conftest import FAST_KDF, PASSPHRASE, T0_MS, key

HOSTILE = "<script>window.__pwned=1</script> <img src=x onerror=alert(1)> [x](javascript:alert(1))"
MEMBER_ONLY = ["/compose", "/compose?board=labor", "/ids", "/ids/new", "/ids/unlock", "/ids/lock", "/ids/use",
               "/ids/export", "/hidden", "/status", "/authors/hide", "/authors/unhide", "/boards/follow",
               "/boards/all", "/lang", "/b?name=labor", "/moderation/undo", "/moderators/leave", "/moderators/add",
               "/moderators/adopt"]
MEMBER_LINKS = re.compile(r'(?:href|action)="/(?:compose|ids|hidden|status|authors|boards|lang|moderat|'
                          r'p/[0-9a-f]+/(?:retract|moderate))')


class View:
    def __init__(self, client, core: NodeCore, data: DataDir, seeded: dict) -> None:
        self.client, self.core, self.data, self.seeded = client, core, data, seeded

    async def snapshot(self) -> tuple:
        def read(store: Store):
            return (sorted(r.id for r in store.list_posts(None, 100_000)), store.get_meta(HIDDEN_META),
                    store.get_meta("boards"), store.watermark())

        return await self.core.db.call(read), sorted(p.name for p in self.data.keys.glob("*"))


@pytest.fixture
async def view(tmp_path, aiohttp_client) -> View:
    data = DataDir(tmp_path / "mirror")
    data.create()
    config = load_config(data, environ={"DAZIBAO_PUBLIC_VIEW_LISTEN": "127.0.0.1:0"})
    core = NodeCore(data, config)
    await core.open()
    # A pseudonym of this machine: the public view must not say which authors are local.
    local = KeyStore(data.keys, kdf=FAST_KDF).create("operator", PASSPHRASE, bytes([9]) * 32)
    alice, mallory, operator = key(1), key(2), key(9)
    assert local.public_key == operator.public_key
    batch = [
        posts.create_post(alice, kind="profile", board="labor", body="alice", created_at_ms=T0_MS),
        root := posts.create_post(alice, kind="post", board="labor", body="Overtime pay\nhow is it counted?",
                                  created_at_ms=T0_MS + 1_000),
        reply := posts.create_post(mallory, kind="reply", board="labor", body=HOSTILE, created_at_ms=T0_MS + 2_000,
                                   parent=root.id),
        posts.create_post(operator, kind="post", board="劳动法", body="加班费怎么算", created_at_ms=T0_MS + 3_000),
    ]
    await core.ingest_checked(batch, "http://peer.test:7470")
    await core.db.call(Store.update_search_index, 100_000)
    # The member's private hidden list names mallory; the public view does not apply it.
    await core.db.call(Store.set_meta, HIDDEN_META, json.dumps([mallory.public_key.hex()]))
    client = await aiohttp_client(make_public_app(core, config))
    try:
        yield View(client, core, data, {"root": root, "reply": reply, "alice": alice, "mallory": mallory,
                                        "operator": operator})
    finally:
        await client.close()
        await core.close()


def _check_page(text: str) -> None:
    assert not MEMBER_LINKS.search(text), MEMBER_LINKS.search(text).group(0)
    assert 'method="post"' not in text and "csrf_token" not in text
    assert "window.__pwned" not in text.replace("&lt;script&gt;window.__pwned", "")


async def test_pages_show_posts_without_member_links(view):
    c, s = view.client, view.seeded
    pages = {
        "/": ["labor", "劳动法"],
        "/b/labor": ["Overtime pay", "alice", s["alice"].public_key.hex()[:8]],
        f"/p/{s['root'].id.hex()}": ["how is it counted?", "alice"],
        "/search?q=" + "加班费": ["加班费"],
        "/search?q=overtime": ["Overtime"],
        f"/a/{s['alice'].public_key.hex()}": ["alice", "Overtime pay"],
        f"/a/{s['operator'].public_key.hex()}": ["加班费怎么算"],
    }
    for path, wanted in pages.items():
        resp = await c.get(path)
        text = await resp.text()
        assert resp.status == 200, (path, text)
        for w in wanted:
            assert w in text, (path, w)
        _check_page(text)
        assert "one of your pseudonyms" not in text and '<span class="tag">you</span>' not in text, path
    resp = await c.head("/b/labor")
    assert resp.status == 200


async def test_hostile_body_is_escaped_and_hidden_list_not_applied(view):
    resp = await view.client.get(f"/p/{view.seeded['root'].id.hex()}")
    text = await resp.text()
    assert resp.status == 200
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert "<script>window.__pwned" not in text and "<img src=x" not in text and 'href="javascript:' not in text
    assert "hidden author" not in text


async def test_writes_are_refused_and_change_nothing(view):
    before = await view.snapshot()
    root = view.seeded["root"].id.hex()
    targets = ["/", "/compose", f"/p/{root}", f"/p/{root}/retract", "/authors/hide", "/ids/new", "/boards/all",
               "/lang", "/api/updates"]
    form = {"board": "labor", "body": "forged", "author": view.seeded["alice"].public_key.hex(), "name": "x",
            "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE, "action": "publish"}
    for path in targets:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            resp = await view.client.request(method, path, data=form, allow_redirects=False)
            assert resp.status == 405, (method, path, resp.status)
            assert "GET" in resp.headers.get("Allow", "")
            assert "Set-Cookie" not in resp.headers
    assert await view.snapshot() == before


async def test_member_only_paths_do_not_exist(view):
    root = view.seeded["root"].id.hex()
    for path in MEMBER_ONLY + [f"/p/{root}/retract", f"/p/{root}/moderate"]:
        resp = await view.client.get(path, allow_redirects=False)
        assert resp.status == 404, (path, resp.status)
        _check_page(await resp.text())


async def test_headers_no_cookies_and_host_check(view):
    c = view.client
    for path in ["/", "/b/labor", "/nope", "/static/style.css", "/api/updates"]:
        resp = await c.get(path, headers={"Accept-Language": "zh-Hans"})
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "Set-Cookie" not in resp.headers, path
    assert not c.session.cookie_jar.filter_cookies(c.make_url("/"))
    for host in ["evil.example", f"evil.example:{c.port}", f"localhost:{c.port}", "127.0.0.1", ""]:
        resp = await c.get("/", headers={"Host": host})
        assert resp.status == 421, host
        assert "labor" not in await resp.text()


async def test_view_hosts_setting_is_the_allowlist(tmp_path, aiohttp_client):
    data = DataDir(tmp_path / "m")
    data.create()
    config = load_config(data, environ={"DAZIBAO_PUBLIC_VIEW_LISTEN": "0.0.0.0:0",
                                        "DAZIBAO_PUBLIC_VIEW_HOSTS": "Mirror.Example.org,other.example:8443"})
    assert config.public_view_hosts == ("mirror.example.org", "other.example:8443")
    core = NodeCore(data, config)
    await core.open()
    client = await aiohttp_client(make_public_app(core, config))
    try:
        port = client.port
        for host, status in [("mirror.example.org", 200), (f"MIRROR.example.org:{port}", 200),
                             ("other.example:8443", 200), ("other.example", 421), (f"127.0.0.1:{port}", 421),
                             ("evil.example", 421)]:
            resp = await client.get("/", headers={"Host": host})
            assert resp.status == status, host
        assert client.app[UI].public
    finally:
        await client.close()
        await core.close()
    assert public_allowed_hosts("0.0.0.0", 8080) == frozenset()
    assert public_allowed_hosts("mirror.example.org", 80) == {"mirror.example.org", "mirror.example.org:80"}


@pytest.mark.parametrize("env, needle", [
    ({"DAZIBAO_PUBLIC_VIEW_LISTEN": "nowhere"}, "public_view_listen"),
    ({"DAZIBAO_PUBLIC_VIEW_LISTEN": "127.0.0.1:7471"}, "listener of its own"),
    ({"DAZIBAO_PUBLIC_VIEW_HOSTS": "http://mirror.example.org/"}, "public_view_hosts"),
])
def test_bad_settings_are_refused(tmp_path, env, needle):
    data = DataDir(tmp_path / "d")
    data.create()
    with pytest.raises(ConfigError, match=needle):
        load_config(data, environ=env)


async def test_node_serves_it_on_a_listener_of_its_own(tmp_path):
    data = DataDir(tmp_path / "n")
    data.create()
    config = Config(gossip_listen="127.0.0.1:0", ui_listen="127.0.0.1:0", public_view_listen="127.0.0.1:0",
                    sync_interval_s=3600, peer_exchange=False)
    node = Node(data, config)
    await node.start()
    try:
        assert len({node.gossip_url, node.ui_url, node.public_view_url}) == 3
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(node.public_view_url) as resp:
                assert resp.status == 200
                assert "read-only view" in await resp.text()
            async with http.get(node.public_view_url + "ids") as resp:
                assert resp.status == 404
            async with http.get(node.ui_url) as resp:  # the member UI is still the member UI
                assert resp.status == 200 and "read-only view" not in await resp.text()
            async with http.get(node.gossip_url + "/") as resp:
                assert "read-only view" not in await resp.text()
    finally:
        await node.stop()
    off = Node(DataDir(tmp_path / "o"), Config(gossip_listen="127.0.0.1:0", ui_listen="127.0.0.1:0"))
    assert off.public_view_url == "" and not off.config.public_view_listen

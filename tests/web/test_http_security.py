"""The UI's request checks over real HTTP: Host allowlist, CSRF token, Origin and Fetch
Metadata, sizes and methods.  A refused request must change nothing at all."""

from __future__ import annotations

import http.client

import aiohttp
import pytest

from dazibao.node.store import Store
from dazibao.node.web.pages.rescue import RESCUED_PATHS
from dazibao.node.web.security import CONTENT_SECURITY_POLICY
from dazibao.protocol import organizing, posts

from .conftest import PASSPHRASE, key


async def _member(h) -> dict:
    """A member with an unlocked pseudonym, a post of their own, a stranger's post, one hidden
    author and a chosen board list: every form below would change something if accepted."""
    resp = await h.post("/ids/new", {"name": "alice", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE,
                                     "board": "labor"})
    assert resp.status == 303, await resp.text()
    resp = await h.post("/compose", {"board": "labor", "body": "my post", "action": "publish"})
    assert resp.status == 303, await resp.text()
    mine = resp.headers["Location"].rsplit("/", 1)[1]
    stranger, other = key(7), key(8)
    theirs = posts.create_post(stranger, kind="post", board="labor", body="stranger's post",
                               created_at_ms=h.core.now_ms())
    await h.core.ingest_checked([theirs], "http://peer.test:7470")
    resp = await h.post("/authors/hide", {"author": other.public_key.hex(), "confirm": "1"})
    assert resp.status == 303
    await h.core.set_boards(["labor", "news"])
    session = h.session()
    fp = session.active
    # A stranger's report, letter and pledge, and alice's own signature of the letter: the
    # collective-action forms below answer, sign or withdraw them.
    now = h.core.now_ms()
    report = organizing.create_report(stranger, board="labor", company="Acme", practice="other", created_at_ms=now)
    letter = organizing.create_letter(stranger, board="labor", title="Pay us", text="We ask.", created_at_ms=now)
    pledge = organizing.create_pledge(stranger, board="labor", action="Walk out", date="2026-05-01", threshold=3,
                                      created_at_ms=now)
    own = organizing.create_signature(session.unlocked[fp].key, letter, created_at_ms=now)
    await h.core.ingest_checked([report, letter, pledge, own], "http://peer.test:7470")
    return {"mine": mine, "stranger": stranger.public_key.hex(), "hidden": other.public_key.hex(), "fp": fp,
            "report": report.id.hex(), "letter": letter.id.hex(), "pledge": pledge.id.hex(), "own": own.id.hex(),
            "theirs": theirs.id.hex()}


def _forms(m: dict) -> list[tuple[str, dict]]:
    return [
        ("/compose", {"board": "labor", "body": "forged post", "action": "publish"}),
        (f"/p/{m['mine']}/retract", {}),
        ("/authors/hide", {"author": m["stranger"], "confirm": "1"}),
        ("/authors/unhide", {"author": m["hidden"]}),
        ("/boards/follow", {"board": "elsewhere"}),
        ("/boards/unfollow", {"board": "news"}),
        ("/boards/all", {}),
        ("/ids/new", {"name": "mallory", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE}),
        ("/ids/lock", {"fp": "all"}),
        ("/ids/unlock", {"fp": m["fp"], "passphrase": PASSPHRASE}),
        ("/ids/use", {"fp": m["fp"]}),
        ("/ids/export", {"fp": m["fp"]}),
        ("/lang", {"lang": "zh-Hans"}),
        ("/peers/add", {"url": "http://127.0.0.1:9"}),
        ("/peers/sync", {}),
        ("/peers/remove", {"url": "http://127.0.0.1:9"}),
        ("/b/labor/companies", {"company": "Forged Co", "practice": "other"}),
        (f"/report/{m['report']}/corroborate", {}),
        ("/b/labor/letters", {"title": "Forged", "text": "forged letter"}),
        (f"/letter/{m['letter']}/sign", {"line": "forged"}),
        (f"/letter/{m['letter']}/deliver", {}),
        (f"/withdraw/{m['own']}", {}),
        ("/b/labor/pledges", {"action": "Forged", "date": "2026-05-01", "threshold": "2"}),
        (f"/pledge/{m['pledge']}/join", {}),
        (f"/p/{m['theirs']}/pin", {}),
        (f"/p/{m['theirs']}/translate", {"lang": "zh-Hans", "text": "伪造的译文"}),
        # Last: it deletes the key file the forms above use.
        ("/ids/remove", {"fp": m["fp"], "confirm_name": "alice"}),
    ]


#: Attacks that a post or reply form survives with its text kept as a draft and nothing
#: published, when the browser says it was sent from the UI's own page (pages/rescue.py).
_TEXT_KEPT = ("no_token", "wrong_token", "empty_token", "other_session_token", "no_session")


async def test_every_form_works_when_the_request_is_genuine(harness):
    m = await _member(harness)
    for path, fields in _forms(m):
        before = await harness.snapshot()
        resp = await harness.post(path, fields)
        assert resp.status in (200, 303), (path, resp.status, await resp.text())
        # Making a letter's delivery folder writes files beside the store, not in it.
        if path not in ("/ids/export", "/ids/use", "/ids/unlock", "/lang", "/boards/follow", "/peers/sync") \
                and not path.endswith("/deliver"):
            assert await harness.snapshot() != before, path


@pytest.mark.parametrize("attack", [
    "no_token", "wrong_token", "empty_token", "other_session_token", "foreign_origin", "null_origin",
    "null_origin_cross_site",
    "cross_site_fetch", "same_site_fetch", "no_session",
])
async def test_refused_requests_change_nothing(harness, attack):
    m = await _member(harness)
    other_token = harness.ui.sessions.create().csrf
    for path, fields in _forms(m):
        before = await harness.snapshot()
        token: object = True
        headers: dict = {}
        if attack == "no_token":
            token = None
        elif attack == "wrong_token":
            token = "A" * 43
        elif attack == "empty_token":
            token = ""
            fields = {**fields, "csrf_token": ""}
        elif attack == "other_session_token":
            token = other_token
        elif attack == "foreign_origin":
            headers = {"Origin": "http://evil.example"}
        elif attack == "null_origin":
            headers = {"Origin": "null"}
        elif attack == "null_origin_cross_site":  # a sandboxed frame of another site
            headers = {"Origin": "null", "Sec-Fetch-Site": "cross-site"}
        elif attack == "cross_site_fetch":
            headers = {"Sec-Fetch-Site": "cross-site"}
        elif attack == "same_site_fetch":  # another port of 127.0.0.1
            headers = {"Sec-Fetch-Site": "same-site", "Origin": f"http://127.0.0.1:{harness.client.port + 1}"}
        if attack == "no_session":
            valid = await harness.token()
            async with aiohttp.ClientSession() as fresh:  # no cookie at all
                resp = await fresh.post(harness.client.make_url(path), data={**fields, "csrf_token": valid},
                                        headers={"Origin": harness.origin}, allow_redirects=False)
                status, text, cookies = resp.status, await resp.text(), resp.headers.get("Set-Cookie", "")
        else:
            resp = await harness.post(path, fields, token=token, headers=headers)
            status, text, cookies = resp.status, await resp.text(), resp.headers.get("Set-Cookie", "")
        if path in RESCUED_PATHS and attack in _TEXT_KEPT:
            assert status == 303, (path, attack, status)
        else:
            assert status == 403, (path, attack, status)
            assert "Request refused" in text
        assert "dazibao_lang" not in cookies
        assert await harness.snapshot() == before, (path, attack)


async def test_own_form_under_no_referrer_policy_is_accepted(harness):
    """What Chromium sends for the page's own form: Origin null, Sec-Fetch-Site same-origin."""
    await _member(harness)
    before = await harness.snapshot()
    resp = await harness.post("/authors/hide", {"author": key(9).public_key.hex(), "confirm": "1"},
                              headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert resp.status == 303
    assert await harness.snapshot() != before


async def test_expired_session_is_refused_and_changes_nothing(harness):
    m = await _member(harness)
    token = await harness.token()
    session = harness.session()
    harness.ui.sessions._forget(session)  # as after a restart of the node
    for path, fields in _forms(m):
        before = await harness.snapshot()
        if (kept := harness.session()) is not None:  # the session a kept text started
            harness.ui.sessions._forget(kept)
        resp = await harness.client.post(path, data={**fields, "csrf_token": token},
                                         headers={"Origin": harness.origin}, allow_redirects=False)
        if path in RESCUED_PATHS:  # the text is kept as a draft, nothing is published
            assert resp.status == 303, path
        else:
            assert resp.status == 403, path
            assert "session has expired" in await resp.text()
        assert await harness.snapshot() == before


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:{port}", "127.0.0.1:1", "127.0.0.2:{port}", "localhost.evil.example:{port}",
    "127.0.0.1.nip.io:{port}", "0.0.0.0:{port}", "[::2]:{port}", "",
])
async def test_foreign_host_is_refused_before_anything(harness, host):
    m = await _member(harness)
    host = host.format(port=harness.client.port)
    for method, path in [("GET", "/"), ("GET", "/ids"), ("GET", "/static/style.css"), ("GET", "/api/updates?after=x")]:
        resp = await harness.client.request(method, path, headers={"Host": host})
        assert resp.status == 421, (host, path)
        assert "csrf_token" not in await resp.text()
    for path, fields in _forms(m):
        before = await harness.snapshot()
        token = await harness.token()
        resp = await harness.client.post(path, data={**fields, "csrf_token": token},
                                         headers={"Host": host, "Origin": f"http://{host}"}, allow_redirects=False)
        assert resp.status == 421, (host, path)
        assert await harness.snapshot() == before


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
async def test_loopback_names_are_allowed(harness, host):
    resp = await harness.client.get("/", headers={"Host": host.format(port=harness.client.port)})
    assert resp.status == 200


async def test_security_headers_on_every_kind_of_response(harness):
    for path, status in [("/", 200), ("/nope", 404), ("/static/style.css", 200), ("/static/live.js", 200),
                         ("/static/nope.js", 404), ("/api/updates?after=x", 200), ("/p/zz", 404)]:
        resp = await harness.client.get(path)
        assert resp.status == status, path
        assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Frame-Options"] == "DENY"
    resp = await harness.client.get("/", headers={"Host": "evil.example"})
    assert resp.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    csp = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert csp == {
        "default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self'",
        "connect-src": "'self'", "form-action": "'self'", "frame-ancestors": "'none'", "base-uri": "'none'",
    }


async def test_session_cookie_is_httponly_and_strict(harness):
    harness.client.session.cookie_jar.clear()
    resp = await harness.client.get("/")
    cookie = resp.cookies[f"dazibao_session_{harness.client.port}"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"


async def test_page_opened_from_another_site_starts_no_session(harness):
    harness.client.session.cookie_jar.clear()
    resp = await harness.client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                                   "Sec-Fetch-Dest": "document"})
    assert resp.status == 200
    assert "Opened from another site" in await resp.text()
    assert "Set-Cookie" not in resp.headers
    assert len(harness.ui.sessions) == 0


async def test_get_never_changes_anything_and_other_methods_are_refused(harness):
    m = await _member(harness)
    for path, fields in _forms(m):
        before = await harness.snapshot()
        resp = await harness.client.get(path, params=fields, allow_redirects=False)
        assert resp.status in (200, 404, 405), path
        for method in ("PUT", "DELETE", "PATCH"):
            resp = await harness.client.request(method, path, data=fields, headers={"Origin": harness.origin})
            assert resp.status == 405, (method, path)
        assert await harness.snapshot() == before


async def test_oversize_form_is_refused_and_changes_nothing(harness):
    await _member(harness)
    before = await harness.snapshot()
    resp = await harness.post("/compose", {"board": "labor", "body": "x" * 300_000, "action": "publish"})
    assert resp.status == 413
    assert "too large" in await resp.text()
    resp = await harness.post("/compose", {"board": "labor", "body": "x" * 300_000, "action": "publish"}, lang="zh")
    assert "表单太大" in await resp.text()
    assert await harness.snapshot() == before


async def test_non_form_bodies_are_refused(harness):
    await _member(harness)
    before = await harness.snapshot()
    token = await harness.token()
    resp = await harness.client.post("/compose", json={"csrf_token": token, "board": "labor", "body": "json"},
                                     headers={"Origin": harness.origin}, allow_redirects=False)
    assert resp.status == 403
    assert await harness.snapshot() == before


async def test_redirect_after_form_stays_on_this_site(harness):
    await _member(harness)
    for target in ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                   "/ok\r\nSet-Cookie: x=1"]:
        resp = await harness.post("/lang", {"lang": "en", "next": target})
        assert resp.status == 303
        assert resp.headers["Location"] == "/", target
    resp = await harness.post("/lang", {"lang": "en", "next": "/b/labor?page=2"})
    assert resp.headers["Location"] == "/b/labor?page=2"


async def test_unlocked_keys_never_reach_the_browser(harness):
    await _member(harness)
    session = harness.session()
    secret = session.active_key().key.seed().hex()
    for path in ["/", "/ids", "/b/labor", "/status", "/search?q=post", "/hidden", "/compose?board=labor"]:
        resp = await harness.client.get(path)
        text = await resp.text()
        assert secret not in text and secret.upper() not in text
        assert PASSPHRASE not in text


# --- against a real `dazibao run` process ----------------------------------------------------------


def _raw_get(url_host: str, port: int, path: str, host_header: str | None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(url_host, port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        if host_header is not None:
            conn.putheader("Host", host_header)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.mark.slow
def test_real_node_serves_ui_on_its_own_listener_only(start_node):
    node = start_node("solo", batch=[posts.create_post(key(1), kind="post", board="labor", body="hello",
                                                       created_at_ms=1_709_900_000_000)])
    ui_port = int(node.ui_url.rsplit(":", 1)[1].strip("/"))
    gossip_port = int(node.url.rsplit(":", 1)[1])
    assert ui_port != gossip_port
    status, text = _raw_get("127.0.0.1", ui_port, "/", f"127.0.0.1:{ui_port}")
    assert status == 200 and "labor" in text
    assert _raw_get("127.0.0.1", ui_port, "/", f"localhost:{ui_port}")[0] == 200
    # DNS rebinding: a name that resolves to 127.0.0.1 but is not this UI's.
    for host in ["evil.example", f"evil.example:{ui_port}", f"127.0.0.1:{gossip_port}", None]:
        status, text = _raw_get("127.0.0.1", ui_port, "/", host)
        assert status in (400, 421), host
        assert "labor" not in text
    # The gossip listener serves no page of the UI.
    for path in ["/", "/ids", "/static/style.css", "/b/labor", "/api/updates?after=x"]:
        status, text = _raw_get("127.0.0.1", gossip_port, path, f"127.0.0.1:{gossip_port}")
        assert status == 404, path
        assert "<html" not in text


async def test_store_is_untouched_by_refused_retract_of_someone_elses_post(harness):
    await _member(harness)
    rows = await harness.core.db.call(Store.list_posts, "labor", 10)
    theirs = next(r for r in rows if r.body == "stranger's post")
    before = await harness.snapshot()
    resp = await harness.post(f"/p/{theirs.id.hex()}/retract", {})
    assert resp.status == 403
    assert "your own pseudonyms" in await resp.text()
    assert await harness.snapshot() == before

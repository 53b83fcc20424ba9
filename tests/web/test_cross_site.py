"""Another site's page cannot ask the member UI anything (docs/security.md, "Cross-site requests
to the member UI"): its fetches, images, frames and forms get one constant 403, a link the
member follows gets one constant page, and neither depends on what the node holds.

The browser test runs a page on another loopback address and port, in headless Chromium,
against a real `dazibao run` process.
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from dazibao.node.web import security
from dazibao.protocol import posts

from .conftest import T0_MS, key

SECRET = "strikefund"  # a word the node holds
MISSING = "nowhereword"  # a word it does not
NAVIGATE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1"}
SUBRESOURCES = {
    "fetch": {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
    "no-cors fetch": {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "empty"},
    "image": {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
    "script": {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"},
    "iframe": {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"},
    "no mode": {},
}


def _held() -> list[posts.Post]:
    return [posts.create_post(key(2), kind="post", board="labor", body=f"the {SECRET} meets at noon {i}",
                              created_at_ms=T0_MS + i) for i in range(30)]


def test_resource_policy_table():
    allow, nav, refuse = security.ALLOW, security.NAVIGATION, security.REFUSE
    assert security.resource_policy("GET", None, None, None) == allow  # no Fetch Metadata: as before
    assert security.resource_policy("POST", None, None, None) == allow
    for site in ("same-origin", "none", " Same-Origin "):
        assert security.resource_policy("GET", site, "cors", "empty") == allow
        assert security.resource_policy("POST", site, "navigate", "document") == allow
    for site in ("cross-site", "same-site", "bogus", ""):
        assert security.resource_policy("GET", site, "navigate", "document") == nav
        assert security.resource_policy("HEAD", site, "navigate", "document") == refuse
        assert security.resource_policy("POST", site, "navigate", "document") == refuse
        assert security.resource_policy("GET", site, "navigate", "iframe") == refuse
        assert security.resource_policy("GET", site, "no-cors", "image") == refuse
        assert security.resource_policy("GET", site, None, None) == refuse


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
async def test_cross_site_subresources_get_one_constant_refusal(harness, site):
    await harness.core.ingest_checked(_held(), "http://peer.test:7470")
    answers = set()
    for kind, headers in SUBRESOURCES.items():
        for word in (SECRET, MISSING):
            for path in (f"/search?q={word}", f"/search?q={word}&page=2", "/", "/status", "/static/style.css",
                         "/api/updates?after="):
                resp = await harness.client.get(path, headers={"Sec-Fetch-Site": site, **headers})
                assert resp.status == 403, (kind, path)
                assert "Set-Cookie" not in resp.headers
                assert resp.headers["Cross-Origin-Resource-Policy"] == "same-origin"
                answers.add(await resp.read())
    assert answers == {security.CROSS_SITE_REFUSED}
    assert len(harness.ui.sessions) == 0


async def test_cross_site_form_is_refused_with_the_constant_answer(harness):
    before = await harness.snapshot()
    token = await harness.token()
    resp = await harness.post("/authors/hide", {"author": key(5).public_key.hex()}, token=token,
                              headers={**NAVIGATE, "Origin": "null"})
    assert resp.status == 403 and await resp.read() == security.CROSS_SITE_REFUSED
    assert await harness.snapshot() == before


async def test_cross_site_navigation_gets_one_constant_page(harness):
    await harness.core.ingest_checked(_held(), "http://peer.test:7470")
    harness.client.session.cookie_jar.clear()
    bodies = set()
    for path in (f"/search?q={SECRET}", f"/search?q={MISSING}", f"/search?q={SECRET}&board=labor", "/",
                 "/b/labor", "/status", "/ids", "/no/such/page"):
        resp = await harness.client.get(path, headers=NAVIGATE)
        assert resp.status == 200, path
        assert "Set-Cookie" not in resp.headers
        for name in ("Cross-Origin-Resource-Policy", "Cross-Origin-Opener-Policy"):
            assert resp.headers[name] == "same-origin"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        bodies.add(await resp.read())
    assert len(bodies) == 1
    page = bodies.pop().decode()
    assert "Opened from another site" in page and '<a href="" class="button">' in page
    assert SECRET not in page and "labor" not in page and 'name="csrf_token"' not in page
    assert len(harness.ui.sessions) == 0


async def test_own_pages_and_old_browsers_still_get_answers(harness):
    await harness.core.ingest_checked(_held(), "http://peer.test:7470")
    for headers in ({}, {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
                    {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
                    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}):
        hit = await (await harness.client.get(f"/search?q={SECRET}", headers=headers)).text()
        miss = await (await harness.client.get(f"/search?q={MISSING}", headers=headers)).text()
        assert hit.count('class="snippet"') == 25 and "Nothing found." in miss, headers


def _raw(port: int, path: str, headers: dict) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        start = time.monotonic()
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{port}", **headers})
        resp = conn.getresponse()
        return resp.status, resp.read(), time.monotonic() - start
    finally:
        conn.close()


def test_real_node_answers_other_sites_the_same_for_a_hit_and_a_miss(start_node):
    node = start_node("crosssite", batch=_held())
    port = urlsplit(node.ui_url).port
    for headers, status in [(NAVIGATE, 200), *(({"Sec-Fetch-Site": "cross-site", **h}, 403)
                                                for h in SUBRESOURCES.values())]:
        hit = _raw(port, f"/search?q={SECRET}", headers)
        miss = _raw(port, f"/search?q={MISSING}", headers)
        assert hit[0] == miss[0] == status
        assert hit[1] == miss[1]
    own_hit = _raw(port, f"/search?q={SECRET}", {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate",
                                                 "Sec-Fetch-Dest": "document"})
    assert own_hit[0] == 200 and SECRET.encode() in own_hit[1]


# --- a real browser -------------------------------------------------------------------------------

ATTACK_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>totally unrelated</title></head>
<body>
<a id="go" href="{ui}/search?q={secret}">a link to the node</a>
<script>
window.results = {{}};
const ui = {ui!r};
const probes = {{}};
function done(name, value) {{ window.results[name] = value; }}
for (const word of [{secret!r}, {missing!r}]) {{
  fetch(ui + "/search?q=" + word).then(r => r.text().then(t => done("cors " + word, r.status + ":" + t.length)),
                                       e => done("cors " + word, "error"));
  fetch(ui + "/search?q=" + word, {{mode: "no-cors"}}).then(r => done("no-cors " + word, r.type + ":" + r.status),
                                                          e => done("no-cors " + word, "error"));
  const img = new Image();
  img.onload = () => done("img " + word, "load");
  img.onerror = () => done("img " + word, "error");
  img.src = ui + "/search?q=" + word;
  const s = document.createElement("script");
  s.onload = () => done("script " + word, "load");
  s.onerror = () => done("script " + word, "error");
  s.src = ui + "/search?q=" + word;
  document.body.appendChild(s);
  const f = document.createElement("iframe");
  f.src = ui + "/search?q=" + word;
  f.onload = () => {{
    let seen = "opaque";
    try {{ seen = f.contentDocument ? "readable:" + f.contentDocument.body.innerHTML.length : "opaque"; }}
    catch (e) {{ seen = "opaque"; }}
    done("iframe " + word, seen);
  }};
  document.body.appendChild(f);
}}
</script>
</body></html>
"""


class AttackSite:
    """A tiny web site on another loopback address (127.0.0.2: another site to the browser)."""

    def __init__(self, ui: str, host: str = "127.0.0.2") -> None:
        self.host = host
        self.body = ATTACK_PAGE.format(ui=ui.rstrip("/"), secret=SECRET, missing=MISSING)
        self.url = ""
        self._ready = threading.Event()
        self._loop = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=self.body, content_type="text/html")

        async def main() -> None:
            app = web.Application()
            app.router.add_get("/", page)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, self.host, 0)
            await site.start()
            port = runner.addresses[0][1]
            self.url = f"http://{self.host}:{port}/"
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(main())

    def __enter__(self) -> AttackSite:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@pytest.mark.browser
@pytest.mark.slow
def test_a_page_on_another_site_learns_nothing_from_the_ui(start_node, browser):
    node = start_node("browsed", batch=_held())
    ui = node.ui_url.rstrip("/")
    with AttackSite(ui) as site:
        context = browser.new_context(locale="en-US")
        try:
            # What went over the wire, from the browser's own network log (DevTools protocol):
            # the headers it really sent and the status it really got, also for the answers
            # that Cross-Origin-Resource-Policy then kept from the page.
            wire: dict[str, dict] = {}
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.on("Network.requestWillBeSent", lambda e: wire.setdefault(e["requestId"], {}).update(
                url=e["request"]["url"], method=e["request"]["method"], type=e.get("type", "")))
            cdp.on("Network.requestWillBeSentExtraInfo", lambda e: wire.setdefault(e["requestId"], {}).update(
                sent={k.lower(): v for k, v in e["headers"].items()}))
            cdp.on("Network.responseReceivedExtraInfo", lambda e: wire.setdefault(e["requestId"], {}).update(
                status=e["statusCode"], length=e["headers"].get("Content-Length", e["headers"].get("content-length"))))

            def exchanges() -> list[tuple[str, str, int | None, str | None]]:
                page.wait_for_timeout(300)  # the last network events, bounded
                out = []
                for item in list(wire.values()):
                    if not item.get("url", "").startswith(ui + "/search"):
                        continue
                    h = item.get("sent", {})
                    verdict = security.resource_policy(item["method"], h.get("sec-fetch-site"),
                                                       h.get("sec-fetch-mode"), h.get("sec-fetch-dest"))
                    out.append((item["type"], verdict, item.get("status"), item.get("length")))
                wire.clear()
                return out

            page.set_default_timeout(20_000)
            page.goto(site.url)
            probes = [f"{kind} {word}" for kind in ("cors", "no-cors", "img", "script", "iframe")
                      for word in (SECRET, MISSING)]
            page.wait_for_function(f"Object.keys(window.results).length >= {len(probes)}", timeout=20_000)
            results = page.evaluate("window.results")
            for kind in ("cors", "no-cors", "img", "script", "iframe"):
                # The same outcome for a word the node holds and one it does not.
                assert results[f"{kind} {SECRET}"] == results[f"{kind} {MISSING}"], (kind, results)
            assert set(results.values()) == {"error", "opaque"}, results  # nothing could be read
            # Every probe reached the node with the Fetch Metadata it refuses, and got the one
            # constant 403: a hit and a miss look the same, in status and in size.
            seen = exchanges()
            assert {t for t, *_ in seen} >= {"Fetch", "Image", "Script"}, seen
            assert {(v, status, length) for _, v, status, length in seen if status is not None} == \
                {(security.REFUSE, 403, str(len(security.CROSS_SITE_REFUSED)))}, seen
            assert {v for _, v, *_ in seen} == {security.REFUSE}, seen

            # The member follows the link: the constant page, then their own click shows results.
            page.click("#go")
            page.wait_for_url(ui + f"/search?q={SECRET}")
            assert page.locator("h1").inner_text() == "Opened from another site"
            assert SECRET not in page.content().replace(f"q={SECRET}", "")
            assert [(v, status) for _, v, status, _ in exchanges()] == [(security.NAVIGATION, 200)]
            page.click("a.button")
            page.wait_for_selector(".results .snippet")
            assert page.locator(".results li").count() == 25
            # The continue link is the page's own address, so the member's click is same-origin.
            assert [(v, status) for _, v, status, _ in exchanges()] == [(security.ALLOW, 200)]

            # A typed address (Sec-Fetch-Site: none) works as before.
            other = context.new_page()
            other.goto(ui + f"/search?q={SECRET}")
            assert other.locator(".results li").count() == 25
        finally:
            context.close()

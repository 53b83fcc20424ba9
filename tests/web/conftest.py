"""Fixtures of the web UI tests: an in-process UI over a real store (HTTP tests), real
`dazibao run` processes, and one headless Chromium shared by the browser tests.

Every wait is bounded; nothing asserts a duration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dazibao.node.config import DataDir, load_config
from dazibao.node.keys import KeyStore
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.node.web import UI, make_ui_app
from dazibao.node.web.app import session_cookie_name
from dazibao.node.web.authors import HIDDEN_META
from dazibao.protocol import identity, posts

from ..node.procs import NodeProcess, cli_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
#: Argon2id at its smallest allowed cost, for key files made by in-process tests.
FAST_KDF = identity.KdfParams(memory_kib=8_192, iterations=1, lanes=1)
PASSPHRASE = "correct horse battery staple"
WAIT_MS = 20_000
T0_MS = 1_709_900_000_000  # 2024-03-08 12:13:20 UTC: fixed times make pages repeatable


def key(n: int) -> identity.SigningKey:
    """A fixed test key (seed n repeated)."""
    return identity.SigningKey(bytes([n]) * 32)


def seed_store(data: Path, batch: Sequence[posts.Post]) -> None:
    """Create ``data`` (if needed) and store ``batch`` as a peer would have delivered it."""
    folder = DataDir(data)
    folder.create()
    store = Store(str(folder.database))
    try:
        store.ingest(list(batch), source="http://peer.test:7470", now_ms=T0_MS)
        store.update_search_index(100_000)
    finally:
        store.close()


# --- in-process UI ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """The UI app on a test server, with what a test needs to look behind it."""

    client: object  # aiohttp TestClient
    core: NodeCore
    keys: KeyStore
    clock: FakeClock
    data: DataDir

    @property
    def ui(self):
        return self.client.app[UI]

    @property
    def origin(self) -> str:
        return f"http://{self.client.host}:{self.client.port}"

    def session(self):
        cookie = self.client.session.cookie_jar.filter_cookies(self.client.make_url("/")).get(
            session_cookie_name(self.client.port))
        return self.ui.sessions.get(cookie.value if cookie else None)

    async def token(self, path: str = "/ids") -> str:
        resp = await self.client.get(path)
        text = await resp.text()
        match = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert match, text
        return match.group(1)

    async def post(self, path: str, data: dict, *, token: str | None | bool = True, headers: dict | None = None,
                   lang: str = "en"):
        fields = dict(data)
        if token is True:
            fields["csrf_token"] = await self.token()
        elif token:
            fields["csrf_token"] = token
        sent = {"Origin": self.origin, "Accept-Language": lang, **(headers or {})}
        return await self.client.post(path, data=fields, headers=sent, allow_redirects=False)

    async def snapshot(self) -> tuple:
        """Everything a form could change: posts, tombstones, meta, key files, boards, keys in memory."""
        def read(store: Store):
            rows = store.list_posts(None, 100_000)
            return (
                sorted(r.id for r in rows),
                store.get_meta(HIDDEN_META),
                store.get_meta("boards"),
                store.watermark(),
                sorted(p.url for p in store.list_peers()),
            )

        stored = await self.core.db.call(read)
        key_files = sorted(p.name for p in self.data.keys.glob("*")) if self.data.keys.exists() else []
        session = self.session()
        unlocked = (sorted(session.unlocked), session.active) if session else ([], None)
        return stored, key_files, sorted(self.core.boards), unlocked


@pytest.fixture
async def harness(tmp_path, aiohttp_client) -> Harness:
    data = DataDir(tmp_path / "node")
    data.create()
    config = load_config(data, environ={})
    core = NodeCore(data, config)
    await core.open()
    keys = KeyStore(data.keys, kdf=FAST_KDF)
    clock = FakeClock()
    client = await aiohttp_client(make_ui_app(core, keys, config, clock=clock))
    try:
        yield Harness(client, core, keys, clock, data)
    finally:
        await client.close()
        await core.close()


# --- real nodes ---------------------------------------------------------------------------------


class UiNode(NodeProcess):
    """`dazibao run` with its UI listener on an OS-chosen port of 127.0.0.1."""

    ui_url = ""

    def start(self) -> UiNode:
        super().start()
        self.ui_url = json.loads((self.data / "node.json").read_text())["ui_url"]
        return self

    @property
    def origin(self) -> str:
        parts = urlsplit(self.ui_url)
        return f"{parts.scheme}://{parts.netloc}"


def node_env(**extra: str) -> dict[str, str]:
    # UTC so that the times on pages (and in the screenshots) do not depend on the machine.
    return cli_env(TZ="UTC", DAZIBAO_SYNC_INTERVAL_S="3600", **extra)


@pytest.fixture
def start_node(tmp_path) -> Iterator:
    started: list[UiNode] = []

    def start(name: str, *, peers: tuple[str, ...] = (), batch: Sequence[posts.Post] = (), **env: str) -> UiNode:
        data = tmp_path / name
        if batch:
            seed_store(data, batch)
        node = UiNode(data, peers=peers, env=node_env(**env)).start()
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        node.stop()


# --- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    # Module scope, not session: while Playwright's sync API runs, its event loop is the
    # thread's running loop, and the asyncio tests of other modules could not start theirs.
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


class Watch:
    """Everything a browser context did that a safe page never does.

    Requests to any origin but the UI's own are aborted (nothing leaves the machine) and
    recorded; dialogs (alert, confirm...), uncaught page errors and console errors are
    recorded too.
    """

    def __init__(self, context, origins: Sequence[str]) -> None:
        self.origins = set(origins)
        self.foreign: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        context.route("**/*", self._route)
        context.on("page", self.attach)
        context.on("request", self._request)

    def _origin(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def _request(self, request) -> None:
        if self._origin(request.url) not in self.origins:
            self.foreign.append(request.url)

    def _route(self, route) -> None:
        if self._origin(route.request.url) in self.origins:
            route.continue_()
        else:
            route.abort()

    def attach(self, page) -> None:
        page.set_default_timeout(WAIT_MS)
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", self._console)
        page.on("response", self._response)

    def _console(self, msg) -> None:
        # A page answered with 4xx (a form refused on purpose) is logged as a failed load; the
        # responses themselves are checked below, where a document and a sub-resource differ.
        if msg.type in ("error", "warning") and not msg.text.startswith("Failed to load resource: the server"):
            self.errors.append(f"console {msg.type}: {msg.text}")

    def _response(self, response) -> None:
        if response.status >= 400 and response.request.resource_type != "document":
            self.errors.append(f"{response.status} for {response.request.resource_type} {response.url}")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def check(self, page=None) -> None:
        if page is not None:
            assert page.evaluate("typeof window.__pwned") == "undefined", "a hostile script ran"
        assert not self.dialogs, self.dialogs
        assert not self.foreign, self.foreign
        assert not self.errors, self.errors


@pytest.fixture
def new_context(browser):
    contexts = []

    def make(origins: Sequence[str], **options):
        options.setdefault("viewport", {"width": 1000, "height": 800})
        options.setdefault("locale", "en-US")
        options.setdefault("accept_downloads", True)
        context = browser.new_context(**options)
        contexts.append(context)
        watch = Watch(context, origins)
        return context, watch

    yield make
    for context in contexts:
        context.close()

"""Hostile peers against a real `dazibao run` process (docs/security.md, sections 1, 4, 5, 10).

Each hostile peer is an aiohttp server run by the test on 127.0.0.1, in a thread of its own; a
Canary on another loopback address (127.0.0.2) proves that no connection reached it.  Every
wait is bounded; nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest
from aiohttp import web

from dazibao.node.config import DataDir
from dazibao.node.store import Store

from .attack import Canary, probe_s
from .procs import NodeProcess, cli_env, dazibao, post_ids, wait_until

REDIRECTS = (301, 302, 303, 307, 308)
EMPTY_INFO = {"protocol": 1, "software": "hostile/1", "all_boards": False, "boards": [], "posts": 0}


class HostilePeer:
    """A gossip peer that answers every request with ``await answer(request)``.

    ``hits`` lists the (method, path) of every request it received.
    """

    def __init__(self, answer) -> None:
        self.answer = answer
        self.hits: list[tuple[str, str]] = []
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append((request.method, request.path))
        await request.read()
        return await self.answer(request)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> HostilePeer:
        self._thread.start()
        assert self._ready.wait(10), "hostile peer did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def paths(self) -> set[str]:
        return {path for _, path in self.hits}


def redirect_to(target: str, status: int, paths: tuple[str, ...] | None = None, info: dict | None = None):
    """Answer with a ``status`` redirect to ``target`` (``paths``: only those; the others get
    ``info`` for /v1/info and an empty peer list)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        if paths is None or request.path in paths:
            return web.Response(status=status, headers={"Location": target + request.path})
        if request.path == "/v1/info":
            return web.json_response(info or EMPTY_INFO)
        return web.json_response({"peers": []})

    return answer


def peer_rows(data) -> dict[str, dict]:
    """The node's peer rows, as `dazibao status --json` shows them (read while it runs)."""
    out = dazibao(data, "status", "--json").stdout
    return {p["url"]: p for p in json.loads(out)["peers"]}


def backed_off(data, url: str, code: str | None = None) -> bool:
    row = peer_rows(data).get(url)
    return bool(row and row["failures"] >= 1
                and (code is None or (row["last_error"] or "").startswith(code + ":")))


def untouched(canary: Canary, then):
    """A wait predicate that first fails the test if anything reached the canary."""

    def check():
        assert canary.hits == 0, f"{canary.hits} connections reached {canary.url}"
        return then()

    return check


def node_env(**extra: str) -> dict[str, str]:
    return cli_env(**{"DAZIBAO_" + k.upper(): v for k, v in extra.items()})


def start_node(tmp_path, name: str, peers: tuple[str, ...], **settings: str) -> NodeProcess:
    return NodeProcess(tmp_path / name, peers=peers, env=node_env(**settings)).start()


def one_line_error(proc) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dazibao: error: sync failed: ")
    return lines[0]


def cli_data(tmp_path, name: str):
    data = DataDir(tmp_path / name)
    data.create()
    return data.root


# --- 1. Redirects ---------------------------------------------------------------------------------


def test_anti_entropy_never_follows_a_redirect(tmp_path):
    with Canary("127.0.0.2") as canary:
        peers = [HostilePeer(redirect_to(canary.url, status)) for status in REDIRECTS]
        for peer in peers:
            peer.__enter__()
        try:
            node = start_node(tmp_path, "node", tuple(p.url for p in peers), sync_interval_s="1")
            try:
                for peer in peers:
                    wait_until(untouched(canary, lambda p=peer: backed_off(node.data, p.url, "redirect")),
                               f"{peer.url} to be backed off", timeout=30)
                assert node.proc.poll() is None
            finally:
                node.stop()
        finally:
            for peer in peers:
                peer.__exit__()
        assert all(("GET", "/v1/info") in p.hits for p in peers)
        assert canary.hits == 0


def test_push_and_peer_exchange_never_follow_a_redirect(tmp_path):
    dazibao(tmp_path / "node", "init", "--name", "node")
    with Canary("127.0.0.2") as canary:
        # /v1/info answers (nothing in common, so each sync succeeds at once); peer exchange,
        # announce and push redirect, 307 and 308 asking for the POST body to be replayed.
        peers = [HostilePeer(redirect_to(canary.url, status, ("/v1/peers", "/v1/announce", "/v1/posts")))
                 for status in REDIRECTS]
        for peer in peers:
            peer.__enter__()
        try:
            # The stem phase off: this is about the eager announcement to several peers at once
            # (a stem push goes through the same client, which follows no redirect either).
            node = start_node(tmp_path, "node", tuple(p.url for p in peers), sync_interval_s="3600",
                              push_fanout="5", stem="false")
            try:
                # The first anti-entropy sync (within a second of the start) ends in a peer
                # exchange that is redirected.
                wait_until(lambda: any(("GET", "/v1/peers") in p.hits for p in peers), "a peer exchange")
                dazibao(node.data, "post", "--board", "labor", "pushed, never redirected")
                wait_until(lambda: sum(("POST", "/v1/announce") in p.hits for p in peers) >= 4,
                           "the post to be announced to the peers not backing off")
                for peer in peers:
                    wait_until(untouched(canary, lambda p=peer: backed_off(node.data, p.url, "redirect")),
                               f"{peer.url} to be backed off", timeout=15)
                assert node.proc.poll() is None
            finally:
                node.stop()
        finally:
            for peer in peers:
                peer.__exit__()
        assert canary.hits == 0


def test_dazibao_sync_never_follows_a_redirect(tmp_path):
    data = cli_data(tmp_path, "cli")
    with Canary("127.0.0.2") as canary:
        for status in REDIRECTS:
            with HostilePeer(redirect_to(canary.url, status)) as peer:
                proc = dazibao(data, "sync", peer.url, check=False, timeout=60)
            assert canary.hits == 0, f"HTTP {status} was followed"
            line = one_line_error(proc)
            assert f"redirect: HTTP {status}" in line
        assert canary.hits == 0


# --- 10. Disguised loopback hosts -----------------------------------------------------------------

DISGUISED = [
    "http://127.1:7470", "http://0177.0.0.1:7470", "http://127.0.0.1.:7470", "http://[::7f00:1]:7470",
    "http://2130706433:7470", "http://0x7f.1:7470", "http://[::ffff:127.0.0.1]:7470",
    "http://[64:ff9b::7f00:1]:7470", "http://[64:ff9b:1::a00:1]:7470", "http://[2002:7f00:1::1]:7470",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]:7470", "http://10.1:7470", "http://0xa9fea9fe:7470",
    "http://localhost.:7470",
]


def test_peer_exchange_never_stores_a_disguised_local_host(tmp_path):
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/peers":
            return web.json_response({"peers": DISGUISED})
        return web.json_response(EMPTY_INFO)

    with HostilePeer(answer) as peer:
        node = start_node(tmp_path, "node", (peer.url,), sync_interval_s="1")
        try:
            wait_until(lambda: len([h for h in peer.hits if h[1] == "/v1/peers"]) >= 2, "two peer exchanges")
        finally:
            node.stop()
    stored = json.loads(dazibao(node.data, "peers", "list", "--json").stdout)
    assert [row["url"] for row in stored] == [peer.url]


def test_a_learned_peer_at_a_loopback_literal_is_never_contacted(tmp_path):
    # A peer row learned by exchange before the host rules were what they are now: the client
    # checks the literal itself, because an IP literal never reaches the resolver.
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(EMPTY_INFO)

    with HostilePeer(answer) as peer:
        data = DataDir(tmp_path / "node")
        data.create()
        store = Store(str(data.database))
        store.add_peer(peer.url, "pex", int(time.time() * 1000))
        store.close()
        node = start_node(tmp_path, "node", (), sync_interval_s="1")
        try:
            wait_until(lambda: backed_off(node.data, peer.url, "private_address"), "the learned peer to be refused")
        finally:
            node.stop()
        assert peer.hits == []


# --- 4. A hostile /v1/info ------------------------------------------------------------------------


def _deep(request):
    return web.Response(body=b"[" * 200_000 + b"]" * 200_000, content_type="application/json")


def _bad_boards(request):
    return web.json_response({**EMPTY_INFO, "all_boards": True,
                              "boards": ["a\x00b", "\x01", "x" * 233, "\ud800", 7, None]})


def _huge(request):
    # 2 MiB of board names: under the 4 MiB a request may carry, over what an info may be.
    boards = [f"b{i}" for i in range(250_000)]
    return web.json_response({**EMPTY_INFO, "boards": boards})


async def _huge_chunked(request):
    resp = web.StreamResponse()
    resp.content_type = "application/json"
    await resp.prepare(request)
    await resp.write(b'{"boards": [' + b'"x",' * 10)
    for _ in range(40):
        await resp.write(b" " * 65536)
    await resp.write(b'"y"]}')
    return resp


HOSTILE_INFOS = {"deep": (_deep, "malformed"), "bad_boards": (_bad_boards, "bad_board"),
                 "huge": (_huge, "too_large"), "huge_chunked": (_huge_chunked, "too_large")}


def _info_peer(make):
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/info":
            made = make(request)
            return await made if asyncio.iscoroutine(made) else made
        return web.json_response({"peers": []})

    return HostilePeer(answer)


def test_hostile_info_backs_the_peer_off_and_the_node_keeps_running(tmp_path):
    peers = {name: _info_peer(make) for name, (make, _) in HOSTILE_INFOS.items()}
    for peer in peers.values():
        peer.__enter__()
    try:
        node = start_node(tmp_path, "node", tuple(p.url for p in peers.values()), sync_interval_s="1")
        try:
            for name, (_, code) in HOSTILE_INFOS.items():
                wait_until(lambda u=peers[name].url, c=code: backed_off(node.data, u, c),
                           f"the {name} peer to be backed off with {code}", timeout=30)
            assert node.proc.poll() is None
            assert probe_s(node.url + "/v1/info") < 2.0
        finally:
            node.stop()
        log = node.log.read_text(errors="replace")
        assert "Traceback" not in log and "RecursionError" not in log
        # Everything else: the command line says so in one line.
        data = cli_data(tmp_path, "cli")
        for name, (_, code) in HOSTILE_INFOS.items():
            line = one_line_error(dazibao(data, "sync", peers[name].url, check=False, timeout=60))
            assert f": {code}: " in line, line
    finally:
        for peer in peers.values():
            peer.__exit__()


# --- 5. A tarpit peer -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tarpit_peer_delays_no_push_and_is_backed_off(tmp_path):
    # The tarpit answers every request with a valid, empty answer, 50 s late: inside the 60 s
    # that used to be the only timeout, so it was never penalised and held every push.
    async def tarpit(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(50)
        if request.path == "/v1/info":
            return web.json_response(EMPTY_INFO)
        return web.json_response({"peers": []})

    dazibao(tmp_path / "a", "init", "--name", "a")
    honest = NodeProcess(tmp_path / "b", env=node_env(sync_interval_s="3600")).start()
    try:
        with HostilePeer(tarpit) as slow:
            # The stem phase off: the push to every peer at once is what a tarpit must not hold.
            node = start_node(tmp_path, "a", (slow.url, honest.url), sync_interval_s="3600", stem="false")
            try:
                time.sleep(1.5)  # the first anti-entropy sync has started (with one of the two)
                first = dazibao(node.data, "post", "--board", "labor", "first").stdout.strip()
                wait_until(lambda: first in post_ids(honest.data), "the first post at the honest peer", timeout=10)
                second = dazibao(node.data, "post", "--board", "labor", "second").stdout.strip()
                start = time.monotonic()
                wait_until(lambda: second in post_ids(honest.data), "the second post at the honest peer",
                           timeout=20, interval=0.1)
                took = time.monotonic() - start
                # Unbounded pushes waited for the tarpit: about 50 s.
                assert took < 8, f"the second post took {took:.1f} s"
                wait_until(lambda: backed_off(node.data, slow.url, "timeout"), "the tarpit to be backed off",
                           timeout=30)
                failed_at, next_try = failure_times(node.data, slow.url)
                assert next_try > failed_at
            finally:
                node.stop()
    finally:
        honest.stop()


def failure_times(data, url: str) -> tuple[int, int]:
    """When the peer last failed, and when it may be tried again (ms), from the store's row."""
    with sqlite3.connect(f"file:{data / 'dazibao.db'}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT last_error_at_ms, next_try_at_ms FROM peers WHERE url = ?", (url,)).fetchone()

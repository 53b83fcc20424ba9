"""Refused and purged ids do not cost at every sync (docs/moderation.md, "A refusal must not cost forever").

Real nodes on 127.0.0.1 (`dazibao run`), real `dazibao sync` commands, and a TCP proxy in front
of the peer that counts every byte of the conversation, HTTP headers included.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from dazibao.node.store import Store
from dazibao.protocol import messages, posts
from tests.factories import key

from .procs import NO_QUOTA, NodeProcess, cli_env, dazibao

BOARD = "labor"
DAY_MS = 86_400_000
SPAMMER = key(300)
WRITER = key(301)


class CountingProxy:
    """A TCP proxy to ``port`` on 127.0.0.1 that counts the bytes going each way."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.up = self.down = 0
        self._lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.up = self.down = 0

    @property
    def total(self) -> int:
        with self._lock:
            return self.up + self.down

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.port), timeout=60)
            threading.Thread(target=self._pipe, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, "down"), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if way == "up":
                        self.up += len(data)
                    else:
                        self.down += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def init(tmp_path: Path, name: str) -> Path:
    data = tmp_path / name
    dazibao(data, "init", "--name", name)
    return data


def store_posts(data: Path, made: list[posts.Post]) -> None:
    with Store(data / "dazibao.db") as store:
        store.configure_policy(stranger_posts_per_day=10**9, stranger_bytes_per_day=10**12)
        for i in range(0, len(made), 2_000):
            store.ingest(made[i : i + 2_000], source="import", now_ms=int(time.time() * 1000))


def sync(data: Path, url: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(dazibao(data, "sync", url, "--json", env=env).stdout)


def push(url: str, raws: list[bytes]) -> messages.PushResult:
    result = None
    accepted, rejected = 0, []
    for batch in messages.post_batches(raws):
        req = urllib.request.Request(url + "/v1/posts?index=1", data=messages.encode_posts(batch), method="POST",
                                     headers={"Content-Type": "application/x-msgpack"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            result = messages.decode_push_result(resp.read())
        accepted += result.accepted
        rejected += list(result.rejected)
    return messages.PushResult(accepted, 0, tuple(rejected))


@pytest.fixture
def proxies():
    made: list[CountingProxy] = []

    def make(node: NodeProcess) -> CountingProxy:
        proxy = CountingProxy(int(node.url.rsplit(":", 1)[1]))
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def test_purged_posts_a_peer_holds_are_carried_after_one_sync(tmp_path, proxies):
    now = int(time.time() * 1000)
    old = [posts.create_post(WRITER, kind="post", board=BOARD, body=f"old post {i}", created_at_ms=now - 10 * DAY_MS + i)
           for i in range(5_000)]
    recent = [posts.create_post(WRITER, kind="post", board=BOARD, body=f"recent {i}", created_at_ms=now - 1000 + i)
              for i in range(5)]
    a, b = init(tmp_path, "a"), init(tmp_path, "b")
    store_posts(a, old + recent)
    store_posts(b, old + recent)
    # A mirror with retention purges the old posts; B keeps them.
    with Store(a / "dazibao.db") as store:
        assert store.purge_older_than(BOARD, now - 2 * DAY_MS, now_ms=now) == 5_000
    with NodeProcess(b, env=cli_env(**NO_QUOTA)) as node_b:
        proxy = proxies(node_b)
        first = sync(a, proxy.url)
        # The id lists of the difference cross once; nothing is fetched, the ids are carried.
        assert first["rounds"] > 1 and first["received"] == 0 and first["sent"] == 0
        assert first["skipped_tombstoned"] == 5_000 and first["carried"] == 5_000
        proxy.reset()
        second = sync(a, proxy.url)
        assert second["rounds"] == 1 and second["received"] == second["sent"] == second["carried"] == 0
        assert proxy.total < 2048, proxy.total
    # The other way round too: B's set and A's set are the same.
    with NodeProcess(a) as node_a:
        proxy_a = proxies(node_a)
        back = sync(b, proxy_a.url)
        assert back["rounds"] == 1 and back["sent"] == 0 and back["received"] == 0
        assert proxy_a.total < 2048, proxy_a.total
    with Store(a / "dazibao.db") as store:
        assert store.count(BOARD) == 5  # nothing purged came back


def test_a_flood_refused_by_push_does_not_make_the_sets_differ(tmp_path, proxies):
    now = int(time.time() * 1000)
    base = [posts.create_post(WRITER, kind="post", board=BOARD, body=f"base {i}", created_at_ms=now - 5000 + i)
            for i in range(100)]
    flood = [posts.create_post(SPAMMER, kind="post", board=BOARD, body=f"flood {i}", created_at_ms=now - 3000 + i)
             for i in range(300)]
    a, b = init(tmp_path, "a"), init(tmp_path, "b")
    store_posts(a, base)
    store_posts(b, base)
    # Strangers may add nothing on these nodes: the whole flood is refused before its signatures
    # are checked, and, having come by push, not remembered (docs/moderation.md).
    env = cli_env(DAZIBAO_STRANGER_POSTS_PER_DAY="0")
    with NodeProcess(a, env=env) as node_a, NodeProcess(b, env=env) as node_b:
        result = push(node_a.url, [p.raw for p in flood])
        assert result.accepted == 0 and {c for _, c in result.rejected} == {"quota_posts"}
        # Refused again without a signature check: a forged copy is answered with the quota's
        # code, not with bad_signature.
        forged = flood[0].raw[:-64] + bytes(64)
        again = push(node_a.url, [flood[0].raw, forged])
        assert [c for _, c in again.rejected] == ["quota_posts", "quota_posts"]
        proxy_b = proxies(node_b)
        report = sync(a, proxy_b.url, env=env)
        assert report["rounds"] == 1 and report["received"] == report["sent"] == 0
        assert proxy_b.total < 2048, proxy_b.total
        # Both refused it by push: still one round.
        assert push(node_b.url, [p.raw for p in flood]).accepted == 0
        proxy_b.reset()
        report = sync(a, proxy_b.url, env=env)
        assert report["rounds"] == 1 and proxy_b.total < 2048, proxy_b.total
        proxy_a = proxies(node_a)
        assert sync(b, proxy_a.url, env=env)["rounds"] == 1
    status = json.loads(dazibao(a, "status", "--json").stdout)
    assert status["refusals"] == {}


def test_refused_ids_a_peer_holds_are_carried_and_not_fetched_again(tmp_path, proxies):
    now = int(time.time() * 1000)
    flood = [posts.create_post(SPAMMER, kind="post", board=BOARD, body=f"flood {i}", created_at_ms=now - 3000 + i)
             for i in range(50)]
    a, b = init(tmp_path, "a"), init(tmp_path, "b")
    store_posts(b, flood)  # B took them (another policy); A refuses all but 10
    env = cli_env(DAZIBAO_STRANGER_POSTS_PER_DAY="10")
    with NodeProcess(b, env=cli_env(**NO_QUOTA)) as node_b:
        proxy = proxies(node_b)
        first = sync(a, proxy.url, env=env)
        assert first["received"] == 10 and first["carried"] == 40
        assert {r["code"] for r in first["rejected"]} == {"quota_posts"}
        proxy.reset()
        second = sync(a, proxy.url, env=env)
        assert second["rounds"] == 1 and second["received"] == 0 and not second["rejected"]
        assert proxy.total < 2048, proxy.total

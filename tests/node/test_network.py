"""The gossip network with real processes: five nodes in a chain with peer exchange, a
partition that heals, and a node killed in the middle of a sync.  Real HTTP on 127.0.0.1, real
SQLite; every wait is bounded."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time

import pytest

from dazibao.node.store import Store
from dazibao.protocol import identity, posts

from .procs import NO_QUOTA, NodeProcess, cli_env, dazibao, post_ids, posts_json, wait_until

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gossip_env(port: int, **extra: str) -> dict[str, str]:
    # Loopback peers learned by exchange are refused by default; these nodes live on loopback.
    return cli_env(DAZIBAO_SYNC_INTERVAL_S="1", DAZIBAO_ALLOW_PRIVATE_PEERS="true",
                   DAZIBAO_PUBLIC_URL=f"http://127.0.0.1:{port}", **extra)


class FixedPortNode(NodeProcess):
    """A node on a port chosen before it starts, so that its public URL is known."""

    def __init__(self, data, port, peers=(), **extra: str):
        super().__init__(data, peers=peers, env=gossip_env(port, **extra), gossip_listen=f"127.0.0.1:{port}")
        self.port = port


def init(tmp_path, name):
    data = tmp_path / name
    dazibao(data, "init", "--name", name)
    return data


def test_chain_of_five_with_peer_exchange(tmp_path):
    ports = [free_port() for _ in range(5)]
    datas = [init(tmp_path, f"n{i}") for i in range(5)]
    nodes = []
    try:
        # n0 knows nobody; each later node knows only the one before it.
        for i, (data, port) in enumerate(zip(datas, ports, strict=True)):
            peers = (f"http://127.0.0.1:{ports[i - 1]}",) if i else ()
            nodes.append(FixedPortNode(data, port, peers).start())
        pid = dazibao(datas[0], "post", "--board", "labor", "from one end of the chain").stdout.strip()
        for data in datas:
            wait_until(lambda d=data: pid in post_ids(d), f"the post to reach {data.name}", timeout=60)
        # Peer exchange taught the far end of the chain about nodes it was never told of.
        learned = dazibao(datas[4], "peers", "list", "--json").stdout
        assert f"127.0.0.1:{ports[2]}" in learned or f"127.0.0.1:{ports[1]}" in learned
        # And a post from the other end travels back.
        back = dazibao(datas[4], "post", "--board", "labor", "and back again").stdout.strip()
        for data in datas:
            wait_until(lambda d=data: back in post_ids(d), f"the reply to reach {data.name}", timeout=60)
    finally:
        for node in nodes:
            node.stop()


def _text_post_ids(data) -> list[str]:
    return sorted(p["id"] for p in posts_json(data) if p["kind"] == "post")


def test_partition_then_heal(tmp_path):
    ports = [free_port() for _ in range(4)]
    datas = [init(tmp_path, f"p{i}") for i in range(4)]
    url = [f"http://127.0.0.1:{p}" for p in ports]
    # Two groups, {0, 1} and {2, 3}, that know nothing of each other.
    groups = [(0, 1), (1, 0), (2, 3), (3, 2)]
    nodes = []
    try:
        for i, j in groups:
            nodes.append(FixedPortNode(datas[i], ports[i], (url[j],)).start())
        made = []
        for i, data in enumerate(datas):
            for k in range(3):
                made.append(dazibao(data, "post", "--board", "news", f"group post {i}.{k}").stdout.strip())
        # Three posts from each node, and the profile that went with its first.
        wait_until(lambda: post_ids(datas[0]) == post_ids(datas[1]) and len(post_ids(datas[0])) == 8,
                   "group one to converge")
        wait_until(lambda: post_ids(datas[2]) == post_ids(datas[3]) and len(post_ids(datas[2])) == 8,
                   "group two to converge")
        time.sleep(2)  # a few more anti-entropy rounds: nothing may cross the partition
        assert not set(post_ids(datas[0])) & set(post_ids(datas[2]))
        # Heal: one member of group one learns one member of group two, while running.
        dazibao(datas[1], "peers", "add", url[2])
        wait_until(lambda: all(_text_post_ids(d) == sorted(made) and len(post_ids(d)) == 16 for d in datas),
                   "all four to converge", timeout=60)
    finally:
        for node in nodes:
            node.stop()


def test_sigkill_while_receiving_a_sync(tmp_path):
    source, sink = init(tmp_path, "source"), init(tmp_path, "sink")
    key = identity.SigningKey(bytes([9]) * 32)
    start = int(time.time() * 1000) - 86_400_000
    batch = [posts.create_post(key, kind="post", board="archive", body=f"archived post {i} " * 8,
                               created_at_ms=start + i) for i in range(15_000)]
    with Store(source / "dazibao.db") as store:
        # One key floods here: the stranger quota is not what this test is about.
        store.configure_policy(stranger_posts_per_day=10**9, stranger_bytes_per_day=10**12)
        for i in range(0, len(batch), 5_000):
            store.ingest(batch[i : i + 5_000], source="import", now_ms=int(time.time() * 1000))
    p_source, p_sink = free_port(), free_port()
    with FixedPortNode(source, p_source, **NO_QUOTA):
        node = FixedPortNode(sink, p_sink, (f"http://127.0.0.1:{p_source}",), **NO_QUOTA).start()

        def received() -> int:
            try:
                with sqlite3.connect(f"file:{sink / 'dazibao.db'}?mode=ro", uri=True, timeout=5) as db:
                    return db.execute("SELECT count(*) FROM posts").fetchone()[0]
            except sqlite3.OperationalError:
                return 0

        wait_until(lambda: received() > 0, "the sync to begin", interval=0.02)
        node.stop(signal.SIGKILL)
        mid = received()
        with sqlite3.connect(sink / "dazibao.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        node.start()
        wait_until(lambda: received() == len(batch), "the restarted node to catch up", timeout=120)
        node.stop()
    assert 0 < mid <= len(batch)
    with sqlite3.connect(sink / "dazibao.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_one_way_peer_lists_still_push_both_ways(tmp_path):
    # n1 and n2 are each told only n0; n0 is told nobody.  Anti-entropy is hourly, so only
    # pushes can carry a post from n1 to n2: n0 must have learned both from their calls.
    ports = [free_port() for _ in range(3)]
    datas = [init(tmp_path, f"w{i}") for i in range(3)]
    url0 = f"http://127.0.0.1:{ports[0]}"
    nodes = []
    try:
        for i, (data, port) in enumerate(zip(datas, ports, strict=True)):
            env = {**gossip_env(port), "DAZIBAO_SYNC_INTERVAL_S": "3600"}
            nodes.append(NodeProcess(data, peers=(url0,) if i else (), env=env,
                                     gossip_listen=f"127.0.0.1:{port}").start())

        def n0_knows_both() -> bool:
            rows = dazibao(datas[0], "peers", "list", "--json").stdout
            return all(f"127.0.0.1:{p}" in rows for p in ports[1:])

        wait_until(n0_knows_both, "n0 to learn its callers")
        pid = dazibao(datas[1], "post", "--board", "labor", "from a node nobody lists").stdout.strip()
        wait_until(lambda: pid in post_ids(datas[2]), "the post to reach n2 by pushes alone", timeout=60)
    finally:
        for node in nodes:
            node.stop()

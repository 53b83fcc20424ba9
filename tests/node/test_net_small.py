"""A small version of the net benchmark (bench/net.py): four real nodes in a one-way ring,
each told only the next one, default settings but for allow_private_peers.  A post pushed into
one node reaches every node.  Real processes, real HTTP on 127.0.0.1, real SQLite; every wait is
bounded and nothing is timed.  Also checks the benchmark's topologies, without processes."""

from __future__ import annotations

import importlib.util
import random
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

from dazibao.protocol import identity, messages, posts

from .procs import NodeProcess, cli_env, dazibao, wait_until

BENCH_NET = Path(__file__).resolve().parents[2] / "bench" / "net.py"


def load_bench() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("dazibao_bench_net", BENCH_NET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def holds(node: NodeProcess, post_id: bytes) -> bool:
    """Whether ``node`` serves the post, asked through its gossip API (POST /v1/fetch)."""
    request = urllib.request.Request(node.url + "/v1/fetch", data=messages.encode_ids([post_id]),
                                     headers={"Content-Type": "application/x-msgpack"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return any(posts.claimed_id(raw) == post_id for raw in messages.decode_posts(resp.read()).posts)


@pytest.mark.slow
def test_post_reaches_every_node_of_a_one_way_ring(tmp_path: Path) -> None:
    env = cli_env(DAZIBAO_ALLOW_PRIVATE_PEERS="true")
    nodes: list[NodeProcess] = []
    try:
        # Ring 0 -> 1 -> 2 -> 3 -> 0 on ports the OS chooses: start 3 first (its peer, 0, does
        # not exist yet), then each node told the one started before it, and close the ring by
        # telling 3 about 0 while it runs, as an operator would with `dazibao peers add`.
        by_index: dict[int, NodeProcess] = {}
        for i in (3, 2, 1, 0):
            peers = (by_index[i + 1].url,) if i < 3 else ()
            by_index[i] = NodeProcess(tmp_path / f"n{i}", peers=peers, env=env).start()
            nodes.append(by_index[i])
        dazibao(tmp_path / "n3", "peers", "add", by_index[0].url, env=env)
        ring = [by_index[i] for i in range(4)]

        post = posts.create_post(identity.SigningKey(random.Random(4).randbytes(32)), kind="post",
                                 board="labor", body="around the ring", created_at_ms=int(time.time() * 1000))
        # Into node 1, so that the post crosses the link that was added while node 3 ran.
        request = urllib.request.Request(ring[1].url + "/v1/posts", data=messages.encode_posts([post.raw]),
                                         headers={"Content-Type": "application/x-msgpack"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert messages.decode_push_result(resp.read()).accepted == 1
        for i, node in enumerate(ring):
            wait_until(lambda n=node: holds(n, post.id), f"the post to reach node {i}", timeout=90)
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.parametrize("seed", range(40))
def test_bench_topology_gives_each_node_one_or_two_peers_and_joins_everyone(seed: int) -> None:
    net = load_bench()
    topology = net.make_topology(12, random.Random(seed))
    assert topology.size == 12
    for i, told in enumerate(topology.peers):
        assert 1 <= len(told) <= 2 and i not in told and len(set(told)) == len(told)
    assert topology.connected()
    # The tree part gives every node a one-way path to one common node.
    assert any(all(j in topology.forward(i) for i in range(12)) for j in range(12))
    frozen = net.choose_frozen(topology, random.Random(seed))
    assert topology.connected(without=frozen)
    assert 0 < topology.forward_fraction() <= 1

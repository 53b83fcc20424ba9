"""The node and the simulation run one gossip policy: two real nodes (in-process, real HTTP on
127.0.0.1, real SQLite) record every input their policy got and every decision it made; the
same inputs replayed, with the same seed, into the policy as the simulation builds it give the
same decisions, action for action."""

from __future__ import annotations

import asyncio
import random
import socket
import time

from dazibao.node.config import Config, DataDir
from dazibao.node.server import Node
from dazibao.protocol import gossip, identity, posts
from dazibao.protocol.simulation import SimConfig, gossip_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def replay(node: Node, settings: SimConfig, seed: int) -> list[list[gossip.Action]]:
    """The node's recorded inputs, fed to the policy the simulation would build for it."""
    started = node.gossip
    assert started is not None and node.trace
    brain = gossip.Gossip(gossip_config(settings, node.config.public_url), random.Random(seed),
                          now=started.started_at, peers=started.seed_peers)
    return [brain.handle_timer(at) if what == "timer" else brain.handle_event(what, at)
            for at, what, _ in node.trace]


async def test_the_node_and_the_simulation_make_the_same_decisions(tmp_path):
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    seeds = [11, 12]
    nodes = []
    for i, (port, url) in enumerate(zip(ports, urls, strict=True)):
        data = DataDir(tmp_path / f"n{i}")
        data.create()
        # n0 is told of n1; n1 of nobody: it learns n0 from n0's calls.
        config = Config(gossip_listen=f"127.0.0.1:{port}", ui_listen="127.0.0.1:0", public_url=url,
                        peers=(urls[1],) if i == 0 else (), sync_interval_s=1, allow_private_peers=True)
        nodes.append(Node(data, config, rng=random.Random(seeds[i]), trace=[]))
    for node in nodes:
        await node.start()
    try:
        a, b = nodes
        # n1 learns n0 from its first sync, at once, and can push to it.
        await wait_for(lambda: b.gossip.peer(urls[0]) is not None, "n1 to learn n0 from its call")
        key = identity.SigningKey(bytes(range(32)))
        made = []
        for i, node in enumerate((a, b, a)):
            post = posts.create_post(key, kind="post", board="labor", body=f"post {i}",
                                     created_at_ms=int(time.time() * 1000))
            await node.core.ingest_checked([post], "local")
            made.append(post)
        await wait_for(lambda: all(p.key in n.core.index for p in made for n in nodes), "both to hold every post")
        # A few anti-entropy rounds, with their peer exchanges.
        await wait_for(lambda: sum(isinstance(x, gossip.Sync) for _, _, acts in a.trace for x in acts) >= 3,
                       "three syncs by n0")
    finally:
        for node in nodes:
            await node.stop()
    settings = SimConfig(fanout=3, sync_interval_ms=1_000, peer_exchange=True, max_peers=64, allow_private=True,
                         stem=True)
    for node, seed in zip(nodes, seeds, strict=True):
        recorded = [actions for _, _, actions in node.trace]
        assert replay(node, settings, seed) == recorded
    # The run went through the rules this test is about: inbound learning, pushes both ways,
    # the in-flight set answering announcements, anti-entropy.
    kinds_b = {type(x) for _, _, acts in b.trace for x in acts} | {type(w) for _, w, _ in b.trace}
    assert {gossip.InboundPeer, gossip.SavePeer, gossip.Announce, gossip.Announced, gossip.Want} <= kinds_b
    kinds_a = {type(x) for _, _, acts in a.trace for x in acts}
    assert {gossip.Sync, gossip.Announce, gossip.PeerOk, gossip.Exchange} <= kinds_a

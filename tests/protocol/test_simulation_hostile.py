"""The gossip simulation with 10 % hostile nodes (protocol/simulation_hostile.py): black holes for
honest posts, a flood from fresh keys, lies in peer exchange.  Honest posts must reach every
honest node in the same number of rounds (+-1) as without the attack, and the flood an honest
node stores is bounded by quota x keys.  Deterministic for a seed; no event loop, no sockets."""

from __future__ import annotations

import random

from dazibao.protocol.simulation import ROUND_MS, SimConfig
from dazibao.protocol.simulation_hostile import (
    DEFAULT_QUOTA,
    HostileConfig,
    HostileResult,
    HostileSimulation,
    compare,
)


def check(result: HostileResult) -> None:
    """The acceptance, for every honest post (not only the median and the max)."""
    attack, base = result.attack, result.baseline
    assert None not in attack.rounds and None not in base.rounds, (attack, base)
    for i, (a, b) in enumerate(zip(attack.rounds, base.rounds, strict=True)):
        assert a is not None and b is not None
        assert a <= b + 1, f"post {i}: {a} rounds with the attack, {b} without ({result})"
    # The flood: each honest node stores at most the quota per flood key, so at most quota x keys.
    assert result.flood_stored_per_key_max <= result.quota_posts
    assert result.flood_stored_max <= result.quota_posts * result.flood_keys
    # The black holes keep no honest post.
    assert result.honest_posts_at_hostile == 0
    # The attack did happen: flood posts were stored and refused by quota, pex lies were believed.
    assert result.flood_made >= result.flood_keys > 0
    assert result.flood_stored_max > 0 and result.refused.get("quota_posts", 0) > 0
    assert result.hostile_peer_share > result.hostile_nodes / (result.hostile_nodes + result.honest_nodes)


def test_200_nodes_10_percent_hostile():
    result = compare(SimConfig(nodes=200), HostileConfig(), random.Random, 1)
    assert (result.honest_nodes, result.hostile_nodes) == (180, 20)
    check(result)


def test_a_seed_reproduces_its_run():
    config = SimConfig(nodes=40)
    a = compare(config, HostileConfig(), random.Random, 5, posts_made=4, warmup_rounds=2)
    b = compare(config, HostileConfig(), random.Random, 5, posts_made=4, warmup_rounds=2)
    assert a == b
    c = compare(config, HostileConfig(), random.Random, 6, posts_made=4, warmup_rounds=2)
    assert (a.attack, a.refused) != (c.attack, c.refused)


def test_without_the_attack_the_sampled_nodes_are_honest():
    sim = HostileSimulation(SimConfig(nodes=40), random.Random(3), HostileConfig(attack=False))
    assert len(sim.hostile_nodes) == 4 and not sim.hostile
    sim.run_until(2 * ROUND_MS)
    post = sim.make_post(sim.honest()[0])
    sim.run_until(sim.time + ROUND_MS)
    assert sim.flood_made == 0 and all(post.id in n.posts for n in sim.nodes)


def test_the_same_seed_gives_the_same_topology_and_sample_with_or_without_the_attack():
    on = HostileSimulation(SimConfig(nodes=60), random.Random(4), HostileConfig())
    off = HostileSimulation(SimConfig(nodes=60), random.Random(4), HostileConfig(attack=False))
    assert [n.name for n in on.hostile_nodes] == [n.name for n in off.hostile_nodes]
    assert [[p.url for p in n.peers] for n in on.nodes] == [[p.url for p in n.peers] for n in off.nodes]
    assert on.flood_offset_ms == off.flood_offset_ms


def test_hostile_nodes_black_hole_and_flood():
    sim = HostileSimulation(SimConfig(nodes=40), random.Random(8), HostileConfig())
    sim.run_until(ROUND_MS)
    made = [sim.make_post(n) for n in sim.honest()[:3]]
    sim.run_until(3 * ROUND_MS)
    # Black holes: announced to and pushed to, they keep only their own flood.
    assert all(p.author in sim.flood_keys for n in sim.hostile_nodes for p in n.posts.values())
    assert all(post.id in n.posts for post in made for n in sim.honest())
    # Flood: fresh keys each round, a quota per key at every honest node.
    keys = HostileConfig().flood_keys_per_round * len(sim.hostile_nodes) * 3
    assert len(sim.flood_keys) == keys and sim.flood_made == keys * HostileConfig().flood_posts_per_key
    for node in sim.honest():
        per_key: dict[bytes, int] = {}
        for post in node.posts.values():
            if post.author in sim.flood_keys:
                per_key[post.author] = per_key.get(post.author, 0) + 1
        assert per_key and max(per_key.values()) <= DEFAULT_QUOTA.posts_per_day
        assert sim.flood_stored[node.name] == sum(per_key.values())


def test_peer_exchange_with_a_hostile_node_offers_only_hostile_addresses():
    sim = HostileSimulation(SimConfig(nodes=100), random.Random(8), HostileConfig())
    hostile = {n.name for n in sim.hostile_nodes}
    asker = sim.honest()[0]
    before = {p.url for p in asker.peers}
    for liar in sim.hostile_nodes[:3]:
        sim._exchange(asker, liar)
    sim.run_until(100)                      # the answers are in; no node's first round has begun
    learned = {p.url for p in asker.peers} - before
    assert len(learned) >= 3 and learned <= hostile

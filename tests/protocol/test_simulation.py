"""The deterministic gossip simulation: many seeds of random topologies, lossy links and node
churn all converge; a seed reproduces its run exactly.  No event loop, no sockets."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from dazibao.protocol import gossip
from dazibao.protocol.simulation import SimConfig, Simulation, run_topology, spread

SEEDS = range(200)
MAX_ROUNDS = 400


def random_config(seed: int) -> SimConfig:
    rng = random.Random(seed)
    return SimConfig(
        nodes=rng.randint(2, 40),
        degree=rng.randint(1, 5),
        fanout=rng.randint(1, 4),
        loss=rng.choice([0.0, 0.05, 0.2, 0.35]),
        down=rng.choice([0.0, 0.0, 0.1, 0.3]),
        churn=rng.choice([0.0, 0.02, 0.1]),
        max_peers=rng.randint(2, 64),
        peer_exchange=rng.random() < 0.8,
        boards=("general", "劳动") if rng.random() < 0.5 else ("general",),
    )


def run(config: SimConfig, seed: int) -> Simulation:
    """Posts made at random live nodes during a churning phase; then everyone is back up
    (nodes that were down come back, as they do) and gossip must finish the job."""
    sim = Simulation(config, random.Random(seed), label=f"seed {seed}")
    rng = random.Random(~seed)
    for _ in range(rng.randint(5, 30)):
        if rng.random() < 0.5 and sim.live():
            sim.make_post(board=rng.choice(config.boards))
        sim.step()
    if not any(n.posts for n in sim.nodes):
        sim.make_post(sim.live()[0] if sim.live() else sim.nodes[0])
    sim.config = replace(config, churn=0.0)
    for node in sim.nodes:
        node.alive = True
    while not sim.converged() and sim.round < MAX_ROUNDS:
        sim.step()
    return sim


@pytest.mark.parametrize("seed", SEEDS)
def test_random_networks_converge(seed):
    config = random_config(seed)
    sim = run(config, seed)
    assert sim.converged(), (
        f"seed {seed} ({config}) did not converge in {MAX_ROUNDS} rounds: "
        f"{[len(n.posts) for n in sim.nodes]}"
    )
    # Every node's reconciliation index agrees with the posts it holds.
    for node in sim.nodes:
        assert sorted(node.index.iter_range(b"", None)) == sorted(p.key for p in node.posts.values())


def test_a_seed_reproduces_its_run():
    config = random_config(7)
    a, b = run(config, 7), run(config, 7)
    assert (a.round, a.messages, a.dropped, a.copies) == (b.round, b.messages, b.dropped, b.copies)
    assert [sorted(n.posts) for n in a.nodes] == [sorted(n.posts) for n in b.nodes]
    c = run(config, 8)
    assert (a.round, a.messages) != (c.round, c.messages)


def test_one_post_reaches_every_live_node_with_few_copies():
    for strategy in ("dazibao", "push_pull"):
        result = spread(SimConfig(nodes=60, strategy=strategy, down=0.1, loss=0.2), random.Random(3))
        assert result.reached == result.live
    clean = spread(SimConfig(nodes=60), random.Random(3))
    assert clean.reached == clean.live and clean.copies_per_node <= 1.0


def test_peer_exchange_grows_a_sparse_network():
    sim = Simulation(SimConfig(nodes=30, degree=1, max_peers=10), random.Random(11))
    before = sum(len(n.peers) for n in sim.nodes)
    for _ in range(20):
        sim.step()
    assert sum(len(n.peers) for n in sim.nodes) > before
    # Exchange-learned peers are forgotten beyond max_peers; peers given at start never are.
    assert all(len(n.peers) <= max(10, sum(p.source == "config" for p in n.peers)) for n in sim.nodes)
    assert any(p.source == "pex" for n in sim.nodes for p in n.peers)


def test_a_dead_peer_is_backed_off():
    sim = Simulation(SimConfig(nodes=3, degree=2, peer_exchange=False), random.Random(1))
    dead = sim.nodes[2]
    dead.alive = False
    for _ in range(6):
        sim.step()
    states = [p for n in sim.nodes[:2] for p in n.peers if p.url == dead.name]
    assert states and all(p.failures >= 1 and p.next_try_at_ms > gossip.BASE_BACKOFF_MS for p in states)


def test_one_way_knowledge_is_completed_by_inbound_callers():
    # Each node is told one peer, one way; a node nobody lists still receives pushes, because
    # the peers it calls learn its address from the call.
    topology = [(i, [i - 1] if i else [1]) for i in range(8)]
    sim = Simulation(SimConfig(nodes=8, one_way=True, peer_exchange=True), random.Random(4), topology=topology)
    sim.run_until(5_000)
    last = sim.nodes[7]                     # listed by nobody
    assert any(p.url == last.name for p in sim.nodes[6].peers)
    post = sim.make_post(sim.nodes[0])
    made = sim.time
    sim.run_until(made + 5_000)             # far less than a sync interval: pushes did it
    assert sim.converged([post.id]) and sim.time_to_all(post.id, made) < 1.0


def test_a_hung_node_does_not_stall_the_others():
    # n1 will be frozen; nobody depends on it alone.
    topology = [(0, [1, 2]), (1, [2]), (2, [3]), (3, [0]), (4, [1, 3]), (5, [4])]
    times = run_topology([(f"n{i}", [f"n{j}" for j in peers]) for i, peers in topology], random.Random(2),
                         frozen="n1", posts=10)
    assert all(t < 5.0 for t in sorted(times)[: len(times) // 2 + 1]), times
    assert max(times) < 60.0


def test_a_slow_clock_holds_future_posts_without_blaming_honest_peers():
    sim = Simulation(SimConfig(nodes=12, degree=2, slow_clocks=0.25), random.Random(9))
    slow = [n for n in sim.nodes if n.clock_offset_ms]
    assert slow
    sim.step()
    post = sim.make_post(next(n for n in sim.nodes if not n.clock_offset_ms))
    for _ in range(6):                      # three minutes: still "from the future" at the slow nodes
        sim.step()
    assert all(post.id not in n.posts for n in slow)
    assert all(p.failures == 0 for n in slow for p in n.peers)
    while not sim.converged([post.id]) and sim.round < 60:
        sim.step()
    assert sim.converged([post.id])


def test_run_topology_reports_a_time_per_post():
    ring = [(f"n{i}", [f"n{(i + 1) % 12}"]) for i in range(12)]
    times = run_topology(ring, random.Random(1), posts=5)
    assert len(times) == 5 and all(0 <= t < 15 for t in times)

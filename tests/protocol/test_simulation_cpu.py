"""The simulation's model of a shared machine (SimConfig.cores): one event loop per node, whose
work is done one piece at a time in the order it came, and ``cores`` CPUs shared by every
node.  No event loop, no sockets: simulated time only."""

from __future__ import annotations

import random
import statistics

import pytest

from dazibao.protocol.simulation import SimConfig, Simulation, run_phases, run_topology, spread

SERVICE = 2.0

#: bench/net.py's topology for seed 1 (node i is told the nodes listed), one way.
BENCH_TOPOLOGY = [(f"n{i}", [f"n{j}" for j in told]) for i, told in enumerate(
    [(9, 11), (7, 11), (7,), (0,), (8,), (7,), (8,), (4,), (11,), (3, 6), (6,), (7,)])]


def machine(nodes: int, cores: int) -> Simulation:
    """A network whose nodes know nobody: nothing happens but the work the test gives."""
    topology = [(i, []) for i in range(nodes)]
    return Simulation(SimConfig(nodes=nodes, cores=cores, one_way=True), random.Random(0), topology=topology)


def finish_times(sim: Simulation, work: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Give every (node, service ms) of ``work`` at once; (node, when it was done), in the
    order the work was done."""
    done: list[tuple[int, float]] = []
    for i, service in work:
        sim.run_on(sim.nodes[i], service, lambda i=i: done.append((i, sim.time)))
    sim.run_until(sim.time + 1_000)
    return done


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_one_core_serves_k_nodes_one_after_another(k):
    sim = machine(k, cores=1)
    done = finish_times(sim, [(i, SERVICE) for i in range(k)])
    # The machine's one core serves the work in the order it came.
    assert done == [(i, (i + 1) * SERVICE) for i in range(k)]
    assert sim.cpu_ms == k * SERVICE and sim.cpu_jobs == k


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_k_cores_serve_k_nodes_at_once(k):
    sim = machine(k, cores=k)
    done = finish_times(sim, [(i, SERVICE) for i in range(k)])
    assert sorted(done) == [(i, SERVICE) for i in range(k)]


def test_cores_are_shared_by_the_waiting_work_in_order():
    # Two cores, five nodes: the work is done in waves of two.
    sim = machine(5, cores=2)
    done = finish_times(sim, [(i, SERVICE) for i in range(5)])
    assert [t for _, t in done] == [SERVICE, SERVICE, 2 * SERVICE, 2 * SERVICE, 3 * SERVICE]
    assert [i for i, _ in done] == [0, 1, 2, 3, 4]


def test_a_node_does_one_piece_of_work_at_a_time_in_order():
    # Plenty of cores, but one event loop per node: node 0's three pieces run one after the
    # other, in the order they came, while node 1's runs beside them.
    sim = machine(2, cores=4)
    done = finish_times(sim, [(0, 1.0), (0, 3.0), (1, 5.0), (0, 0.5)])
    assert done == [(0, 1.0), (0, 4.0), (0, 4.5), (1, 5.0)]


def test_work_given_later_waits_for_work_under_way():
    sim = machine(2, cores=1)
    done: list[tuple[str, float]] = []
    sim.run_on(sim.nodes[0], 10.0, lambda: done.append(("first", sim.time)))
    sim.run_until(4.0)
    sim.run_on(sim.nodes[1], 1.0, lambda: done.append(("second", sim.time)))
    sim.run_until(100.0)
    assert done == [("first", 10.0), ("second", 11.0)]


def test_a_hung_node_does_no_work_until_it_answers_again():
    sim = machine(2, cores=1)
    sim.nodes[0].hung = True
    done = finish_times(sim, [(0, SERVICE), (1, SERVICE)])
    # Its work neither runs nor holds the core.
    assert done == [(1, SERVICE)]
    sim.nodes[0].hung = False
    sim.run_on(sim.nodes[1], SERVICE, lambda: done.append((1, sim.time)))
    sim.run_until(sim.time + 1_000)
    assert [i for i, _ in done] == [1, 0, 1]


def test_without_the_model_work_is_done_at_once():
    sim = machine(3, cores=0)
    done = finish_times(sim, [(0, 5.0), (0, 5.0), (1, 5.0)])
    assert done == [(0, 0), (0, 0), (1, 0)]
    assert sim.cpu_ms == 0 and sim.cpu_jobs == 0


def test_one_hop_costs_its_messages_cpu_and_latency():
    # Node 0 is told node 1.  A post made at 0 is pushed into it (one latency, then taking a
    # push), announced (a call), answered (an announcement), pushed (a call) and taken by 1
    # (a push): four latencies and the CPU of those five pieces of work.
    latency, call, announce, push = 0.5, 0.25, 1.0, 2.0
    config = SimConfig(nodes=2, one_way=True, latency_ms=(latency, latency), cores=1,
                       cpu_call_ms=call, cpu_announce_ms=announce, cpu_push_ms=push)
    sim = Simulation(config, random.Random(1), topology=[(0, [1]), (1, [])])
    sim.run_until(5_000)                      # first syncs done, nothing in flight
    post = sim.make_post(sim.nodes[0])
    made = sim.time
    sim.run_until(made + 1_000)
    assert sim.nodes[1].got_at[post.id] - made == pytest.approx(4 * latency + 2 * push + 2 * call + announce)


def test_fewer_cores_spread_posts_more_slowly():
    def median_spread(cores: int) -> float:
        config = SimConfig(pickup_ms=0, latency_ms=(0.2, 0.4), cores=cores, cpu_call_ms=0.5,
                           cpu_announce_ms=1.0, cpu_push_ms=2.0)
        return statistics.median(run_topology(BENCH_TOPOLOGY, random.Random(1), posts=10, gap_s=5.0,
                                              limit_s=60.0, config=config))

    one, two, many = median_spread(1), median_spread(2), median_spread(12)
    assert one > two > many > 0


def test_a_hung_node_does_not_stall_the_others_under_the_cpu_model():
    config = SimConfig(pickup_ms=0, latency_ms=(0.2, 0.4), cores=2, cpu_call_ms=0.5, cpu_announce_ms=1.0,
                       cpu_push_ms=2.0)
    stats: dict[str, float] = {}
    times = run_topology(BENCH_TOPOLOGY, random.Random(2), frozen="n0", posts=10, gap_s=5.0, limit_s=60.0,
                         config=config, stats=stats)
    assert max(times) < 1.0, times
    # Every post costs at least the push each live node takes it with.
    assert stats["posts"] == 10 and stats["cpu_ms"] >= 10 * 11 * 2.0 and stats["cpu_jobs"] > 0


def test_a_seed_reproduces_a_run_under_the_cpu_model():
    config = SimConfig(pickup_ms=0, latency_ms=(0.2, 0.4), cores=2, cpu_call_ms=0.5, cpu_announce_ms=1.0,
                       cpu_push_ms=2.0)
    runs = [run_topology(BENCH_TOPOLOGY, random.Random(5), posts=8, config=config) for _ in range(2)]
    assert runs[0] == runs[1]


def test_run_phases_runs_one_network_through_phases_as_the_benchmark_does():
    config = SimConfig(pickup_ms=0, latency_ms=(0.2, 0.4), cores=2, cpu_call_ms=0.5, cpu_announce_ms=1.0,
                       cpu_push_ms=2.0)
    # One phase is run_topology.
    assert run_phases(BENCH_TOPOLOGY, random.Random(3), [None], posts=6, gap_s=5.0, limit_s=60.0,
                      config=config) == [run_topology(BENCH_TOPOLOGY, random.Random(3), posts=6, gap_s=5.0,
                                                      limit_s=60.0, config=config)]
    stats: list[dict[str, float]] = []
    every, cold = run_phases(BENCH_TOPOLOGY, random.Random(3), [None, "n0"], posts=6, gap_s=5.0, limit_s=60.0,
                             config=config, stats=stats)
    assert len(every) == len(cold) == 6 and max(every + cold) < 1.0
    # The second phase's network has carried the first phase's posts: its nodes know their
    # callers, so each post is announced more often than on a fresh network with a node hung.
    fresh: dict[str, float] = {}
    run_topology(BENCH_TOPOLOGY, random.Random(3), frozen="n0", posts=6, gap_s=5.0, limit_s=60.0, config=config,
                 stats=fresh)
    assert [s["posts"] for s in stats] == [6, 6] and stats[1]["messages"] > fresh["messages"]


# --- without the model, nothing changed ---------------------------------------------------------
#
# Values computed with protocol/simulation.py as it was before the CPU model was added.  Should
# a change of the gossip policy itself move them, compute them again with that change alone.

BEFORE_RUN_TOPOLOGY = [0.031, 0.03, 0.029, 0.035, 0.02, 0.022, 0.022, 0.02, 0.021, 0.022]


@pytest.mark.parametrize("costs", [{}, {"cpu_call_ms": 1.0, "cpu_announce_ms": 2.0, "cpu_push_ms": 3.0}])
def test_without_cores_the_simulation_gives_exactly_what_it_gave_before(costs):
    # Service times without cores are ignored: cores = 0 is "no CPU model".
    config = SimConfig(pickup_ms=0, latency_ms=(3, 4), **costs)
    times = run_topology(BENCH_TOPOLOGY, random.Random(1), posts=10, gap_s=5.0, limit_s=60.0, config=config)
    assert times == BEFORE_RUN_TOPOLOGY
    result = spread(SimConfig(nodes=30, **costs), random.Random(5))
    assert (result.rounds, result.reached, result.live, result.messages, result.seconds) == (1, 30, 30, 801, 0.046)
    assert result.copies_per_node == pytest.approx(29 / 30)

"""10 % hostile nodes in the gossip simulation: rounds for honest posts with and without the attack.

``python bench/run.py hostile [--quick]`` runs protocol/simulation_hostile.py's :func:`compare`:
one seeded network, once with 10 % of its nodes hostile (black holes for honest posts, a flood
from fresh keys every round, only hostile addresses in peer exchange) and once with the same
nodes behaving honestly; 10 honest posts made at the same honest nodes at the same moments, and
each post's rounds (mean sync intervals, 30 s) until every honest live node holds it.  Honest
nodes apply ``trust.admit`` with a stranger quota of 2 posts per key per day; each hostile node
signs 3 posts with 1 fresh key per round.  Full run: 1,000 nodes, seeds 1 and 2; ``--quick``:
200 nodes, seed 1.  The figures are in docs/performance.md, "hostile".
"""

from __future__ import annotations

import random
import statistics
import time

from dazibao.protocol.simulation import SimConfig
from dazibao.protocol.simulation_hostile import HostileConfig, compare


def main(quick: bool) -> dict[str, float]:
    nodes, seeds = (200, [1]) if quick else (1000, [1, 2])
    out: dict[str, float] = {"nodes": nodes}
    worst_excess = -1e9
    for seed in seeds:
        started = time.perf_counter()
        r = compare(SimConfig(nodes=nodes), HostileConfig(), random.Random, seed)
        took = time.perf_counter() - started
        attack = [x for x in r.attack.rounds if x is not None]
        base = [x for x in r.baseline.rounds if x is not None]
        sec_a = [x for x in r.attack.seconds if x is not None]
        sec_b = [x for x in r.baseline.seconds if x is not None]
        missing = len(r.attack.rounds) - len(attack) + len(r.baseline.rounds) - len(base)
        excess = max(a - b for a, b in zip(attack, base, strict=False)) if attack and base else 0
        worst_excess = max(worst_excess, excess)
        print(f"seed {seed}: {nodes} nodes ({r.honest_nodes} honest, {r.hostile_nodes} hostile), {took:.0f} s wall")
        print(f"  rounds with the attack:    median {statistics.median(attack)}, max {max(attack)}; "
              f"seconds median {statistics.median(sec_a):.3f}, max {max(sec_a):.3f}")
        print(f"  rounds without the attack: median {statistics.median(base)}, max {max(base)}; "
              f"seconds median {statistics.median(sec_b):.3f}, max {max(sec_b):.3f}")
        print(f"  per post (attack - without): max {excess} rounds; posts not arrived: {missing}")
        print(f"  flood: {r.flood_made} posts from {r.flood_keys} keys; stored per honest node median "
              f"{r.flood_stored_median:g}, max {r.flood_stored_max} (bound quota x keys = "
              f"{r.quota_posts * r.flood_keys}), per key max {r.flood_stored_per_key_max} (quota {r.quota_posts})")
        print(f"  refusals {r.refused}, carried {r.carried}; honest posts at hostile nodes "
              f"{r.honest_posts_at_hostile}; hostile share of honest nodes' peers {r.hostile_peer_share:.2f}")
        out.update({
            f"s{seed}_rounds_attack_median": float(statistics.median(attack)),
            f"s{seed}_rounds_attack_max": float(max(attack)),
            f"s{seed}_rounds_base_median": float(statistics.median(base)),
            f"s{seed}_rounds_base_max": float(max(base)),
            f"s{seed}_seconds_attack_median": statistics.median(sec_a),
            f"s{seed}_seconds_base_median": statistics.median(sec_b),
            f"s{seed}_flood_stored_max": float(r.flood_stored_max),
            f"s{seed}_flood_bound": float(r.quota_posts * r.flood_keys),
            f"s{seed}_missing": float(missing),
            f"s{seed}_wall_s": took,
        })
    out["worst_excess_rounds"] = float(worst_excess)
    return out

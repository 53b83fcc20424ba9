"""How fast one post spreads through a simulated network, and at what cost.

The deterministic simulation (protocol/simulation.py) drives, for every node, the very gossip
policy a running node uses (protocol/gossip.py) over fake links, with the real protocol code
for the rest: signed posts, reconciliation, announce/want.  For each network size, one post is
injected at a random node after a first round, and the rounds (sync intervals) and simulated
seconds until every live node has it are measured, with the full-post copies sent per node.
Two baselines run on the same topologies and seeds in the same run: plain push-pull
anti-entropy (the same policy with no push) and flooding (every node sends every new post in
full to all its peers).  Then the same with 10% of nodes down and 20% of messages dropped.

Targets: rounds <= 1.25 x the push-pull baseline; full-post copies <= 1.5 per node per post;
100% of live nodes reached.
"""

from __future__ import annotations

import math
import random
import statistics
import time

from dazibao.protocol.simulation import SimConfig, spread

STRATEGIES = ("dazibao", "push_pull", "flood")
CONDITIONS = {"clean": {}, "degraded": {"down": 0.1, "loss": 0.2}}


def main(quick: bool) -> dict[str, float]:
    sizes = {100: 20} if quick else {100: 40, 1000: 8}   # nodes -> seeds
    result: dict[str, float] = {}
    t0 = time.perf_counter()
    print("spread: one post, rounds until every live node has it (median over seeds)")
    print(f"  {'nodes':>5} {'condition':9} {'strategy':9} {'rounds':>6} {'x push-pull':>11} "
          f"{'seconds':>8} {'copies/node':>11} {'reached':>8}")
    for n, seeds in sizes.items():
        for cond, extra in CONDITIONS.items():
            runs = {s: [spread(SimConfig(nodes=n, strategy=s, **extra), random.Random(seed)) for seed in range(seeds)]
                    for s in STRATEGIES}
            base = statistics.median(r.rounds for r in runs["push_pull"])
            for s in STRATEGIES:
                rounds = statistics.median(r.rounds for r in runs[s])
                copies = statistics.median(r.copies_per_node for r in runs[s])
                reached = min(r.reached / r.live for r in runs[s])
                seconds = statistics.median(r.seconds if r.seconds is not None else math.inf for r in runs[s])
                print(f"  {n:5d} {cond:9} {s:9} {rounds:6.1f} {rounds / base:11.2f} {seconds:8.2f} {copies:11.2f} "
                      f"{reached:8.1%}")
                result[f"n{n}_{cond}_{s}_seconds"] = round(seconds, 3)
                key = f"n{n}_{cond}_{s}"
                result[f"{key}_rounds"] = rounds
                result[f"{key}_copies_per_node"] = round(copies, 3)
                result[f"{key}_reached_fraction"] = round(reached, 4)
            ours = statistics.median(r.rounds for r in runs["dazibao"])
            result[f"n{n}_{cond}_ratio_rounds_to_push_pull"] = round(ours / base, 3)
            result[f"n{n}_log2"] = round(math.log2(n), 2)
    print("  (log2 N: " + ", ".join(f"{n}: {math.log2(n):.1f}" for n in sizes) + f"); "
          f"{time.perf_counter() - t0:.0f} s")
    print("  targets: rounds <= 1.25 x push-pull, copies <= 1.5 per node, every live node reached")
    return result

"""Who wrote this post first: how often spies guess the author, with and without the stem.

The seeded simulation (protocol/simulation.py) runs the node's own gossip policy on every node;
10 % and 20 % of the nodes are spies that gossip honestly and pool when, and from whom, they
first learn of each post (protocol/simulation_privacy.py).  The first-spy estimator names the
honest node that first delivered a post to any spy as its author.  The same networks and seeds
run without the stem (every fresh post announced at once, the baseline) and with it (Dandelion++:
a stem of one peer at a time, then the usual fluff; docs/gossip.md, "Stem, then fluff").

Figures: the estimator's precision (fraction of posts written at honest nodes whose author it
names) with and without the stem, their ratio, and the delay cost: the median and 90th
percentile time until 99 % of the live nodes hold a post, in simulated seconds and in rounds
(one round is one mean anti-entropy interval, 30 s).

Targets: with the stem, precision at most a third of the baseline's at 10 % spies; the median
time to 99 % of the nodes under one round.
"""

from __future__ import annotations

import random
import statistics
import time

from dazibao.protocol.simulation import SimConfig
from dazibao.protocol.simulation_privacy import PrivacyResult, observe

FRACTIONS = (0.1, 0.2)
SEEDS = (1, 2)


def main(quick: bool) -> dict[str, float]:
    nodes, posts = (200, 25) if quick else (1000, 60)
    t0 = time.perf_counter()
    print(f"privacy: first-spy estimator, {nodes} nodes, {posts} posts x {len(SEEDS)} seeds, "
          f"spies {', '.join(f'{f:.0%}' for f in FRACTIONS)}")
    runs: dict[bool, list[list[PrivacyResult]]] = {}
    for stem in (False, True):
        # The same seeds with and without the stem: the same networks, spies and authors.
        runs[stem] = [observe(SimConfig(nodes=nodes, stem=stem), random.Random(seed), FRACTIONS, posts=posts)
                      for seed in SEEDS]
    result: dict[str, float] = {"nodes": nodes, "posts": posts * len(SEEDS)}
    print(f"  {'spies':>5} {'stem':5} {'precision':>9} {'x no stem':>9} {'median s':>8} {'p90 s':>6} "
          f"{'median rounds':>13} {'reached':>7}")
    for k, fraction in enumerate(FRACTIONS):
        base = statistics.fmean(run[k].precision for run in runs[False])
        for stem in (False, True):
            rs = [run[k] for run in runs[stem]]
            precision = statistics.fmean(r.precision for r in rs)
            median_s = statistics.median(r.median_s for r in rs)
            p90_s = max(r.p90_s for r in rs)
            reached = min(r.reached for r in rs)
            ratio = precision / base if base else 0.0
            label = "on" if stem else "off"
            print(f"  {fraction:5.0%} {label:5} {precision:9.3f} {ratio:9.2f} {median_s:8.3f} {p90_s:6.2f} "
                  f"{median_s * 1000 / 30_000:13.4f} {reached:7.0%}")
            key = f"spies{round(fraction * 100)}_stem_{label}"
            result[f"{key}_precision"] = round(precision, 4)
            result[f"{key}_median_s"] = round(median_s, 4)
            result[f"{key}_p90_s"] = round(p90_s, 3)
            result[f"{key}_reached_fraction"] = round(reached, 4)
        result[f"spies{round(fraction * 100)}_ratio_precision_stem_to_none"] = round(
            result[f"spies{round(fraction * 100)}_stem_on_precision"] / base if base else 0.0, 3)
    print(f"  (one round = 30 s; {time.perf_counter() - t0:.0f} s)")
    print("  targets: precision with the stem <= 1/3 of without at 10 % spies; median time to 99 % < 1 round")
    return result

"""Who wrote this post first: the first-spy estimator against the gossip policy, simulated.

A fraction of the nodes of a seeded simulation (protocol/simulation.py) are spies: they gossip
like everyone else, and together they record when, and from which node, any of them first
learned of each post (an announcement, a push, a stem push, a sync).  The *first-spy
estimator* then guesses that a post was written at the honest node that first delivered it to
any spy; its precision is the fraction of posts, written at honest nodes, whose author it
guesses right (docs/gossip.md, "Stem, then fluff"; docs/performance.md, "privacy").  Run with
and without the stem, the same network and seed give the privacy the stem buys and the delay
it costs: the time until 99 % of the live nodes hold a post.

Everything random comes from the ``rng`` the caller passes, as in the simulation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .simulation import ROUND_MS, SimConfig, SimNode, SimRng, Simulation

__all__ = ["SpySimulation", "PrivacyResult", "observe"]


class SpySimulation(Simulation):
    """A simulation watched by several sets of spies at once, one per fraction of the nodes:
    each smaller set is part of the larger ones.  Spies gossip as honest nodes do, so the sets
    watch one and the same run; each set pools what its members see."""

    def __init__(self, config: SimConfig, rng: SimRng, spy_fractions: Sequence[float]) -> None:
        super().__init__(config, rng)
        order = rng.sample(self.nodes, len(self.nodes))
        self.fractions = tuple(spy_fractions)
        #: For each set of spies, the rank below which a node is one of them.
        self._cut = [int(f * config.nodes) for f in self.fractions]
        self._rank = {n.name: r for r, n in enumerate(order)}
        #: For each set, for each post, when and from which honest node a spy first learned of it.
        self.first: list[dict[bytes, tuple[float, str]]] = [{} for _ in self.fractions]

    def spies(self, k: int) -> frozenset[str]:
        """The nodes of the ``k``-th set of spies."""
        return frozenset(name for name, r in self._rank.items() if r < self._cut[k])

    def seen(self, receiver: SimNode, sender: SimNode, ids: Iterable[bytes], at: float) -> None:
        ids = tuple(ids)
        to, by = self._rank[receiver.name], self._rank[sender.name]
        for cut, first in zip(self._cut, self.first, strict=True):
            if to >= cut or by < cut:
                continue                    # not seen by a spy, or seen from a fellow spy
            for i in ids:
                if i not in first or at < first[i][0]:
                    first[i] = (at, sender.name)


@dataclass(frozen=True)
class PrivacyResult:
    nodes: int
    spy_fraction: float
    stem: bool
    posts: int
    #: Fraction of the posts whose author the first-spy estimator names.
    precision: float
    #: Fraction of the posts that reached 99 % of the live nodes before the run ended.
    reached: float
    #: Median and 90th percentile, over the posts, of the simulated seconds until 99 % of the
    #: live nodes held a post (posts that never did count as the run's length).
    median_s: float
    p90_s: float

    @property
    def median_rounds(self) -> float:
        return self.median_s * 1000 / ROUND_MS

    @property
    def p90_rounds(self) -> float:
        return self.p90_s * 1000 / ROUND_MS


def observe(config: SimConfig, rng: SimRng, spy_fractions: Sequence[float], *, posts: int = 100,
            gap_ms: int = 500, warmup_rounds: int = 2, tail_s: float = 90.0) -> list[PrivacyResult]:
    """Run ``config`` watched by spies, one result per fraction of ``spy_fractions`` (each set
    of spies holds the smaller ones): after ``warmup_rounds`` rounds (every node has met its
    peers and callers), ``posts`` posts are written at random live nodes that no set counts as
    spies, one every ``gap_ms``; the run ends ``tail_s`` after the last (the stem's fail-safe
    fires within 60 s).  Raises ValueError when no such node answers."""
    sim = SpySimulation(config, rng, spy_fractions)
    for _ in range(warmup_rounds):
        sim.step()
    # Posts are written at nodes that no set of spies holds: every estimate is of an honest author.
    watched = frozenset().union(*(sim.spies(k) for k in range(len(sim.fractions))))
    authors = [n for n in sim.nodes if n.answers and n.name not in watched]
    if not authors:
        raise ValueError("no honest live node to write posts")
    made: list[tuple[bytes, str, float]] = []
    start = sim.time
    for k in range(posts):
        sim.run_until(start + k * gap_ms)
        author = rng.choice(authors)
        made.append((sim.make_post(author).id, author.name, sim.time))
    end = sim.time + tail_s * 1000
    sim.run_until(end)
    live = sim.live()
    times: list[float] = []
    reached = 0
    for post_id, _, at in made:
        took = _time_to_share(live, post_id, at, 0.99)
        reached += took is not None
        times.append(took if took is not None else (end - at) / 1000)
    out = []
    for fraction, first in zip(sim.fractions, sim.first, strict=True):
        right = sum(1 for post_id, author, _ in made if post_id in first and first[post_id][1] == author)
        out.append(PrivacyResult(config.nodes, fraction, config.stem, posts, right / posts, reached / posts,
                                 statistics.median(times), _quantile(times, 0.9)))
    return out


def _time_to_share(live: Sequence[SimNode], post_id: bytes, made_at: float, share: float) -> float | None:
    """Seconds from ``made_at`` until ``share`` of ``live`` held the post, or None."""
    got = sorted(t for n in live if (t := n.got_at.get(post_id)) is not None)
    need = max(1, math.ceil(share * len(live)))
    if len(got) < need:
        return None
    return max(0.0, got[need - 1] - made_at) / 1000


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


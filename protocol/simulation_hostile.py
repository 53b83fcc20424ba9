"""The gossip simulation with hostile nodes among the honest ones (docs/performance.md, "hostile").

:class:`HostileSimulation` is a :class:`~dazibao.protocol.simulation.Simulation` in which a
seeded fraction of the nodes attack.  A hostile node runs the same gossip policy object for its
peers (it syncs, answers, is announced to and learns callers like any node) but:

* it is a **black hole** for honest posts: it takes announcements and pushes (it asks for every
  id it is offered, as an honest node would) and stores and passes on none of them; its
  reconciliation set holds only its own flood, so it answers a sync as if it held nothing honest;
* it **floods**: once per round (ROUND_MS, at a random moment drawn once per node) it signs
  ``flood_posts_per_key`` posts with each of ``flood_keys_per_round`` fresh keys on the first
  board and announces them to every peer it knows (not to ``push_fanout`` of them);
* it **lies in peer exchange**: ``GET /v1/peers`` answers its own address and up to
  ``MAX_PEERS_PER_EXCHANGE - 1`` other hostile nodes' addresses, never an honest one.

Honest nodes decide on every incoming post with the node's own policy, :func:`trust.admit`:
every honest node follows one moderator, who vouched for the author of the honest posts (the
simulation's one key, ``Simulation.make_post``); every flood key is a stranger held to
``quota`` (posts and bytes per author per board per day, by the receiving node's clock).  Like
a real node's store (node/store/refusals.py) an honest node remembers the ids it refused by
policy (refused again without a check) and, when it refused a post it fetched in its own sync,
"carries" its key in its reconciliation set so that the next sync does not fetch it again;
posts refused when pushed are never carried.  (A push that arrives from a peer while this node's
own sync with that same peer is open is treated as fetched by that sync: the simulation sees
one ``_receive`` for both.)

A signature check (``posts.check_post``) gives the same verdict for the same bytes at any later
clock (its only clock rule is the future window), so the simulation checks each distinct post
once and reuses the verdict at nodes whose clock is no earlier; this changes no outcome, only
the simulation's own CPU time.

:func:`compare` runs the acceptance measurement: the same seed, topology and hostile sample
twice, once with the attack and once with the same nodes behaving honestly, the same honest
posts made at the same honest nodes at the same moments, and each post's rounds until every
honest live node holds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from . import gossip, limits, posts
from .errors import RemoteProtocolError
from .identity import SigningKey
from .moderation import create_statement, parse_statement
from .peers import MAX_PEERS_PER_EXCHANGE
from .simulation import ROUND_MS, SimConfig, SimNode, SimRng, Simulation
from .trust import Quota, TrustView, admit

__all__ = ["HostileConfig", "HostileSimulation", "HostileResult", "PostTimes", "compare", "measure",
           "DEFAULT_QUOTA"]

DAY_MS = 86_400_000
#: The stranger quota of the measurement: small, so that "quota x keys" bounds something (a
#: flood key signs more posts than it).  The node's default is limits.STRANGER_POSTS_PER_DAY.
DEFAULT_QUOTA = Quota(posts_per_day=2, bytes_per_day=limits.STRANGER_BYTES_PER_DAY)


@dataclass(frozen=True)
class HostileConfig:
    #: Fraction of the nodes that are hostile (a seeded sample, drawn with or without the attack).
    fraction: float = 0.10
    #: Whether the sampled nodes attack (False: the same nodes behave honestly, the baseline).
    attack: bool = True
    flood_keys_per_round: int = 1
    flood_posts_per_key: int = 3
    quota: Quota = DEFAULT_QUOTA


class HostileSimulation(Simulation):
    """A :class:`Simulation` in which ``hostile.fraction`` of the nodes attack (module docstring)."""

    def __init__(self, config: SimConfig, rng: SimRng, hostile: HostileConfig | None = None, *, label: str = "",
                 topology: Sequence[tuple[int, Sequence[int]]] | None = None) -> None:
        # Set before the base class runs: it already reports events (nothing is received yet).
        self.hostile_config = hostile or HostileConfig()
        self.hostile: frozenset[str] = frozenset()
        super().__init__(config, rng, label=label, topology=topology)
        hc = self.hostile_config
        # Drawn whether or not the nodes attack, so that both runs of a seed have the same state here.
        sample = self.rng.sample(self.nodes, int(hc.fraction * config.nodes))
        self.hostile_nodes: list[SimNode] = sorted(sample, key=lambda n: self.nodes.index(n))
        if hc.attack:
            self.hostile = frozenset(n.name for n in self.hostile_nodes)
        # Every honest node follows one moderator, who vouched for the honest posts' author.
        moderator = SigningKey(bytes(range(32)))
        self.views: dict[str, TrustView] = {}
        for board in config.boards:
            vouch = create_statement(moderator, board=board, action="vouch", subject="author",
                                     target=self._key.public_key, reason="trusted", created_at_ms=self.now_ms - 1)
            self.views[board] = TrustView.build(board, {moderator.public_key}, [parse_statement(vouch)], self.now_ms)
        #: Per honest node: (author, board, day) -> [posts, bytes] a stranger stored there.
        self.usage: dict[str, dict[tuple[bytes, str, int], list[int]]] = {n.name: {} for n in self.nodes}
        #: Per honest node: ids refused by policy, with the code (refused again without a check).
        self.refusals: dict[str, dict[bytes, str]] = {n.name: {} for n in self.nodes}
        #: Per honest node: flood posts stored.
        self.flood_stored: dict[str, int] = {n.name: 0 for n in self.nodes}
        #: Policy refusals, by code, over all honest nodes (remembered ones included).
        self.refused_codes: dict[str, int] = {}
        self.carried = 0
        self.flood_keys: set[bytes] = set()
        self.flood_made = 0
        self._checked: dict[bytes, tuple[posts.Post, int]] = {}
        self._open_syncs: set[tuple[str, str]] = set()
        self._introduced: set[tuple[str, str]] = set()
        #: The moment of every round (ms after its start) at which the hostile nodes flood, all
        #: at once (drawn with or without the attack).
        self.flood_offset_ms = self.rng.randrange(ROUND_MS)
        if hc.attack:
            self._at(self.flood_offset_ms, lambda: self._flood_round(self.flood_offset_ms))

    # --- who is who ----------------------------------------------------------------------

    def is_hostile(self, node: SimNode) -> bool:
        return node.name in self.hostile

    def honest(self) -> list[SimNode]:
        """The live nodes that are not hostile (with or without the attack: not sampled)."""
        sampled = {n.name for n in self.hostile_nodes}
        return [n for n in self.live() if n.name not in sampled]

    # --- the attack ----------------------------------------------------------------------

    def flood_moment(self, round_: int) -> int:
        """When the hostile nodes flood in round ``round_`` (simulated ms)."""
        return round_ * ROUND_MS + self.flood_offset_ms

    def _flood_round(self, when: int) -> None:
        self._at(when + ROUND_MS, lambda: self._flood_round(when + ROUND_MS))
        for node in self.hostile_nodes:
            if node.answers:
                self._flood(node)

    def _flood(self, node: SimNode) -> None:
        """One round's flood of ``node``: fresh keys, their posts announced to every peer it knows."""
        hc = self.hostile_config
        board = self.config.boards[0]
        ids: list[bytes] = []
        for _ in range(hc.flood_keys_per_round):
            key = SigningKey(bytes(self.rng.randrange(256) for _ in range(32)))
            self.flood_keys.add(key.public_key)
            for _ in range(hc.flood_posts_per_key):
                self.flood_made += 1
                post = posts.create_post(key, kind="post", board=board, body=f"flood {self.flood_made}",
                                         created_at_ms=self.clock(node) - self.flood_made % 1000)
                self._store(node, post)
                ids.append(post.id)
        group: gossip.BoardIds = ((board, tuple(ids)),)
        for peer in node.brain.peers():
            target = self.by_name.get(peer.url)
            if target is not None:
                self._announce(node, target, group)

    def _exchange(self, node: SimNode, peer: SimNode) -> None:
        if not self.is_hostile(peer):
            super()._exchange(node, peer)
            return
        t = self.time
        arrive = self._call(node, peer, t)
        if arrive is None or not self._sent(node):
            self._later(self._failure_time(peer, t), node, gossip.ExchangeDone(peer.name, "unreachable: no answer"))
            return
        others = sorted(self.hostile - {peer.name})
        offered = (peer.name, *self.rng.sample(others, min(len(others), MAX_PEERS_PER_EXCHANGE - 1)))
        self._later(arrive + self._latency(), node, gossip.ExchangeDone(peer.name, offered=offered))

    # --- an honest node's policy on receipt ------------------------------------------------

    def _sync(self, node: SimNode, peer: SimNode) -> None:
        self._open_syncs.add((node.name, peer.name))
        super()._sync(node, peer)

    def _report(self, node: SimNode, event: gossip.Event) -> list[gossip.Action]:
        if isinstance(event, gossip.SyncDone):
            self._open_syncs.discard((node.name, event.peer))
        elif isinstance(event, gossip.InboundPeer):
            # A caller the policy already holds as a caller changes nothing in it (the address
            # is checked again, known, and kept): skip the check, the simulation's hot spot.
            # The pair is dropped when the policy forgets that peer (_perform).
            pair = (node.name, event.url)
            if pair in self._introduced:
                return []
            actions = super()._report(node, event)
            if node.brain.peer(event.url) is not None:
                self._introduced.add(pair)
            return actions
        return super()._report(node, event)

    def _perform(self, node: SimNode, actions: Iterable[gossip.Action]) -> None:
        actions = list(actions)
        for action in actions:
            if isinstance(action, gossip.Forget):
                self._introduced.discard((node.name, action.peer))
        super()._perform(node, actions)

    def _check(self, raw: bytes, clock_ms: int) -> posts.Post:
        known = self._checked.get(raw)
        if known is not None and clock_ms >= known[1]:
            return known[0]
        post = posts.check_post(raw, clock_ms / 1000)
        if known is None or clock_ms < known[1]:
            self._checked[raw] = (post, clock_ms)
        return post

    def _refuse(self, node: SimNode, post: posts.Post, code: str, source: str, codes: list[str]) -> None:
        codes.append(code)
        self.refused_codes[code] = self.refused_codes.get(code, 0) + 1
        self.refusals[node.name][post.id] = code
        if (node.name, source) in self._open_syncs:
            # Fetched in this node's own sync: the peer holds it, so its key is carried.
            if post.key not in node.index:
                node.index.add(post.key)
                self.carried += 1

    def _receive(self, node: SimNode, raws: Iterable[bytes], source: str) -> tuple[list[posts.Post], list[str]]:
        if self.is_hostile(node):
            return [], []                   # a black hole: takes everything, keeps nothing
        new: list[posts.Post] = []
        codes: list[str] = []
        clock = self.clock(node)
        usage = self.usage[node.name]
        refused = self.refusals[node.name]
        for raw in raws:
            try:
                post = self._check(raw, clock)
            except RemoteProtocolError as exc:
                codes.append(exc.code)
                continue
            if post.id in node.posts:
                continue
            if post.id in refused:
                self._refuse(node, post, refused[post.id], source, codes)
                continue
            day = clock // DAY_MS
            used = usage.get((post.author, post.board, day), [0, 0])
            code = admit(self.views[post.board], self.hostile_config.quota, post, posts_today=used[0],
                         bytes_today=used[1], local_author=False)
            if code is not None:
                self._refuse(node, post, code, source, codes)
                continue
            if post.author != self._key.public_key:
                usage[(post.author, post.board, day)] = [used[0] + 1, used[1] + len(post.raw)]
            if self._store(node, post):
                new.append(post)
                if post.author in self.flood_keys:
                    self.flood_stored[node.name] += 1
        if new:
            by_board: dict[str, list[bytes]] = {}
            for post in new:
                by_board.setdefault(post.board, []).append(post.id)
            self._report(node, gossip.NewPosts(tuple((b, tuple(i)) for b, i in by_board.items()), source))
        return new, codes

    # --- questions -----------------------------------------------------------------------

    def honest_time_to_all(self, post_id: bytes, made_at: float) -> float | None:
        """Simulated seconds from ``made_at`` until every honest live node held the post, or None."""
        times = [n.got_at.get(post_id) for n in self.honest()]
        if any(t is None for t in times):
            return None
        return (max(t for t in times if t is not None) - made_at) / 1000

    def hostile_peer_share(self) -> float:
        """The mean fraction of hostile nodes among honest nodes' peers."""
        sampled = {n.name for n in self.hostile_nodes}
        shares = [sum(p.url in sampled for p in n.peers) / len(n.peers) for n in self.honest() if n.peers]
        return sum(shares) / max(len(shares), 1)


@dataclass(frozen=True)
class PostTimes:
    """Per honest post, in the order made: rounds begun (at least 1) and simulated seconds until
    every honest live node held it (None: not within the run)."""

    rounds: tuple[int | None, ...]
    seconds: tuple[float | None, ...]


@dataclass(frozen=True)
class HostileResult:
    attack: PostTimes
    baseline: PostTimes
    honest_nodes: int
    hostile_nodes: int
    quota_posts: int
    flood_keys: int
    flood_made: int
    #: Flood posts stored per honest node: the most and the median, and the most per flood key.
    flood_stored_max: int
    flood_stored_median: float
    flood_stored_per_key_max: int
    #: Honest posts held by hostile nodes (the black holes keep none: 0).
    honest_posts_at_hostile: int
    refused: dict[str, int] = field(default_factory=dict)
    carried: int = 0
    #: The mean share of hostile nodes among the honest nodes' peers at the end (pex lies).
    hostile_peer_share: float = 0.0
    rounds_run: int = 0


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def measure(config: SimConfig, hostile: HostileConfig, sim_rng: SimRng, plan_rng: SimRng, *, posts_made: int = 10,
            warmup_rounds: int = 3, max_rounds: int = 30) -> tuple[HostileSimulation, PostTimes]:
    """Run one simulation: ``warmup_rounds`` rounds (the attack, if any, already running), then
    ``posts_made`` honest posts at random honest nodes in the next round, every other one
    within two seconds of that round's flood and the rest at random moments (all drawn from
    ``plan_rng`` alone, so that the attack does not change them), then run
    until every honest live node holds all of them or ``max_rounds`` rounds after the first."""
    sim = HostileSimulation(config, sim_rng, hostile)
    sim.run_until(warmup_rounds * ROUND_MS)
    honest = sim.honest()
    start = sim.time
    burst = sim.flood_moment(warmup_rounds)
    # Every other post is made within two seconds of the round's flood, while it spreads.
    plan = sorted((burst + plan_rng.randrange(2_000) if k % 2 == 0 else start + plan_rng.randrange(ROUND_MS),
                   plan_rng.randrange(len(honest))) for k in range(posts_made))
    made: list[tuple[bytes, float]] = []
    for at, who in plan:
        sim.run_until(at)
        made.append((sim.make_post(honest[who]).id, sim.time))
    end = start + max_rounds * ROUND_MS
    ids = [i for i, _ in made]
    while sim.time < end and not all(all(i in n.posts for i in ids) for n in sim.honest()):
        sim.run_until(sim.time + 1_000)
    rounds: list[int | None] = []
    seconds: list[float | None] = []
    for post_id, at in made:
        took = sim.honest_time_to_all(post_id, at)
        seconds.append(took)
        rounds.append(None if took is None else max(1, math.ceil(took * 1000 / ROUND_MS)))
    return sim, PostTimes(tuple(rounds), tuple(seconds))


def compare(config: SimConfig, hostile: HostileConfig, make_rng: Callable[[int], SimRng], seed: int, *,
            posts_made: int = 10, warmup_rounds: int = 3, max_rounds: int = 30) -> HostileResult:
    """The acceptance measurement: the run of ``seed`` with the attack and without it (the same
    nodes sampled, behaving honestly), the same honest posts at the same nodes and moments.
    ``make_rng`` makes a run's randomness from a seed (``random.Random``)."""

    def run(attack: bool) -> tuple[HostileSimulation, PostTimes]:
        cfg = HostileConfig(hostile.fraction, attack, hostile.flood_keys_per_round, hostile.flood_posts_per_key,
                            hostile.quota)
        return measure(config, cfg, make_rng(seed), make_rng(seed * 7919 + 1), posts_made=posts_made,
                       warmup_rounds=warmup_rounds, max_rounds=max_rounds)

    sim, attacked = run(True)
    _, baseline = run(False)
    honest = sim.honest()
    stored = [sim.flood_stored[n.name] for n in honest]
    per_key = max((used[0] for n in honest for (author, _, _), used in sim.usage[n.name].items()
                   if author in sim.flood_keys), default=0)
    at_hostile = sum(1 for n in sim.hostile_nodes for p in n.posts.values() if p.author not in sim.flood_keys)
    return HostileResult(
        attack=attacked, baseline=baseline, honest_nodes=len(honest), hostile_nodes=len(sim.hostile_nodes),
        quota_posts=hostile.quota.posts_per_day, flood_keys=len(sim.flood_keys), flood_made=sim.flood_made,
        flood_stored_max=max(stored, default=0), flood_stored_median=_median(stored) if stored else 0.0,
        flood_stored_per_key_max=per_key, honest_posts_at_hostile=at_hostile, refused=dict(sim.refused_codes),
        carried=sim.carried, hostile_peer_share=sim.hostile_peer_share(), rounds_run=int(sim.time // ROUND_MS),
    )

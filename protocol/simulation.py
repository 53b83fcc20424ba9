"""A deterministic, seeded, in-process simulation of a dazibao gossip network.

The same protocol code a real node runs -- signed posts (posts.check_post), the reconciliation
index and messages (keyindex, reconcile), the announce/want exchange, and the peer policy
(peers: push targets, sync partner, back-off, forgetting) -- driven by a fake clock over fake
lossy links.  Everything random comes from the one ``rng`` the caller passes (a
``random.Random(seed)``), so a failing seed is reproduced from the seed alone.

Time advances in **rounds**.  In one round every live node (1) announces the posts it learned
in the previous round to ``fanout`` peers, which ask only for the ids they lack and have not
already asked someone for, and (2) reconciles with one random peer (anti-entropy), then moves
the missing posts both ways.  Every message crosses a link that drops it with probability
``loss``; a node that is down drops everything.  See docs/gossip.md.

Two baselines run on the same topology and seed, for the spread benchmark:

* ``push_pull``: plain anti-entropy, each node reconciling with one random peer per round;
* ``flood``: every node forwards every new post in full to all its peers at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from . import peers as policy
from . import posts, reconcile
from .errors import RemoteProtocolError
from .identity import SigningKey
from .keyindex import KeyIndex

__all__ = ["SimConfig", "SimNode", "Simulation", "SpreadResult", "spread"]

ROUND_MS = 30_000
EPOCH_MS = 1_700_000_000_000


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 50
    degree: int = 4                 # random peers each node picks at start (links go both ways)
    fanout: int = 3                 # peers a fresh post is announced to
    loss: float = 0.0               # probability that any one message is dropped
    down: float = 0.0               # fraction of nodes down for the whole run
    churn: float = 0.0              # per round, probability that a live node goes down / a down one returns
    max_peers: int = 64
    peer_exchange: bool = True
    strategy: str = "dazibao"       # 'dazibao' | 'push_pull' | 'flood'
    boards: tuple[str, ...] = ("general",)


@dataclass
class SimNode:
    name: str
    peers: list[policy.PeerState] = field(default_factory=list)
    posts: dict[bytes, posts.Post] = field(default_factory=dict)
    index: KeyIndex = field(default_factory=KeyIndex)
    fresh: list[bytes] = field(default_factory=list)
    next_fresh: list[bytes] = field(default_factory=list)
    alive: bool = True

    def add(self, post: posts.Post) -> bool:
        if post.id in self.posts:
            return False
        self.posts[post.id] = post
        self.index.add(post.key)
        self.next_fresh.append(post.id)
        return True


class Simulation:
    """A network of SimNodes; :meth:`step` runs one round."""

    def __init__(self, config: SimConfig, rng: policy.Rng, *, label: str = "") -> None:
        """``rng`` is the run's only source of randomness (``random.Random(seed)``)."""
        self.config = config
        self.label = label
        self.rng = rng
        self.round = 0
        self.messages = 0
        self.dropped = 0
        self.copies = 0             # full posts sent over links (delivered or not)
        self.bytes = 0
        self.nodes = [SimNode(f"n{i}") for i in range(config.nodes)]
        names = [n.name for n in self.nodes]
        # A random connected graph: a random tree joins everyone (a node that knows nobody on
        # the network is not part of it), then each node picks ``degree`` more random peers;
        # links go both ways (as an organizer's node learns the members that sync with it).
        links: dict[str, set[str]] = {name: set() for name in names}
        for i, name in enumerate(names[1:], start=1):
            other = names[self.rng.randrange(i)]
            links[name].add(other)
            links[other].add(name)
        for name in names:
            others = [x for x in names if x != name]
            for other in self.rng.sample(others, min(config.degree, len(others))):
                links[name].add(other)
                links[other].add(name)
        for node in self.nodes:
            node.peers = [policy.PeerState(url=u, source="config") for u in sorted(links[node.name])]
        self.by_name = {n.name: n for n in self.nodes}
        down = self.rng.sample(self.nodes, int(config.down * config.nodes))
        for node in down:
            node.alive = False
        self._key = SigningKey(bytes(self.rng.randrange(256) for _ in range(32)))
        self._made = 0

    # --- the fake world ------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        return EPOCH_MS + self.round * ROUND_MS

    def _deliver(self, to: SimNode, size: int = 64) -> bool:
        """Whether one message reaches ``to`` (counted either way)."""
        self.messages += 1
        self.bytes += size
        if not to.alive or self.rng.random() < self.config.loss:
            self.dropped += 1
            return False
        return True

    def make_post(self, node: SimNode | None = None, board: str | None = None) -> posts.Post:
        """Sign a new post and store it at ``node`` (a random live node by default)."""
        if node is None:
            node = self.rng.choice([n for n in self.nodes if n.alive])
        self._made += 1
        post = posts.create_post(self._key, kind="post", board=board or self.config.boards[0],
                                 body=f"post {self._made} {self.label}".rstrip(),
                                 created_at_ms=self.now_ms + self._made)
        node.add(post)
        return post

    def _receive(self, node: SimNode, raw: bytes) -> None:
        # Exactly the check a real node applies to a post from outside.
        try:
            post = posts.check_post(raw, self.now_ms / 1000)
        except RemoteProtocolError:
            return
        node.add(post)

    def _peer_failed(self, node: SimNode, url: str) -> None:
        for i, p in enumerate(node.peers):
            if p.url == url:
                failures = p.failures + 1
                node.peers[i] = policy.PeerState(
                    url=p.url, source=p.source, failures=failures, last_ok_at_ms=p.last_ok_at_ms,
                    next_try_at_ms=self.now_ms + policy.backoff_ms(failures, self.rng), added_at_ms=p.added_at_ms)

    def _peer_ok(self, node: SimNode, url: str) -> None:
        for i, p in enumerate(node.peers):
            if p.url == url:
                node.peers[i] = policy.PeerState(url=p.url, source=p.source, last_ok_at_ms=self.now_ms,
                                                 added_at_ms=p.added_at_ms)

    # --- one round -----------------------------------------------------------------------

    def step(self) -> None:
        cfg = self.config
        if cfg.churn:
            for node in self.nodes:
                if self.rng.random() < cfg.churn:
                    node.alive = not node.alive
        for node in self.nodes:
            node.fresh, node.next_fresh = node.next_fresh, []
        live = [n for n in self.nodes if n.alive]
        self.rng.shuffle(live)
        if cfg.strategy == "flood":
            for node in live:
                self._flood(node)
        elif cfg.strategy == "dazibao":
            asked: dict[str, set[bytes]] = {n.name: set() for n in self.nodes}
            for node in live:
                self._announce(node, asked)
        if cfg.strategy in ("dazibao", "push_pull"):
            for node in live:
                self._anti_entropy(node)
        self.round += 1

    def _flood(self, node: SimNode) -> None:
        for pid in node.fresh:
            raw = node.posts[pid].raw
            for p in node.peers:
                self.copies += 1
                target = self.by_name[p.url]
                if self._deliver(target, len(raw)):
                    self._receive(target, raw)

    def _announce(self, node: SimNode, asked: dict[str, set[bytes]]) -> None:
        if not node.fresh:
            return
        targets = policy.choose_push_targets(node.peers, self.config.fanout, self.now_ms, self.rng)
        for url in targets:
            target = self.by_name[url]
            if not self._deliver(target, 8 + 34 * len(node.fresh)):
                self._peer_failed(node, url)
                continue
            # The receiver asks only for what it lacks and has not already asked another
            # announcer for in this round (the real node keeps the same in-flight set).
            wanted = [i for i in node.fresh if i not in target.posts and i not in asked[url]]
            asked[url].update(wanted)
            if not self._deliver(node, 8 + 34 * len(wanted)):
                continue
            for pid in wanted:
                raw = node.posts[pid].raw
                self.copies += 1
                if self._deliver(target, len(raw)):
                    self._receive(target, raw)
            self._peer_ok(node, url)

    def _anti_entropy(self, node: SimNode) -> None:
        url = policy.choose_sync_peer(node.peers, self.now_ms, self.rng)
        if url is None:
            return
        peer = self.by_name[url]
        initiator = reconcile.Initiator(node.index, list(self.config.boards))
        message = initiator.initiate()
        while message is not None:
            if not self._deliver(peer, len(message)):
                self._peer_failed(node, url)
                return
            reply = reconcile.respond(peer.index, message)
            if not self._deliver(node, len(reply)):
                self._peer_failed(node, url)
                return
            message = initiator.reconcile(reply)
        for pid in initiator.need:          # fetch
            raw = peer.posts[pid].raw
            self.copies += 1
            if self._deliver(node, len(raw)):
                self._receive(node, raw)
        for pid in initiator.have:          # push
            raw = node.posts[pid].raw
            self.copies += 1
            if self._deliver(peer, len(raw)):
                self._receive(peer, raw)
        self._peer_ok(node, url)
        if self.config.peer_exchange:
            self._exchange(node, peer)

    def _exchange(self, node: SimNode, peer: SimNode) -> None:
        known = {p.url for p in node.peers} | {node.name}
        offered = [p.url for p in peer.peers if p.failures == 0][: policy.MAX_PEERS_PER_EXCHANGE]
        for url in offered:
            if url not in known:
                node.peers.append(policy.PeerState(url=url, source="pex", added_at_ms=self.now_ms))
                known.add(url)
        drop = set(policy.peers_to_forget(node.peers, self.now_ms, self.config.max_peers))
        if drop:
            node.peers = [p for p in node.peers if p.url not in drop]

    # --- questions -----------------------------------------------------------------------

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive]

    def converged(self, ids: Iterable[bytes] | None = None) -> bool:
        """Whether every live node holds ``ids`` (default: every post any node holds)."""
        wanted = set(ids) if ids is not None else set().union(*(n.posts for n in self.nodes))
        return all(wanted <= n.posts.keys() for n in self.live())

    def holders(self, post_id: bytes) -> int:
        return sum(1 for n in self.live() if post_id in n.posts)


@dataclass(frozen=True)
class SpreadResult:
    strategy: str
    rounds: int
    reached: int
    live: int
    copies_per_node: float
    messages: int


def spread(config: SimConfig, rng: policy.Rng, *, max_rounds: int = 200) -> SpreadResult:
    """Inject one post at a random live node; run until every live node has it."""
    sim = Simulation(config, rng)
    post = sim.make_post()
    while not sim.converged([post.id]) and sim.round < max_rounds:
        sim.step()
    live = len(sim.live())
    return SpreadResult(config.strategy, sim.round, sim.holders(post.id), live,
                        sim.copies / max(live, 1), sim.messages)

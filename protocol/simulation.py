"""A deterministic, seeded, in-process simulation of a dazibao gossip network.
Longer than 600 lines because the network, the machine it runs on and the driving of the gossip
policy are one event loop, whose parts share its queue and clock.

Every simulated node is driven by the very object a real node runs, the gossip policy of
protocol/gossip.py: the same peer health and back-off, the same choice of sync peer and push
targets, the same in-flight set, peer exchange and learning of inbound callers.  Around it the
simulation plays the part of node/server.py -- it performs the policy's actions and reports
their results -- with the same protocol code a node runs for the rest: signed posts checked by
``posts.check_post`` at the receiver's clock, the reconciliation index and messages (keyindex,
reconcile).  The network is fake: each message takes a random latency, may be lost, and a node
may be down (connections refused), hung (it accepts and never answers, like a process stopped
with SIGSTOP: every request to it fails after its timeout) or run a slow clock.

Optionally (``SimConfig.cores``) the nodes also share a machine: every node is one process
with one event loop, which handles one piece of work at a time in the order it came (a FIFO per
node), and a piece of work starts only when its node is free and one of the machine's ``cores``
is free (a pool shared by all nodes, served in the order the work came).  Each request of a push
costs its caller ``cpu_call_ms`` before it leaves and its callee ``cpu_announce_ms`` or
``cpu_push_ms`` before it takes effect; syncs and peer exchanges are not charged (one per node
per sync interval).  The default, ``cores = 0``, models no CPU: messages take effect when they
arrive, exactly as without the model.

Time is simulated in milliseconds with an event queue; :meth:`Simulation.step` advances one
**round**, ``ROUND_MS`` (one mean anti-entropy interval).  Everything random comes from the one
``rng`` the caller passes (a ``random.Random(seed)``), so a failing seed is reproduced from the
seed alone.

Two baselines run on the same topology and seed, for the spread benchmark:

* ``push_pull``: the same policy with no push (fan-out 0): anti-entropy alone;
* ``flood``: every node sends every new post in full to all its peers at once (no announce and
  want step).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from . import gossip, limits, posts, reconcile
from .errors import RemoteProtocolError
from .identity import SigningKey
from .keyindex import KeyIndex
from .peers import PeerState, Rng


class SimRng(Rng, Protocol):
    """The randomness a simulation draws from (``random.Random`` fits)."""

    def random(self) -> float: ...
    def randrange(self, stop: int, /) -> int: ...
    def randint(self, a: int, b: int) -> int: ...

__all__ = ["SimConfig", "SimNode", "Simulation", "SpreadResult", "spread", "run_topology", "run_phases",
           "gossip_config", "ROUND_MS", "SimRng"]

ROUND_MS = 30_000
EPOCH_MS = 1_700_000_000_000
#: How far behind a node with a slow clock runs (``SimConfig.slow_clocks``).
SLOW_CLOCK_MS = 600_000
#: A request to a hung node fails after this (the node's short request timeout: info,
#: announce and peer-list requests are the first of every exchange).
HUNG_TIMEOUT_MS = limits.PEER_SHORT_REQUEST_TIMEOUT_S * 1000


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 50
    degree: int = 4                 # random peers each node is told at start
    fanout: int = 3                 # peers a fresh post is announced to (push_fanout)
    loss: float = 0.0               # probability that any one message is lost
    down: float = 0.0               # fraction of nodes down for the whole run
    churn: float = 0.0              # per round, probability that a live node goes down / a down one returns
    max_peers: int = 64
    peer_exchange: bool = True
    strategy: str = "dazibao"       # 'dazibao' | 'push_pull' | 'flood'
    boards: tuple[str, ...] = ("general",)
    sync_interval_ms: int = 30_000  # sync_interval_s
    #: One-way latency of a message, drawn uniformly between the two (ms): a whole number of
    #: milliseconds when both are ints, any real number between them otherwise.
    latency_ms: tuple[float, float] = (1, 10)
    #: Whether a node knows only the peers it was told (True), or links go both ways from the
    #: start (False).  Either way a node learns the nodes that call it (docs/gossip.md).
    one_way: bool = False
    #: Fraction of nodes that accept connections and never answer (a stopped process).
    hung: float = 0.0
    #: Fraction of nodes whose clock runs SLOW_CLOCK_MS behind.
    slow_clocks: float = 0.0
    #: Delay before a post written by `dazibao post` is picked up by the running node: a
    #: uniform draw up to this (its store is polled once a second).
    pickup_ms: int = 0
    #: allow_private_peers (the simulated addresses are public names; a loopback test is not).
    allow_private: bool = False
    #: CPUs shared by all the nodes (one machine), or 0 for no CPU model: see the module's
    #: docstring.  The three service times below count only when ``cores`` is above 0.
    cores: int = 0
    #: CPU a caller spends on one request of a push (an announcement, or the push of the posts
    #: wanted) and on reading its answer (ms).
    cpu_call_ms: float = 0.0
    #: CPU a node spends answering one announcement (ms).
    cpu_announce_ms: float = 0.0
    #: CPU a node spends taking one push of posts: check, store, hand to its policy (ms).  Under
    #: the CPU model a post made at a node (``make_post``) is pushed into it: it is stored at
    #: once, and announced after one message's latency and this much of the node's CPU.
    cpu_push_ms: float = 0.0
    #: Every node sends new posts along a stem first (the ``stem`` setting); stem pushes are
    #: not charged CPU under the CPU model.
    stem: bool = False


def gossip_config(config: SimConfig, name: str) -> gossip.GossipConfig:
    """The gossip settings of the node called ``name`` in a simulation of ``config``: the
    mapping node/server.py makes from a node's settings, with the baselines' fan-out."""
    if config.strategy == "push_pull":
        fanout = 0
    elif config.strategy == "flood":
        fanout = config.max_peers
    else:
        fanout = config.fanout
    return gossip.GossipConfig(fanout=fanout, sync_interval_ms=config.sync_interval_ms,
                               peer_exchange=config.peer_exchange, max_peers=config.max_peers,
                               allow_private=config.allow_private, self_urls=frozenset({name}),
                               stem=config.stem)


@dataclass
class SimNode:
    name: str                       # its gossip URL
    brain: gossip.Gossip
    posts: dict[bytes, posts.Post] = field(default_factory=dict)
    index: KeyIndex = field(default_factory=KeyIndex)
    #: When each post arrived here (simulated ms since the start).
    got_at: dict[bytes, float] = field(default_factory=dict)
    alive: bool = True
    hung: bool = False
    clock_offset_ms: int = 0
    #: When this node's next wake-up is queued (simulated ms), if one is.
    wake_at: float | None = None

    @property
    def peers(self) -> list[PeerState]:
        """The peers its gossip policy knows, by URL."""
        return self.brain.peers()

    @property
    def answers(self) -> bool:
        return self.alive and not self.hung


class Simulation:
    """A network of SimNodes; :meth:`step` runs one round (ROUND_MS of simulated time)."""

    def __init__(self, config: SimConfig, rng: SimRng, *, label: str = "",
                 topology: Sequence[tuple[int, Sequence[int]]] | None = None) -> None:
        """``rng`` is the run's only source of randomness (``random.Random(seed)``).  ``topology``
        gives, for each node index, the indexes of the peers it is told (default: random)."""
        self.config = config
        self.label = label
        self.rng = rng
        self.round = 0
        #: Simulated ms since the start: whole milliseconds unless the CPU model or real-valued
        #: latencies make fractions of one.
        self.time: float = 0
        self.messages = 0
        self.dropped = 0
        self.copies = 0                 # full posts sent over links (delivered or not)
        self.bytes = 0
        self.refused = 0                # peer addresses refused by a policy
        #: CPU spent by all nodes (ms) and pieces of work done, under the CPU model.
        self.cpu_ms = 0.0
        self.cpu_jobs = 0
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        # The CPU model: free cores, nodes at work, work waiting (in the order it came).
        self._cores_free = config.cores
        self._working: set[str] = set()
        self._waiting: list[tuple[SimNode, float, Callable[[], None]]] = []
        self._seq = itertools.count()
        names = [f"http://n{i}.sim.example:7470" for i in range(config.nodes)]
        told = self._topology(names, topology)
        self.nodes: list[SimNode] = []
        for name in names:
            slow = self.rng.random() < config.slow_clocks
            offset = -SLOW_CLOCK_MS if slow else 0
            brain = gossip.Gossip(gossip_config(config, name), rng,
                                  now=EPOCH_MS + offset,
                                  peers=[PeerState(url=u, source="config") for u in sorted(told[name])])
            self.nodes.append(SimNode(name, brain, clock_offset_ms=offset))
        self.by_name = {n.name: n for n in self.nodes}
        for node in self.rng.sample(self.nodes, int(config.down * config.nodes)):
            node.alive = False
        for node in self.rng.sample(self.nodes, int(config.hung * config.nodes)):
            node.hung = True
        self._key = SigningKey(bytes(self.rng.randrange(256) for _ in range(32)))
        self._made = 0
        for node in self.nodes:
            self._schedule_wake(node)

    def _topology(self, names: list[str], given: Sequence[tuple[int, Sequence[int]]] | None) -> dict[str, set[str]]:
        told: dict[str, set[str]] = {name: set() for name in names}
        if given is not None:
            for i, peers in given:
                told[names[i]].update(names[j] for j in peers if j != i)
            return told
        both = not self.config.one_way
        # A random connected graph: a random tree joins everyone (a node that knows nobody on
        # the network is not part of it), then each node is told ``degree`` more random peers.
        for i, name in enumerate(names[1:], start=1):
            other = names[self.rng.randrange(i)]
            told[name].add(other)
            if both:
                told[other].add(name)
        for name in names:
            others = [x for x in names if x != name]
            for other in self.rng.sample(others, min(self.config.degree, len(others))):
                told[name].add(other)
                if both:
                    told[other].add(name)
        return told

    # --- the fake world ------------------------------------------------------------------

    @property
    def now_ms(self) -> int:
        """The true wall-clock time of the simulation (whole ms)."""
        return EPOCH_MS + int(self.time)

    def clock(self, node: SimNode) -> int:
        """``node``'s own clock (whole ms, as a node reads it)."""
        return EPOCH_MS + int(self.time) + node.clock_offset_ms

    def _at(self, when: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), fn))

    def _later(self, when: float, node: SimNode, event: gossip.Event) -> None:
        """Report ``event`` to ``node``'s policy at ``when``."""

        def report() -> None:
            self._report(node, event)

        self._at(when, report)

    def _latency(self) -> float:
        lo, hi = self.config.latency_ms
        if isinstance(lo, int) and isinstance(hi, int):
            return self.rng.randint(lo, hi)
        return lo + (hi - lo) * self.rng.random()

    # --- the CPU model (SimConfig.cores) -------------------------------------------------

    @property
    def _cpu(self) -> bool:
        return self.config.cores > 0

    def run_on(self, node: SimNode, service_ms: float, then: Callable[[], None]) -> None:
        """Have ``node`` spend ``service_ms`` of CPU, then call ``then``.

        Without the CPU model (``cores`` 0) ``then`` is called at once.  With it, the work waits
        until every piece of work ``node`` was given before is done (one event loop) and a core
        is free (the machine's ``cores``, shared by all nodes, go to waiting work in the order it
        came); ``then`` is called when the work is done.  A node that does not answer (hung,
        down) does no work: its work waits, and starts when cores are next handed out after it
        answers again."""
        if not self._cpu:
            then()
            return
        self._waiting.append((node, service_ms, then))
        self._dispatch()

    def _dispatch(self) -> None:
        """Start waiting work while cores are free: the oldest work whose node is idle first."""
        i = 0
        while self._cores_free > 0 and i < len(self._waiting):
            node, service_ms, then = self._waiting[i]
            if node.name in self._working or not node.answers:
                i += 1
                continue
            del self._waiting[i]
            self._cores_free -= 1
            self._working.add(node.name)
            self.cpu_ms += service_ms
            self.cpu_jobs += 1

            def done(node: SimNode = node, then: Callable[[], None] = then) -> None:
                self._cores_free += 1
                self._working.discard(node.name)
                then()
                self._dispatch()

            self._at(self.time + service_ms, done)

    def _sent(self, to: SimNode, size: int = 64) -> bool:
        """Whether one message reaches a node that answers (counted either way)."""
        self.messages += 1
        self.bytes += size
        if not to.answers or self.rng.random() < self.config.loss:
            self.dropped += 1
            return False
        return True

    def run_until(self, end: float) -> None:
        """Process every event up to simulated time ``end`` (ms)."""
        while self._queue and self._queue[0][0] <= end:
            when, _, fn = heapq.heappop(self._queue)
            self.time = max(self.time, when)
            fn()
        self.time = max(self.time, end)

    def make_post(self, node: SimNode | None = None, board: str | None = None) -> posts.Post:
        """Sign a new post at ``node`` (a random live node by default): stored at once, announced
        when the node picks it up (``pickup_ms``)."""
        if node is None:
            node = self.rng.choice([n for n in self.nodes if n.answers] or self.nodes)
        self._made += 1
        post = posts.create_post(self._key, kind="post", board=board or self.config.boards[0],
                                 body=f"post {self._made} {self.label}".rstrip(),
                                 created_at_ms=self.clock(node) + self._made)
        self._store(node, post)
        delay = self.rng.randint(0, self.config.pickup_ms) if self.config.pickup_ms else 0
        new = gossip.NewPosts(((post.board, (post.id,)),), "local")
        if self._cpu:
            # The post is pushed into the node: one message's latency, then the node spends on it
            # what taking a push costs, then it announces it.
            def taken() -> None:
                self._report(node, new)

            self._at(self.time + delay + self._latency(), lambda: self.run_on(node, self.config.cpu_push_ms, taken))
        else:
            self._later(self.time + delay, node, new)
        return post

    def _store(self, node: SimNode, post: posts.Post) -> bool:
        if post.id in node.posts:
            return False
        node.posts[post.id] = post
        node.index.add(post.key)
        node.got_at[post.id] = self.time
        return True

    def _receive(self, node: SimNode, raws: Iterable[bytes], source: str) -> tuple[list[posts.Post], list[str]]:
        """Check posts as a real node checks posts from outside, at its clock; store the new ones
        and report them to its policy.  The new posts and the codes of the refused ones."""
        new: list[posts.Post] = []
        codes: list[str] = []
        for raw in raws:
            try:
                post = posts.check_post(raw, self.clock(node) / 1000)
            except RemoteProtocolError as exc:
                codes.append(exc.code)
                continue
            if self._store(node, post):
                new.append(post)
        if new:
            by_board: dict[str, list[bytes]] = {}
            for post in new:
                by_board.setdefault(post.board, []).append(post.id)
            self._report(node, gossip.NewPosts(tuple((b, tuple(i)) for b, i in by_board.items()), source))
        return new, codes

    # --- driving the policy, as node/server.py does ---------------------------------------

    def _schedule_wake(self, node: SimNode) -> None:
        when = max(node.brain.next_timer() - node.clock_offset_ms - EPOCH_MS, self.time)
        if node.wake_at is None or when < node.wake_at:
            node.wake_at = when
            self._at(when, lambda: self._wake(node, when))

    def _wake(self, node: SimNode, when: float) -> None:
        if node.wake_at != when:
            return                      # superseded by an earlier wake-up
        node.wake_at = None
        if not node.answers:
            # A stopped or dead process runs no timer; look again later.
            later = self.time + 5_000
            node.wake_at = later
            self._at(later, lambda: self._wake(node, later))
            return
        if self.clock(node) >= node.brain.next_timer():
            self._perform(node, node.brain.handle_timer(self.clock(node)))
        self._schedule_wake(node)

    def _report(self, node: SimNode, event: gossip.Event) -> list[gossip.Action]:
        actions = node.brain.handle_event(event, self.clock(node))
        self._perform(node, actions)
        self._schedule_wake(node)
        return actions

    def seen(self, receiver: SimNode, sender: SimNode, ids: Iterable[bytes], at: float) -> None:
        """Called whenever ``receiver`` learns at ``at`` that ``sender`` holds ``ids`` (an
        announcement, a push, a stem push, a sync): nothing here; an observer overrides it
        (protocol/simulation_privacy.py)."""

    def _perform(self, node: SimNode, actions: Iterable[gossip.Action]) -> None:
        for action in actions:
            if not node.answers and isinstance(action, gossip.StemPush):
                self._later(self.time + self._latency(), node,
                            gossip.PushDone(action.peer, "unreachable: this node is down", stem=action.ids_by_board))
            elif isinstance(action, gossip.StemPush):
                self._stem_push(node, self.by_name[action.peer], action.ids_by_board)
            elif not node.answers and isinstance(action, (gossip.Sync, gossip.Announce, gossip.Exchange)):
                # A stopped or dead node's requests fail (its policy still hears of it, so that
                # it is left in a consistent state when the node comes back).
                self._fail_own(node, action)
            elif isinstance(action, gossip.Sync):
                self._sync(node, self.by_name[action.peer])
            elif isinstance(action, gossip.Announce):
                self._announce(node, self.by_name[action.peer], action.ids_by_board)
            elif isinstance(action, gossip.Exchange):
                self._exchange(node, self.by_name[action.peer])
            elif isinstance(action, gossip.Refused):
                self.refused += 1

    def _fail_own(self, node: SimNode, action: gossip.Sync | gossip.Announce | gossip.Exchange) -> None:
        event: gossip.Event
        if isinstance(action, gossip.Sync):
            event = gossip.SyncDone(action.peer, "unreachable: this node is down")
        elif isinstance(action, gossip.Announce):
            event = gossip.PushDone(action.peer, "unreachable: this node is down")
        else:
            event = gossip.ExchangeDone(action.peer, "unreachable: this node is down")
        self._later(self.time + self._latency(), node, event)

    def _call(self, node: SimNode, peer: SimNode, t: float) -> float | None:
        """The first request of an exchange, sent at ``t``: when it reaches a peer that answers
        (which learns the caller's address from it, as from the Dazibao-Peer header), or None
        when it fails."""
        arrive = t + self._latency()
        if not self._sent(peer):
            return None

        def introduce() -> None:
            if peer.answers:
                self._report(peer, gossip.InboundPeer(node.name))

        self._at(arrive, introduce)
        return arrive

    def _stem_push(self, node: SimNode, peer: SimNode, ids_by_board: gossip.BoardIds) -> None:
        """Push posts in full to ``peer``, marked as stem: it tells its policy before it stores
        them, as the push handler of node/api.py does."""
        t = self.time
        raws = [node.posts[i].raw for _, ids in ids_by_board for i in ids if i in node.posts]
        self.copies += len(raws)
        arrive = self._call(node, peer, t)
        if arrive is None or not self._sent(peer, sum(map(len, raws))):
            at = self._failure_time(peer, t)
            self._later(at, node, gossip.PushDone(peer.name, "unreachable: no answer", stem=ids_by_board))
            return

        def deliver() -> None:
            if not peer.answers:
                self._later(self.time + HUNG_TIMEOUT_MS, node,
                            gossip.PushDone(peer.name, "timeout: no answer", stem=ids_by_board))
                return
            ids = tuple(i for _, group in ids_by_board for i in group)
            self.seen(peer, node, ids, self.time)
            self._report(peer, gossip.StemOffered(node.name, node.name, ids))
            self._receive(peer, raws, node.name)
            self._later(self.time + self._latency(), node, gossip.PushDone(peer.name, stem=ids_by_board))

        self._at(arrive, deliver)

    def _failure_time(self, peer: SimNode, t: float) -> float:
        # A hung peer holds the request until the timeout; a dead one refuses at once; a lost
        # message is a reset connection.
        return t + (HUNG_TIMEOUT_MS if peer.alive and peer.hung else 2 * self._latency())

    def _sync(self, node: SimNode, peer: SimNode) -> None:
        t = self.time

        def fail(at: float, why: str) -> None:
            self._later(at, node, gossip.SyncDone(peer.name, why))

        arrive = self._call(node, peer, t)
        if arrive is None:
            fail(self._failure_time(peer, t), "unreachable: no answer")
            return
        t = arrive + self._latency()                    # the info answer
        boards = list(self.config.boards)
        initiator = reconcile.Initiator(node.index, boards)
        message: bytes | None = initiator.initiate()
        while message is not None:
            if not self._sent(peer, len(message)):
                fail(t + 2 * self._latency(), "unreachable: connection lost")
                return
            reply = reconcile.respond(peer.index, message)
            # A lost request is a lost round trip: the answer is counted, not lost again.
            self.messages += 1
            self.bytes += len(reply)
            t += 2 * self._latency()
            message = initiator.reconcile(reply)
        need = [peer.posts[i].raw for i in initiator.need if i in peer.posts]
        have = [node.posts[i].raw for i in initiator.have if i in node.posts]
        self.copies += len(need) + len(have)
        fetched = need if not need or self._sent(node, sum(map(len, need))) else []
        pushed = have if not have or self._sent(peer, sum(map(len, have))) else []
        if need:
            t += 2 * self._latency()
        if have:
            t += 2 * self._latency()

        def done() -> None:
            if fetched:
                self.seen(node, peer, initiator.need, self.time)
            if pushed and peer.answers:
                self.seen(peer, node, initiator.have, self.time)
            new, codes = self._receive(node, fetched, peer.name)
            if peer.answers:
                self._receive(peer, pushed, node.name)
            if need and not fetched:
                self._report(node, gossip.SyncDone(peer.name, "unreachable: connection lost"))
                return
            self._report(node, gossip.SyncDone(peer.name, received=len(new), rejected=tuple(codes)))

        self._at(t, done)

    def _exchange(self, node: SimNode, peer: SimNode) -> None:
        t = self.time
        arrive = self._call(node, peer, t)
        if arrive is None or not self._sent(node):
            at = self._failure_time(peer, t)
            self._later(at, node, gossip.ExchangeDone(peer.name, "unreachable: no answer"))
            return
        # What GET /v1/peers answers: its own address first, then the peers it reached lately.
        offered = (peer.name, *(p.url for p in peer.brain.peers() if p.failures == 0 and p.last_ok_at_ms is not None))
        self._later(arrive + self._latency(), node, gossip.ExchangeDone(peer.name, offered=offered))

    def _announce(self, node: SimNode, peer: SimNode, ids_by_board: gossip.BoardIds) -> None:
        if self._cpu:
            self.run_on(node, self.config.cpu_call_ms, lambda: self._announce_now(node, peer, ids_by_board))
        else:
            self._announce_now(node, peer, ids_by_board)

    def _announce_now(self, node: SimNode, peer: SimNode, ids_by_board: gossip.BoardIds) -> None:
        t = self.time
        ids = [i for _, group in ids_by_board for i in group]
        size = 8 + 34 * len(ids)
        flood = self.config.strategy == "flood"
        if flood:
            size = sum(len(node.posts[i].raw) for i in ids)
            self.copies += len(ids)
        arrive = self._call(node, peer, t)
        if arrive is None:
            at = self._failure_time(peer, t)
            self._later(at, node, gossip.PushDone(peer.name, "unreachable: no answer"))
            return
        self.bytes += size - 64

        def offered() -> None:
            self.seen(peer, node, ids, self.time)
            if self.config.stem:
                self._report(peer, gossip.Heard(tuple(ids)))
            if flood:
                self._receive(peer, [node.posts[i].raw for i in ids], node.name)
                self._later(self.time + self._latency(), node, gossip.PushDone(peer.name))
                return
            # The receiver wants what it lacks, on the boards it carries, and has not already
            # asked another announcer for (its policy's in-flight set).
            missing = tuple(i for i in ids if i not in peer.posts)
            answer = peer.brain.handle_event(gossip.Announced(node.name, missing), self.clock(peer))
            wanted = [i for a in answer if isinstance(a, gossip.Want) for i in a.ids]
            back = self.time + self._latency()
            if not self._sent(node, 8 + 34 * len(wanted)):
                self._later(back, node, gossip.PushDone(peer.name, "unreachable: lost"))
                return
            raws = [node.posts[i].raw for i in wanted]
            self.copies += len(raws)
            if self._cpu:
                if not raws:
                    self._later(back, node, gossip.PushDone(peer.name))
                    return

                # The caller reads the answer and pushes what was wanted, on its own CPU.
                def push() -> None:
                    self._push_now(node, peer, raws)

                self._at(back, lambda: self.run_on(node, self.config.cpu_call_ms, push))
                return
            if raws and not self._sent(peer, sum(map(len, raws))):
                self._later(back + 2 * self._latency(), node, gossip.PushDone(peer.name, "unreachable: lost"))
                return
            land = back + self._latency()

            def deliver() -> None:
                if peer.answers:
                    self._receive(peer, raws, node.name)

            self._at(land, deliver)
            self._later(land + self._latency(), node, gossip.PushDone(peer.name))

        if self._cpu:
            cost = self.config.cpu_push_ms if flood else self.config.cpu_announce_ms
            self._at(arrive, lambda: self.run_on(peer, cost, offered))
        else:
            self._at(arrive, offered)

    def _push_now(self, node: SimNode, peer: SimNode, raws: list[bytes]) -> None:
        """Under the CPU model: push the posts ``peer`` wanted, once ``node`` has read its answer
        to the announcement; they take effect once ``peer`` has spent ``cpu_push_ms`` on them."""
        if not self._sent(peer, sum(map(len, raws))):
            self._later(self.time + 2 * self._latency(), node, gossip.PushDone(peer.name, "unreachable: lost"))
            return

        def deliver() -> None:
            self._receive(peer, raws, node.name)
            self._later(self.time + self._latency(), node, gossip.PushDone(peer.name))

        self._at(self.time + self._latency(), lambda: self.run_on(peer, self.config.cpu_push_ms, deliver))

    # --- rounds --------------------------------------------------------------------------

    def step(self) -> None:
        """Run one round: ROUND_MS of simulated time (nodes go down and come back first)."""
        cfg = self.config
        if cfg.churn:
            for node in self.nodes:
                if self.rng.random() < cfg.churn:
                    node.alive = not node.alive
        self.run_until((self.round + 1) * ROUND_MS)
        self.round += 1

    # --- questions -----------------------------------------------------------------------

    def live(self) -> list[SimNode]:
        """The nodes that answer (neither down nor hung)."""
        return [n for n in self.nodes if n.answers]

    def converged(self, ids: Iterable[bytes] | None = None) -> bool:
        """Whether every live node holds ``ids`` (default: every post any node holds)."""
        wanted = set(ids) if ids is not None else set().union(*(n.posts for n in self.nodes))
        return all(wanted <= n.posts.keys() for n in self.live())

    def holders(self, post_id: bytes) -> int:
        return sum(1 for n in self.live() if post_id in n.posts)

    def time_to_all(self, post_id: bytes, made_at: float) -> float | None:
        """Simulated seconds from ``made_at`` until every live node held the post, or None."""
        times = [n.got_at.get(post_id) for n in self.live()]
        if any(t is None for t in times):
            return None
        return (max(t for t in times if t is not None) - made_at) / 1000


@dataclass(frozen=True)
class SpreadResult:
    strategy: str
    rounds: int
    reached: int
    live: int
    copies_per_node: float
    messages: int
    #: Simulated seconds until every live node had the post (None if it never did).
    seconds: float | None = None


def spread(config: SimConfig, rng: SimRng, *, max_rounds: int = 200) -> SpreadResult:
    """Inject one post at a random live node after a first round (every node has started and
    met its peers); run until every live node has it.  ``rounds`` counts the rounds begun
    until then (at least 1), ``seconds`` the simulated time."""
    sim = Simulation(config, rng)
    sim.step()
    made_at = sim.time
    post = sim.make_post()
    end = made_at + max_rounds * ROUND_MS
    step = 50
    while not sim.converged([post.id]) and sim.time < end:
        sim.run_until(sim.time + step)
        # Fine steps while pushes spread (milliseconds), coarse ones once only the timers are left.
        step = 50 if sim.time - made_at < 5_000 else 1_000
    live = len(sim.live())
    took = sim.time_to_all(post.id, made_at)
    rounds = max(1, math.ceil((sim.time - made_at) / ROUND_MS))
    return SpreadResult(config.strategy, rounds, sim.holders(post.id), live, sim.copies / max(live, 1),
                        sim.messages, took)


def run_topology(topology: Sequence[tuple[str, Sequence[str]]], rng: SimRng, *, frozen: str | None = None,
                 posts: int = 20, warmup_s: float = 10.0, gap_s: float = 2.0, limit_s: float = 120.0,
                 config: SimConfig | None = None, stats: dict[str, float] | None = None) -> list[float]:
    """Run a given directed topology and return each post's time to reach every node, in
    simulated seconds (``float('inf')`` for a post that did not reach them all in ``limit_s``).

    ``topology`` lists ``(node, [peers it is told])`` by any names.  Every node runs the default
    settings (or ``config``'s: its ``nodes`` and topology fields are ignored), knows only the
    peers it is told and learns those that call it.  After ``warmup_s`` the node ``frozen`` (if
    given) stops answering, like a process stopped with SIGSTOP, and ``posts`` posts are made,
    one every ``gap_s`` seconds, each at a random node other than the frozen one; a post counts
    as arrived when every node but the frozen one holds it.  Posts are picked up by their node
    up to a second after they are written, as `dazibao post` posts are by a running node.
    ``rng`` is the run's only randomness (``random.Random(seed)``).  A ``stats`` dict is filled
    with the run's counts from the first post on: ``messages``, ``cpu_ms`` and ``cpu_jobs``
    (the CPU model's work, 0 without it) and ``posts``.
    """
    counts: list[dict[str, float]] = []
    (out,) = run_phases(topology, rng, [frozen], posts=posts, warmup_s=warmup_s, gap_s=gap_s, limit_s=limit_s,
                        config=config, stats=counts)
    if stats is not None:
        stats.update(counts[0])
    return out


def run_phases(topology: Sequence[tuple[str, Sequence[str]]], rng: SimRng, frozen: Sequence[str | None], *,
               posts: int = 20, warmup_s: float = 10.0, gap_s: float = 2.0, limit_s: float = 120.0,
               config: SimConfig | None = None,
               stats: list[dict[str, float]] | None = None) -> list[list[float]]:
    """:func:`run_topology` for several phases run one after the other on the same network, as
    the net benchmark runs its real nodes: a list of each phase's times.

    Phase ``i`` freezes node ``frozen[i]`` (None: none; a node frozen stays frozen), then makes
    ``posts`` posts as :func:`run_topology` does; it ends when they have all arrived, or
    ``limit_s`` after its last post, and the next phase starts ``gap_s`` later.  The first phase
    starts after ``warmup_s``.  ``stats`` gets one dict of counts per phase, from its first post
    to its end (the last phase's end being ``limit_s`` after its last post).
    """
    names = [name for name, _ in topology]
    index = {name: i for i, name in enumerate(names)}
    given = [(index[name], [index[p] for p in peers]) for name, peers in topology]
    base = config or SimConfig(pickup_ms=1_000)
    cfg = replace(base, nodes=len(names), one_way=True, down=0.0, hung=0.0, churn=0.0)
    sim = Simulation(cfg, rng, topology=given)
    sim.run_until(int(warmup_s * 1000))
    start_s = warmup_s
    phases: list[list[float]] = []
    for phase, hung in enumerate(frozen):
        if hung is not None:
            sim.nodes[index[hung]].hung = True
        makers = [n for n in sim.nodes if n.answers]
        before = (sim.messages, sim.cpu_ms, sim.cpu_jobs)
        made: list[tuple[bytes, float]] = []
        for k in range(posts):
            sim.run_until(int((start_s + k * gap_s) * 1000))
            made.append((sim.make_post(rng.choice(makers)).id, sim.time))
        end = int((start_s + (posts - 1) * gap_s + limit_s) * 1000)
        if phase == len(frozen) - 1:
            sim.run_until(end)
        else:
            ids = [post_id for post_id, _ in made]
            while not sim.converged(ids) and sim.time < end:
                sim.run_until(min(end, sim.time + 10))
        if stats is not None:
            stats.append(dict(messages=sim.messages - before[0], cpu_ms=sim.cpu_ms - before[1],
                              cpu_jobs=sim.cpu_jobs - before[2], posts=posts))
        out = []
        for post_id, at in made:
            took = sim.time_to_all(post_id, at)
            out.append(float("inf") if took is None or took > limit_s else took)
        phases.append(out)
        start_s = sim.time / 1000 + gap_s
    return phases

"""The node's whole gossip policy, as a sans-IO state machine (docs/gossip.md).
Longer than 600 lines because the policy is one state machine (peers, anti-entropy, push and
the stem of new posts share its peers, timers and randomness), read best in one piece.

One :class:`Gossip` object per node decides everything about spreading posts: which peers it
knows and how healthy they are, when a failing peer is tried again (back-off), whom to reconcile
with and when (anti-entropy), whom to announce fresh posts to (push fan-out), which announced
ids to ask for (the in-flight set), which peers to learn (peer exchange, inbound callers) and
which to forget.  It does no I/O and reads no clock: the caller passes time in as ``now``
(milliseconds) and randomness as the ``rng`` it was built with, in the style of aioquic and h11.

The caller drives it through three doors, each answering a list of actions to perform:

* :meth:`Gossip.handle_timer` when the time of :meth:`Gossip.next_timer` has come;
* :meth:`Gossip.handle_event` with what happened: a sync, push or peer exchange ended
  (:class:`SyncDone`, :class:`PushDone`, :class:`ExchangeDone`), posts were stored
  (:class:`NewPosts`), a peer was added or called in (:class:`PeerLearned`,
  :class:`InboundPeer`), a peer announced ids (:class:`Announced`, answered with :class:`Want`),
  a peer pushed posts marked as stem (:class:`StemOffered`), ids were heard from a fluff
  (:class:`Heard`).

New posts of this node and posts received on a stem first travel along a stem, one peer at a
time, and are then fluffed (announced as usual): Dandelion++, docs/gossip.md "Stem, then fluff".

The running node (node/server.py) performs the actions over HTTP and SQLite; the simulation
(protocol/simulation.py) performs them over fake links.  Both drive this same object, so the
simulation's figures describe the node's policy and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from . import limits
from .errors import RemoteProtocolError
from .peers import MAX_PEERS_PER_EXCHANGE, PeerState, Rng, check_learned_peer, normalize_peer_url

__all__ = [
    "GossipConfig", "Gossip",
    # events
    "Event", "SyncDone", "PushDone", "ExchangeDone", "NewPosts", "PeerLearned", "InboundPeer", "Announced",
    "StemOffered", "Heard",
    # actions
    "Action", "Sync", "Exchange", "Announce", "Want", "SavePeer", "PeerOk", "BackOff", "Forget", "Refused",
    "StemPush", "LOCAL", "STEM_FLUFF_PROBABILITY", "STEM_PEERS",
    # the policy's pure helpers
    "backoff_ms", "due", "peers_to_forget", "blamed_codes", "INVALID_DATA_CODES",
    "BASE_BACKOFF_MS", "MAX_BACKOFF_MS", "FORGET_AFTER_FAILURES", "FORGET_AFTER_MS",
]

BASE_BACKOFF_MS = limits.PEER_BACKOFF_BASE_S * 1000
MAX_BACKOFF_MS = limits.PEER_BACKOFF_MAX_S * 1000
#: A peer learned by exchange (or from its own call) that failed this many times in a row and
#: has not answered for a day is forgotten.  Peers the operator added are never forgotten.
FORGET_AFTER_FAILURES = 8
FORGET_AFTER_MS = 86_400_000
#: How often dead and surplus peers are looked for.
MAINTENANCE_MS = 600_000
#: The first anti-entropy round comes this soon after start (a uniform draw between the two).
FIRST_ROUND_MS = (200, 1_000)
#: A round with no peer due waits at least this long before looking again.
MIN_ROUND_GAP_MS = 1_000
#: A peer that answered within this long is not written back as healthy after every push.
OK_REFRESH_MS = 60_000

#: Rejection codes that mean the sender handed out bad data, as opposed to posts this node
#: merely does not want.  ``future`` is not one of them: a post dated past this node's clock is
#: as likely this node's slow clock as the peer's fault; it is fetched again at a later sync.
INVALID_DATA_CODES = frozenset({
    "malformed", "non_canonical", "bad_field", "unsupported_version", "too_large", "unknown_kind",
    "bad_board", "bad_body", "bad_signature", "bad_work",
})
# Every other refusal code is this node's policy or state, not the peer's fault: a board it does
# not carry, a tombstone, a moderator's block, a stranger's quota, a proof of work it requires
# ("not_carried", "tombstoned", "retracted", "blocked", "quota_posts", "quota_bytes",
# "pow_required"). A peer that hands out such posts is not backed off.

_SOURCE_RANK = {"pex": 0, "cli": 1, "config": 2}

#: The source of posts made on this node (``NewPosts.source``): they take the stem.
LOCAL = "local"
#: The chance that a node fluffs a post it received on a stem rather than relaying it, as in
#: BIP 156: a stem is ten hops long on average.
STEM_FLUFF_PROBABILITY = 0.1
#: Stem peers per epoch: each incoming edge (and this node's own posts) is sent along one of them.
STEM_PEERS = 2
#: How long an id offered on a stem waits to be stored (verified and ingested) before the offer
#: is forgotten.
STEM_EXPECT_MS = 60_000


# --- the pure helpers ---------------------------------------------------------------------


def backoff_ms(failures: int, rng: Rng) -> int:
    """Delay before trying a peer again after ``failures`` failures in a row.

    peer_backoff_base_s (5 s), then doubling at every failure in a row up to peer_backoff_max_s
    (an hour), jittered by +-25 % so that many nodes that lost the same peer do not come back to
    it in step.  0 for no failure.
    """
    if failures <= 0:
        return 0
    base = min(BASE_BACKOFF_MS * 2 ** min(failures - 1, 30), MAX_BACKOFF_MS)
    return int(base * rng.uniform(0.75, 1.25))


def due(peers: Iterable[PeerState], now_ms: int, exclude: Iterable[str] = ()) -> list[PeerState]:
    """The peers that may be contacted now (not backing off), minus ``exclude``, by URL."""
    skip = set(exclude)
    return sorted((p for p in peers if p.next_try_at_ms <= now_ms and p.url not in skip), key=lambda p: p.url)


def peers_to_forget(peers: Sequence[PeerState], now_ms: int, max_peers: int) -> list[str]:
    """Peers to drop: dead learned ones, then the least healthy learned ones past ``max_peers``.

    Peers an operator added (source 'config' or 'cli') are never dropped.
    """
    learned = [p for p in peers if p.source == "pex"]
    drop = {
        p.url for p in learned
        if p.failures >= FORGET_AFTER_FAILURES
        and now_ms - (p.last_ok_at_ms if p.last_ok_at_ms is not None else p.added_at_ms) > FORGET_AFTER_MS
    }
    keep = [p for p in learned if p.url not in drop]
    excess = len(peers) - len(drop) - max_peers
    if excess > 0:
        # Worst first: most failures, then longest without an answer, then newest.
        keep.sort(key=lambda p: (-p.failures, p.last_ok_at_ms or 0, -p.added_at_ms, p.url))
        drop.update(p.url for p in keep[:excess])
    return sorted(drop)


def blamed_codes(codes: Iterable[str]) -> list[str]:
    """The rejection codes, of posts a peer handed out, that the peer is blamed for."""
    return [code for code in codes if code in INVALID_DATA_CODES]


# --- events: what happened ----------------------------------------------------------------

BoardIds = tuple[tuple[str, tuple[bytes, ...]], ...]


@dataclass(frozen=True, slots=True)
class SyncDone:
    """An anti-entropy sync with ``peer`` ended.

    ``error`` is ``"code: message"`` when the peer failed (unreachable, timeout, an answer that
    is not acceptable); ``rejected`` holds the codes of the posts it handed out that were refused.
    ``local`` means the sync stopped for this node's own reason (its storage is full): nobody is
    blamed.
    """

    peer: str
    error: str | None = None
    received: int = 0
    rejected: tuple[str, ...] = ()
    local: bool = False


@dataclass(frozen=True, slots=True)
class PushDone:
    """An announcement (and the push of what was wanted) to ``peer`` ended; or, with ``stem``,
    the stem push of those posts (:class:`StemPush`)."""

    peer: str
    error: str | None = None
    stem: BoardIds = ()


@dataclass(frozen=True, slots=True)
class ExchangeDone:
    """A peer exchange with ``peer`` ended: ``offered`` holds the URLs it gave (untrusted)."""

    peer: str
    error: str | None = None
    offered: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NewPosts:
    """Posts were stored here: made locally, received from ``source`` (a peer URL, or anything
    else that names no peer), imported.  They are announced onwards."""

    ids_by_board: BoardIds
    source: str | None = None


@dataclass(frozen=True, slots=True)
class PeerLearned:
    """The operator added a peer (``source`` 'config' or 'cli'), or one was read back from the
    store.  A 'pex' source is checked like an address from peer exchange."""

    url: str
    source: str


@dataclass(frozen=True, slots=True)
class InboundPeer:
    """A caller said it is reachable at ``url`` (docs/protocol.md, "Dazibao-Peer").  Untrusted:
    checked as an address from peer exchange, and never trusted beyond one."""

    url: str


@dataclass(frozen=True, slots=True)
class Announced:
    """A peer (``peer`` if it said who it is) offered ``ids`` that this node lacks and carries.
    Answered with one :class:`Want`."""

    peer: str | None
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StemOffered:
    """A caller pushed posts marked as stem (docs/protocol.md, "Dazibao-Stem"), before they are
    stored.  ``client`` is its address, the key of its rate (``max_stem_posts_per_minute``);
    ``peer`` its gossip URL if it said it.  Those of ``ids`` taken as stem posts take the stem
    once stored (:class:`NewPosts`); the rest are fluffed like any pushed post."""

    peer: str | None
    client: str
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Heard:
    """A peer offered ``ids`` in an announcement or an ordinary push: they are being fluffed.
    Those this node holds in stem state leave it and are passed on as any fluffed post is
    (Dandelion++: a node that sees its stem post diffusing diffuses it too), rather than waiting
    for its timer or for anti-entropy."""

    ids: tuple[bytes, ...]


Event = (SyncDone | PushDone | ExchangeDone | NewPosts | PeerLearned | InboundPeer | Announced | StemOffered
         | Heard)


# --- actions: what to do ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sync:
    """Reconcile with ``peer`` now, both ways; report :class:`SyncDone`."""

    peer: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """Ask ``peer`` for its peers (``GET /v1/peers``); report :class:`ExchangeDone`."""

    peer: str


@dataclass(frozen=True, slots=True)
class Announce:
    """Announce ``ids_by_board`` to ``peer`` and push what it wants; report :class:`PushDone`."""

    peer: str
    ids_by_board: BoardIds


@dataclass(frozen=True, slots=True)
class Want:
    """The answer to :class:`Announced`: the ids to ask the announcer for."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SavePeer:
    """Remember a new peer (or the better source of a known one)."""

    url: str
    source: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class PeerOk:
    """``peer`` answered: its failures are cleared (store the post counts with it)."""

    peer: str
    at_ms: int
    received: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class BackOff:
    """``peer`` failed for ``reason``; leave it alone until ``until_ms``."""

    peer: str
    at_ms: int
    until_ms: int
    failures: int
    reason: str


@dataclass(frozen=True, slots=True)
class Forget:
    """Drop ``peer`` from the peer list."""

    peer: str


@dataclass(frozen=True, slots=True)
class Refused:
    """An address learned from outside was refused with ``code`` (count it)."""

    url: str
    code: str


@dataclass(frozen=True, slots=True)
class StemPush:
    """Push these posts in full to ``peer``, marked as stem; report :class:`PushDone` with
    ``stem`` set to the same ids."""

    peer: str
    ids_by_board: BoardIds


Action = Sync | Exchange | Announce | Want | SavePeer | PeerOk | BackOff | Forget | Refused | StemPush


@dataclass(slots=True)
class _Stem:
    """A post this node holds in stem state."""

    board: str
    #: The incoming edge it came by (a peer, a client address, or LOCAL): it picks the route.
    edge: str
    #: When this node fluffs it unless it heard it fluffed meanwhile (ms).
    fluff_at: int
    #: When it is to be sent along the stem (the hop's random delay), None once sent.
    send_at: int | None


# --- the state machine --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """The node's gossip settings (docs/running.md)."""

    fanout: int = 3
    sync_interval_ms: int = 30_000
    peer_exchange: bool = True
    max_peers: int = 64
    allow_private: bool = False
    #: This node's own addresses: never a peer of itself.
    self_urls: frozenset[str] = frozenset()
    #: Send new posts along a stem before they are fluffed (docs/gossip.md, "Stem, then fluff");
    #: False: every fresh post is announced at once, and stem pushes are taken as ordinary ones.
    stem: bool = False
    stem_fluff_probability: float = STEM_FLUFF_PROBABILITY
    #: A stem post is fluffed by this node if not heard fluffed within this, times 1 to 2 (ms).
    stem_fluff_timeout_ms: int = limits.STEM_FLUFF_TIMEOUT_S * 1000
    #: Each stem hop this node makes waits a random time up to this first (ms).
    stem_delay_ms: int = 0
    stem_epoch_ms: int = limits.STEM_EPOCH_S * 1000


class Gossip:
    """One node's gossip policy.  Not thread-safe: one caller drives it.

    ``rng`` is the only randomness it uses (``random.Random(seed)`` in the simulation and in
    tests, ``random.SystemRandom()`` in the node).  ``peers`` are the peers remembered from a
    previous run.  With a ``trace`` list, every input and the actions it gave are appended to
    it as ``(now, input, actions)``, ``input`` being an event or ``"timer"``: replaying the
    inputs into a fresh object built the same way gives the same actions.
    """

    def __init__(self, config: GossipConfig, rng: Rng, *, now: int, peers: Iterable[PeerState] = (),
                 trace: list[tuple[int, object, list[Action]]] | None = None) -> None:
        self.config = config
        self.rng = rng
        self.trace = trace
        self._peers: dict[str, PeerState] = {p.url: p for p in peers if p.url not in config.self_urls}
        #: What it was started with, so that a trace can be replayed from the same state.
        self.started_at = now
        self.seed_peers: tuple[PeerState, ...] = tuple(self._peers.values())
        #: Ids asked for after an announcement and not arrived yet, with when to give up on
        #: them: a second announcer of the same post is not asked again meanwhile.
        self._asked: dict[bytes, int] = {}
        self._pushing: set[str] = set()          # peers with an announcement in flight
        #: Ids a busy peer is to be told once its announcement in flight ends, by board, at most
        #: ``max_ids_per_request`` per peer (beyond that anti-entropy carries them).
        self._queued: dict[str, dict[str, list[bytes]]] = {}
        #: Peers that called this node: they may be known to nobody else, so every fresh post
        #: is announced to them (docs/gossip.md, "Eager push").
        self._callers: set[str] = set()
        self._syncing: set[str] = set()
        self._round_open = False
        self._round_tried: set[str] = set()
        self._round_exchanged = False
        self._round_reached = False
        self._first_round = True
        self._next_round_at: int | None = now + int(rng.uniform(*FIRST_ROUND_MS))
        self._next_maintenance_at = now + MAINTENANCE_MS
        #: The stem (docs/gossip.md, "Stem, then fluff"): the posts held in stem state, the ids
        #: offered on a stem and not stored yet (with their edge and when to forget them), this
        #: epoch's stem peers and the route of each incoming edge, the stem posts taken per
        #: client in the current minute.
        self._stems: dict[bytes, _Stem] = {}
        self._expected: dict[bytes, tuple[str, int]] = {}
        self._epoch_ends_at = now
        self._stem_peers: list[str] = []
        self._routes: dict[str, str] = {}
        self._stem_rate: dict[str, tuple[int, int]] = {}

    # --- questions --------------------------------------------------------------------------

    def peers(self) -> list[PeerState]:
        """Every known peer, by URL."""
        return [self._peers[url] for url in sorted(self._peers)]

    def peer(self, url: str) -> PeerState | None:
        return self._peers.get(url)

    def asked(self) -> int:
        """How many ids are in flight (asked for and not arrived)."""
        return len(self._asked)

    def stems(self) -> dict[bytes, str]:
        """The posts held in stem state, with their board."""
        return {i: s.board for i, s in self._stems.items()}

    def stem_peers(self) -> list[str]:
        """This epoch's stem peers (empty before the first stem post)."""
        return list(self._stem_peers)

    def next_timer(self) -> int:
        """When :meth:`handle_timer` is next due (ms)."""
        times = [self._next_maintenance_at]
        if self._next_round_at is not None:
            times.append(self._next_round_at)
        for stem in self._stems.values():
            times.append(stem.fluff_at if stem.send_at is None else min(stem.send_at, stem.fluff_at))
        return min(times)

    # --- the doors --------------------------------------------------------------------------

    def handle_timer(self, now: int) -> list[Action]:
        """The actions due at ``now``: an anti-entropy round, forgetting dead peers."""
        out: list[Action] = []
        if self._next_round_at is not None and now >= self._next_round_at and not self._round_open:
            self._next_round_at = None
            self._open_round(now, out)
        if now >= self._next_maintenance_at:
            self._next_maintenance_at = now + MAINTENANCE_MS
            self._forget(now, out)
            self._expected = {i: e for i, e in self._expected.items() if e[1] > now}
            self._stem_rate = {k: r for k, r in self._stem_rate.items() if r[0] + 60_000 > now}
        if self._stems:
            self._stem_timer(now, out)
        return self._traced(now, "timer", out)

    def handle_event(self, event: Event, now: int) -> list[Action]:
        """The actions that follow ``event``.  Raises TypeError for an unknown event."""
        out: list[Action] = []
        if isinstance(event, SyncDone):
            self._sync_done(event, now, out)
        elif isinstance(event, PushDone) and event.stem:
            self._stem_done(event, now, out)
        elif isinstance(event, PushDone):
            self._pushing.discard(event.peer)
            queued = self._queued.pop(event.peer, None)
            if event.error is not None:
                self._fail(event.peer, event.error, now, out)
            else:
                self._ok(event.peer, now, out, quiet=True)
                if queued and event.peer in self._peers:
                    self._pushing.add(event.peer)
                    out.append(Announce(event.peer, tuple((b, tuple(ids)) for b, ids in queued.items())))
        elif isinstance(event, ExchangeDone):
            if event.error is not None:
                self._fail(event.peer, event.error, now, out)
            else:
                for url in event.offered[:MAX_PEERS_PER_EXCHANGE]:
                    self._learn(url, "pex", now, out)
                self._trim(now, out)
        elif isinstance(event, NewPosts):
            self._new_posts(event, now, out)
        elif isinstance(event, PeerLearned):
            self._learn(event.url, event.source, now, out)
            self._trim(now, out)
        elif isinstance(event, InboundPeer):
            if self.config.peer_exchange:
                learned = self._learn(event.url, "pex", now, out)
                if learned is not None:
                    self._callers.add(learned)
                self._trim(now, out)
        elif isinstance(event, Announced):
            out.append(Want(self._want(event.ids, now)))
        elif isinstance(event, StemOffered):
            self._stem_offered(event, now, out)
        elif isinstance(event, Heard):
            onward: dict[str, list[bytes]] = {}
            for i in event.ids:
                stem = self._stems.pop(i, None)
                if stem is not None:
                    onward.setdefault(stem.board, []).append(i)
            self._fluff(tuple((board, tuple(ids)) for board, ids in onward.items()), None, now, out)
        else:
            raise TypeError(f"not a gossip event: {event!r}")
        return self._traced(now, event, out)

    def _traced(self, now: int, what: object, out: list[Action]) -> list[Action]:
        if self.trace is not None:
            self.trace.append((now, what, list(out)))
        return out

    # --- anti-entropy -----------------------------------------------------------------------

    def _candidates(self, now: int, exclude: Iterable[str] = ()) -> list[PeerState]:
        return due(self._peers.values(), now, set(exclude) | self._syncing | self.config.self_urls)

    def _open_round(self, now: int, out: list[Action]) -> None:
        self._round_tried = set()
        self._round_exchanged = False
        self._round_reached = False
        candidates = self._candidates(now)
        if not candidates:
            self._close_round(now, idle=True)
            return
        self._round_open = True
        if self._first_round:
            # The first round reconciles with every peer given (up to sync_tries_per_round):
            # each of them learns this node's address at once from the call, so that pushes
            # flow both ways from the start rather than after a sync interval or two.
            self._first_round = False
            candidates.sort(key=lambda p: (-_SOURCE_RANK.get(p.source, 0), p.url))
            chosen = candidates[: max(limits.SYNC_TRIES_PER_ROUND, 1)]
        else:
            chosen = [self.rng.choice(candidates)]
        for peer in chosen:
            self._start_sync(peer.url, out)

    def _start_sync(self, url: str, out: list[Action]) -> None:
        self._round_tried.add(url)
        self._syncing.add(url)
        out.append(Sync(url))

    def _close_round(self, now: int, *, idle: bool = False) -> None:
        """End the round; ``idle``: it reached no peer (none was due, or every try failed)."""
        self._round_open = False
        delay = int(self.config.sync_interval_ms * self.rng.uniform(0.5, 1.5))
        if idle and self._peers:
            # No peer was reached: look again when the first one is due, rather than a whole
            # interval later (but not in a busy loop).  A node started before its peers thus
            # meets them within seconds, and a dead peer is retried as its back-off says.
            soonest = min(p.next_try_at_ms for p in self._peers.values())
            delay = min(delay, max(soonest - now, MIN_ROUND_GAP_MS))
        self._next_round_at = now + delay

    def _sync_done(self, event: SyncDone, now: int, out: list[Action]) -> None:
        self._syncing.discard(event.peer)
        blamed = blamed_codes(event.rejected)
        if event.local:
            pass
        elif event.error is not None:
            self._fail(event.peer, event.error, now, out)
        elif blamed:
            # Valid answers carrying invalid posts: a failure, and only a failure, so that the
            # back-off grows at every such sync in a row.
            self._fail(event.peer, f"sent {len(blamed)} invalid posts ({blamed[0]})", now, out)
        else:
            self._ok(event.peer, now, out, received=event.received, rejected=len(event.rejected))
            if self.config.peer_exchange and not self._round_exchanged and event.peer in self._peers:
                self._round_exchanged = True
                out.append(Exchange(event.peer))
        if not self._round_open or event.peer not in self._round_tried:
            return
        succeeded = event.error is None and not blamed
        if not succeeded and not event.local and len(self._round_tried) < limits.SYNC_TRIES_PER_ROUND:
            # A failed round tries another peer at once, so that one dead peer does not cost
            # a whole interval; at most sync_tries_per_round peers per round.
            others = self._candidates(now, exclude=self._round_tried)
            if others:
                self._start_sync(self.rng.choice(others).url, out)
                return
        if not (self._syncing & self._round_tried):
            self._close_round(now, idle=not (succeeded or self._round_reached))
        elif succeeded:
            self._round_reached = True

    # --- push -------------------------------------------------------------------------------

    def _new_posts(self, event: NewPosts, now: int, out: list[Action]) -> None:
        groups = tuple((board, ids) for board, ids in event.ids_by_board if ids)
        for _, ids in groups:
            for i in ids:
                self._asked.pop(i, None)
        if self.config.stem:
            groups = self._take_stems(groups, event.source, now, out)
        self._fluff(groups, event.source, now, out)

    def _fluff(self, groups: BoardIds, source: str | None, now: int, out: list[Action]) -> None:
        """Announce fresh posts: to every caller and ``fanout`` random other peers."""
        groups = tuple((board, ids) for board, ids in groups if ids)
        if not groups or self.config.fanout <= 0:
            return
        # Each announcement runs on its own, so a peer that hangs holds one announcement and
        # never delays the others.  A peer still busy with one is told these ids when it ends
        # (queued, a bounded number), so a steady stream of posts -- a flood being refused
        # elsewhere included -- does not leave a busy peer to anti-entropy.
        exclude = {source or ""}
        candidates = due(self._peers.values(), now, exclude | self.config.self_urls)
        # Every caller, since it may be known to nobody else (a member's node behind NAT, a
        # node nobody lists), then push_fanout random others.
        callers = [p for p in candidates if p.url in self._callers]
        others = [p for p in candidates if p.url not in self._callers]
        targets = callers + self.rng.sample(others, min(self.config.fanout, len(others)))
        for peer in targets:
            if peer.url in self._pushing:
                self._queue(peer.url, groups)
                continue
            self._pushing.add(peer.url)
            out.append(Announce(peer.url, groups))

    # --- stem, then fluff -------------------------------------------------------------------

    def _take_stems(self, groups: BoardIds, source: str | None, now: int, out: list[Action]) -> BoardIds:
        """Put this node's own new posts and those that came on a stem in stem state (sending
        them along at once, or after the hop's delay); the groups left to fluff now."""
        fluff: list[tuple[str, tuple[bytes, ...]]] = []
        send: list[bytes] = []
        for board, ids in groups:
            rest = []
            for i in ids:
                offer = self._expected.pop(i, None)
                if offer is None and source != LOCAL:
                    rest.append(i)          # an ordinary push, a sync: already fluffing
                    continue
                if i in self._stems:
                    continue                # a copy of one held: it is on its way
                relayed = offer is not None
                if len(self._stems) >= limits.MAX_STEM_POSTS or (
                        relayed and self.rng.uniform(0.0, 1.0) < self.config.stem_fluff_probability):
                    rest.append(i)
                    continue
                # The same timers for a post of this node and a relayed one: a peer must not tell
                # them apart by when they come.
                fluff_at = now + int(self.config.stem_fluff_timeout_ms * self.rng.uniform(1.0, 2.0))
                delay = int(self.rng.uniform(0, self.config.stem_delay_ms)) if self.config.stem_delay_ms else 0
                self._stems[i] = _Stem(board, offer[0] if offer is not None else LOCAL, fluff_at,
                                       now + delay if delay else None)
                if not delay:
                    send.append(i)
            fluff.append((board, tuple(rest)))
        self._stem_send(send, now, out)
        return tuple(fluff)

    def _stem_send(self, ids: Iterable[bytes], now: int, out: list[Action]) -> None:
        """Send stem posts to their edge's stem peer; fluff those with nowhere to go."""
        by_peer: dict[str, dict[str, list[bytes]]] = {}
        stuck: dict[str, list[bytes]] = {}
        for i in ids:
            stem = self._stems.get(i)
            if stem is None:
                continue
            stem.send_at = None
            peer = self._route(stem.edge, now)
            if peer is None:
                del self._stems[i]
                stuck.setdefault(stem.board, []).append(i)
            else:
                by_peer.setdefault(peer, {}).setdefault(stem.board, []).append(i)
        for peer, boards in by_peer.items():
            out.append(StemPush(peer, tuple((b, tuple(group)) for b, group in boards.items())))
        if stuck:
            # No stem peer but the one it came from: the stem ends here.
            self._fluff(tuple((b, tuple(group)) for b, group in stuck.items()), None, now, out)

    def _route(self, edge: str, now: int) -> str | None:
        """The stem peer for posts that came by ``edge``: one of this epoch's stem peers, the same
        for every post of the edge, never the edge itself; None if there is none."""
        if now >= self._epoch_ends_at:
            self._epoch_ends_at = now + self.config.stem_epoch_ms
            self._stem_peers, self._routes = [], {}
        # Stem peers that left or are backing off are replaced at once from the peers due.
        self._stem_peers = [u for u in self._stem_peers
                            if u in self._peers and self._peers[u].next_try_at_ms <= now]
        if len(self._stem_peers) < STEM_PEERS:
            spare = [p.url for p in due(self._peers.values(), now, {*self._stem_peers, *self.config.self_urls})]
            self._stem_peers += self.rng.sample(spare, min(STEM_PEERS - len(self._stem_peers), len(spare)))
        usable = [u for u in self._stem_peers if u != edge]
        if not usable:
            return None
        route = self._routes.get(edge)
        if route not in usable:
            if len(self._routes) >= limits.MAX_STEM_POSTS:
                self._routes.clear()
            route = self._routes[edge] = self.rng.choice(usable)
        return route

    def _stem_offered(self, event: StemOffered, now: int, out: list[Action]) -> None:
        if not self.config.stem:
            return                          # taken as an ordinary push: fluffed once stored
        start, taken = self._stem_rate.get(event.client, (now, 0))
        if now - start >= 60_000:
            start, taken = now, 0
        loops: dict[str, list[bytes]] = {}
        for i in dict.fromkeys(event.ids):
            stem = self._stems.get(i)
            if stem is not None:
                # It came back along a loop of stems: fluff it here rather than send it round.
                del self._stems[i]
                loops.setdefault(stem.board, []).append(i)
            elif (taken < limits.MAX_STEM_POSTS_PER_MINUTE and i not in self._expected
                  and len(self._expected) < limits.MAX_STEM_POSTS):
                taken += 1
                self._expected[i] = (event.peer or event.client, now + STEM_EXPECT_MS)
        if len(self._stem_rate) >= limits.MAX_STEM_POSTS and event.client not in self._stem_rate:
            self._stem_rate = {k: r for k, r in self._stem_rate.items() if r[0] + 60_000 > now}
        self._stem_rate[event.client] = (start, taken)
        if loops:
            self._fluff(tuple((b, tuple(ids)) for b, ids in loops.items()), None, now, out)

    def _stem_done(self, event: PushDone, now: int, out: list[Action]) -> None:
        if event.error is None:
            self._ok(event.peer, now, out, quiet=True)
            return
        # The stem peer failed: it is backed off, and the posts go along another stem peer (or
        # are fluffed here when none is left), so that a dead peer stalls no stem.
        self._fail(event.peer, event.error, now, out)
        self._stem_send([i for _, ids in event.stem for i in ids], now, out)

    def _stem_timer(self, now: int, out: list[Action]) -> None:
        send = [i for i, s in self._stems.items() if s.send_at is not None and s.send_at <= now]
        late: dict[str, list[bytes]] = {}
        for i, stem in list(self._stems.items()):
            if stem.fluff_at <= now:
                # The fail-safe: not heard fluffed in time, so the stem broke somewhere after here.
                del self._stems[i]
                late.setdefault(stem.board, []).append(i)
        self._stem_send(send, now, out)
        if late:
            self._fluff(tuple((b, tuple(ids)) for b, ids in late.items()), None, now, out)

    def _queue(self, url: str, groups: BoardIds) -> None:
        queued = self._queued.setdefault(url, {})
        room = limits.MAX_IDS_PER_REQUEST - sum(len(ids) for ids in queued.values())
        for board, ids in groups:
            if room <= 0:
                return
            take = list(ids[:room])
            queued.setdefault(board, []).extend(take)
            room -= len(take)

    def _want(self, ids: Sequence[bytes], now: int) -> tuple[bytes, ...]:
        if len(self._asked) >= limits.MAX_ANNOUNCE_INFLIGHT_IDS:
            self._asked = {i: t for i, t in self._asked.items() if t > now}
        room = limits.MAX_ANNOUNCE_INFLIGHT_IDS - len(self._asked)
        wanted: list[bytes] = []
        for i in dict.fromkeys(ids):
            if self._asked.get(i, 0) > now:
                continue
            if room <= 0:
                # Past the bound, ids are still wanted but no longer remembered: at worst a
                # post comes twice, never not at all.
                wanted.append(i)
                continue
            if i not in self._asked:
                room -= 1
            self._asked[i] = now + limits.ANNOUNCE_INFLIGHT_S * 1000
            wanted.append(i)
        return tuple(wanted)

    # --- peers ------------------------------------------------------------------------------

    def _ok(self, url: str, now: int, out: list[Action], *, received: int = 0, rejected: int = 0,
            quiet: bool = False) -> None:
        state = self._peers.get(url)
        if state is None:
            return
        fresh = state.failures == 0 and state.last_ok_at_ms is not None and now - state.last_ok_at_ms < OK_REFRESH_MS
        self._peers[url] = replace(state, failures=0, next_try_at_ms=0, last_ok_at_ms=now)
        if not (quiet and fresh):
            out.append(PeerOk(url, now, received, rejected))

    def _fail(self, url: str, reason: str, now: int, out: list[Action]) -> None:
        state = self._peers.get(url)
        if state is None:
            return
        failures = state.failures + 1
        until = now + backoff_ms(failures, self.rng)
        self._peers[url] = replace(state, failures=failures, next_try_at_ms=until)
        out.append(BackOff(url, now, until, failures, reason[:300]))

    def _learn(self, url: str, source: str, now: int, out: list[Action]) -> str | None:
        """Learn a peer; its normalized URL, or None if it was refused or is this node."""
        try:
            if source == "pex":
                url = check_learned_peer(url, allow_private=self.config.allow_private)
            else:
                url = normalize_peer_url(url)
        except RemoteProtocolError as exc:
            out.append(Refused(url[:512] if isinstance(url, str) else "", exc.code))
            return None
        if url in self.config.self_urls:
            return None
        known = self._peers.get(url)
        if known is None:
            self._peers[url] = PeerState(url=url, source=source, added_at_ms=now)
            out.append(SavePeer(url, source, now))
        elif _SOURCE_RANK.get(source, 0) > _SOURCE_RANK.get(known.source, 0):
            self._peers[url] = replace(known, source=source)
            out.append(SavePeer(url, source, now))
        return url

    def forget(self, urls: Iterable[str]) -> list[Action]:
        """Forget these peers at once (an operator removed them): no more syncs, pushes or
        queued announcements to them.  The :class:`Forget` actions of the ones it knew."""
        out: list[Action] = []
        self._drop(urls, out)
        return out

    def _drop(self, urls: Iterable[str], out: list[Action]) -> None:
        for url in urls:
            if self._peers.pop(url, None) is not None:
                if url in self._stem_peers:
                    self._stem_peers.remove(url)
                self._pushing.discard(url)
                self._queued.pop(url, None)
                self._callers.discard(url)
                out.append(Forget(url))

    def _trim(self, now: int, out: list[Action]) -> None:
        if len(self._peers) > self.config.max_peers:
            self._forget(now, out)

    def _forget(self, now: int, out: list[Action]) -> None:
        self._drop(peers_to_forget(list(self._peers.values()), now, self.config.max_peers), out)

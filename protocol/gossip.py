"""The node's whole gossip policy, as a sans-IO state machine (docs/gossip.md).

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
  :class:`InboundPeer`), a peer announced ids (:class:`Announced`, answered with :class:`Want`).

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
    # actions
    "Action", "Sync", "Exchange", "Announce", "Want", "SavePeer", "PeerOk", "BackOff", "Forget", "Refused",
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
    """An announcement (and the push of what was wanted) to ``peer`` ended."""

    peer: str
    error: str | None = None


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


Event = SyncDone | PushDone | ExchangeDone | NewPosts | PeerLearned | InboundPeer | Announced


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


Action = Sync | Exchange | Announce | Want | SavePeer | PeerOk | BackOff | Forget | Refused


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

    # --- questions --------------------------------------------------------------------------

    def peers(self) -> list[PeerState]:
        """Every known peer, by URL."""
        return [self._peers[url] for url in sorted(self._peers)]

    def peer(self, url: str) -> PeerState | None:
        return self._peers.get(url)

    def asked(self) -> int:
        """How many ids are in flight (asked for and not arrived)."""
        return len(self._asked)

    def next_timer(self) -> int:
        """When :meth:`handle_timer` is next due (ms)."""
        times = [self._next_maintenance_at]
        if self._next_round_at is not None:
            times.append(self._next_round_at)
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
        return self._traced(now, "timer", out)

    def handle_event(self, event: Event, now: int) -> list[Action]:
        """The actions that follow ``event``.  Raises TypeError for an unknown event."""
        out: list[Action] = []
        if isinstance(event, SyncDone):
            self._sync_done(event, now, out)
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
        if not groups or self.config.fanout <= 0:
            return
        # Each announcement runs on its own, so a peer that hangs holds one announcement and
        # never delays the others.  A peer still busy with one is told these ids when it ends
        # (queued, a bounded number), so a steady stream of posts -- a flood being refused
        # elsewhere included -- does not leave a busy peer to anti-entropy.
        exclude = {event.source or ""}
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
                self._pushing.discard(url)
                self._queued.pop(url, None)
                self._callers.discard(url)
                out.append(Forget(url))

    def _trim(self, now: int, out: list[Action]) -> None:
        if len(self._peers) > self.config.max_peers:
            self._forget(now, out)

    def _forget(self, now: int, out: list[Action]) -> None:
        self._drop(peers_to_forget(list(self._peers.values()), now, self.config.max_peers), out)

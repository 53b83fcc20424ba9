"""`dazibao run`: the long-running node.

It serves the gossip API on its own listener and performs what the gossip policy
(protocol/gossip.py) decides -- announcements and pushes of fresh posts, anti-entropy syncs,
peer exchanges, back-off and forgetting of peers -- over HTTP and the store, reporting every
result back to it.  It also picks up posts that another process (`dazibao post`) wrote to the
same data folder.  The member web UI (the web package) is served on a second listener of its
own, ``ui_listen``, never on the gossip listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from dazibao.protocol import gossip, limits, messages, peers, posts

from .api import make_gossip_app
from .config import Config, DataDir, parse_listen
from .keys import KeyStore
from .listeners import is_loopback, make_runner, start_listener, url_of
from .retention import retention_loop
from .service import NodeCore
from .store import PeerRow, StorageFullError, Store, StoreError
from .sync import PeerClient, PeerError, PublicOnlyResolver, sync_with
from .transport import open_session, parse_proxy, server_ssl_context
from .web import make_ui_app
from .web.public import make_public_app

__all__ = ["Node", "run_node", "AlreadyRunningError", "peer_states"]

log = logging.getLogger("dazibao.node")

POLL_INTERVAL_S = 1.0
#: How often the local pseudonyms are read again (the web UI may create one) and expired
#: moderation statements applied.
MODERATION_INTERVAL_S = 10.0
#: How often the peer list in the store is read for peers added by `dazibao peers add`.
PEER_POLL_INTERVAL_S = 5.0
RESTART_DELAY_S = 5.0


def peer_states(rows: Iterable[PeerRow]) -> list[peers.PeerState]:
    """The store's peer rows as the pure policy's PeerState values."""
    return [
        peers.PeerState(url=r.url, source=r.source, failures=r.failures, next_try_at_ms=r.next_try_at_ms,
                        last_ok_at_ms=r.last_ok_at_ms, added_at_ms=r.added_at_ms)
        for r in rows
    ]


class Node:
    """A running node: the core plus its listeners and background tasks."""

    def __init__(self, data: DataDir, config: Config, *, rng: random.Random | None = None,
                 trace: list[tuple[int, object, list[gossip.Action]]] | None = None) -> None:
        """``rng`` is the gossip policy's randomness; ``trace`` a list that records its every
        input and decision (see gossip.Gossip), for tests that replay them."""
        self.data = data
        self.config = config
        self.core = NodeCore(data, config)
        self.rng = rng or random.SystemRandom()
        self.trace = trace
        #: The gossip policy: every decision about peers, pushes and syncs is made there.
        self.gossip: gossip.Gossip | None = None
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._push_queue: asyncio.Queue[tuple[list[posts.Post], str | None]] = asyncio.Queue()
        #: Set when the policy's next timer may have moved.
        self._wake = asyncio.Event()
        #: Peer changes to write to the store, in the order decided.
        self._saves: asyncio.Queue[gossip.Action] = asyncio.Queue()
        #: Syncs, pushes and peer exchanges in flight, each a task of its own.
        self._jobs: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None
        #: Peers learned by exchange are untrusted: their names must not resolve to private
        #: addresses (unless allow_private_peers), so they get a session of their own.
        self.untrusted_session: aiohttp.ClientSession | None = None
        self.gossip_url = ""
        self.ui_url = ""
        self._wrote_info = False
        self._info_read_only = False
        self.public_view_url = ""
        #: The posts the policy held in stem state after its last decision: those that left it
        #: since are fluffed, and join the reconciliation set (NodeCore.release_stems).
        self._stem_ids: set[bytes] = set()

    async def start(self) -> None:
        await self.core.open()
        for url in self.config.peers:
            await self.core.db.call(Store.add_peer, url, "config", self.core.now_ms())
        # Every connection to a peer goes through the proxy when one is set (node/transport.py):
        # names are then resolved by the proxy, so no resolver of ours runs at all.
        proxy = parse_proxy(self.config.proxy) if self.config.proxy else None
        self.session = open_session(proxy)
        if self.config.allow_private_peers or proxy is not None:
            self.untrusted_session = self.session
        else:
            self.untrusted_session = open_session(None, resolver=PublicOnlyResolver())
        self.core.on_new_posts.append(self._on_new_posts)
        host, port = parse_listen(self.config.gossip_listen, "gossip_listen")
        # Every listener is guarded (node/listeners.py): deadlines, connection and memory caps.
        runner = make_runner(make_gossip_app(self.core, self))
        await runner.setup()
        self._runners.append(runner)
        tls = self._tls_context()
        await start_listener(runner, host, port, ssl_context=tls)
        self.gossip_url = url_of(runner, https=tls is not None)
        rows = await self.core.db.call(Store.list_peers)
        self.gossip = gossip.Gossip(
            gossip.GossipConfig(
                fanout=self.config.push_fanout, sync_interval_ms=int(self.config.sync_interval_s * 1000),
                peer_exchange=self.config.peer_exchange, max_peers=self.config.max_peers,
                allow_private=self.config.allow_private_peers, self_urls=frozenset(self._self_urls()),
                stem=self.config.stem, stem_delay_ms=self.config.origin_delay_s * 1000,
                stem_fluff_timeout_ms=self.config.stem_fluff_timeout_s * 1000),
            self.rng, now=self.core.now_ms(), peers=peer_states(rows), trace=self.trace)
        # With a stem, this node's own new posts stay out of what it offers in reconciliation
        # until they are fluffed (docs/gossip.md, "Stem, then fluff").
        self.core.hold_local = self.config.stem
        await self._start_ui()
        await self._start_public_view()
        self._tasks = [
            self._supervised("poll", self._poll_loop),
            self._supervised("push", self._push_loop),
            self._supervised("gossip", self._gossip_loop),
            self._supervised("peer store", self._save_loop),
            self._supervised("peer poll", self._peer_poll_loop),
            # Mirror retention (node/retention.py): at start, then hourly; ends at once if unset.
            self._supervised("retention", lambda: retention_loop(self.core, self.config.retention_days)),
            self._supervised("moderation", self._moderation_loop),
        ]
        self._write_info()
        log.info("gossip API on %s; %d posts; %d peers", self.gossip_url, len(self.core.index),
                 len(await self.peer_urls()))

    def _tls_context(self) -> ssl.SSLContext | None:
        """The gossip listener's TLS context, if tls_cert and tls_key are set (relative paths
        are in the data folder).  Raises TlsFilesError."""
        if not self.config.tls_cert:
            return None
        cert = self.data.root / Path(self.config.tls_cert).expanduser()
        key = self.data.root / Path(self.config.tls_key).expanduser()
        return server_ssl_context(cert, key)

    def _supervised(self, name: str, loop_fn: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run a background loop; if it fails with a bug, log it with its traceback and start
        it again after a pause, so that one bad moment does not silently end gossip."""

        async def run() -> None:
            while True:
                try:
                    await loop_fn()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background task %s failed; restarting it in %s s", name, RESTART_DELAY_S)
                    await asyncio.sleep(RESTART_DELAY_S)

        return asyncio.create_task(run(), name=name)

    async def _start_ui(self) -> None:
        # The member UI is its own application on its own listener (DESIGN.md, "Two
        # listeners"): nothing of it is reachable through the gossip API.
        host, port = parse_listen(self.config.ui_listen, "ui_listen")
        app = make_ui_app(self.core, KeyStore(self.data.keys, self.config.key_file_kdf()), self.config, node=self)
        runner = make_runner(app)
        await runner.setup()
        self._runners.append(runner)
        await start_listener(runner, host, port)
        self.ui_url = url_of(runner) + "/"
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the member web UI listens on %s: anyone who can reach it can read this node", host)

    async def _start_public_view(self) -> None:
        # A mirror's read-only public view (docs/mirror.md): a third application on a listener
        # of its own, never on the gossip or member UI listener.  Off unless configured.
        if not self.config.public_view_listen:
            return
        host, port = parse_listen(self.config.public_view_listen, "public_view_listen")
        runner = make_runner(make_public_app(self.core, self.config))
        await runner.setup()
        self._runners.append(runner)
        await start_listener(runner, host, port)
        self.public_view_url = url_of(runner) + "/"
        if host in ("0.0.0.0", "::", "") and not self.config.public_view_hosts:
            log.warning("the public view listens on %s but public_view_hosts is empty: it refuses every "
                        "request (421) until public_view_hosts names the host names it is reached by", host)
        log.info("read-only public view on %s", self.public_view_url)

    def _write_info(self) -> None:
        """Write node.json: how other dazibao commands on this data folder find this node, and
        whether it runs read-only for want of room (`dazibao status` shows it)."""
        self._info_read_only = self.core.read_only
        info = {"pid": os.getpid(), "gossip_url": self.gossip_url, "ui_url": self.ui_url,
                "read_only": self._info_read_only}
        tmp = self.data.node_info.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(info), encoding="utf-8")
            os.replace(tmp, self.data.node_info)
        except OSError as exc:
            # A disk with no byte left: the node still serves reads, but other commands on this
            # data folder cannot find it until there is room.
            log.warning("cannot write %s: %s", self.data.node_info, exc.strerror or exc)
            tmp.unlink(missing_ok=True)
            return
        self._wrote_info = True

    async def stop(self) -> None:
        for task in [*self._tasks, *self._jobs]:
            task.cancel()
        for task in [*self._tasks, *self._jobs]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self._runners:
            await runner.cleanup()
        if self.untrusted_session is not None and self.untrusted_session is not self.session:
            await self.untrusted_session.close()
        if self.session is not None:
            await self.session.close()
        await self.core.close()
        if self._wrote_info:
            self.data.node_info.unlink(missing_ok=True)

    async def peer_urls(self) -> list[str]:
        rows = await self.core.db.call(Store.list_peers)
        return [row.url for row in rows]

    def _self_urls(self) -> set[str]:
        return {u for u in (self.gossip_url, self.config.public_url) if u}

    # --- the gossip policy's doors (also node/api.py's GossipHooks) -------------------------------

    def report(self, event: gossip.Event) -> list[gossip.Action]:
        """Tell the gossip policy what happened and perform what it decides; the actions."""
        if self.gossip is None:
            return []
        actions = self.gossip.handle_event(event, self.core.now_ms())
        self._perform(actions)
        return actions

    def announced(self, peer: str | None, ids: Sequence[bytes]) -> list[bytes]:
        if self.gossip is None:
            # Before the policy exists (the listener is up a moment earlier): want them all.
            return list(ids)
        actions = self.report(gossip.Announced(peer, tuple(ids)))
        return [i for a in actions if isinstance(a, gossip.Want) for i in a.ids]

    def inbound(self, url: str) -> None:
        self.report(gossip.InboundPeer(url))

    def pushed(self, peer: str | None, client: str, ids: Sequence[bytes], stem: bool) -> None:
        """Posts pushed by a caller, before they are stored: marked as stem (docs/protocol.md,
        "Dazibao-Stem"), or ordinary ones, which are heard fluffed."""
        if stem and self.config.stem and self.gossip is not None:
            # Held before they are stored, so that no reconciliation finds them before they are
            # fluffed, whichever way they are stored.
            self.core.hold_offered(ids)
        self.report(gossip.StemOffered(peer, client, tuple(ids)) if stem else gossip.Heard(tuple(ids)))

    def heard(self, ids: Sequence[bytes]) -> None:
        """A caller announced ``ids``: they are being fluffed."""
        self.report(gossip.Heard(tuple(ids)))

    def _perform(self, actions: Iterable[gossip.Action]) -> None:
        for action in actions:
            if isinstance(action, gossip.Sync):
                self._job(self._sync(action.peer), f"sync with {action.peer}")
            elif isinstance(action, gossip.Announce):
                self._job(self._push(action.peer, action.ids_by_board), f"push to {action.peer}")
            elif isinstance(action, gossip.StemPush):
                self._job(self._stem_push(action.peer, action.ids_by_board), f"stem push to {action.peer}")
            elif isinstance(action, gossip.Exchange):
                self._job(self._exchange(action.peer), f"peer exchange with {action.peer}")
            elif isinstance(action, gossip.Refused):
                self.core.counters.rejected[action.code] += 1
            elif isinstance(action, (gossip.SavePeer, gossip.PeerOk, gossip.BackOff, gossip.Forget)):
                self._saves.put_nowait(action)
        self._release_fluffed()
        self._wake.set()

    def _on_new_posts(self, new: list[posts.Post], source: str | None) -> None:
        """Freshly stored posts go to the policy.  Those held in stem state (NodeCore.stem_held)
        go at once, before the store call that stored them returns, so that the policy has
        decided whether they stay held before any reconciliation can run: a post it does not
        take as a stem post (no stem peer, a bound reached, the 10 % fluff of a relay) joins
        the set without delay.  The others go through the push loop, which gathers bursts."""
        held = {p.id for p in new if p.id in self.core.stem_held}
        if held and self.gossip is not None:
            self.report(gossip.NewPosts(_by_board([p for p in new if p.id in held]), source))
            stems = self.gossip.stems()
            self.core.release_stems([i for i in held if i not in stems])
            new = [p for p in new if p.id not in held]
        if new:
            self._push_queue.put_nowait((new, source))

    def _release_fluffed(self) -> None:
        """Let the posts that left stem state at the policy's last decision (fluffed here, heard
        fluffed, or back on a loop) into the reconciliation set."""
        if self.gossip is None or not (self._stem_ids or self.core.stem_held):
            return
        now = self.gossip.stems().keys()
        left = self._stem_ids - now
        self._stem_ids = set(now)
        if left:
            self.core.release_stems(left)
        self.core.release_unstored()

    def _job(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        # Each sync, push and exchange runs on its own, bounded by its own timeouts: a peer that
        # hangs delays nothing but its own job.
        task = asyncio.create_task(coro, name=name)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _gossip_loop(self) -> None:
        # Sleep until the policy's next timer, or until an event may have moved it.
        while True:
            assert self.gossip is not None
            self._wake.clear()
            delay = (self.gossip.next_timer() - self.core.now_ms()) / 1000
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue
            self._perform(self.gossip.handle_timer(self.core.now_ms()))

    async def _save_loop(self) -> None:
        # Peer changes are written in the order the policy made them, one at a time.
        db = self.core.db
        while True:
            action = await self._saves.get()
            if isinstance(action, gossip.SavePeer):
                await db.call(Store.add_peer, action.url, action.source, action.at_ms)
            elif isinstance(action, gossip.PeerOk):
                await db.call(Store.record_peer_success, action.peer, action.at_ms, action.received, action.rejected)
            elif isinstance(action, gossip.BackOff):
                await db.call(Store.record_peer_failure, action.peer, action.at_ms, action.reason, action.until_ms)
            elif isinstance(action, gossip.Forget):
                await db.call(Store.remove_peer, action.peer)

    async def _peer_poll_loop(self) -> None:
        # Peers the operator adds or removes while the node runs (`dazibao peers add`, `dazibao
        # peers remove`) change in the store only.  A peer that was in the store at the last
        # look and is gone now was removed: the policy forgets it (a peer learned meanwhile and
        # not yet saved is not in either look, so it is not mistaken for a removed one).
        seen: set[str] | None = None
        while True:
            await asyncio.sleep(PEER_POLL_INTERVAL_S)
            assert self.gossip is not None
            rows = await self.core.db.call(Store.list_peers)
            for row in rows:
                known = self.gossip.peer(row.url)
                if row.source != "pex" and (known is None or known.source != row.source):
                    self.report(gossip.PeerLearned(row.url, row.source))
            now_seen = {row.url for row in rows}
            if seen is not None:
                self._perform(self.gossip.forget(sorted(seen - now_seen)))
            seen = now_seen

    def _client(self, url: str) -> PeerClient:
        state = self.gossip.peer(url) if self.gossip is not None else None
        # A peer the policy no longer knows is as untrusted as a learned one.
        untrusted = state is None or state.source == "pex"
        session = self.untrusted_session if untrusted else self.session
        assert session is not None
        # A learned peer given as an IP literal never meets the resolver's check: the client
        # checks the literal itself before every request.
        return PeerClient(session, url, public_only=untrusted and not self.config.allow_private_peers,
                          origin=self._origin_for(url), proxied=bool(self.config.proxy))

    def peer_client(self, url: str) -> PeerClient:
        """A client for a peer the member chose (the web UI's "sync now"), on the node's own
        session: trusted like a configured peer or one added by `dazibao peers add`, whether or
        not the gossip policy has picked it up yet."""
        state = self.gossip.peer(url) if self.gossip is not None else None
        if state is not None and state.source == "pex":
            return self._client(url)  # learned by peer exchange: as untrusted as anti-entropy treats it
        assert self.session is not None
        return PeerClient(self.session, url, origin=self._origin_for(url), proxied=bool(self.config.proxy))

    def _origin_for(self, url: str) -> str:
        """What this node sends as its ``Dazibao-Peer`` header to ``url`` (docs/protocol.md).

        The configured ``public_url`` when there is one.  Otherwise ``http://*:PORT``, "my
        gossip API listens on this port of the address you see me call from", but only where
        that can be true: when the gossip listener is not on loopback, or when the peer called
        is on loopback too (the same machine).  A member's node on 127.0.0.1 calling out to
        the internet sends nothing, so that nobody tries to call back into its home network.
        """
        if self.config.public_url:
            return self.config.public_url
        if not self.gossip_url or self.config.tls_cert or self.config.proxy:
            # The "*" form names no scheme and no pin: a TLS node gives its public_url instead.
            # Through a proxy, the address the peer sees is the proxy's (a Tor exit): the form
            # would be false, and would tell the peer this node's port for nothing.
            return ""
        listen = urlsplit(self.gossip_url)
        if is_loopback(listen.hostname or "") and not is_loopback(urlsplit(url).hostname or ""):
            return ""
        return f"http://*:{listen.port}"

    async def _sync(self, url: str) -> None:
        """One anti-entropy sync with a peer; the result goes to the policy.

        Any failure is reported: an error or timeout of one request, an answer that is not
        acceptable, or the whole sync lasting longer than peer_sync_timeout_s.
        """
        event: gossip.SyncDone
        try:
            async with asyncio.timeout(limits.PEER_SYNC_TIMEOUT_S):
                report = await sync_with(self.core, self._client(url))
        except TimeoutError:
            _log_peer("sync failed: took longer than %s s", url, limits.PEER_SYNC_TIMEOUT_S)
            event = gossip.SyncDone(url, f"timeout: sync took longer than {limits.PEER_SYNC_TIMEOUT_S} s")
        except PeerError as exc:
            _log_peer("sync failed: %s", url, exc.code, detail=exc.message)
            event = gossip.SyncDone(url, f"{exc.code}: {exc.message}")
        except StorageFullError:
            # Our disk, not the peer's fault: the store has said so once in the log already.
            log.debug("sync with %s stopped: this node's storage is full", url)
            event = gossip.SyncDone(url, local=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug that a peer's answer reaches must neither end anti-entropy nor let that
            # peer be chosen again at once: log it, and the peer is backed off.
            log.exception("sync with a peer failed unexpectedly")
            log.debug("... with peer %s", url)
            event = gossip.SyncDone(url, "internal_error: the sync failed unexpectedly")
        else:
            codes = tuple(code for _, code in report.rejected)
            blamed = gossip.blamed_codes(codes)
            if blamed:
                _log_peer("a peer sent %d invalid posts", url, len(blamed), level=logging.WARNING)
            if report.received or report.sent:
                _log_peer("synced: received %d, sent %d", url, report.received, report.sent)
            if report.bad_boards:
                # Counted like other refused input, so that the status page shows it.
                self.core.counters.rejected["bad_board"] += report.bad_boards
                _log_peer("a peer lists %d invalid board names (ignored)", url, report.bad_boards)
            event = gossip.SyncDone(url, received=report.received, rejected=codes)
        self.report(event)

    async def _exchange(self, url: str) -> None:
        """Ask a peer for its peers; the policy checks each one (untrusted input)."""
        try:
            offered = await self._client(url).peers()
        except PeerError as exc:
            _log_peer("peer exchange failed: %s", url, exc.code, detail=exc.message)
            self.report(gossip.ExchangeDone(url, f"{exc.code}: {exc.message}"))
            return
        known = len(self.gossip.peers()) if self.gossip is not None else 0
        self.report(gossip.ExchangeDone(url, offered=tuple(offered)))
        if self.gossip is not None and len(self.gossip.peers()) > known:
            _log_peer("learned %d peers by exchange", url, len(self.gossip.peers()) - known)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            await self.core.refresh()
            if self.core.read_only != self._info_read_only:
                self._write_info()
            # Large batches are stored before they are added to the full-text index; catch up
            # a bounded step at a time, when no posts have arrived for a moment.
            await self.core.index_for_search_when_idle()

    async def _moderation_loop(self) -> None:
        # Statements that expire end their effect (what they blocked may come back at the next
        # sync); pseudonyms created meanwhile are followed on every board.
        while True:
            try:
                await self.core.sync_identities()
                await self.core.expire_statements()
            except StoreError as exc:  # a locked or full disk: try again at the next round
                log.debug("moderation upkeep: %s", exc)
            await asyncio.sleep(MODERATION_INTERVAL_S)

    async def _push_loop(self) -> None:
        # Fresh posts go to the policy, which chooses whom to announce them to.
        while True:
            new, source = await self._push_queue.get()
            # Gather whatever else is already queued, so a burst goes out as one announcement.
            while not self._push_queue.empty():
                more, _ = self._push_queue.get_nowait()
                new.extend(more)
            self.report(gossip.NewPosts(_by_board(new), source))

    async def _push(self, url: str, ids_by_board: gossip.BoardIds) -> None:
        """Announce ids to a peer, board by board, and push the posts it wants."""
        client = self._client(url)

        async def send() -> None:
            for batch in messages.announcement_batches(ids_by_board):
                wanted = await client.announce_boards(batch)
                offered = {i for _, ids in batch for i in ids}
                raws = await self.core.db.call(Store.get_raw, [w for w in wanted if w in offered])
                # Batches bounded in bytes too: 512 large posts would not fit one request.
                for posts_batch in messages.post_batches(raws):
                    await client.push(posts_batch)

        self.report(gossip.PushDone(url, await _outcome("push", url, send())))

    async def _stem_push(self, url: str, ids_by_board: gossip.BoardIds) -> None:
        """Push posts in full to the stem peer, marked as stem (docs/protocol.md, "Stem pushes")."""

        async def send() -> None:
            raws = await self.core.db.call(Store.get_raw, [i for _, ids in ids_by_board for i in ids])
            client = self._client(url)
            for posts_batch in messages.post_batches(raws):
                # The stem marker is a query flag that a node which does not know it ignores:
                # it then takes the push as an ordinary one and fluffs the posts (safe).
                await client.push(posts_batch, stem=True)

        self.report(gossip.PushDone(url, await _outcome("stem push", url, send()), stem=ids_by_board))


def _by_board(new: Iterable[posts.Post]) -> gossip.BoardIds:
    by_board: dict[str, list[bytes]] = {}
    for post in new:
        by_board.setdefault(post.board, []).append(post.id)
    return tuple((b, tuple(ids)) for b, ids in by_board.items())


async def _outcome(what: str, url: str, work: Awaitable[None]) -> str | None:
    """Await one push to a peer (``what``: "push" or "stem push"); None, or the error it ended with
    for the gossip policy.  A peer that fails (unreachable, a redirect, too slow) is reported, so
    that it is backed off like one that fails a sync; this runs as a task of its own, so an
    unexpected error is logged here or nobody would see it."""
    try:
        await work
    except PeerError as exc:
        _log_peer(f"{what} failed: %s", url, exc.code, detail=exc.message)
        return f"{exc.code}: {exc.message}"
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s to a peer failed unexpectedly", what)
        log.debug("... to peer %s", url)
        return f"internal_error: the {what} failed unexpectedly"
    return None


def _log_peer(message: str, url: str, *args: object, level: int = logging.INFO, detail: str = "") -> None:
    """Log what happened with a peer without its address: at info level and above the line
    names no peer (a seized or shared log must not map who talks to whom, docs/privacy.md);
    with log_level debug, a second line says which peer and the whole error."""
    log.log(level, message, *args)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("... with peer %s%s", url, f": {detail}" if detail else "")


class AlreadyRunningError(Exception):
    """Another node runs on the same data folder."""


async def run_node(data: DataDir, config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT or SIGTERM.  Raises AlreadyRunningError, OSError (cannot bind)."""
    other = data.running_node()
    if other is not None:
        raise AlreadyRunningError(f"a node is already running on {data.root} (pid {other['pid']})")
    node = Node(data, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except BaseException:
        # A listener that cannot bind (port in use) must not leave sessions or the store open.
        await node.stop()
        raise
    print(f"dazibao node running: gossip API {node.gossip_url}", flush=True)
    print(f"member web UI: {node.ui_url}  (open it in a browser on this machine)", flush=True)
    if node.public_view_url:
        print(f"read-only public view: {node.public_view_url}", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await node.stop()

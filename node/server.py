"""`dazibao run`: the long-running node.

It serves the gossip API on its own listener, pushes fresh posts to a few peers at once
(announce ids; the peer fetches what it lacks), reconciles with a random peer on a jittered
timer (anti-entropy), backs off from failing peers, and picks up posts that another process
(`dazibao post`) wrote to the same data folder.  The member web UI (the web package) is served
on a second listener of its own, ``ui_listen``, never on the gossip listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from dazibao.protocol import limits, messages, peers, posts
from dazibao.protocol.errors import RemoteProtocolError

from .api import make_gossip_app
from .config import Config, DataDir, parse_listen
from .keys import KeyStore
from .listeners import make_runner, start_listener
from .retention import retention_loop
from .service import NodeCore
from .store import StorageFullError, Store
from .sync import PeerClient, PeerError, PublicOnlyResolver, sync_with
from .web import make_ui_app
from .web.public import make_public_app

__all__ = ["Node", "run_node", "AlreadyRunningError", "peer_states", "INVALID_DATA_CODES"]

log = logging.getLogger("dazibao.node")

POLL_INTERVAL_S = 1.0
MAINTENANCE_INTERVAL_S = 600.0
RESTART_DELAY_S = 5.0

#: Rejection codes that mean the peer sent bad data (as opposed to posts we merely did not
#: want): a peer that sends such posts is penalized like a failing one.
INVALID_DATA_CODES = frozenset({
    "malformed", "non_canonical", "bad_field", "unsupported_version", "too_large", "unknown_kind",
    "bad_board", "bad_body", "bad_signature", "future",
})


def peer_states(rows) -> list[peers.PeerState]:
    """The store's peer rows as the pure policy's PeerState values."""
    return [
        peers.PeerState(url=r.url, source=r.source, failures=r.failures, next_try_at_ms=r.next_try_at_ms,
                        last_ok_at_ms=r.last_ok_at_ms, added_at_ms=r.added_at_ms)
        for r in rows
    ]


class Node:
    """A running node: the core plus its listeners and background tasks."""

    def __init__(self, data: DataDir, config: Config, *, rng: random.Random | None = None) -> None:
        self.data = data
        self.config = config
        self.core = NodeCore(data, config)
        self.rng = rng or random.SystemRandom()
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task] = []
        self._push_queue: asyncio.Queue[tuple[list[posts.Post], str | None]] = asyncio.Queue()
        self.session: aiohttp.ClientSession | None = None
        #: Peers learned by exchange are untrusted: their names must not resolve to private
        #: addresses (unless allow_private_peers), so they get a session of their own.
        self.untrusted_session: aiohttp.ClientSession | None = None
        self.gossip_url = ""
        self.ui_url = ""
        self._wrote_info = False
        self._info_read_only = False
        self.public_view_url = ""

    async def start(self) -> None:
        await self.core.open()
        for url in self.config.peers:
            await self.core.db.call(Store.add_peer, url, "config", self.core.now_ms())
        self.session = aiohttp.ClientSession()
        if self.config.allow_private_peers:
            self.untrusted_session = self.session
        else:
            self.untrusted_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=PublicOnlyResolver()))
        self.core.on_new_posts.append(lambda new, source: self._push_queue.put_nowait((new, source)))
        host, port = parse_listen(self.config.gossip_listen, "gossip_listen")
        # Every listener is guarded (node/listeners.py): deadlines, connection and memory caps.
        runner = make_runner(make_gossip_app(self.core))
        await runner.setup()
        self._runners.append(runner)
        await start_listener(runner, host, port)
        self.gossip_url = _url_of(runner)
        await self._start_ui()
        await self._start_public_view()
        self._tasks = [
            self._supervised("poll", self._poll_loop),
            self._supervised("push", self._push_loop),
            self._supervised("anti-entropy", self._anti_entropy_loop),
            self._supervised("maintenance", self._maintenance_loop),
            # Mirror retention (node/retention.py): at start, then hourly; ends at once if unset.
            self._supervised("retention", lambda: retention_loop(self.core, self.config.retention_days)),
        ]
        self._write_info()
        log.info("gossip API on %s; %d posts; %d peers", self.gossip_url, len(self.core.index),
                 len(await self.peer_urls()))

    def _supervised(self, name: str, loop_fn) -> asyncio.Task:
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
        app = make_ui_app(self.core, KeyStore(self.data.keys), self.config, node=self)
        runner = make_runner(app)
        await runner.setup()
        self._runners.append(runner)
        await start_listener(runner, host, port)
        self.ui_url = _url_of(runner) + "/"
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
        self.public_view_url = _url_of(runner) + "/"
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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
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

    async def _peer_states(self) -> list[peers.PeerState]:
        return peer_states(await self.core.db.call(Store.list_peers))

    def _self_urls(self) -> set[str]:
        return {u for u in (self.gossip_url, self.config.public_url) if u}

    def _client(self, state: peers.PeerState) -> PeerClient:
        untrusted = state.source == "pex"
        session = self.untrusted_session if untrusted else self.session
        assert session is not None
        # A learned peer given as an IP literal never meets the resolver's check: the client
        # checks the literal itself before every request.
        return PeerClient(session, state.url, public_only=untrusted and not self.config.allow_private_peers)

    async def _fail(self, state: peers.PeerState, reason: str) -> None:
        now = self.core.now_ms()
        # Read the failure count now, not from ``state``: a push and a sync may both have failed
        # since ``state`` was read, and each failure must lengthen the back-off.
        rows = await self.core.db.call(Store.list_peers)
        failures = next((r.failures for r in rows if r.url == state.url), state.failures)
        await self.core.db.call(Store.record_peer_failure, state.url, now, reason[:300],
                                now + peers.backoff_ms(failures + 1, self.rng))

    async def sync_once(self, state: peers.PeerState) -> None:
        """One anti-entropy sync with a peer, recording its health, then peer exchange.

        Any failure backs the peer off: an error or timeout of one request, an answer that is
        not acceptable, or the whole sync lasting longer than peer_sync_timeout_s.
        """
        client = self._client(state)
        try:
            async with asyncio.timeout(limits.PEER_SYNC_TIMEOUT_S):
                report = await sync_with(self.core, client)
        except TimeoutError:
            await self._fail(state, f"timeout: sync took longer than {limits.PEER_SYNC_TIMEOUT_S} s")
            log.info("sync with %s failed: took longer than %s s", state.url, limits.PEER_SYNC_TIMEOUT_S)
            return
        except PeerError as exc:
            await self._fail(state, f"{exc.code}: {exc.message}")
            log.info("sync with %s failed: %s", state.url, exc)
            return
        except StorageFullError:
            # Our disk, not the peer's fault: the store has said so once in the log already.
            log.debug("sync with %s stopped: this node's storage is full", state.url)
            return
        invalid = [code for _, code in report.rejected if code in INVALID_DATA_CODES]
        await self.core.db.call(Store.record_peer_success, state.url, self.core.now_ms(),
                                report.received, len(report.rejected))
        if invalid:
            # A peer that hands out invalid posts is backed off like a failing one.
            await self._fail(state, f"sent {len(invalid)} invalid posts ({invalid[0]})")
            log.warning("peer %s sent %d invalid posts", state.url, len(invalid))
        if report.received or report.sent:
            log.info("synced with %s: received %d, sent %d", state.url, report.received, report.sent)
        if report.bad_boards:
            # Counted like other refused input, so that the status page shows it.
            self.core.counters.rejected["bad_board"] += report.bad_boards
            log.info("peer %s lists %d invalid board names (ignored)", state.url, report.bad_boards)
        if self.config.peer_exchange:
            await self.exchange_peers(client, state)

    async def exchange_peers(self, client: PeerClient, state: peers.PeerState | None = None) -> int:
        """Learn peers from ``client``'s peer list (untrusted input).  Returns how many were new.

        A failed exchange (unreachable, redirect, timeout, an answer that is not a peer list)
        backs the peer off when its ``state`` is given.
        """
        try:
            offered = await client.peers()
        except PeerError as exc:
            log.info("peer exchange with %s failed: %s", client.url, exc)
            if state is not None:
                await self._fail(state, f"{exc.code}: {exc.message}")
            return 0
        known = set(await self.peer_urls()) | self._self_urls()
        added = 0
        for url in offered[: peers.MAX_PEERS_PER_EXCHANGE]:
            try:
                url = peers.check_learned_peer(url, allow_private=self.config.allow_private_peers)
            except RemoteProtocolError:
                self.core.counters.rejected["bad_peer_url"] += 1
                continue
            if url in known:
                continue
            known.add(url)
            if await self.core.db.call(Store.add_peer, url, "pex", self.core.now_ms()):
                added += 1
        if added:
            log.info("learned %d peers from %s", added, client.url)
            await self._forget_peers()
        return added

    async def _forget_peers(self) -> None:
        states = await self._peer_states()
        for url in peers.peers_to_forget(states, self.core.now_ms(), self.config.max_peers):
            await self.core.db.call(Store.remove_peer, url)

    async def _anti_entropy_loop(self) -> None:
        # A first sync soon after start, then one every sync_interval_s (jittered by +-50%, so
        # that nodes started together do not stay in lock step).
        delay = self.rng.uniform(0.2, 1.0)
        while True:
            await asyncio.sleep(delay)
            states = await self._peer_states()
            url = peers.choose_sync_peer(states, self.core.now_ms(), self.rng, exclude=self._self_urls())
            if url is not None:
                state = next(s for s in states if s.url == url)
                try:
                    await self.sync_once(state)
                except Exception:
                    # A bug that a peer's answer reaches must neither end anti-entropy nor
                    # let that peer be chosen again at once: log it and back the peer off.
                    log.exception("sync with %s failed unexpectedly", url)
                    await self._fail(state, "internal_error: the sync failed unexpectedly")
            delay = self.config.sync_interval_s * self.rng.uniform(0.5, 1.5)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            await self.core.refresh()
            if self.core.read_only != self._info_read_only:
                self._write_info()
            # Large batches are stored before they are added to the full-text index; catch up
            # a bounded step at a time, when no posts have arrived for a moment.
            await self.core.index_for_search_when_idle()

    async def _push_loop(self) -> None:
        # Each push runs on its own, bounded by its own timeouts: a peer that hangs delays
        # nothing but its own push, and the next fresh post goes out to the others at once.
        # A peer with a push still in flight is not chosen again until it ends, so a hung peer
        # holds one task, not one per post; what it misses, anti-entropy brings it later.
        in_flight: dict[str, asyncio.Task] = {}
        try:
            while True:
                new, source = await self._push_queue.get()
                # Gather whatever else is already queued, so a burst goes out as one announcement.
                while not self._push_queue.empty():
                    more, _ = self._push_queue.get_nowait()
                    new.extend(more)
                states = await self._peer_states()
                targets = peers.choose_push_targets(
                    states, self.config.push_fanout, self.core.now_ms(), self.rng,
                    exclude=self._self_urls() | {source or ""} | set(in_flight))
                by_url = {s.url: s for s in states}
                for url in targets:
                    task = asyncio.create_task(self._push_to(by_url[url], new), name=f"push to {url}")
                    in_flight[url] = task
                    task.add_done_callback(lambda _, u=url: in_flight.pop(u, None))
        finally:
            for task in list(in_flight.values()):
                task.cancel()

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            await self._forget_peers()

    async def _push_to(self, state: peers.PeerState, new: Sequence[posts.Post]) -> None:
        client = self._client(state)
        url = state.url
        by_id = {p.id: p for p in new}
        ids = list(by_id)
        try:
            for i in range(0, len(ids), limits.MAX_IDS_PER_REQUEST):
                wanted = await client.announce(ids[i : i + limits.MAX_IDS_PER_REQUEST])
                raws = [by_id[w].raw for w in wanted if w in by_id]
                # Batches bounded in bytes too: 512 large posts would not fit one request.
                for batch in messages.post_batches(raws):
                    await client.push(batch)
        except PeerError as exc:
            # A peer that fails a push (unreachable, a redirect, too slow) is backed off like
            # one that fails a sync, so that the next pushes go to peers that answer.
            log.info("push to %s failed: %s", url, exc)
            await self._fail(state, f"{exc.code}: {exc.message}")
        except asyncio.CancelledError:
            raise
        except Exception:
            # This runs as a task of its own: nobody else would see the error.
            log.exception("push to %s failed unexpectedly", url)
            await self._fail(state, "internal_error: the push failed unexpectedly")


def _url_of(runner: web.AppRunner) -> str:
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return f"http://{shown}:{bound[1]}"


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

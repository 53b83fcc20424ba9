"""`dazibao run`: the long-running node.

It serves the gossip API on its own listener, pushes fresh posts to a few peers at once
(announce ids; the peer fetches what it lacks), reconciles with a random peer on a jittered
timer (anti-entropy), backs off from failing peers, and picks up posts that another process
(`dazibao post`) wrote to the same data folder.  The member web UI listener has its place here
(``ui_listen``) and is added by the web package.
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

from dazibao.protocol import limits, posts

from .api import make_gossip_app
from .config import Config, DataDir, parse_listen
from .service import NodeCore
from .store import Store
from .sync import PeerClient, PeerError, sync_with

__all__ = ["Node", "run_node", "backoff_ms"]

log = logging.getLogger("dazibao.node")

POLL_INTERVAL_S = 1.0
MAX_BACKOFF_S = 3600


def backoff_ms(failures: int, rng: random.Random) -> int:
    """Delay before trying a failing peer again: exponential from 5 s to an hour, jittered."""
    base = min(5 * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)
    return int(base * 1000 * rng.uniform(0.75, 1.25))


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
        self.gossip_url = ""

    async def start(self) -> None:
        await self.core.open()
        for url in self.config.peers:
            await self.core.db.call(Store.add_peer, url, "config", self.core.now_ms())
        self.session = aiohttp.ClientSession()
        self.core.on_new_posts.append(lambda new, source: self._push_queue.put_nowait((new, source)))
        host, port = parse_listen(self.config.gossip_listen, "gossip_listen")
        runner = web.AppRunner(make_gossip_app(self.core), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.gossip_url = f"http://{shown}:{bound[1]}"
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="poll"),
            asyncio.create_task(self._push_loop(), name="push"),
            asyncio.create_task(self._anti_entropy_loop(), name="anti-entropy"),
        ]
        self._write_info()
        log.info("gossip API on %s; %d posts; %d peers", self.gossip_url, len(self.core.index),
                 len(await self.peer_urls()))

    def _write_info(self) -> None:
        info = {"pid": os.getpid(), "gossip_url": self.gossip_url, "ui_url": None}
        tmp = self.data.node_info.with_suffix(".tmp")
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, self.data.node_info)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self._runners:
            await runner.cleanup()
        if self.session is not None:
            await self.session.close()
        await self.core.close()
        self.data.node_info.unlink(missing_ok=True)

    async def peer_urls(self) -> list[str]:
        rows = await self.core.db.call(Store.list_peers)
        return [row.url for row in rows]

    async def _due_peers(self) -> list[str]:
        now = self.core.now_ms()
        rows = await self.core.db.call(Store.list_peers)
        return [row.url for row in rows if row.next_try_at_ms <= now and row.url != self.gossip_url]

    async def sync_once(self, url: str) -> None:
        """One anti-entropy sync with ``url``, recording its health."""
        assert self.session is not None
        try:
            report = await sync_with(self.core, PeerClient(self.session, url))
        except PeerError as exc:
            row = next((r for r in await self.core.db.call(Store.list_peers) if r.url == url), None)
            failures = (row.failures if row else 0) + 1
            await self.core.db.call(
                Store.record_peer_failure, url, self.core.now_ms(), f"{exc.code}: {exc.message}",
                self.core.now_ms() + backoff_ms(failures, self.rng),
            )
            log.info("sync with %s failed: %s", url, exc)
            return
        await self.core.db.call(
            Store.record_peer_success, url, self.core.now_ms(), report.received, len(report.rejected)
        )
        if report.received or report.sent:
            log.info("synced with %s: received %d, sent %d", url, report.received, report.sent)

    async def _anti_entropy_loop(self) -> None:
        # A first sync soon after start, then one every sync_interval_s (jittered by +-50%, so
        # that nodes started together do not stay in lock step).
        delay = self.rng.uniform(0.2, 1.0)
        while True:
            await asyncio.sleep(delay)
            due = await self._due_peers()
            if due:
                await self.sync_once(self.rng.choice(due))
            delay = self.config.sync_interval_s * self.rng.uniform(0.5, 1.5)

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            await self.core.refresh()
            # Large batches are stored before they are added to the full-text index; catch up
            # a bounded step at a time, between other work.
            await self.core.db.call(Store.update_search_index, 2_000)

    async def _push_loop(self) -> None:
        while True:
            new, source = await self._push_queue.get()
            # Gather whatever else is already queued, so a burst goes out as one announcement.
            while not self._push_queue.empty():
                more, _ = self._push_queue.get_nowait()
                new.extend(more)
            peers = [p for p in await self._due_peers() if p != source]
            self.rng.shuffle(peers)
            for url in peers[: self.config.push_fanout]:
                await self._push_to(url, new)

    async def _push_to(self, url: str, new: Sequence[posts.Post]) -> None:
        assert self.session is not None
        client = PeerClient(self.session, url)
        by_id = {p.id: p for p in new}
        ids = list(by_id)
        try:
            for i in range(0, len(ids), limits.MAX_IDS_PER_REQUEST):
                wanted = await client.announce(ids[i : i + limits.MAX_IDS_PER_REQUEST])
                raws = [by_id[w].raw for w in wanted if w in by_id]
                for j in range(0, len(raws), limits.MAX_POSTS_PER_BATCH):
                    await client.push(raws[j : j + limits.MAX_POSTS_PER_BATCH])
        except PeerError as exc:
            log.info("push to %s failed: %s", url, exc)


async def run_node(data: DataDir, config: Config, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT or SIGTERM."""
    node = Node(data, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await node.start()
    print(f"dazibao node running: gossip API {node.gossip_url}", flush=True)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await node.stop()

"""*Sync now* in the member UI: one sync with each known peer, at once, with its progress.

A running node syncs with its peers by itself (protocol/gossip.py decides when); this is the
member's button for "now", after adding a peer say.  Each peer's sync is the one the node and
``dazibao sync`` run (node/sync.py, ``sync_with``), bounded by ``peer_sync_timeout_s``, and its
outcome is written to the peer's row as ``dazibao sync`` writes it.  Only one round of syncs
runs at a time, over at most ``ui_sync_now_peers`` peers; its progress lives in memory only,
for the *Peers* page, which reloads itself while it runs.

Peer connections go through the running node's own client when it offers one
(``peer_client(url)``: its sessions, proxy and address checks), else through a session of
this UI's own that uses the ``proxy`` setting the same way (node/transport.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from dazibao.protocol import gossip, limits

from ..config import Config
from ..service import NodeCore
from ..store import StorageFullError, Store, StoreError
from ..sync import PeerClient, PeerError, sync_with

__all__ = ["PeerProgress", "SyncNow", "PHASES", "SYNC_NOW"]

log = logging.getLogger("dazibao.web")

#: What a peer's line on the Peers page says, in order.
PHASES = ("waiting", "connecting", "receiving", "sending", "done", "failed")


@dataclass(slots=True)
class PeerProgress:
    url: str
    phase: str = "waiting"
    done: int = 0
    total: int = 0
    boards: list[str] = field(default_factory=list)
    received: int = 0
    sent: int = 0
    rejected: int = 0
    error: str = ""


class SyncNow:
    """The UI's one round of *Sync now* (at most one at a time)."""

    def __init__(self, core: NodeCore, config: Config,
                 client_for: Callable[[str], PeerClient] | None = None) -> None:
        self.core = core
        self.config = config
        self.client_for = client_for
        self.progress: list[PeerProgress] = []
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, urls: list[str]) -> bool:
        """Start syncing with ``urls`` (the first ``ui_sync_now_peers``); False if a round runs."""
        if self.running:
            return False
        self.progress = [PeerProgress(url) for url in urls[:limits.UI_SYNC_NOW_PEERS]]
        self._task = asyncio.create_task(self._run(), name="ui-sync-now")
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    def _client(self, url: str) -> PeerClient:
        if self.client_for is not None:
            return self.client_for(url)
        proxy_setting = getattr(self.config, "proxy", "")
        if self._session is None:
            from ..transport import open_session, parse_proxy

            self._session = open_session(parse_proxy(proxy_setting) if proxy_setting else None)
        return PeerClient(self._session, url, proxied=bool(proxy_setting))

    async def _run(self) -> None:
        await asyncio.gather(*(self._one(p) for p in self.progress))

    async def _one(self, p: PeerProgress) -> None:
        def progress(phase: str, done: int, total: int) -> None:
            p.phase = "receiving" if phase == "receive" else "sending"
            p.done, p.total = done, total

        p.phase = "connecting"
        db = self.core.db
        try:
            async with asyncio.timeout(limits.PEER_SYNC_TIMEOUT_S):
                report = await sync_with(self.core, self._client(p.url), progress=progress)
        except (PeerError, TimeoutError, StorageFullError) as exc:
            if isinstance(exc, PeerError):
                p.error = f"{exc.code}: {exc.message}"
            elif isinstance(exc, TimeoutError):
                p.error = f"timeout: the sync took longer than {limits.PEER_SYNC_TIMEOUT_S} s"
            else:
                p.error = "storage_full: this node's storage is full"
            # Backed off as the running node would do, so that it does not try again at once (a
            # store that cannot be written only misses the note).
            with contextlib.suppress(StoreError):
                rows = {row.url: row for row in await db.call(Store.list_peers)}
                if p.url in rows and not isinstance(exc, StorageFullError):
                    now = self.core.now_ms()
                    await db.call(Store.record_peer_failure, p.url, now, p.error[:300],
                                  now + gossip.backoff_ms(rows[p.url].failures + 1, random.SystemRandom()))
            p.phase = "failed"
            return
        except Exception:
            # A bug reached by a peer's answer must not end the round for the other peers.
            # The peer's address at debug level only (docs/privacy.md).
            log.exception("sync now with a peer failed unexpectedly")
            log.debug("... with peer %s", p.url)
            p.phase, p.error = "failed", "internal_error: the sync failed unexpectedly"
            return
        with contextlib.suppress(StoreError):
            await db.call(Store.record_peer_success, p.url, self.core.now_ms(), report.received,
                          len(report.rejected))
        p.boards, p.received, p.sent, p.rejected = list(report.boards), report.received, report.sent, len(
            report.rejected)
        p.phase = "done"


#: The application's one :class:`SyncNow` (the member UI only; the public view has none).
SYNC_NOW = web.AppKey("sync_now", SyncNow)

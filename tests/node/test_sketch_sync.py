"""Sketches over HTTP between two real node cores (docs/protocol.md, "Reconciliation", §5.1).

The node's own ``sync_with`` and gossip app: scattered differences are settled with Sketches when
both sides have them, and exactly the same posts move when either side runs the release before
sketches (this code with the mode disabled, both ways).
"""

from __future__ import annotations

import functools

import aiohttp
import pytest

from dazibao.node import sync
from dazibao.node.api import make_gossip_app
from dazibao.protocol import reconcile
from tests.node.test_sync import ids, make, open_core


async def scattered_pair(tmp_path, aiohttp_server):
    local = await open_core(tmp_path, "local")
    remote = await open_core(tmp_path, "remote")
    made = make(2_000, "labor")
    # Every 97th post only on the local node, every 89th only on the remote one (never both).
    await local.ingest_checked([p for n, p in enumerate(made) if n % 89 or not n % 97], "local")
    await remote.ingest_checked([p for n, p in enumerate(made) if n % 97 or not n % 89], "local")
    server = await aiohttp_server(make_gossip_app(remote))
    return local, remote, server


@pytest.mark.parametrize("old", [None, "responder", "initiator"])
async def test_scattered_differences_move_whichever_side_lacks_sketches(tmp_path, aiohttp_server, monkeypatch, old):
    if old == "responder":
        monkeypatch.setattr(reconcile, "respond", functools.partial(reconcile.respond, sketches=False))
    elif old == "initiator":
        monkeypatch.setattr(sync, "Initiator", functools.partial(reconcile.Initiator, sketches=False))
    sketches_seen = []
    real_reconcile = sync.PeerClient.reconcile

    async def watching(self, message: bytes) -> bytes:
        reply = await real_reconcile(self, message)
        sketches_seen.extend(mode for _, mode, _ in reconcile.decode_message(reply) if mode == reconcile.MODE_SKETCH)
        return reply

    monkeypatch.setattr(sync.PeerClient, "reconcile", watching)
    local, remote, server = await scattered_pair(tmp_path, aiohttp_server)
    try:
        async with aiohttp.ClientSession() as session:
            client = sync.PeerClient(session, str(server.make_url("")).rstrip("/"))
            report = await sync.sync_with(local, client)
        only_remote = len([n for n in range(2_000) if n % 97 and not n % 89])
        only_local = len([n for n in range(2_000) if n % 89 and not n % 97])
        assert (report.received, report.sent) == (only_remote, only_local)
        assert await ids(local) == await ids(remote)
        # Sketches cross the wire only when both sides have them, and then settle the 43
        # scattered differences in a few round trips of a few kilobytes (24 symbols first, then
        # as many more as the estimate of the difference asks for; the posts' times, hence
        # their ids, change with the clock: over 40 draws of ids, at most 4 round trips and
        # 4 267 bytes, against some 20 KB by fingerprints alone).
        assert bool(sketches_seen) == (old is None)
        if old is None:
            assert report.rounds <= 6
            assert report.reconcile_bytes_sent + report.reconcile_bytes_received < 43 * 150
    finally:
        await local.close()
        await remote.close()

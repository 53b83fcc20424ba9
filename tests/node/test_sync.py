"""The sync client against a real gossip API on 127.0.0.1 (in-process server, real SQLite)."""

from __future__ import annotations

import functools
import time

import aiohttp
import pytest

from dazibao.node import sync
from dazibao.node.api import make_gossip_app
from dazibao.node.config import Config, DataDir
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.protocol import identity, posts, reconcile

KEY = identity.SigningKey(bytes([21]) * 32)
T0 = int(time.time() * 1000) - 86_400_000


def make(n: int, board: str, offset: int = 0) -> list[posts.Post]:
    return [posts.create_post(KEY, kind="post", board=board, body=f"{board} post {offset + i}",
                              created_at_ms=T0 + offset + i) for i in range(n)]


#: One key writes thousands of posts here: the stranger quota is not what these tests are about.
NO_QUOTA = {"stranger_posts_per_day": 10**9, "stranger_bytes_per_day": 10**12}


async def open_core(tmp_path, name: str, boards=()) -> NodeCore:
    data = DataDir(tmp_path / name)
    data.create()
    core = NodeCore(data, Config(boards=tuple(boards), **NO_QUOTA))
    await core.open()
    return core


@pytest.fixture
async def pair(tmp_path, aiohttp_server):
    local = await open_core(tmp_path, "local")
    remote = await open_core(tmp_path, "remote")
    server = await aiohttp_server(make_gossip_app(remote))
    async with aiohttp.ClientSession() as session:
        yield local, remote, sync.PeerClient(session, str(server.make_url("")).rstrip("/"))
    await local.close()
    await remote.close()


async def ids(core: NodeCore, board: str | None = None) -> list[bytes]:
    rows = await core.db.call(Store.list_posts, board, 100_000)
    return sorted(r.id for r in rows)


async def test_both_directions_and_idempotent(pair):
    local, remote, client = pair
    await local.ingest_checked(make(300, "labor"), "local")
    await remote.ingest_checked(make(200, "labor", 10_000), "local")
    report = await sync.sync_with(local, client)
    assert (report.received, report.sent) == (200, 300)
    assert await ids(local) == await ids(remote)
    again = await sync.sync_with(local, client)
    assert (again.received, again.sent, again.rounds) == (0, 0, 1)


async def test_tombstoned_ids_are_not_fetched_again(pair):
    local, remote, client = pair
    made = make(10, "labor")
    await remote.ingest_checked(made, "local")
    await local.ingest_checked(made, "local")
    await local.db.call(Store.delete, [made[0].id], "deleted", now_ms=local.now_ms())
    await local.forget_keys([made[0].key])
    report = await sync.sync_with(local, client)
    assert (report.received, report.skipped_tombstoned) == (0, 1)
    assert made[0].id not in await ids(local)


async def test_posts_past_retention_are_purged_on_arrival(tmp_path, aiohttp_server):
    data = DataDir(tmp_path / "mirror")
    data.create()
    mirror = NodeCore(data, Config(retention_days={"labor": 2}))  # T0 is one day ago
    await mirror.open()
    remote = await open_core(tmp_path, "remote")
    old = [posts.create_post(KEY, kind="post", board="labor", body=f"old {i}",
                             created_at_ms=T0 - 3 * 86_400_000 + i) for i in range(5)]
    await remote.ingest_checked(old + make(3, "labor", 500), "local")
    server = await aiohttp_server(make_gossip_app(remote))
    try:
        async with aiohttp.ClientSession() as session:
            client = sync.PeerClient(session, str(server.make_url("")).rstrip("/"))
            first = await sync.sync_with(mirror, client)
            assert sorted(await ids(mirror)) == sorted(p.id for p in make(3, "labor", 500))
            assert first.received == 3        # the old ones were checked, then purged at once
            # The peer holds the purged posts: their keys are carried, so the next sync sees no
            # difference at all (one round) and fetches nothing.
            assert first.carried == 5
            second = await sync.sync_with(mirror, client)
            assert (second.received, second.skipped_tombstoned, second.rounds) == (0, 0, 1)
    finally:
        await mirror.close()
        await remote.close()


async def test_a_large_difference_is_settled_in_several_passes(pair, monkeypatch):
    # Small messages and few rounds per pass force the multi-pass path that a fresh node
    # joining a large network takes: every pass moves what it learned, the next starts from
    # what is left.
    monkeypatch.setattr(sync, "ROUNDS_PER_PASS", 4)
    monkeypatch.setattr(sync, "Initiator", functools.partial(reconcile.Initiator, max_msg_bytes=4096))
    monkeypatch.setattr(reconcile, "respond", functools.partial(reconcile.respond, max_msg_bytes=4096))
    local, remote, client = pair
    await remote.ingest_checked(make(3000, "labor") + make(500, "劳动", 50_000), "local")
    report = await sync.sync_with(local, client)
    assert report.received == 3500
    assert report.rounds > sync.ROUNDS_PER_PASS
    assert await ids(local) == await ids(remote)


async def test_scope_is_what_both_sides_carry(tmp_path, aiohttp_server):
    local = await open_core(tmp_path, "local", boards=["a", "b"])
    remote = await open_core(tmp_path, "remote")
    await remote.ingest_checked(make(5, "a") + make(5, "b", 100) + make(5, "c", 200), "local")
    server = await aiohttp_server(make_gossip_app(remote))
    try:
        async with aiohttp.ClientSession() as session:
            client = sync.PeerClient(session, str(server.make_url("")).rstrip("/"))
            report = await sync.sync_with(local, client)
            assert report.boards == ["a", "b"] and report.received == 10
            only_a = await sync.sync_with(local, client, boards=["a"])
            assert only_a.boards == ["a"]
        assert sorted({r.board for r in await local.db.call(Store.list_posts, None, 100)}) == ["a", "b"]
    finally:
        await local.close()
        await remote.close()


async def test_unreachable_peer_is_a_peer_error(tmp_path):
    local = await open_core(tmp_path, "local")
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(sync.PeerError) as info:
                await sync.sync_with(local, sync.PeerClient(session, "http://127.0.0.1:9"))
        assert info.value.code == "unreachable"
    finally:
        await local.close()


def test_scope_boards():
    assert sync.scope_boards(["a"], False, ["a", "b"], False) == ["a"]
    assert sync.scope_boards(["a"], True, ["b"], True) == ["a", "b"]
    assert sync.scope_boards(["a"], False, ["b"], True) == ["a"]
    assert sync.scope_boards([], True, [], True) == []

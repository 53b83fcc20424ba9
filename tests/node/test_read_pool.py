"""The node's read pool (node/service.py ``ReadPool``): read-only connections on threads of
their own beside the writer, and the writer as the fallback where there can be none."""

from __future__ import annotations

import threading

import pytest

from dazibao.node.service import ReadPool, StoreThread
from dazibao.node.store import Store, StoreError
from dazibao.protocol import limits
from tests.factories import T0_MS, make_post


def where(store: Store) -> tuple[str, bool]:
    return threading.current_thread().name, store.read_only


async def test_reads_run_on_read_only_connections_of_their_own(tmp_path):
    writer = StoreThread(str(tmp_path / "node.db"))
    await writer.open()
    pool = ReadPool(writer)
    await pool.open()
    try:
        name, read_only = await pool.call(where)
        assert name.startswith("dazibao-read") and read_only
        # What the writer commits, the pool reads; it cannot write.
        await writer.call(Store.add_identity, "me", make_post().author, T0_MS)
        await writer.call(Store.ingest, [make_post()], source="local", now_ms=T0_MS)
        assert await pool.call(Store.post_count) == 1
        with pytest.raises(StoreError):
            await pool.call(Store.set_meta, "boards", "[]")
        assert len(pool._stores) == limits.READ_POOL_CONNECTIONS
    finally:
        await pool.close()
        await writer.close()


async def test_without_a_second_connection_reads_go_to_the_writer(tmp_path):
    writer = StoreThread(":memory:")
    await writer.open()
    pool = ReadPool(writer)
    await pool.open()
    try:
        name, read_only = await pool.call(where)
        assert name.startswith("dazibao-store") and not read_only
    finally:
        await pool.close()
        await writer.close()

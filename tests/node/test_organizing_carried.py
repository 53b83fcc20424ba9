"""Forward compatibility of the collective-action kinds (docs/protocol.md, "Objects of unknown
kind", "Collective action"): nodes of the previous revision, to which ``report``, ``letter``,
``signature``, ``pledge``, ``pin``, ``translation`` and ``corroboration`` are unknown kinds,
store and forward them byte for byte over real HTTP and real SQLite, never list them, and a
node of this revision that receives them through those nodes understands them."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest

from dazibao.node import sync
from dazibao.node.api import make_gossip_app
from dazibao.node.config import Config, DataDir
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.protocol import messages, organizing, posts
from dazibao.protocol.errors import BodyError
from tests.factories import key, signed

BOARD = "labor"
NO_QUOTA = {"stranger_posts_per_day": 10**9, "stranger_bytes_per_day": 10**12}


def objects() -> list[posts.Post]:
    a, b, m = key(700), key(701), key(702)
    now = int(time.time() * 1000) - 60_000
    report = organizing.create_report(a, board=BOARD, company="Example Tech", practice="unpaid_overtime",
                                      created_at_ms=now, text="Until ten every night.")
    letter = organizing.create_letter(a, board=BOARD, title="To the bureau", text="Enforce article 41.",
                                      created_at_ms=now + 1)
    pledge = organizing.create_pledge(a, board=BOARD, action="leave at six", date="2027-03-01", threshold=1,
                                      created_at_ms=now + 2)
    return [
        report, letter, pledge,
        organizing.create_corroboration(b, report, created_at_ms=now + 3, text="Same here."),
        organizing.create_signature(b, letter, created_at_ms=now + 4, line="engineer, Shenzhen"),
        organizing.create_signature(b, pledge, created_at_ms=now + 5),
        organizing.create_pin(m, letter, created_at_ms=now + 6),
        organizing.create_translation(b, letter, lang="zh-Hans", text="执行第四十一条。", created_at_ms=now + 7),
    ]


def become_previous_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process a node of the revision before collective action: the seven kinds are
    unknown to it, exactly as they are to a node of that revision."""
    monkeypatch.setattr(posts, "KINDS", tuple(k for k in posts.KINDS if k not in posts.ACTION_KINDS))
    monkeypatch.setattr(posts, "_HAS_PARENT",
                        {k: v for k, v in posts._HAS_PARENT.items() if k not in posts.ACTION_KINDS})


async def open_core(tmp_path, name: str) -> NodeCore:
    data = DataDir(tmp_path / name)
    data.create()
    core = NodeCore(data, Config(**NO_QUOTA))
    await core.open()
    return core


async def test_a_node_that_does_not_know_the_kinds_carries_them_unchanged(tmp_path, aiohttp_server,
                                                                         monkeypatch):
    made = objects()
    become_previous_revision(monkeypatch)
    # The patch took effect: a report without its practice, refused by this revision, is an
    # object of unknown kind to the previous one.
    writer = key(703)
    loose = signed([1, "report", BOARD, writer.public_key, made[0].created_at_ms, None, "company: X"], writer)
    assert not posts.is_known_kind("report")
    assert posts.check_post(loose, time.time()).kind == "report"
    first, second = await open_core(tmp_path, "first"), await open_core(tmp_path, "second")
    try:
        server = await aiohttp_server(make_gossip_app(first))
        url = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession() as session:
            # A member's node pushes them to the first old node ...
            async with session.post(url + "/v1/posts", data=messages.encode_posts([p.raw for p in made])) as resp:
                assert resp.status == 200, await resp.text()
                assert messages.decode_push_result(await resp.read()).accepted == len(made)
            # ... and the second old node syncs them from it.
            report = await sync.sync_with(second, sync.PeerClient(session, url))
        assert report.received == len(made)
        for core in (first, second):
            assert await core.db.call(Store.get_raw, [p.id for p in made]) == [p.raw for p in made]
            # Stored, never listed: no thread, no search hit, no reader count.
            assert await core.db.call(Store.threads, BOARD) == []
            assert await core.db.call(Store.search, "Example") == []
        monkeypatch.undo()
        # A node of this revision refuses the loose report the old nodes would carry ...
        with pytest.raises(BodyError):
            posts.check_post(loose, time.time())
        # ... and one that syncs from the second old node understands what it carried.
        third = await open_core(tmp_path, "third")
        try:
            server2 = await aiohttp_server(make_gossip_app(second))
            async with aiohttp.ClientSession() as session:
                got = await sync.sync_with(third, sync.PeerClient(session, str(server2.make_url("")).rstrip("/")))
            assert got.received == len(made)
            raws = await third.db.call(Store.get_raw, [p.id for p in made])
            understood = [organizing.parse_object(posts.check_post(raw, time.time())) for raw in raws]
            assert [type(o).__name__ for o in understood] == [
                "Report", "Letter", "Pledge", "Corroboration", "Signature", "Signature", "Pin", "Translation"]
        finally:
            await third.close()
    finally:
        await first.close()
        await second.close()


def test_the_collective_action_reads_use_their_kind_indexes():
    """Every read of node/store/organizing.py walks its kind's partial index (migration 6), never
    the board or the thread: a board with many posts costs those pages nothing."""
    store = Store.memory()
    try:
        store.configure_policy(**NO_QUOTA)
        made = objects()
        store.ingest(made, source="local", now_ms=made[-1].created_at_ms + 1000)
        letter = made[1]
        seen: list[str] = []
        store._conn.set_trace_callback(seen.append)
        store.companies(BOARD, now_ms=0)
        store.letter(letter.id, now_ms=0)
        store.pinned(BOARD, now_ms=0)
        store.translations(letter.id)
        store.names_on(BOARD, [letter.author])
        store._conn.set_trace_callback(None)
        reads = [sql for sql in seen if "FROM posts WHERE" in sql and "kind = '" in sql]
        assert len(reads) >= 5
        for sql in reads:
            plan = " ".join(str(row[-1]) for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql))
            kind = re.search(r"kind = '(\w+)'", sql).group(1)
            assert re.search(rf"USING (COVERING )?INDEX posts_{kind}_(board|parent)\b", plan), (sql, plan)
            assert "SCAN posts" not in plan and "TEMP B-TREE" not in plan, (sql, plan)
    finally:
        store.close()

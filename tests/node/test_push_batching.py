"""Concurrent single-post pushes are checked and stored together, and each is answered exactly
as if it had been handled alone: accepted, duplicate, or its typed refusal.  Nothing that was
acknowledged is lost when the node is killed right after answering.

The coalescer's own rules are tested without sockets; the node's are tested against a real
``dazibao run`` on 127.0.0.1 and an in-process gossip app on a real SQLite file.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from dazibao.node.api import PUSHES, make_gossip_app
from dazibao.node.coalesce import Coalescer
from dazibao.node.config import Config, DataDir
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.protocol import identity, messages, posts
from dazibao.protocol.errors import RemoteProtocolError

from .procs import NO_QUOTA, NodeProcess, cli_env

CLIENTS = 20
PER_CLIENT = 10


def fresh_posts(n: int, seed: int) -> list[posts.Post]:
    now_ms = int(time.time() * 1000) - 60_000
    out = []
    for i in range(n):
        key = identity.SigningKey(bytes([seed, i % 256, i // 256]) + bytes(29))
        out.append(posts.create_post(key, kind="post", board="labor", body=f"member post {seed}/{i}",
                                     created_at_ms=now_ms + i))
    return out


def forged(post: posts.Post) -> tuple[bytes, str]:
    """The post with one byte of its signature changed, and the code a node refuses it with."""
    at = post.raw.index(post.signature)
    raw = post.raw[:at] + bytes([post.raw[at] ^ 1]) + post.raw[at + 1 :]
    with pytest.raises(RemoteProtocolError) as refused:
        posts.check_post(raw, time.time())
    return raw, refused.value.code


# --- the coalescer, without sockets -----------------------------------------------------------


async def test_concurrent_jobs_share_batches_and_each_gets_its_own_result():
    seen: list[list[int]] = []

    async def handle(jobs: list[int]) -> list[int | BaseException]:
        seen.append(list(jobs))
        await asyncio.sleep(0.01)
        return [ValueError(f"job {j}") if j == 13 else j * 10 for j in jobs]

    coalescer = Coalescer(handle, size=lambda j: 1, max_items=8, max_delay_s=0.005, max_running=2)
    results = await asyncio.gather(*(coalescer.submit(j) for j in range(40)), return_exceptions=True)
    for j, result in enumerate(results):
        if j == 13:
            assert isinstance(result, ValueError) and str(result) == "job 13"
        else:
            assert result == j * 10
    # Every job handled once, in the order submitted, in batches of at most max_items.
    assert [j for batch in seen for j in batch] == list(range(40))
    assert all(1 <= len(batch) <= 8 for batch in seen)
    assert len(seen) < 40 and coalescer.batches == len(seen) and coalescer.jobs == 40


async def test_a_failing_batch_fails_only_its_own_jobs():
    async def handle(jobs: list[int]) -> list[int]:
        if 3 in jobs:
            raise RuntimeError("boom")
        return jobs

    coalescer = Coalescer(handle, size=lambda j: 1, max_items=4, max_delay_s=0.001, max_running=1)
    results = await asyncio.gather(*(coalescer.submit(j) for j in range(8)), return_exceptions=True)
    assert [isinstance(r, RuntimeError) for r in results] == [True] * 4 + [False] * 4
    assert results[4:] == [4, 5, 6, 7]


async def test_a_job_larger_than_a_batch_is_a_batch_of_its_own():
    seen: list[list[int]] = []

    async def handle(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        return jobs

    coalescer = Coalescer(handle, size=lambda j: j, max_items=10, max_delay_s=0.001, max_running=1)
    assert await asyncio.gather(*(coalescer.submit(j) for j in (3, 25, 4, 5))) == [3, 25, 4, 5]
    assert all(sum(batch) <= 10 or len(batch) == 1 for batch in seen)
    assert [25] in seen


async def test_drain_finishes_what_was_queued():
    async def handle(jobs: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        return jobs

    coalescer = Coalescer(handle, size=lambda j: 1, max_items=100, max_delay_s=10.0, max_running=1)
    waiting = [asyncio.ensure_future(coalescer.submit(j)) for j in range(5)]
    await asyncio.sleep(0)
    await coalescer.drain()  # does not wait the ten seconds of max_delay_s
    assert [w.result() for w in waiting] == list(range(5))


def test_bad_settings_are_refused():
    async def handle(jobs: list[int]) -> list[int]:
        return jobs

    for kwargs in ({"max_items": 0}, {"max_running": 0}, {"max_delay_s": -1.0}):
        settings = {"max_items": 4, "max_delay_s": 0.001, "max_running": 1, **kwargs}
        with pytest.raises(ValueError):
            Coalescer(handle, size=lambda j: 1, **settings)


# --- the node ---------------------------------------------------------------------------------


@pytest.fixture
async def core(tmp_path):
    data = DataDir(tmp_path / "node")
    data.create()
    core = NodeCore(data, Config(stranger_posts_per_day=10**9, stranger_bytes_per_day=10**12))
    await core.open()
    yield core
    await core.close()


async def test_concurrent_pushes_are_stored_in_shared_batches(aiohttp_client, core):
    app = make_gossip_app(core)
    client = await aiohttp_client(app)
    sample = fresh_posts(60, 1)
    answers = await asyncio.gather(*(client.post("/v1/posts", data=messages.encode_posts([p.raw]))
                                     for p in sample))
    results = [messages.decode_push_result(await a.read()) for a in answers]
    assert all(r.accepted == 1 and r.duplicates == 0 and not r.rejected for r in results)
    assert await core.db.call(Store.count) == 60
    batcher = app[PUSHES].coalescer
    assert batcher.jobs == 60 and batcher.batches < 60
    # Coalesced pushes leave full-text indexing for a quiet moment; search finds them meanwhile.
    hits = await core.db.call(Store.search, "member post 1/37")
    assert [hit.post.id for hit in hits] == [sample[37].id]


async def test_a_batch_push_among_single_pushes_keeps_its_refusal_places(aiohttp_client, core):
    client = await aiohttp_client(make_gossip_app(core))
    sample = fresh_posts(12, 2)
    bad_raw, bad_code = forged(sample[5])
    batch = [sample[0].raw, bad_raw, sample[1].raw, sample[1].raw]  # a forgery and a repeat
    singles = [messages.encode_posts([p.raw]) for p in sample[2:5] + sample[6:]]
    answers = await asyncio.gather(client.post("/v1/posts?index=1", data=messages.encode_posts(batch)),
                                   *(client.post("/v1/posts", data=body) for body in singles))
    first = messages.decode_push_result(await answers[0].read())
    assert (first.accepted, first.duplicates) == (2, 1)
    assert first.rejected == ((sample[5].id, bad_code),) and first.indices == (1,)
    for answer in answers[1:]:
        result = messages.decode_push_result(await answer.read())
        assert (result.accepted, result.duplicates, result.rejected) == (1, 0, ())
    assert await core.db.call(Store.count) == 11  # all but the forgery and the repeat


def test_many_single_pushes_to_a_real_node_then_kill_9(tmp_path):
    data = tmp_path / "node"
    data.mkdir()
    sample = fresh_posts(CLIENTS * PER_CLIENT, 3)
    bad_raw, bad_code = forged(sample[17])
    dup = sample[40]
    # Client c pushes posts c, c + CLIENTS, ...; one post is a forgery, and one post is pushed a
    # second time by another client.
    jobs: list[list[tuple[str, bytes, bytes]]] = [[] for _ in range(CLIENTS)]
    for i, post in enumerate(sample):
        raw = bad_raw if i == 17 else post.raw
        jobs[i % CLIENTS].append(("bad" if i == 17 else "ok", post.id, raw))
    jobs[(40 + 1) % CLIENTS].append(("dup", dup.id, dup.raw))
    answers: list[tuple[str, bytes, messages.PushResult]] = []

    async def client(url: str, c: int) -> None:
        # Each client from an address of its own, as members' nodes are: one address sending
        # all 200 requests would meet the rate limit, which is not what this test is about.
        connector = aiohttp.TCPConnector(local_addr=(f"127.31.{c}.1", 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            for what, pid, raw in jobs[c]:
                async with session.post(url + "/v1/posts?index=1", data=messages.encode_posts([raw]),
                                        timeout=aiohttp.ClientTimeout(total=60)) as resp:
                    assert resp.status == 200, await resp.text()
                    answers.append((what, pid, messages.decode_push_result(await resp.read())))

    async def push_all(url: str) -> None:
        await asyncio.gather(*(client(url, c) for c in range(CLIENTS)))

    node = NodeProcess(data, env=cli_env(**NO_QUOTA)).start()
    try:
        asyncio.run(push_all(node.url))
    finally:
        # Killed at once after the last answer: whatever was acknowledged must be on disk.
        node.stop(signal.SIGKILL)

    acknowledged = set()
    dup_answers = []
    for what, pid, result in answers:
        if what == "bad":
            assert (result.accepted, result.duplicates) == (0, 0)
            assert result.rejected == ((pid, bad_code),) and result.indices == (0,)
        elif pid == dup.id:
            dup_answers.append((result.accepted, result.duplicates, result.rejected))
        else:
            assert (result.accepted, result.duplicates, result.rejected) == (1, 0, ())
            acknowledged.add(pid)
    # One of the two copies was stored, the other reported as a duplicate (whichever came first).
    assert sorted(dup_answers) == [(0, 1, ()), (1, 0, ())]
    acknowledged.add(dup.id)
    assert len(answers) == CLIENTS * PER_CLIENT + 1 and len(acknowledged) == CLIENTS * PER_CLIENT - 1
    with Store(data / "dazibao.db") as store:
        assert store.has(list(acknowledged)) == acknowledged
        assert not store.has([sample[17].id])
        assert store.count() == len(acknowledged)


# --- the store: several batches in one transaction ---------------------------------------------


def _state(store: Store) -> tuple:
    conn = store._conn
    return tuple(sorted(conn.execute(sql).fetchall()) for sql in (
        "SELECT id, source FROM posts", "SELECT id, reason FROM tombstones", "SELECT id, code FROM refusals",
        "SELECT board, author, day, posts, bytes FROM quota_usage", "SELECT target_id, retraction_id FROM pending_retractions"))


def _outcome(result) -> tuple:
    return (sorted(p.id for p in result.added), result.duplicates, sorted(result.rejected), sorted(result.removed_keys))


@pytest.mark.parametrize("seed", range(12))
def test_ingest_many_is_one_ingest_per_batch_in_order(seed):
    # The same history on two stores: one stores batch after batch with Store.ingest, the other
    # all of them with one Store.ingest_many.  Results and rows must be the same, whether the
    # batches are judged as one (plain posts, no shared id) or one by one (the rest).
    import random

    rng = random.Random(seed)
    now = int(time.time() * 1000)
    author = identity.SigningKey(bytes([seed + 100]) * 32)
    other = identity.SigningKey(bytes([seed + 150]) * 32)
    noisy = identity.SigningKey(bytes([seed + 200]) * 32)  # a stranger who meets the quota
    old = [posts.create_post(author, kind="post", board="labor", body=f"old {i}", created_at_ms=now - 5_000 + i)
           for i in range(4)]
    later = [posts.create_post(author, kind="post", board="labor", body=f"later {i}", created_at_ms=now - 4_000 + i)
             for i in range(3)]
    waiting = posts.create_post(author, kind="retract", board="labor", body="", parent=later[0].id,
                                created_at_ms=now - 3_000)
    foreign = posts.create_post(other, kind="retract", board="labor", body="", parent=later[1].id,
                                created_at_ms=now - 3_000)
    pool = old + later + [waiting] + fresh_posts(10, seed) + [
        posts.create_post(noisy, kind="post", board="labor", body=f"noise {i}", created_at_ms=now - 2_000 + i)
        for i in range(5)] + [
        posts.create_post(author, kind="reply", board="labor", body="a reply", parent=old[0].id,
                          created_at_ms=now - 1_000)]
    stores = [Store.memory(), Store.memory()]
    for store in stores:
        store.configure_policy(stranger_posts_per_day=3)
        store.ingest(old + [waiting, foreign], source="seed", now_ms=now)
        store.delete([old[3].id], now_ms=now)
    for _ in range(3):
        groups = []
        for g in range(rng.randint(2, 6)):
            chosen = rng.sample(pool, rng.randint(1, 4))
            if rng.random() < 0.2:
                chosen.append(chosen[0])  # a repeat within one push
            groups.append((chosen, f"peer-{g}"))
        if rng.random() < 0.3:
            groups.append(([rng.choice(pool)], "peer-x"))  # an id in two pushes: judged one by one
        one_by_one = [_outcome(stores[0].ingest(group, source=source, now_ms=now)) for group, source in groups]
        together = [_outcome(r) for r in stores[1].ingest_many(groups, now_ms=now)]
        assert together == one_by_one
        assert _state(stores[1]) == _state(stores[0])
    for store in stores:
        store.close()


def test_prescreen_each_screens_every_push_as_if_alone():
    # A stranger allowed 2 posts a day, with one stored and one of its ids remembered as refused:
    # every push is screened against that, not against the pushes before it in the batch.
    now = int(time.time() * 1000)
    stranger = identity.SigningKey(bytes([77]) * 32)
    mine = [posts.create_post(stranger, kind="post", board="labor", body=f"n {i}", created_at_ms=now - 100 + i)
            for i in range(6)]
    heads = [(p.id, p.board, p.author, p.created_at_ms) for p in mine]
    with Store.memory() as store:
        store.configure_policy(stranger_posts_per_day=2)
        store.ingest(mine[:1], source="seed", now_ms=now)
        store._remember(store._conn, [(mine[5].id, "labor", mine[5].created_at_ms, stranger.public_key,
                                       "quota_posts")], now)
        groups = [heads[1:3], heads[1:4], heads[3:4], [heads[5], heads[4]], [], heads[2:3] * 2]
        alone = [store.prescreen(group, now_ms=now) for group in groups]
        assert store.prescreen_each(groups, now_ms=now) == alone
        assert alone[1] == {mine[2].id: "quota_posts", mine[3].id: "quota_posts"}
        assert alone[3] == {mine[5].id: "quota_posts"} and alone[2] == {} and alone[4] == {}

"""A small batch of pushes is screened, verified and stored in one hop of the store thread
(``NodeCore.check_and_ingest``): every push gets the verdicts and the report, and the store the
rows, that the path of larger batches gives (screen, then verification on the verify threads,
then the write), on histories with blocks, a stranger quota, tombstones, remembered refusals,
forgeries, undecodable bytes and repeated ids.
"""

from __future__ import annotations

import random
import sqlite3
import time

import pytest

from dazibao.node.config import Config, DataDir
from dazibao.node.service import NodeCore
from dazibao.node.store import Store
from dazibao.protocol import identity, limits, moderation, posts

BOARD = "labor"


def _key(n: int) -> identity.SigningKey:
    return identity.SigningKey(bytes([n]) * 32)


def _history(now_ms: int) -> tuple[list[posts.Post], list[bytes]]:
    """What both stores hold first (a moderator's block among it), and a pool of raw posts to
    push: valid ones, a blocked author's, a stranger's beyond its quota, a tombstoned one, one
    dated too far ahead, a forgery, bytes that do not decode, a non-canonical copy."""
    moderator, blocked, stranger, member = _key(1), _key(2), _key(3), _key(4)
    block = moderation.create_statement(moderator, board=BOARD, action="block", subject="author",
                                        target=blocked.public_key, reason="spam", created_at_ms=now_ms - 10_000)
    gone = posts.create_post(member, kind="post", board=BOARD, body="deleted here", created_at_ms=now_ms - 9_000)
    seeded = [block, gone]

    def made(key: identity.SigningKey, n: int, tag: str, at: int = 0) -> list[posts.Post]:
        return [posts.create_post(key, kind="post", board=BOARD, body=f"{tag} {i}", created_at_ms=now_ms - 5_000 + at + i)
                for i in range(n)]

    # Sixteen valid posts by eight authors, each within the stranger quota of three a day.
    good = [p for k in range(5, 13) for p in made(_key(k), 2, f"author {k}")]
    late = posts.create_post(member, kind="post", board=BOARD, body="too early",
                             created_at_ms=now_ms + (limits.MAX_FUTURE_SKEW_S + 60) * 1000)
    forged = good[0].raw[:-1] + bytes([good[0].raw[-1] ^ 1])
    pool = [p.raw for p in good + made(blocked, 3, "blocked") + made(stranger, 5, "stranger", 100) + [gone, late]]
    pool += [forged, b"\xc1", b"\xdc\x00\x02" + good[1].raw[1:], good[2].raw[:-5]]
    return seeded, pool


async def _core(tmp_path, name: str, seeded: list[posts.Post], now_ms: int) -> NodeCore:
    data = DataDir(tmp_path / name)
    data.create()
    core = NodeCore(data, Config(stranger_posts_per_day=3))
    await core.open()
    await core.db.call(Store.add_moderator, BOARD, seeded[0].author, source="cli", now_ms=now_ms)
    await core.ingest_checked(seeded, "seed")
    await core.db.call(Store.delete, [seeded[1].id], "deleted", now_ms=now_ms)
    return core


def _state(core: NodeCore) -> tuple:
    conn = sqlite3.connect(f"file:{core.data.database}?mode=ro", uri=True)
    try:
        return tuple(sorted(conn.execute(sql).fetchall()) for sql in (
            "SELECT id, source FROM posts", "SELECT id, reason FROM tombstones", "SELECT id, code FROM refusals",
            "SELECT board, author, day, posts FROM quota_usage"))
    finally:
        conn.close()


def _plain(done) -> list:
    out = []
    for (good, bad), report in done:
        assert not isinstance(report, BaseException)
        out.append(([p.id for p in good], bad, [p.id for p in report.accepted], report.duplicates,
                    report.rejected))
    return out


@pytest.mark.parametrize("seed", range(6))
async def test_one_hop_gives_what_the_path_of_large_batches_gives(tmp_path, seed):
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    seeded, pool = _history(now_ms)
    one_hop = await _core(tmp_path, "one", seeded, now_ms)
    threads = await _core(tmp_path, "two", seeded, now_ms)
    try:
        for _ in range(3):
            jobs = []
            for g in range(rng.randint(1, 8)):
                raws = rng.sample(pool, rng.randint(1, 4))
                if rng.random() < 0.2:
                    raws.append(raws[0])  # a repeat within one push
                jobs.append((posts.decode_each(raws), f"peer-{g}"))
            assert sum(len(d) for d, _ in jobs) < limits.SMALL_PUSH_BATCH_POSTS
            parts = [decoded for decoded, _ in jobs]
            done = await one_hop.check_and_ingest(jobs)
            verdicts = await threads.verify_groups([], decoded=parts)
            reports = await threads.ingest_groups([(good, src) for (good, _), (_, src) in zip(verdicts, jobs, strict=True)])
            assert _plain(done) == _plain(zip(verdicts, reports, strict=True))
            assert _state(one_hop) == _state(threads)
            assert sorted(one_hop.index) == sorted(threads.index)
        # The screen refused the blocked author's posts before verification; the quota and
        # every kind of bad bytes were met on the way.
        codes = {code for (_, bad), _ in done for _, code in bad}
        assert codes <= {"blocked", "quota_posts", "future", "bad_signature", "malformed", "non_canonical",
                         "tombstoned"}
    finally:
        await one_hop.close()
        await threads.close()


async def test_the_codes_of_a_mixed_batch(tmp_path):
    # One batch with one of everything, pinned: the verdicts each push gets in one hop.
    now_ms = int(time.time() * 1000)
    seeded, pool = _history(now_ms)
    core = await _core(tmp_path, "one", seeded, now_ms)
    try:
        jobs = [(posts.decode_each([raw]), "peer") for raw in pool]
        done = await core.check_and_ingest(jobs)
        codes = [[c for _, c in bad] + [c for _, c in report.rejected] if not report.accepted else ["ok"]
                 for (_, bad), report in done]
        assert codes == [["ok"]] * 16 + [["blocked"]] * 3 + [["ok"]] * 3 + [["quota_posts"]] * 2 + [
            ["tombstoned"], ["future"], ["bad_signature"], ["malformed"], ["non_canonical"], ["malformed"]]
        # Undecodable bytes are reported without an id here (the push answer adds refused_id's).
        assert [bad[0][0] for (_, bad), _ in done[-3:]] == [None, None, None]
        assert await core.db.call(Store.count) == 1 + 16 + 3
    finally:
        await core.close()


class _Heard:
    """The gossip policy's side of the API: what it hears of each push, and whether the posts
    were already in the reconciliation index when it heard of them."""

    def __init__(self, core: NodeCore) -> None:
        self.core = core
        self.pushes: list[tuple[list[bytes], bool]] = []

    def announced(self, peer, ids):
        return []

    def inbound(self, url):
        pass

    def heard(self, ids):
        pass

    def pushed(self, peer, client, ids, stem):
        keys = set(self.core.index)
        self.pushes.append((list(ids), any(k[-32:] in ids for k in keys)))


async def test_the_gossip_policy_hears_each_push_once_decoded_and_before_it_is_stored(tmp_path, aiohttp_client):
    from dazibao.node.api import make_gossip_app
    from dazibao.protocol import messages, wire

    now_ms = int(time.time() * 1000)
    seeded, pool = _history(now_ms)
    core = await _core(tmp_path, "one", seeded, now_ms)
    heard = _Heard(core)
    client = await aiohttp_client(make_gossip_app(core, heard))
    try:
        key = _key(40)
        unsigned = [1, "post", " lead", key.public_key, now_ms - 1_000, None, "a bad board"]
        bad_board = wire.pack([unsigned, key.sign(posts.POST_SIGNATURE_TAG + posts.post_id(wire.pack(unsigned)))])
        large = [posts.create_post(_key(41 + i % 20), kind="post", board=BOARD, body=f"large {i} " + "x" * 400,
                                   created_at_ms=now_ms - 2_000 + i).raw for i in range(200)]
        forged = pool[2][:-1] + bytes([pool[2][-1] ^ 1])  # of a post not pushed before
        pushes = [[pool[0]], [pool[1], bad_board, b"\xc1", forged, pool[-2]], large]
        assert len(messages.encode_posts(large)) > 65_536  # decoded on a thread, with its body
        for raws in pushes:
            answer = await client.post("/v1/posts?stem=1", data=messages.encode_posts(raws))
            assert answer.status == 200
        # Each push heard once, with the ids posts.refused_id gives, before any of it was indexed.
        assert heard.pushes == [([i for i in map(posts.refused_id, raws) if i is not None], False)
                                for raws in pushes]
        assert posts.claimed_id(bad_board) in heard.pushes[1][0]
    finally:
        await core.close()

"""The search page in-process: a search past its time says so and shows nothing; the count is
written with separators; a bad author field is explained."""

from __future__ import annotations

from dazibao.node.store import search as search_module
from dazibao.protocol import limits, posts

from .conftest import T0_MS, key


async def _seed(h, batch):
    report = await h.core.ingest_checked(batch, "http://peer.test:7470")
    assert len(report.accepted) == len(batch)


async def test_a_search_past_its_time_is_explained(harness, monkeypatch):
    await _seed(harness, [posts.create_post(key(2 + i % 5), kind="post", board="labor", body=f"rent strike {i}",
                                            created_at_ms=T0_MS + i) for i in range(150)])
    monkeypatch.setattr(limits, "SEARCH_TIMEOUT_MS", 0)
    monkeypatch.setattr(search_module, "_PROGRESS_STEPS", 50)
    resp = await harness.client.get("/search?q=%E5%B7%A5%E8%B5%84&board=labor")
    text = await resp.text()
    assert resp.status == 400
    assert "The search took too long" in text and 'class="snippet"' not in text
    resp = await harness.client.get("/search?q=%E5%B7%A5%E8%B5%84", headers={"Accept-Language": "zh-CN"})
    assert "搜索用时太长" in await resp.text()


async def test_count_with_separators_and_author_field(harness, monkeypatch):
    monkeypatch.setattr(limits, "MAX_SEARCH_RESULTS", 5_000)
    # Ten authors: each stays within the quota of posts a stranger may send a day.
    await _seed(harness, [posts.create_post(key(2 + i % 10), kind="post", board="labor", body=f"rent strike {i}",
                                            created_at_ms=T0_MS + i) for i in range(1_200)])
    text = await (await harness.client.get("/search?q=strike")).text()
    assert '<p class="count" role="status">1,200 posts found.</p>' in text
    resp = await harness.client.get("/search?author=abc")
    assert resp.status == 400 and "first 8 characters" in await resp.text()

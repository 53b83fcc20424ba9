"""Gossip HTTP messages (protocol/messages.py): batching within the limits."""

from __future__ import annotations

from dazibao.protocol import limits, messages


def test_post_batches_respect_both_limits():
    big = [b"x" * limits.MAX_POST_BYTES] * 600
    batches = list(messages.post_batches(big))
    assert [raw for batch in batches for raw in batch] == big
    for batch in batches:
        assert len(batch) <= limits.MAX_POSTS_PER_BATCH
        assert len(messages.encode_posts(batch)) <= limits.MAX_REQUEST_BYTES
    small = [b"y" * 10] * 1100
    assert [len(b) for b in messages.post_batches(small)] == [512, 512, 76]
    assert list(messages.post_batches([])) == []

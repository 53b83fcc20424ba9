"""Gossip HTTP messages (protocol/messages.py): batching within the limits."""

from __future__ import annotations

import pytest

from dazibao.protocol import limits, messages, wire
from dazibao.protocol.errors import FieldError, LocalProtocolError, VersionError


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


# --- the push result: every refusal names its index (docs/protocol.md, "POST /v1/posts") ----

ID = bytes(range(32))


def test_a_push_result_carries_an_index_per_refusal():
    result = messages.PushResult(3, 1, ((ID, "bad_signature"), (None, "malformed")), (0, 4))
    data = messages.encode_push_result(result)
    assert wire.unpack(data, max_bytes=1 << 20) == [1, 3, 1, [[ID, "bad_signature", 0], [None, "malformed", 4]]]
    assert messages.decode_push_result(data) == result


def test_a_push_result_of_an_earlier_node_has_no_indices():
    old = wire.pack([1, 0, 0, [[ID, "tombstoned"], [None, "malformed"]]])
    result = messages.decode_push_result(old)
    assert result.rejected == ((ID, "tombstoned"), (None, "malformed")) and result.indices == ()
    assert messages.encode_push_result(messages.PushResult(0, 0, result.rejected)) == old


def test_items_after_the_index_are_ignored_and_bad_indices_refused():
    later = wire.pack([1, 0, 0, [[ID, "tombstoned", 7, "a later field"]]])
    assert messages.decode_push_result(later).indices == (7,)
    for bad in ([[ID]], [[ID, "x", -1]], [[ID, "x", limits.MAX_POSTS_PER_BATCH]], [[ID, "x", "0"]]):
        with pytest.raises(FieldError):
            messages.decode_push_result(wire.pack([1, 0, 0, bad]))


def test_indices_must_match_the_refusals():
    with pytest.raises(LocalProtocolError):
        messages.PushResult(0, 0, ((ID, "x"),), (0, 1))


def test_the_version_is_checked_before_floats():
    # docs/protocol.md, "Order of checks": another version is unsupported_version whatever it holds.
    with pytest.raises(VersionError):
        messages.decode_push_result(wire.pack([2, 0.5, 0, []]))
    with pytest.raises(FieldError):
        messages.decode_push_result(wire.pack([1, 0.5, 0, []]))


def test_a_batch_holds_a_post_over_the_post_limit():
    # Refused by the receiver's check of that post alone, not with the batch.
    big = b"x" * (limits.MAX_POST_BYTES + 1)
    assert messages.decode_posts(messages.encode_posts([big, b"y"])).posts == (big, b"y")

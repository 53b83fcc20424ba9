"""Bounded decoding of gossip messages (docs/security.md, section 3): a body that is cheap to
send and expensive to decode is refused from its headers, and any body at all raises only the
protocol's decode errors.  Pure: no event loop, no sockets."""

from __future__ import annotations

import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.protocol import limits, messages, wire
from dazibao.protocol.errors import (
    DecodeError,
    FieldError,
    MalformedError,
    NonCanonicalError,
    TooLargeError,
    VersionError,
)
from tests.factories import examples

ID = b"\x07" * 32
DECODERS = (messages.decode_ids, messages.decode_posts)


def empty_arrays(count: int) -> bytes:
    return b"\x92\x01\xdd" + count.to_bytes(4, "big") + b"\x90" * count


@pytest.mark.parametrize("decode", DECODERS)
def test_four_million_empty_arrays_are_refused_from_the_header(decode):
    body = empty_arrays(4_000_000)
    start = time.perf_counter()
    with pytest.raises(TooLargeError):
        decode(body)
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize("decode", DECODERS)
def test_other_cheap_bodies_are_refused_at_once(decode):
    n = 4_000_000
    bodies = [
        (b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n, FieldError),                # [[], [], ...]
        (b"\x92\x01\x91" + b"\x91" * 100_000 + b"\x90", FieldError),                # nested items
        (b"\x92\x01\xdc\x01\xff" + b"\x91\x90" * 511, FieldError),                  # arrays as items
        (b"\x81\xa1a" + b"\x91" * 100_000 + b"\x90", FieldError),                   # a map
    ]
    for body, error in bodies:
        start = time.perf_counter()
        with pytest.raises(error):
            decode(body)
        assert time.perf_counter() - start < 0.05


def test_the_generic_decoder_refuses_long_containers_from_the_header():
    start = time.perf_counter()
    with pytest.raises(TooLargeError):
        wire.unpack(b"\xdd" + (4_000_000).to_bytes(4, "big") + b"\x90" * 4_000_000,
                    max_bytes=limits.MAX_REQUEST_BYTES)
    assert time.perf_counter() - start < 0.05
    assert wire.unpack(wire.pack([0] * wire.MAX_CONTAINER_ITEMS), max_bytes=10**6) == [0] * wire.MAX_CONTAINER_ITEMS


def test_a_push_result_is_bounded_in_bytes():
    with pytest.raises(TooLargeError):
        messages.decode_push_result(empty_arrays(1_000_000))
    biggest = messages.PushResult(512, 0, tuple((ID, "x" * 64) for _ in range(512)))
    assert messages.decode_push_result(messages.encode_push_result(biggest)) == biggest


def test_headers_must_be_canonical():
    cases = [
        b"\xdc\x00\x02\x01\x91\xc4\x20" + ID,                # array16 for two items
        b"\x92\xcc\x01\x91\xc4\x20" + ID,                    # the version as a uint8
        b"\x92\x01\xdc\x00\x01\xc4\x20" + ID,                # array16 for one id
        b"\x92\x01\x91\xc5\x00\x20" + ID,                    # bin16 for 32 bytes
    ]
    for body in cases:
        with pytest.raises(NonCanonicalError):
            messages.decode_ids(body)
    assert messages.decode_ids(b"\x92\x01\x91\xc4\x20" + ID).ids == (ID,)


def test_order_of_checks_matches_the_old_decoder():
    with pytest.raises(VersionError):
        messages.decode_ids(wire.pack([2, "anything"]))
    with pytest.raises(FieldError):
        messages.decode_ids(wire.pack([1, [ID], 3]))
    with pytest.raises(TooLargeError):
        messages.decode_ids(wire.pack([1, [ID] * (limits.MAX_IDS_PER_REQUEST + 1)]))
    with pytest.raises(FieldError):
        messages.decode_ids(wire.pack([1, [b"short"]]))
    # An oversized post is left to the check of each post, which refuses it alone.
    assert messages.decode_posts(wire.pack([1, [b"x" * (limits.MAX_POST_BYTES + 1)]])).posts == (
        b"x" * (limits.MAX_POST_BYTES + 1),)
    with pytest.raises(MalformedError):
        messages.decode_ids(wire.pack([1, [ID]]) + b"\x00")
    with pytest.raises(MalformedError):
        messages.decode_ids(wire.pack([1, [ID]])[:-1])


# --- the same decisions as the decoder it replaces ----------------------------------------------


def reference_decode(data: bytes, *, max_items: int, item_len=None, item_max_len=None) -> list[bytes]:
    """The old decoder: decode the whole value, re-encode it, then check the shape."""
    value = wire.unpack_canonical(data, max_bytes=limits.MAX_REQUEST_BYTES)
    if type(value) is not list or not value or type(value[0]) is not int:
        raise FieldError("shape")
    if value[0] != 1:
        raise VersionError("version")
    wire.expect_list(value, 2, "m")
    items = wire.expect_list(value[1], None, "items")
    if len(items) > max_items:
        raise TooLargeError("count")
    for item in items:
        wire.expect_bytes(item, "item", length=item_len, max_len=item_max_len)
    return items


leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=4),
                   st.binary(max_size=40), st.sampled_from([ID, b"\x01" * 32]))
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4), max_leaves=12)
messages_like = st.one_of(
    values.map(wire.pack),
    st.tuples(st.integers(0, 3), st.lists(st.one_of(st.sampled_from([ID]), st.binary(max_size=40)), max_size=6))
    .map(lambda t: wire.pack([t[0], t[1]])),
    st.lists(st.sampled_from([ID]), max_size=4).map(lambda ids: msgpack.packb([1, ids], use_bin_type=False)),
)


def _mutate(data: bytes, at: int, byte: int) -> bytes:
    if not data:
        return bytes([byte])
    at %= len(data) + 1
    return data[:at] + bytes([byte]) + data[at + 1 :]


@settings(max_examples=examples(400), suppress_health_check=[HealthCheck.too_slow])
@given(messages_like, st.integers(0, 200), st.integers(0, 255), st.booleans())
def test_the_bounded_decoder_decides_as_the_old_one(data, at, byte, mutate):
    if mutate:
        data = _mutate(data, at, byte)
    for new, kwargs in ((messages.decode_ids, {"max_items": limits.MAX_IDS_PER_REQUEST, "item_len": 32}),
                        (messages.decode_posts, {"max_items": limits.MAX_POSTS_PER_BATCH})):
        try:
            expected = reference_decode(data, **kwargs)
        except DecodeError:
            expected = None
        try:
            got = new(data)
        except DecodeError:
            got = None
        else:
            got = list(got.ids if hasattr(got, "ids") else got.posts)
        assert got == expected, data.hex()


@settings(max_examples=examples(500))
@given(st.binary(max_size=300))
def test_random_bodies_raise_only_decode_errors(data):
    for decode in (messages.decode_ids, messages.decode_posts, messages.decode_push_result):
        try:
            decode(data)
        except DecodeError:
            pass

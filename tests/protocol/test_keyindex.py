"""KeyIndex against a brute-force sorted list (docs/protocol.md, "Reconciliation", "Keys", "Fingerprints")."""

from __future__ import annotations

import bisect
import hashlib
import random
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import keyindex
from dazibao.protocol.errors import LocalProtocolError
from dazibao.protocol.keyindex import KeyIndex, fingerprint_of
from dazibao.protocol.posts import post_key


def reference_fingerprint(keys: list[bytes]) -> bytes:
    """The formula of the spec, written out independently of the implementation."""
    total = sum(int.from_bytes(k[-32:], "little") for k in keys) % 2**256
    return hashlib.sha256(total.to_bytes(32, "little") + len(keys).to_bytes(8, "little")).digest()[:16]


def make_key(rng: random.Random, boards=("a", "b", "ccc")) -> bytes:
    # Few distinct times, so that keys share long prefixes and bounds fall between them.
    return post_key(rng.choice(boards), rng.randrange(50), rng.randbytes(32))


def small_blocks():
    """Blocks of a handful of keys, so that splits and merges happen in small examples."""
    return mock.patch.multiple(keyindex, _LOAD=6, _MAX_BLOCK=12, _MIN_BLOCK=2, _STRIDE=4)


def check_against(index: KeyIndex, ref: list[bytes], bounds: list[bytes | None]) -> None:
    assert len(index) == len(ref)
    assert list(index) == ref
    for pos, key in enumerate(ref):
        assert index.key_at(pos) == key
        assert key in index
    for lo in bounds:
        if lo is None:
            continue
        for hi in bounds:
            a = bisect.bisect_left(ref, lo)
            b = len(ref) if hi is None else max(a, bisect.bisect_left(ref, hi))
            inside = ref[a:b]
            assert index.count(lo, hi) == len(inside)
            assert index.fingerprint(lo, hi) == reference_fingerprint(inside)
            assert list(index.iter_range(lo, hi)) == inside
            assert index.ids(lo, hi) == [k[-32:] for k in inside]
        assert index.index_of(lo) == bisect.bisect_left(ref, lo)
    assert index.index_of(None) == len(ref)


def bounds_for(rng: random.Random, ref: list[bytes]) -> list[bytes | None]:
    bounds: list[bytes | None] = [b"", None, b"a", b"a\x00", b"a\x01", b"b\x00", b"zzz"]
    for key in rng.sample(ref, min(6, len(ref))):
        bounds.append(key)
        bounds.append(key[: rng.randrange(1, len(key) + 1)])
        bounds.append(key + b"\x00")
    return bounds


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), ops=st.lists(st.tuples(st.booleans(), st.integers(0, 400)), max_size=300))
def test_random_add_remove_matches_sorted_list(seed, ops):
    with small_blocks():
        run_add_remove(seed, ops)


def run_add_remove(seed, ops):
    rng = random.Random(seed)
    universe = [make_key(rng) for _ in range(401)]
    start = rng.sample(universe, rng.randrange(0, 60))
    index = KeyIndex(start)
    ref = sorted(set(start))
    for is_add, n in ops:
        key = universe[n]
        pos = bisect.bisect_left(ref, key)
        present = pos < len(ref) and ref[pos] == key
        if is_add:
            assert index.add(key) is (not present)
            if not present:
                ref.insert(pos, key)
        else:
            assert index.remove(key) is present
            if present:
                del ref[pos]
        if rng.random() < 0.1:  # query now and then, so prefix sums are rebuilt mid-way
            assert index.count(b"", None) == len(ref)
    check_against(index, ref, bounds_for(rng, ref))


def test_large_index_with_default_blocks():
    rng = random.Random(7)
    keys = [make_key(rng, boards=("general", "help")) for _ in range(6000)]
    index = KeyIndex(keys[:3000])
    ref = sorted(keys[:3000])
    for key in keys[3000:]:  # grow blocks past their split size
        index.add(key)
        bisect.insort(ref, key)
    for key in rng.sample(ref, 5000):  # shrink blocks past their merge size
        index.remove(key)
        ref.remove(key)
    check_against(index, ref, bounds_for(rng, ref))
    assert index.fingerprints_at([0, 10, 10, len(ref)]) == [
        reference_fingerprint(ref[:10]),
        reference_fingerprint([]),
        reference_fingerprint(ref[10:]),
    ]


def test_prefix_fingerprints_at_every_position():
    # Every offset within a block, on either side of every checkpoint, after edits too.
    rng = random.Random(11)
    keys = [make_key(rng) for _ in range(2500)]
    index = KeyIndex(keys)
    for key in rng.sample(keys, 300):
        index.remove(key)
    for _ in range(300):
        index.add(make_key(rng))
    ref = list(index)
    total = 0
    expected = []
    for pos in range(len(ref) + 1):
        expected.append(hashlib.sha256((total % 2**256).to_bytes(32, "little") + pos.to_bytes(8, "little")).digest()[:16])
        if pos < len(ref):
            total += int.from_bytes(ref[pos][-32:], "little")
    assert [index.fingerprint_at(0, pos) for pos in range(len(ref) + 1)] == expected


def test_bulk_build_sorts_and_deduplicates():
    rng = random.Random(3)
    keys = [make_key(rng) for _ in range(2000)]
    index = KeyIndex(keys + keys[:500])
    assert list(index) == sorted(set(keys))
    assert index.fingerprint(b"", None) == reference_fingerprint(sorted(set(keys)))


def test_empty_index():
    index = KeyIndex()
    assert len(index) == 0
    assert index.count(b"", None) == 0
    assert index.fingerprint(b"", None) == reference_fingerprint([])
    assert list(index.iter_range(b"", None)) == []
    assert index.remove(post_key("a", 1, bytes(32))) is False
    assert bytes(48) not in index
    with pytest.raises(IndexError):
        index.key_at(0)


def test_fingerprint_worked_example():
    # The worked example of docs/protocol.md, "Reconciliation", "Fingerprints".
    keys = [
        post_key("general", 1_700_000_000_000, bytes([1]) + bytes(31)),
        post_key("general", 1_700_000_000_001, bytes([2]) + bytes(31)),
        post_key("help", 1_700_000_000_000, bytes(31) + bytes([0x80])),
    ]
    index = KeyIndex(keys)
    assert index.fingerprint(b"", None).hex() == reference_fingerprint(sorted(keys)).hex()
    assert index.fingerprint(b"", None).hex() == "d025352a518178154e662bb7c168bbd4"
    assert index.fingerprint(b"general\x00", b"general\x01").hex() == "e58461d72b9e3738c1d923ca0eda8994"
    assert index.fingerprint(b"zzz", None).hex() == "2c34ce1df23b838c5abf2a7f6437cca3"
    assert fingerprint_of(3, 2) == index.fingerprint(b"general\x00", b"general\x01")


@pytest.mark.parametrize(
    "bad",
    [
        "not bytes",
        b"short",
        bytes(41),  # no room for a board
        b"a" + b"\x01" + bytes(40),  # no 0x00 before the time
        b"a" * 300,  # longer than the longest key
        bytearray(post_key("a", 1, bytes(32))),
    ],
)
def test_bad_keys_are_refused(bad):
    with pytest.raises(LocalProtocolError):
        KeyIndex([bad])
    index = KeyIndex()
    with pytest.raises(LocalProtocolError):
        index.add(bad)
    with pytest.raises(LocalProtocolError):
        index.remove(bad)

"""Checking a post decoded once (``decode_each``, then ``check_decoded``) is ``check_post``.

The node decodes each post from outside once: the screen before verification reads its fields,
and the verify threads check the decoded post.  That path must accept exactly what
``check_post`` accepts and refuse everything else with the same error, the same code and the
same id to report (docs/protocol.md, "Checking a post from outside"): on every test vector, and
on valid posts of every known kind broken in every way Hypothesis finds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.protocol import limits, posts, wire
from dazibao.protocol.errors import RemoteProtocolError
from dazibao.protocol.identity import SigningKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
NOW = 1_700_000_000.0
KEY = SigningKey(bytes(range(32)))


def _cases() -> list[tuple[str, bytes, float, str]]:
    out = []
    for name in ("posts.json", "moderation.json", "organizing.json"):
        for case in json.loads((VECTORS / name).read_text(encoding="utf-8"))["cases"]:
            # The one vector whose code is not check_post's: a valid post, refused only when its
            # target is known (check_retraction).
            expect = "valid" if case["expect"] == "retract_not_author" else case["expect"]
            out.append((f"{name}:{case['name']}", bytes.fromhex(case["raw_hex"]), float(case["now"]), expect))
    return out


CASES = _cases()


def _outcome(fn, *args):
    """What a check comes to: the post, or the type, code and message of the error it raised."""
    try:
        return ("valid", fn(*args))
    except RemoteProtocolError as exc:
        return (type(exc), exc.code, str(exc))


def _once(raw: bytes, now: float) -> posts.Post:
    [item] = posts.decode_each([raw])
    if isinstance(item, posts.Undecodable):
        raise item.error
    return posts.check_decoded(item, now)


def assert_same(raw: bytes, now: float) -> None:
    expected = _outcome(posts.check_post, raw, now)
    assert _outcome(_once, raw, now) == expected
    [item] = posts.decode_each([raw])
    decoded = _outcome(posts.decode_post, raw)
    if isinstance(item, posts.Undecodable):
        # The same refusal decode_post raises, with the id check_post's callers report.
        assert (type(item.error), item.code, str(item.error)) == decoded
        assert item.id == posts.refused_id(raw)
        assert expected == decoded
    else:
        assert decoded == ("valid", item)
        assert item.id == posts.refused_id(raw) == posts.claimed_id(raw)


def test_the_vectors_are_all_there():
    # A shortened file would let the test below pass on fewer cases.
    assert len(CASES) >= 150
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("raw", "now", "expect"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_every_vector_gets_the_same_verdict(raw, now, expect):
    assert_same(raw, now)
    outcome = _outcome(_once, raw, now)
    assert (outcome[0] if outcome[0] == "valid" else outcome[1]) == expect


def test_a_batch_is_decoded_post_by_post_in_order():
    good = posts.create_post(KEY, kind="post", board="labor", body="a post", created_at_ms=int(NOW * 1000))
    raws = [good.raw, b"\xc1", good.raw[:-1] + b"\x00", good.raw[:-3], good.raw]
    items = posts.decode_each(raws)
    assert [type(i) for i in items] == [posts.Post, posts.Undecodable, posts.Post, posts.Undecodable, posts.Post]
    assert [i.code for i in items if isinstance(i, posts.Undecodable)] == ["malformed", "malformed"]
    assert posts.decode_each([]) == []


def test_check_decoded_keeps_the_order_of_checks():
    # Step 14 (the time window) before step 15 (the signature), as check_post.
    late = posts.create_post(KEY, kind="post", board="labor", body="later", created_at_ms=int(NOW * 1000) + 301_000)
    forged = posts.decode_post(late.raw[:-1] + bytes([late.raw[-1] ^ 1]))
    with pytest.raises(RemoteProtocolError) as raised:
        posts.check_decoded(forged, NOW)
    assert raised.value.code == "future"
    assert posts.check_decoded(late, NOW + 1) is late
    with pytest.raises(RemoteProtocolError) as raised:
        posts.check_decoded(forged, NOW + 1)
    assert raised.value.code == "bad_signature"


# --- Hypothesis: valid posts of every kind, broken every way ----------------------------------

# Kinds with a valid body and whether they name a parent.
_VALID = {
    "post": ("a post", False), "reply": ("a reply", True), "retract": ("", True),
    "profile": ("Li Wei", False), "moderation": ("block author spam", True),
    "charter": ("moderator " + "ab" * 32, False),
}


# Times around the future window (300 s past the receiver's clock), and any time at all.
_times = st.one_of(st.integers(min_value=int(NOW * 1000) - 1_000, max_value=int(NOW * 1000) + 600_000),
                   st.integers(min_value=0, max_value=10**13 - 1))


@st.composite
def valid(draw) -> bytes:
    """A valid post of a known kind, with or without proof of work, now or a little later."""
    kind = draw(st.sampled_from(sorted(_VALID)))
    body, has_parent = _VALID[kind]
    key = SigningKey(draw(st.binary(min_size=32, max_size=32)))
    post = posts.create_post(
        key, kind=kind, board=draw(st.sampled_from(["labor", "劳动法", "a b"])), body=body,
        parent=draw(st.binary(min_size=32, max_size=32)) if has_parent else None,
        created_at_ms=draw(_times),
        work_bits=draw(st.sampled_from([None, None, None, limits.MIN_POW_BITS])))
    return post.raw


@st.composite
def unchecked(draw) -> bytes:
    """A signed, canonical post whose fields may break any rule (made without create's checks)."""
    kind = draw(st.sampled_from([*_VALID, "report", "later_kind", "Bad-Kind", ""]))
    board = draw(st.sampled_from(["labor", "", " lead", "x" * 70, "a\u200bb"]))
    body = draw(st.one_of(st.just(_VALID.get(kind, ("", False))[0]), st.text(max_size=40),
                          st.just("x" * (limits.MAX_BODY_BYTES + 1)), st.just("x" * limits.MAX_POST_BYTES)))
    version = draw(st.sampled_from([posts.POST_FORMAT_VERSION] * 5 + [2]))
    parent = draw(st.one_of(st.none(), st.binary(min_size=32, max_size=32)))
    created = draw(_times)
    key = SigningKey(draw(st.binary(min_size=32, max_size=32)))
    unsigned: list[object] = [version, kind, board, key.public_key, created, parent, body]
    if draw(st.booleans()):
        unsigned.append([draw(st.integers(min_value=0, max_value=48)), draw(st.binary(min_size=8, max_size=8))])
    pid = posts.post_id(wire.pack(unsigned))
    return wire.pack([unsigned, key.sign(posts.POST_SIGNATURE_TAG + pid)])


@st.composite
def broken(draw) -> bytes:
    """Valid posts, posts breaking a rule, and either of them damaged in transit."""
    raw = draw(st.one_of(valid(), unchecked()))
    how = draw(st.sampled_from(["as is", "as is", "signature", "wide header", "flip", "cut", "insert", "noise"]))
    at = draw(st.integers(min_value=0, max_value=len(raw) - 1))
    if how == "as is":
        return raw
    if how == "signature":  # one bit of the signature: still canonical, no longer valid
        at = len(raw) - 1 - draw(st.integers(min_value=0, max_value=63))
        return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]
    if how == "wide header":  # the outer array as array16: the same value, not canonical
        return b"\xdc\x00\x02" + raw[1:]
    if how == "flip":
        return raw[:at] + bytes([raw[at] ^ (1 << draw(st.integers(0, 7)))]) + raw[at + 1 :]
    if how == "cut":
        return raw[:at]
    if how == "insert":
        return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
    return draw(st.binary(max_size=200))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=broken(), now=st.sampled_from([NOW, NOW - 86_400, NOW + 600]))
def test_both_paths_agree_on_any_bytes(raw, now):
    assert_same(raw, now)


@settings(max_examples=50, deadline=None)
@given(st.lists(broken(), max_size=8))
def test_a_batch_decodes_as_each_post_alone(raws):
    def plain(item):
        if isinstance(item, posts.Undecodable):
            return (type(item.error), item.code, item.id)
        return item

    assert [plain(i) for i in posts.decode_each(raws)] == [plain(posts.decode_each([raw])[0]) for raw in raws]

"""Range-based set reconciliation (docs/protocol.md, "Reconciliation"): convergence, limits, bad input."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dazibao.protocol import limits, wire
from dazibao.protocol.errors import (
    FieldError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    RemoteProtocolError,
    TooLargeError,
    ValidationError,
    VersionError,
)
from dazibao.protocol.keyindex import KeyIndex
from dazibao.protocol.posts import post_key
from dazibao.protocol.reconcile import (
    MODE_FINGERPRINT,
    MODE_IDLIST,
    MODE_SKIP,
    Initiator,
    _top_bound,
    decode_message,
    encode_message,
    respond,
)

T0 = 1_700_000_000_000
DAY_MS = 86_400_000

# The smallest limits an implementation accepts with full-length bounds (§7.3): a test-only
# configuration that forces frame-limit handling on every round.
TINY = dict(max_msg_bytes=2048, max_ranges=8, max_idlist_ids=8)


def ids_of(keys) -> set[bytes]:
    return {k[-32:] for k in keys}


def in_scope(keys, boards) -> set[bytes]:
    prefixes = tuple(b.encode() + b"\x00" for b in boards)
    return {k[-32:] for k in keys if k.startswith(prefixes)}


def run(a: KeyIndex, b: KeyIndex, boards, *, max_rounds=64, **kw):
    """Reconcile ``a`` (Initiator) with ``b`` (responder); check every message on the way."""
    msg_limit = kw.get("max_msg_bytes", limits.MAX_RECONCILE_MSG_BYTES)
    range_limit = kw.get("max_ranges", limits.MAX_RECONCILE_RANGES)
    check = {k: v for k, v in kw.items() if k in ("max_msg_bytes", "max_ranges", "max_idlist_ids")}
    init = Initiator(a, boards, max_rounds=max_rounds, **kw)
    msg = init.initiate()
    sizes = []
    while msg is not None:
        assert len(msg) <= msg_limit
        assert len(decode_message(msg, **check)) <= range_limit
        reply = respond(b, msg, **kw)
        assert len(reply) <= msg_limit
        assert len(decode_message(reply, **check)) <= range_limit
        sizes.append((len(msg), len(reply)))
        msg = init.reconcile(reply)
    assert init.done
    assert init.rounds == len(sizes)
    assert init.bytes_sent == sum(s for s, _ in sizes)
    assert init.bytes_received == sum(r for _, r in sizes)
    assert len(init.have) == len(set(init.have)) and len(init.need) == len(set(init.need))
    return init, sizes


def check_converges(keys_a, keys_b, boards, **kw):
    init, sizes = run(KeyIndex(keys_a), KeyIndex(keys_b), boards, **kw)
    a, b = in_scope(keys_a, boards), in_scope(keys_b, boards)
    assert set(init.have) == a - b
    assert set(init.need) == b - a
    return init, sizes


# --- key sets -------------------------------------------------------------------------------

BOARDS = ["general", "help", "housing", "événements"]


def make_keys(rng: random.Random, n: int, boards=BOARDS, *, start=T0, span=365 * DAY_MS) -> list[bytes]:
    return [post_key(rng.choice(boards), start + rng.randrange(span), rng.randbytes(32)) for _ in range(n)]


@st.composite
def key_set_pairs(draw, max_keys=3000):
    """(A, B, scope): two key sets related in one of the ways syncing nodes meet."""
    seed = draw(st.integers(0, 2**32))
    rng = random.Random(seed)
    n_boards = draw(st.integers(1, len(BOARDS)))
    boards = BOARDS[:n_boards]
    n = draw(st.one_of(st.integers(0, 40), st.integers(40, max_keys // 4), st.integers(max_keys // 4, max_keys)))
    event(f"keys: {10 ** len(str(n)) // 10}+")
    # Some sets crowd into one day so that keys share long prefixes.
    span = draw(st.sampled_from([365 * DAY_MS, DAY_MS, 1000]))
    base = make_keys(rng, n, boards, span=span)
    how = draw(st.sampled_from(["random", "identical", "disjoint", "subset", "superset", "empty_a", "empty_b", "newest", "oldest", "block"]))
    d = min(n, draw(st.one_of(st.integers(0, 3), st.integers(0, n))))
    if how == "identical":
        a, b = base, list(base)
    elif how == "disjoint":
        a, b = base, make_keys(rng, draw(st.integers(0, max_keys)), boards, span=span)
    elif how == "subset":
        a, b = rng.sample(base, n - d), base
    elif how == "superset":
        a, b = base, rng.sample(base, n - d)
    elif how == "empty_a":
        a, b = [], base
    elif how == "empty_b":
        a, b = base, []
    elif how in ("newest", "oldest", "block"):
        # Clustered in time: the newest d (a node that was offline), the oldest d, or a run.
        ordered = sorted(base, key=lambda k: k[-40:])
        if how == "newest":
            gone = ordered[n - d :]
        elif how == "oldest":
            gone = ordered[:d]
        else:
            at = rng.randrange(0, n - d + 1)
            gone = ordered[at : at + d]
        rest = set(gone)
        kept = [k for k in base if k not in rest]
        a, b = (kept, base) if draw(st.booleans()) else (base, kept)
    else:
        a = [k for k in base if rng.random() < 0.97]
        b = [k for k in base if rng.random() < 0.97]
    scope = draw(st.lists(st.sampled_from(BOARDS), min_size=1, unique=True))
    event(how)
    return a, b, scope


# --- convergence ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(key_set_pairs())
def test_converges_to_the_union(pair):
    a, b, scope = pair
    check_converges(a, b, scope)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(key_set_pairs(max_keys=1500))
def test_converges_under_a_tiny_frame_limit(pair):
    a, b, scope = pair
    check_converges(a, b, scope, max_rounds=100_000, **TINY)


def test_boards_outside_the_scope_are_never_reported():
    rng = random.Random(1)
    shared = make_keys(rng, 2000, ["general", "help"])
    only_a = make_keys(rng, 300, ["general", "housing", "zzz"])
    only_b = make_keys(rng, 300, ["help", "housing", "aaa"])
    init, _ = check_converges(shared + only_a, shared + only_b, ["general", "help"])
    assert set(init.have) == in_scope(only_a, ["general"])
    assert set(init.need) == in_scope(only_b, ["help"])
    # A board in scope that is a prefix of one outside it ("help" and "helpdesk").
    extra = make_keys(rng, 200, ["helpdesk"])
    init, _ = check_converges(shared + extra, shared, ["help"])
    assert init.have == [] and init.need == []


def test_identical_sets_settle_in_one_small_round_trip():
    rng = random.Random(2)
    keys = make_keys(rng, 10_000)
    init, sizes = check_converges(keys, list(keys), BOARDS)
    assert init.rounds == 1
    sent, received = sizes[0]
    assert sent + received < 400
    assert decode_message(respond(KeyIndex(keys), Initiator(KeyIndex(keys), BOARDS).initiate())) == [(None, MODE_SKIP, None)]


def test_one_difference_in_a_large_set_takes_few_rounds():
    rng = random.Random(3)
    keys = make_keys(rng, 20_000)
    for missing in (keys[0], max(keys, key=lambda k: k[-40:])):
        rest = [k for k in keys if k != missing]
        init, sizes = check_converges(keys, rest, BOARDS)
        assert init.have == [missing[-32:]] and init.need == []
        assert init.rounds <= 3
        assert sum(s + r for s, r in sizes) < 4000
        init, _ = check_converges(rest, keys, BOARDS)
        assert init.need == [missing[-32:]] and init.have == []


def test_many_differences_respect_the_default_frame_limit():
    # 3000 ids each way do not fit one IdList or one message under a small limit.
    rng = random.Random(4)
    common = make_keys(rng, 3000, ["general"])
    a = common + make_keys(rng, 3000, ["general"])
    b = common + make_keys(rng, 3000, ["general"])
    init, sizes = check_converges(a, b, ["general"], max_msg_bytes=20_000, max_ranges=64, max_idlist_ids=100)
    assert max(max(s, r) for s, r in sizes) <= 20_000
    assert init.rounds > 3


def test_empty_board_on_the_initiator_is_answered_with_ids():
    rng = random.Random(5)
    keys = make_keys(rng, 5000, ["general"])
    init, _ = check_converges([], keys, ["general"])
    assert len(init.need) == 5000
    init, _ = check_converges(keys, [], ["general"])
    assert len(init.have) == 5000


# --- the wire format: vectors and bad input -----------------------------------------------------


def vector_index() -> KeyIndex:
    return KeyIndex(
        [
            post_key("general", T0, bytes([1]) + bytes(31)),
            post_key("general", T0 + 1, bytes([2]) + bytes(31)),
            post_key("help", T0, bytes(31) + bytes([0x80])),
        ]
    )


def test_initiate_vector():
    # The first message for boards general and help over the three keys of
    # docs/protocol.md, "Reconciliation", "Fingerprints" (the fingerprint of "general" is the
    # worked one): each board below and above the newest key held there (§6.1).
    msg = Initiator(vector_index(), ["help", "general"], sketches=False).initiate()
    assert msg.hex() == (
        "92" "01" "97"  # [1, [7 ranges]]
        "93" "c408" "67656e6572616c00" "00" "c0"  # [b"general\x00", Skip, nil]
        "93" "c410" "67656e6572616c00" "0000018bcfe56802"  # up to general, T0 + 2 ms (k2 is at T0 + 1)
        "01" "c410" "e58461d72b9e3738c1d923ca0eda8994"  # Fingerprint of {k1, k2}
        "93" "c408" "67656e6572616c01" "02" "90"  # [b"general\x01", IdList, []]
        "93" "c405" "68656c7000" "00" "c0"  # [b"help\x00", Skip, nil]
        "93" "c40d" "68656c7000" "0000018bcfe56801" "01" "c410" "6d7cff780bf657e8f967ca018753b763"
        "93" "c405" "68656c7001" "02" "90"  # [b"help\x01", IdList, []]
        "93" "c0" "00" "c0"  # [nil, Skip, nil]
    )
    # Without the open top, the first message of the first release: one Fingerprint a board.
    assert Initiator(vector_index(), ["help", "general"], open_top=False, sketches=False).initiate().hex() == (
        "92" "01" "95"  # [1, [5 ranges]]
        "93" "c408" "67656e6572616c00" "00" "c0"  # [b"general\x00", Skip, nil]
        "93" "c408" "67656e6572616c01" "01" "c410" "e58461d72b9e3738c1d923ca0eda8994"
        "93" "c405" "68656c7000" "00" "c0"  # [b"help\x00", Skip, nil]
        "93" "c405" "68656c7001" "01" "c410" "6d7cff780bf657e8f967ca018753b763"
        "93" "c0" "00" "c0"  # [nil, Skip, nil]
    )


def test_vector_round_trip():
    ours = vector_index()
    theirs = KeyIndex([post_key("general", T0, bytes([1]) + bytes(31)), post_key("help", T0, bytes(31) + bytes([0x80]))])
    init = Initiator(theirs, ["general", "help"], sketches=False)
    first = init.initiate()
    # docs/protocol.md, "Reconciliation", "Example": both byte strings (without the marker of
    # §5.1; test_sketch.py checks the example with it).
    assert first.hex() == (
        "920197"
        "93c40867656e6572616c0000c0"
        "93c41067656e6572616c000000018bcfe5680101c41001e07729842233c25c5c8856d31ea820"
        "93c40867656e6572616c010290"
        "93c40568656c700000c0"
        "93c40d68656c70000000018bcfe5680101c4106d7cff780bf657e8f967ca018753b763"
        "93c40568656c70010290"
        "93c000c0"
    )
    assert len(first) == 126
    reply = respond(ours, first)
    assert reply.hex() == (
        "920193"
        "93c41067656e6572616c000000018bcfe5680100c0"
        "93c40867656e6572616c010291"
        "c420" + "02" + "00" * 31 + "93c000c0"
    )
    assert len(reply) == 75
    # Below T0 + 1 ms both sides hold k1 (Skip); above it the responder lists k2; "help" agrees.
    assert decode_message(reply) == [
        (b"general\x00" + (T0 + 1).to_bytes(8, "big"), MODE_SKIP, None),
        (b"general\x01", MODE_IDLIST, [bytes([2]) + bytes(31)]),
        (None, MODE_SKIP, None),
    ]
    assert init.reconcile(reply) is None
    assert init.need == [bytes([2]) + bytes(31)] and init.have == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(BOARDS), st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32),
       st.integers(-3, 3), st.binary(min_size=32, max_size=32))
def test_the_top_bound_lies_just_above_a_millisecond(board, t, ident, dt, other):
    # §6.1: board || 0x00 || be8(t + 1), trailing zero bytes dropped: every key of the board at
    # time t or before lies below it, every later one at or above it.
    key = post_key(board, t, ident)
    top = _top_bound(key, None)
    if t == 2**64 - 1:
        assert top is None
        return
    assert top is not None and top > key and top.startswith(board.encode() + b"\x00")
    t2 = t + dt
    if 0 <= t2 < 2**64:
        assert (post_key(board, t2, other) < top) == (t2 <= t)
    assert _top_bound(key, top) is None  # not below hi
    assert post_key(board + "x", 0, other) > top  # the keys of later boards lie above it


def test_identical_and_offline_nodes_in_one_round_trip_either_side():
    # §6.1 and §6.3 (the open top): a node back from being offline learns what it missed in one
    # round trip whether it asks or answers; identical stores cost one small round trip.
    rng = random.Random(21)
    keys = make_keys(rng, 20_000)
    newest = set(sorted(keys, key=lambda k: k[-40:])[-50:])
    rest = [k for k in keys if k not in newest]
    # Bytes: the ids the Initiator lacks; a split of each board on the responder's side (the
    # responder does not know where the Initiator's extra keys lie); nothing.
    for a, b, most in ((rest, keys, 400 + 36 * len(newest)), (keys, rest, 400 + 800 * len(BOARDS)), (keys, keys, 400)):
        init, sizes = check_converges(a, b, BOARDS)
        assert init.rounds == 1
        assert sum(s + r for s, r in sizes) < most


def ranges_msg(ranges, version=1) -> bytes:
    return wire.pack([version, [list(r) for r in ranges]])


FP = bytes(16)
ID = bytes(32)


@pytest.mark.parametrize(
    "msg, error",
    [
        (b"", MalformedError),
        (b"\x92\x01", MalformedError),
        (ranges_msg([(None, 0, None)]) + b"\x00", MalformedError),
        (ranges_msg([(None, 0, None)], version=2), VersionError),
        (ranges_msg([(None, 0, None)], version=0), VersionError),
        (wire.pack([True, [[None, 0, None]]]), FieldError),
        (wire.pack([1]), FieldError),
        (wire.pack([1, [[None, 0, None]], 3]), FieldError),
        (wire.pack({"v": 1}), FieldError),
        (ranges_msg([]), FieldError),
        (ranges_msg([(b"a", 0, None)]), FieldError),  # last bound not nil
        (ranges_msg([(None, 0, None), (None, 0, None)]), FieldError),
        (ranges_msg([(b"b", 1, FP), (b"a", 0, None), (None, 0, None)]), FieldError),  # decreasing
        (ranges_msg([(b"b", 1, FP), (b"b", 0, None), (None, 0, None)]), FieldError),  # equal
        (ranges_msg([(b"", 1, FP), (None, 0, None)]), FieldError),  # empty first range
        (ranges_msg([("a", 0, None), (None, 0, None)]), FieldError),  # str bound
        (ranges_msg([(b"a" * 234, 0, None), (None, 0, None)]), TooLargeError),
        (ranges_msg([(None, 3, None)]), FieldError),
        (ranges_msg([(None, -1, None)]), FieldError),
        (ranges_msg([(None, False, None)]), FieldError),
        (ranges_msg([(None, 0, b"")]), FieldError),
        (ranges_msg([(None, 1, bytes(15))]), FieldError),
        (ranges_msg([(None, 1, None)]), FieldError),
        (ranges_msg([(None, 2, [bytes(31)])]), FieldError),
        (ranges_msg([(None, 2, ID)]), FieldError),
        (ranges_msg([(None, 2, [ID] * 1025)]), TooLargeError),
        (ranges_msg([(None, 0)]), FieldError),
        (ranges_msg([(bytes([i // 256, i % 256, 1]), 0, None) for i in range(4096)] + [(None, 0, None)]), TooLargeError),
        (b"\x92\x01\x91\x93\xc0\x00\xc0" + b"", None),  # well-formed: used as a control below
        (b"\x92\x01\xdc\x00\x01\x93\xc0\x00\xc0", NonCanonicalError),  # array16 for one item
        (b"\x92\x01\x91\x93\xc0\x00\xc0\xc0", MalformedError),
        (b"\x92\x01\x91\x93\xc0\xcb\x00\x00\x00\x00\x00\x00\x00\x00\xc0", FieldError),  # a float mode
        (bytes(limits.MAX_RECONCILE_MSG_BYTES + 1), TooLargeError),
    ],
)
def test_malformed_messages_raise_typed_errors(msg, error):
    index = vector_index()
    init = Initiator(index, ["general"])
    init.initiate()
    if error is None:
        assert decode_message(msg) == [(None, MODE_SKIP, None)]
        return
    with pytest.raises(error):
        respond(index, msg)
    with pytest.raises(error):
        init.reconcile(msg)


def test_initiator_refuses_answers_to_questions_it_did_not_ask():
    index = vector_index()
    for bad in (
        [(b"a", 1, FP), (None, 0, None)],  # work before the first board
        [(b"general\x00", 0, None), (b"general\x01", 2, [ID]), (b"help\x00", 0, None), (b"help\x01", 2, []), (None, 0, None)],
        [(b"general\x00", 0, None), (b"help\x01", 2, [])] + [(None, 0, None)],  # IdList across boards
        [(b"zzz", 0, None), (None, 1, FP)],
    ):
        init = Initiator(index, ["general"], sketches=False)
        init.initiate()
        with pytest.raises(ValidationError):
            init.reconcile(ranges_msg(bad))
        with pytest.raises(LocalProtocolError):
            init.reconcile(ranges_msg([(None, 0, None)]))  # the conversation is over


def test_round_cap_stops_a_peer_that_never_agrees():
    rng = random.Random(6)
    index = KeyIndex(make_keys(rng, 500, ["general"]))

    def contrary(msg: bytes) -> bytes:
        # Answers every range with work with a Fingerprint that matches nothing.
        return encode_message([(b, MODE_FINGERPRINT if m else MODE_SKIP, b"\xff" * 16 if m else None) for b, m, _ in decode_message(msg)])

    init = Initiator(index, ["general"], max_rounds=20)
    msg = init.initiate()
    with pytest.raises(TooLargeError):
        for _ in range(1000):
            msg = init.reconcile(contrary(msg))
            assert msg is not None
    assert init.rounds == 20


def test_api_misuse_is_a_local_error():
    index = vector_index()
    for boards in ([], "general", ["gen\x00eral"], [""], [b"general"]):
        with pytest.raises(LocalProtocolError):
            Initiator(index, boards)
    for kw in (dict(max_msg_bytes=1000), dict(max_ranges=4), dict(max_bound_bytes=64), dict(split_parts=1), dict(max_rounds=0)):
        with pytest.raises(LocalProtocolError):
            Initiator(index, ["general"], **kw)
    with pytest.raises(LocalProtocolError):
        respond(index, ranges_msg([(None, 0, None)]), max_msg_bytes=1000)
    init = Initiator(index, ["general"])
    with pytest.raises(LocalProtocolError):
        init.reconcile(ranges_msg([(None, 0, None)]))
    init.initiate()
    with pytest.raises(LocalProtocolError):
        init.initiate()
    assert init.reconcile(ranges_msg([(None, 0, None)])) is None
    with pytest.raises(LocalProtocolError):
        init.reconcile(ranges_msg([(None, 0, None)]))


# --- fuzzing ----------------------------------------------------------------------------------

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30,
)

FUZZ_INDEX = KeyIndex(make_keys(random.Random(8), 3000, ["general", "help"]))


@st.composite
def shaped_messages(draw):
    """Messages of the right shape with random bounds, modes and payloads."""
    keys = list(FUZZ_INDEX)
    n = draw(st.integers(1, 12))
    candidates = draw(
        st.lists(
            st.one_of(
                st.binary(min_size=1, max_size=12),
                st.sampled_from(keys).map(lambda k: k[: max(1, len(k) // 2)]),
                st.sampled_from([b"general\x00", b"general\x01", b"help\x00", b"help\x01"]),
            ),
            min_size=n - 1,
            max_size=n - 1,
        )
    )
    bounds = sorted(set(candidates)) + [None]
    ranges = []
    for bound in bounds:
        mode = draw(st.sampled_from([MODE_SKIP, MODE_FINGERPRINT, MODE_IDLIST]))
        if mode == MODE_SKIP:
            payload = None
        elif mode == MODE_FINGERPRINT:
            payload = draw(st.binary(min_size=16, max_size=16))
        else:
            payload = draw(st.lists(st.sampled_from(keys).map(lambda k: k[-32:]) | st.binary(min_size=32, max_size=32), max_size=30))
        ranges.append((bound, mode, payload))
    return encode_message(ranges)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_errors(data):
    try:
        respond(FUZZ_INDEX, data)
    except RemoteProtocolError:
        pass
    init = Initiator(FUZZ_INDEX, ["general", "help"])
    init.initiate()
    try:
        init.reconcile(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=1000, deadline=None)
@given(msgpack_values)
def test_random_msgpack_values_raise_only_protocol_errors(value):
    for data in (msgpack.packb(value, use_bin_type=True), msgpack.packb([1, value], use_bin_type=True)):
        try:
            respond(FUZZ_INDEX, data)
        except RemoteProtocolError:
            pass
        init = Initiator(FUZZ_INDEX, ["general"])
        init.initiate()
        try:
            init.reconcile(data)
        except RemoteProtocolError:
            pass


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shaped_messages(), st.data())
def test_well_shaped_random_messages_are_answered_or_refused(msg, data):
    # The responder answers anything well-formed with a well-formed message.
    reply = respond(FUZZ_INDEX, msg)
    assert decode_message(reply)[-1][0] is None
    try:
        reply = respond(FUZZ_INDEX, msg, **TINY)
    except TooLargeError:
        pass  # more ranges or ids than the tiny limits allow
    else:
        assert len(reply) <= TINY["max_msg_bytes"]
        assert len(decode_message(reply, **TINY)) <= TINY["max_ranges"]
    # An Initiator fed random well-shaped replies either goes on or refuses, and ends.
    init = Initiator(FUZZ_INDEX, ["general", "help"], max_rounds=8)
    out = init.initiate()
    try:
        for _ in range(10):
            out = init.reconcile(data.draw(shaped_messages()) if data.draw(st.booleans()) else msg)
            if out is None:
                break
            decode_message(out)
    except RemoteProtocolError:
        pass
    assert init.rounds <= 8

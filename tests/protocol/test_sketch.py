"""Rateless sketches in reconciliation (docs/protocol.md, "Reconciliation", §5.1 and §6).

The coded symbols themselves (protocol/sketch.py), the symbols KeyIndex keeps per block, the
negotiation with a responder of either earlier release, hostile Sketches, and conversations
whose outcome must be exactly the symmetric difference whichever side runs which release.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dazibao.protocol import limits, sketch, wire
from dazibao.protocol.errors import FieldError, ReconcileError, TooLargeError
from dazibao.protocol.keyindex import KeyIndex
from dazibao.protocol.reconcile import (
    MODE_FINGERPRINT,
    MODE_IDLIST,
    MODE_SKETCH,
    MODE_SKETCH_REQUEST,
    MODE_SKIP,
    SKETCH_MARKER,
    Initiator,
    decode_message,
    encode_message,
    respond,
)
from tests import factories
from tests.protocol import test_reconcile_release1 as release1
from tests.protocol.test_reconcile import BOARDS, in_scope, key_set_pairs, make_keys

VECTORS = Path(__file__).parents[1] / "vectors" / "sketch.json"
SETTINGS = settings(max_examples=factories.examples(150), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def ids(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(32) for _ in range(n)]


# --- coded symbols ------------------------------------------------------------------------------


@settings(max_examples=factories.examples(60), deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 40), st.integers(0, 40), st.integers(0, 60))
def test_symbols_decode_to_the_symmetric_difference(seed, only_a, only_b, shared):
    rng = random.Random(seed)
    common, a, b = ids(rng, shared), ids(rng, only_a), ids(rng, only_b)
    m = 1
    while True:
        decoded = sketch.decode(sketch.encode(common + b, 0, m), sketch.encode(common + a, 0, m), max_ids=4 * m)
        if decoded.complete:
            break
        assert m <= 4 * (only_a + only_b) + 8, "a rateless sketch decodes from a few symbols per difference"
        m += 1 + m // 8
    assert sorted(decoded.ids) == sorted(a + b)


def test_symbols_are_a_prefix_of_one_stream_and_every_id_is_in_symbol_0():
    rng = random.Random(1)
    items = ids(rng, 50)
    whole = sketch.encode(items, 0, 40)
    assert sketch.encode(items, 10, 30) == whole[10 * sketch.SYMBOL_BYTES :]
    for item in items:
        assert sketch.indexes(item, 40)[0] == 0
    # Symbol 0 of one id is the id and its checksum.
    assert sketch.encode(items[:1], 0, 1)[:32] == items[0]


def test_hostile_symbols_never_loop_and_stop_at_max_ids():
    rng = random.Random(2)
    for _ in range(200):
        m = rng.randrange(1, 80)
        junk = rng.randbytes(m * sketch.SYMBOL_BYTES)
        decoded = sketch.decode(junk, bytes(len(junk)), max_ids=5)
        assert len(decoded.ids) <= 5
    # One pure symbol of an id that does not map there: refused, not peeled around forever.
    item = next(i for i in ids(rng, 500) if 3 not in sketch.indexes(i, 8))
    forged = bytearray(8 * sketch.SYMBOL_BYTES)
    forged[3 * 36 : 4 * 36] = sketch.encode([item], 0, 1)
    assert not sketch.decode(bytes(forged), bytes(len(forged)), max_ids=10).complete
    with pytest.raises(ValueError):
        sketch.decode(b"\0" * 36, b"\0" * 72, max_ids=1)


@SETTINGS
@given(st.integers(0, 2**32), st.lists(st.tuples(st.booleans(), st.integers(0, 10**6)), max_size=400))
def test_key_index_keeps_every_block_s_symbols_current(seed, changes):
    # Adds and removes, block splits and merges: any range's symbols equal those computed from
    # its ids, below and past the cached symbols.
    rng = random.Random(seed)
    keys = make_keys(rng, rng.choice([0, 10, 700, 2500]), BOARDS[:2])
    index = KeyIndex(keys)
    for add, n in changes:
        if add or not keys:
            key = make_keys(rng, 1, BOARDS[:2])[0]
            keys.append(key)
            index.add(key)
        else:
            index.remove(keys.pop(n % len(keys)))
    total = len(index)
    for _ in range(6):
        start = rng.randrange(total + 1)
        stop = rng.randrange(start, total + 1)
        first = rng.randrange(0, 300)
        count = rng.randrange(1, 40)
        want = sketch.encode(index.ids_at(start, stop), first, count)
        assert index.sketch_at(start, stop, first, count) == want
        assert index.sketch_work(start, stop, first + count) <= (
            stop - start if first + count > limits.SKETCH_CACHED_SYMBOLS else 1024)


# --- negotiation and the wire ---------------------------------------------------------------------


def test_the_first_message_carries_the_marker_and_each_release_answers_it():
    rng = random.Random(3)
    keys = make_keys(rng, 2000, BOARDS)
    index = KeyIndex(keys)
    first = Initiator(KeyIndex(keys[:1990]), BOARDS).initiate()
    assert decode_message(first)[0] == (b"\x01", MODE_FINGERPRINT, SKETCH_MARKER)
    # A responder with sketches: Skip; one without (this release with sketches=False, and the
    # first release): an empty IdList, since no key lies below 0x01.
    assert decode_message(respond(index, first))[0][1] == MODE_SKIP
    assert decode_message(respond(index, first, sketches=False))[0] == (b"\x01", MODE_IDLIST, [])
    assert release1.decode_message(release1.respond(index, first))[0] == (b"\x01", MODE_IDLIST, [])


def test_without_the_marker_a_responder_never_sends_a_sketch():
    rng = random.Random(4)
    keys = make_keys(rng, 3000, BOARDS)
    a, b = KeyIndex(rng.sample(keys, 2900)), KeyIndex(rng.sample(keys, 2900))
    init = Initiator(a, BOARDS, sketches=False)
    msg = init.initiate()
    while msg is not None:
        reply = respond(b, msg)
        assert all(mode in (MODE_SKIP, MODE_FINGERPRINT, MODE_IDLIST) for _, mode, _ in decode_message(reply))
        msg = init.reconcile(reply)


def test_a_new_initiator_sends_no_sketch_request_to_an_old_responder():
    rng = random.Random(5)
    keys = make_keys(rng, 3000, BOARDS)
    a, b = KeyIndex(rng.sample(keys, 2950)), KeyIndex(rng.sample(keys, 2950))
    for answer in (lambda m: respond(b, m, sketches=False), lambda m: release1.respond(b, m)):
        init = Initiator(a, BOARDS)
        msg = init.initiate()
        while msg is not None:
            msg = init.reconcile(answer(msg))
            if msg is not None:
                assert all(mode != MODE_SKETCH_REQUEST for _, mode, _ in decode_message(msg))
        assert set(init.have) == in_scope(a, BOARDS) - in_scope(b, BOARDS)


def test_sketch_fields_are_checked():
    fp = bytes(16)
    good_req = [(b"\x01", MODE_SKETCH_REQUEST, [fp, 0, 24]), (None, 0, None)]
    assert decode_message(encode_message(good_req))[0][2] == [fp, 0, 24]
    for bad, error in (
        ([fp, 0], FieldError),
        ([fp[:15], 0, 24], FieldError),
        ([fp, -1, 24], FieldError),
        ([fp, 0, 0], FieldError),
        ([fp, 1000, 25], TooLargeError),
    ):
        with pytest.raises(error):
            decode_message(encode_message([(b"\x01", MODE_SKETCH_REQUEST, bad), (None, 0, None)]))
    for bad, error in (([fp, 0, b""], FieldError), ([fp, 0, b"\0" * 35], FieldError),
                       ([fp, 1020, b"\0" * 36 * 5], TooLargeError), ([fp, 0, 3], FieldError)):
        with pytest.raises(error):
            decode_message(encode_message([(b"\x01", MODE_SKETCH, bad), (None, 0, None)]))


def test_a_responder_refuses_a_sketch_and_one_without_sketches_a_request():
    index = KeyIndex(make_keys(random.Random(6), 100, BOARDS))
    sketch_range = [(b"a", MODE_SKETCH, [bytes(16), 0, bytes(36)]), (None, 0, None)]
    with pytest.raises(FieldError):
        respond(index, encode_message(sketch_range))
    request = encode_message([(b"a", MODE_SKETCH_REQUEST, [bytes(16), 0, 4]), (None, 0, None)])
    with pytest.raises(FieldError):
        respond(index, request, sketches=False)
    with pytest.raises(FieldError):
        release1.respond(index, request)


def test_an_initiator_refuses_sketches_it_did_not_ask_for():
    rng = random.Random(7)
    index = KeyIndex(make_keys(rng, 300, ["general"]))
    top = decode_message(Initiator(index, ["general"], sketches=False).initiate())[1][0]
    cases = [
        # A SketchRequest is never an answer.
        ([(b"general\x00", 0, None), (top, MODE_SKETCH_REQUEST, [bytes(16), 0, 4]), (None, 0, None)], True),
        # A Sketch to an Initiator that did not send the marker.
        ([(b"general\x00", 0, None), (top, MODE_SKETCH, [bytes(16), 0, bytes(36)]), (None, 0, None)], False),
        # A Sketch that does not start where the symbols received so far end.
        ([(b"general\x00", 0, None), (top, MODE_SKETCH, [bytes(16), 5, bytes(36)]), (None, 0, None)], True),
        # A Sketch across two ranges.
        ([(b"general\x01", MODE_SKETCH, [bytes(16), 0, bytes(36)]), (None, 0, None)], True),
        # A Sketch of the marker's range.
        ([(b"\x01", MODE_SKETCH, [bytes(16), 0, bytes(36)]), (None, 0, None)], True),
    ]
    for bad, marker in cases:
        init = Initiator(index, ["general"], sketches=marker)
        init.initiate()
        with pytest.raises(ReconcileError):
            init.reconcile(encode_message(bad))


def test_sketches_that_fail_the_fingerprint_fall_back_to_splitting():
    # A hostile responder answers every SketchRequest with symbols of another set, or with a
    # forged pure symbol: the Initiator reports nothing that fails the range's fingerprint, falls
    # back to Fingerprints and still ends with exactly the symmetric difference.
    rng = random.Random(8)
    keys = make_keys(rng, 4000, BOARDS[:2])
    a, b = KeyIndex(rng.sample(keys, 3950)), KeyIndex(rng.sample(keys, 3950))
    stranger = rng.randbytes(32)

    def hostile(msg: bytes, how: str) -> bytes:
        ranges = decode_message(respond(b, msg))
        out = []
        for bound, mode, payload in ranges:
            if mode == MODE_SKETCH:
                fp, first, cells = payload
                n = len(cells) // sketch.SYMBOL_BYTES
                if how == "other set":
                    cells = sketch.encode(ids(rng, 30), first, n)
                else:
                    # Symbols of the responder's set plus a stranger's id, consistently: they
                    # decode completely, and only the range's fingerprint tells the lie.
                    extra = sketch.encode([stranger], first, n)
                    cells = bytes(x ^ y for x, y in zip(cells, extra, strict=True))
                payload = [fp, first, cells]
            out.append((bound, mode, payload))
        return encode_message(out)

    for how in ("other set", "forged id"):
        init = Initiator(a, BOARDS[:2])
        msg = init.initiate()
        sketches = 0
        while msg is not None:
            reply = hostile(msg, how)
            sketches += sum(mode == MODE_SKETCH for _, mode, _ in decode_message(reply))
            msg = init.reconcile(reply)
        assert sketches and stranger not in init.need
        assert set(init.have) == in_scope(a, BOARDS) - in_scope(b, BOARDS)
        assert set(init.need) == in_scope(b, BOARDS) - in_scope(a, BOARDS)


@SETTINGS
@given(key_set_pairs(max_keys=1500), st.sampled_from(["new", "current", "first"]),
       st.sampled_from(["new", "current", "first"]), st.sampled_from([16, 24, 64, 1024]), st.data())
def test_every_pair_of_releases_ends_with_the_symmetric_difference(pair, asker, answerer, max_symbols, data):
    # "new": sketches on; "current": this code with sketches off (the release before them);
    # "first": the frozen first release.  Small max_sketch_symbols and max_sketch_work_keys
    # force decoding failures (symbols crowded with differences) and the fall-back to splits.
    a, b, scope = pair
    event(f"{asker} asks {answerer}")
    work = data.draw(st.sampled_from([limits.MAX_SKETCH_WORK_KEYS, 1, 300]))
    if asker == "first":
        init = release1.Initiator(KeyIndex(a), scope)
    else:
        init = Initiator(KeyIndex(a), scope, sketches=asker == "new", max_sketch_symbols=max_symbols)
    index_b = KeyIndex(b)
    msg = init.initiate()
    while msg is not None:
        if answerer == "first":
            reply = release1.respond(index_b, msg)
        else:
            reply = respond(index_b, msg, sketches=answerer == "new", max_sketch_work_keys=work)
        assert len(reply) <= limits.MAX_RECONCILE_MSG_BYTES
        msg = init.reconcile(reply)
    assert set(init.have) == in_scope(a, scope) - in_scope(b, scope)
    assert set(init.need) == in_scope(b, scope) - in_scope(a, scope)
    assert len(init.have) == len(set(init.have)) and len(init.need) == len(set(init.need))


def test_scattered_differences_cost_far_fewer_bytes_with_sketches():
    # 60 differences at random among 20 000 keys: with sketches the conversation takes a few
    # bytes per difference beyond the ids themselves; splitting by fingerprints takes hundreds.
    rng = random.Random(9)
    keys = make_keys(rng, 20_060, BOARDS)
    gone = set(rng.sample(range(len(keys)), 60))
    a = KeyIndex(k for n, k in enumerate(keys) if n not in gone or n % 2)
    b = KeyIndex(k for n, k in enumerate(keys) if n not in gone or not n % 2)
    sizes = {}
    for on in (True, False):
        init = Initiator(a, BOARDS, sketches=on)
        msg = init.initiate()
        while msg is not None:
            msg = init.reconcile(respond(b, msg))
        assert len(init.have) + len(init.need) == 60
        sizes[on] = init.bytes_sent + init.bytes_received
    assert sizes[True] * 3 < sizes[False]
    assert sizes[True] < 60 * 100


# --- test vectors ---------------------------------------------------------------------------------


def test_vectors_are_current_and_replay():
    script = Path(__file__).parents[1] / "vectors" / "make_sketch_vectors.py"
    subprocess.run([sys.executable, str(script), "--check"], check=True)
    data = json.loads(VECTORS.read_text())
    for case in data["indexes"]:
        assert sketch.indexes(bytes.fromhex(case["id"]), case["stop"]) == case["indexes"]
    for case in data["symbols"]:
        items = [bytes.fromhex(i) for i in case["ids"]]
        assert sketch.encode(items, case["first"], case["count"]).hex() == case["symbols"]
    conv = data["conversation"]
    initiator = KeyIndex(bytes.fromhex(k) for k in conv["initiator_keys"])
    responder = KeyIndex(bytes.fromhex(k) for k in conv["responder_keys"])
    init = Initiator(initiator, conv["boards"])
    msg: bytes | None = init.initiate()
    for step in conv["messages"]:
        assert msg is not None and msg.hex() == step["initiator"]
        reply = respond(responder, msg)
        assert reply.hex() == step["responder"]
        wire.unpack_message(reply, max_bytes=limits.MAX_RECONCILE_MSG_BYTES, version=1, what="reply")
        msg = init.reconcile(reply)
    assert msg is None
    assert sorted(i.hex() for i in init.have) == conv["have"]
    assert sorted(i.hex() for i in init.need) == conv["need"]

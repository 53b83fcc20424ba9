"""Bundles (docs/bundles.md): the encoder, the streaming decoder, damage, splitting, the spec.

No event loop, no files: bytes in, events out.  The properties: what is encoded decodes back
exactly, however the bytes are cut into chunks; whatever happens to the bytes, the decoder
raises nothing but the protocol's bundle errors, every record that still passes
``check_post`` is one of the posts that were written, and every post whose frame the damage
did not touch is recovered.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.protocol import bundle, identity, limits, posts, wire
from dazibao.protocol.bundle import Damaged, End, Header, PostRecord, Trailer
from dazibao.protocol.errors import (
    BundleError,
    BundleFormatError,
    BundlePartsError,
    BundleTruncatedError,
    LocalProtocolError,
    RemoteProtocolError,
    SignatureError,
)
from tests.factories import examples

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
DOC = Path(__file__).resolve().parents[2] / "docs" / "bundles.md"
NOW = 1_700_000_100.0  # seconds, for check_post
BID = bytes(range(16))

KEYS = [identity.SigningKey(hashlib.sha256(b"bundle test key %d" % i).digest()) for i in range(3)]
BOARDS = ["labor", "劳动法", "chat"]


def _make_pool() -> list[posts.Post]:
    pool = []
    for i in range(24):
        key = KEYS[i % 3]
        body = f"post {i}: 加班费 " + "x" * (i * 37 % 300)
        pool.append(posts.create_post(key, kind="post", board=BOARDS[i % 3], body=body,
                                      created_at_ms=1_700_000_000_000 + i * 1000))
    parent = pool[0]
    pool.append(posts.create_post(KEYS[1], kind="reply", board=parent.board, body="reply\n\nwith lines",
                                  created_at_ms=1_700_000_050_000, parent=parent.id))
    pool.append(posts.create_post(KEYS[0], kind="retract", board=parent.board, body="",
                                  created_at_ms=1_700_000_060_000, parent=parent.id))
    return pool


POOL = _make_pool()
RAWS = {p.raw for p in POOL}


def encode(items: list[posts.Post], **kw) -> bytes:
    kw.setdefault("bundle_id", BID)
    kw.setdefault("created_at_ms", 1_700_000_100_000)
    return bundle.encode_bundle([p.raw for p in items], **kw)


def records(events) -> list[bytes]:
    return [e.raw for e in events if isinstance(e, PostRecord)]


def damages(events) -> list[Damaged]:
    return [e for e in events if isinstance(e, Damaged)]


def valid_posts(raws) -> set[bytes]:
    good = set()
    for raw in raws:
        try:
            posts.check_post(raw, NOW)
        except RemoteProtocolError:
            continue
        good.add(raw)
    return good


def frame_spans(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, payload) of each record frame of an intact bundle."""
    spans = []
    for event in bundle.decode_bundle(data):
        if isinstance(event, PostRecord):
            spans.append((event.offset, event.offset + bundle.FRAME_OVERHEAD + len(event.raw), event.raw))
    return spans


# --- round trip -----------------------------------------------------------------------------


def test_round_trip_events():
    data = encode(POOL, boards=["labor", "chat"])
    events = bundle.decode_bundle(data)
    header, *middle, trailer, end = events
    assert isinstance(header, Header) and header.offset == len(bundle.PREAMBLE)
    assert header.bundle_id == BID and (header.part, header.parts) == (1, 1)
    assert header.boards == ("chat", "labor")  # sorted by UTF-8 bytes
    assert header.post_count == len(POOL) and header.created_at_ms == 1_700_000_100_000
    assert [e.raw for e in middle] == [p.raw for p in POOL]
    assert all(isinstance(e, PostRecord) and e.checksum_ok for e in middle)
    assert isinstance(trailer, Trailer) and trailer.post_count == len(POOL)
    assert trailer.digest == hashlib.sha256(data[: trailer.offset]).digest()
    assert end == End(len(POOL), len(POOL), True, header, trailer)


def test_empty_bundle_is_valid():
    events = bundle.decode_bundle(encode([]))
    assert [type(e) for e in events] == [Header, Trailer, End]
    assert events[-1].complete


@settings(max_examples=examples(60), **SETTINGS)
@given(st.lists(st.sampled_from(POOL), max_size=12), st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_round_trip_any_chunking(items, cuts):
    data = encode(items)
    decoder = bundle.BundleDecoder()
    events, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        decoder.receive_data(data[pos : pos + step])
        pos += step
        i += 1
        events.extend(decoder.events())
    decoder.receive_data(b"")
    events.extend(decoder.events())
    assert events == bundle.decode_bundle(data)
    assert records(events) == [p.raw for p in items]
    assert events[-1].complete


# --- the spec's worked example and tables ---------------------------------------------------


def _hex_prefix(line: str) -> str:
    out = []
    for token in line.split():
        if not re.fullmatch(r"[0-9a-f]+", token):
            break
        out.append(token)
    return "".join(out)


def test_worked_example_in_the_spec():
    text = DOC.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"^```\n(.*?)^```", text, re.M | re.S) if b.startswith("89445a42"))
    data = bytes.fromhex("".join(_hex_prefix(line) for line in block.splitlines()))
    assert f"The file is {len(data)} bytes" in text
    key = identity.SigningKey(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    post = posts.create_post(key, kind="post", board="general", body="hello, wall", created_at_ms=1700000000000)
    assert data == bundle.encode_bundle([post.raw], bundle_id=BID, created_at_ms=1700000100000, boards=["general"])
    assert bundle.crc32(b"123456789") == 0xCBF43926 and "cbf43926" in text
    assert bundle.MAGIC.hex() == "89445a420d0a1a0a" and bundle.FRAME_MARKER.hex() == "ff445aff"


def test_spec_quotes_the_limits():
    text = DOC.read_text(encoding="utf-8")
    for name, quoted in re.findall(r"`(\w+)` \((\d+)", text):
        assert int(quoted) == limits.by_name(name), name
    assert f"at most {bundle.MAX_TRAILER_BYTES} bytes" in text
    assert f"at most {bundle._max_trailer_payload()})" in text


# --- damage ---------------------------------------------------------------------------------


def test_flipped_byte_in_one_post_costs_only_that_post():
    data = encode(POOL[:6])
    start, end, raw = frame_spans(data)[2]
    for where in (start + 20, start + 60, end - 30):  # in the post's author, body, signature
        damaged = bytearray(data)
        damaged[where] ^= 0x40
        events = bundle.decode_bundle(bytes(damaged))
        assert [d.offset for d in damages(events)] == [start]
        assert damages(events)[0].code == "bundle_damaged"
        assert valid_posts(records(events)) == {p.raw for p in POOL[:6]} - {raw}
        assert events[-1].records in (5, 6) and events[-1].expected == 6 and not events[-1].complete


def test_damaged_record_payload_is_refused_by_its_signature():
    data = encode(POOL[:3])
    start, _, raw = frame_spans(data)[1]
    damaged = bytearray(data)
    damaged[start + bundle.FRAME_OVERHEAD - 4 + len(raw) - 10] ^= 1  # inside the signature
    salvaged = [e for e in bundle.decode_bundle(bytes(damaged)) if isinstance(e, PostRecord) and not e.checksum_ok]
    assert len(salvaged) == 1
    with pytest.raises(SignatureError):
        posts.check_post(salvaged[0].raw, NOW)


def test_damaged_crc_keeps_the_intact_post():
    data = encode(POOL[:3])
    start, end, raw = frame_spans(data)[1]
    damaged = bytearray(data)
    damaged[end - 1] ^= 0xFF  # the CRC itself
    events = bundle.decode_bundle(bytes(damaged))
    assert len(damages(events)) == 1
    assert valid_posts(records(events)) == {p.raw for p in POOL[:3]}


def test_truncated_file():
    data = encode(POOL[:5])
    spans = frame_spans(data)
    cut = spans[3][0] + 25
    events = bundle.decode_bundle(data[:cut])
    assert records(events) == [p.raw for p in POOL[:3]]
    (damage,) = damages(events)
    assert damage.code == "bundle_truncated" and damage.offset == spans[3][0]
    assert events[-1].records == 3 and events[-1].expected == 5 and events[-1].trailer is None


def test_cut_exactly_between_frames_and_before_the_trailer():
    data = encode(POOL[:2])
    trailer_at = [e for e in bundle.decode_bundle(data) if isinstance(e, Trailer)][0].offset
    events = bundle.decode_bundle(data[:trailer_at])
    assert len(records(events)) == 2
    assert [d.code for d in damages(events)] == ["bundle_truncated"]


@pytest.mark.parametrize("data,error", [
    (b"", BundleFormatError),
    (b"hello, this is a text file and not a bundle at all\n", BundleFormatError),
    (bundle.PREAMBLE[:5], BundleTruncatedError),
    (b"\x89DZBK" + bytes(200), BundleFormatError),
])
def test_not_a_bundle(data, error):
    with pytest.raises(error):
        bundle.decode_bundle(data)


def test_unknown_version_is_refused_not_guessed():
    data = encode(POOL[:2])
    # A version-2 file: the preamble and the header say 2 (with a CRC that checks).
    payload = wire.pack([2, BID, 1, 1, 0, [], 2])
    first_record = frame_spans(data)[0][0]
    v2 = bundle.MAGIC + b"\x02" + bundle._frame(bundle.FRAME_HEADER, payload) + data[first_record:]
    with pytest.raises(BundleFormatError, match="version 2"):
        bundle.decode_bundle(v2)
    # Only the version byte of a version-1 file damaged: its intact header says 1.
    damaged = bytearray(data)
    damaged[8] = 2
    events = bundle.decode_bundle(bytes(damaged))
    assert damages(events)[0].offset == 0 and len(records(events)) == 2


def test_damaged_signature_bytes_with_intact_header_are_read():
    damaged = bytearray(encode(POOL[:4]))
    damaged[1] ^= 0xFF
    events = bundle.decode_bundle(bytes(damaged))
    assert [d.offset for d in damages(events)] == [0]
    assert len(records(events)) == 4


def test_damaged_header_frame_loses_no_post():
    data = bytearray(encode(POOL[:4]))
    data[30] ^= 0x01  # inside the header payload
    events = bundle.decode_bundle(bytes(data))
    assert not any(isinstance(e, Header) for e in events)
    assert len(records(events)) == 4
    assert damages(events)[0].offset == len(bundle.PREAMBLE)
    end = events[-1]
    assert end.trailer is not None and end.expected == 4  # the trailer still says what was written


def test_header_with_bad_content_but_good_crc_is_reported():
    payload = wire.pack([1, BID, 1, 1, 0, ["bad\u202eboard"], 1])
    data = bundle.PREAMBLE + bundle._frame(bundle.FRAME_HEADER, payload) + bundle._frame(bundle.FRAME_POST, POOL[0].raw)
    events = bundle.decode_bundle(data)
    assert damages(events)[0].code == "bad_board"
    assert records(events) == [POOL[0].raw]


def test_forged_post_inserted_is_delivered_but_fails_and_the_trailer_says_so():
    data = encode(POOL[:3])
    spans = frame_spans(data)
    genuine = POOL[4]
    unsigned = wire.unpack(genuine.raw, max_bytes=limits.MAX_POST_BYTES)[0]
    unsigned[6] = "a forged text under someone else's key"
    forged = wire.pack([unsigned, genuine.signature])
    tampered = data[: spans[1][0]] + bundle._frame(bundle.FRAME_POST, forged) + data[spans[1][0]:]
    events = bundle.decode_bundle(tampered)
    assert forged in records(events)
    with pytest.raises(SignatureError):
        posts.check_post(forged, NOW)
    assert valid_posts(records(events)) == {p.raw for p in POOL[:3]}
    assert [d.code for d in damages(events)] == ["bundle_mismatch"]


def test_replaced_record_with_recomputed_crc_fails_the_digest():
    data = encode(POOL[:3])
    start, end, _ = frame_spans(data)[1]
    swapped = data[:start] + bundle._frame(bundle.FRAME_POST, POOL[10].raw) + data[end:]
    events = bundle.decode_bundle(swapped)
    assert [d.code for d in damages(events)] == ["bundle_mismatch"]
    assert "SHA-256" in damages(events)[0].reason


def test_bytes_after_the_trailer_are_reported():
    events = bundle.decode_bundle(encode(POOL[:2]) + b"junk")
    assert [d.code for d in damages(events)] == ["bundle_damaged"]
    assert "after the trailer" in damages(events)[0].reason
    assert len(records(events)) == 2


def test_oversized_length_is_damage_at_once_not_a_wait():
    # A frame head claiming 2 GiB must not make the reader wait for (or buffer) 2 GiB.
    decoder = bundle.BundleDecoder()
    decoder.receive_data(bundle.PREAMBLE + bundle.FRAME_MARKER + b"P" + (2**31).to_bytes(4, "big") + b"x" * 100)
    events = list(decoder.events())
    assert any(isinstance(e, Damaged) and "over the limit" in e.reason for e in events)


def test_decoder_misuse():
    decoder = bundle.BundleDecoder()
    decoder.receive_data(encode([]))
    decoder.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        decoder.receive_data(b"more")
    list(decoder.events())
    with pytest.raises(LocalProtocolError):
        decoder.next_event()


# --- properties of damage -------------------------------------------------------------------

SAMPLE = POOL[:8]
SAMPLE_DATA = encode(SAMPLE, boards=["labor"])
SAMPLE_SPANS = frame_spans(SAMPLE_DATA)


def _decode_damaged(data: bytes) -> list | None:
    """Events, or None if the decoder refused the file (only bundle errors are allowed)."""
    try:
        return bundle.decode_bundle(data)
    except BundleError:
        return None


@settings(max_examples=examples(300), **SETTINGS)
@given(st.integers(0, len(SAMPLE_DATA) - 1), st.integers(1, 255))
def test_any_single_byte_change_loses_at_most_its_frame(where, xor):
    damaged = bytearray(SAMPLE_DATA)
    damaged[where] ^= xor
    events = bundle.decode_bundle(bytes(damaged))  # never refused: the preamble is checked by the header
    found = valid_posts(records(events))
    assert found <= {p.raw for p in SAMPLE}
    untouched = {raw for start, end, raw in SAMPLE_SPANS if not start <= where < end}
    assert untouched <= found
    assert damages(events) and not events[-1].complete


@settings(max_examples=examples(300), **SETTINGS)
@given(st.integers(len(bundle.PREAMBLE), len(SAMPLE_DATA) - 1), st.sampled_from([b"", b"\x00", bundle.FRAME_MARKER]))
def test_any_byte_lost_or_added_loses_at_most_its_frame(where, added):
    # A byte lost (or bytes added) shifts everything after it: the reader must find its step again.
    changed = SAMPLE_DATA[:where] + added + SAMPLE_DATA[where + (0 if added else 1):]
    events = bundle.decode_bundle(changed)
    found = valid_posts(records(events))
    assert found <= {p.raw for p in SAMPLE}
    assert {raw for start, end, raw in SAMPLE_SPANS if not start <= where < end} <= found


@settings(max_examples=examples(200), **SETTINGS)
@given(st.integers(0, len(SAMPLE_DATA) - 1))
def test_truncation_keeps_every_whole_frame(cut):
    events = _decode_damaged(SAMPLE_DATA[:cut])
    if cut < len(bundle.PREAMBLE):
        assert events is None
        return
    assert events is not None
    found = valid_posts(records(events))
    assert found == {raw for _, end, raw in SAMPLE_SPANS if end <= cut}
    assert not events[-1].complete


_EDITS = st.lists(
    st.tuples(st.sampled_from(["flip", "delete", "insert", "duplicate"]),
              st.integers(0, len(SAMPLE_DATA) - 1), st.integers(1, 64), st.binary(min_size=1, max_size=64)),
    min_size=1, max_size=6,
)


@settings(max_examples=examples(300), **SETTINGS)
@given(_EDITS)
def test_random_damage_never_yields_a_post_that_was_not_written(edits):
    data = bytearray(SAMPLE_DATA)
    for op, where, n, blob in edits:
        where %= max(len(data), 1)
        if op == "flip":
            data[where] ^= blob[0] or 1
        elif op == "delete":
            del data[where : where + n]
        elif op == "insert":
            data[where:where] = blob
        else:
            data[where:where] = data[where : where + n]
    events = _decode_damaged(bytes(data))
    if events is not None:
        assert isinstance(events[-1], End)
        assert valid_posts(records(events)) <= {p.raw for p in SAMPLE}


@settings(max_examples=examples(300), **SETTINGS)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_bundle_errors(data):
    events = _decode_damaged(data)
    if events is not None:
        assert isinstance(events[-1], End)
        assert not valid_posts(records(events))


@settings(max_examples=examples(200), **SETTINGS)
@given(st.binary(max_size=400), st.integers(0, 3))
def test_random_frames_after_a_good_preamble(body, extra_markers):
    # Start right: the decoder must then survive whatever follows, reporting, never raising.
    data = bundle.PREAMBLE + (bundle.FRAME_MARKER * extra_markers) + body
    events = bundle.decode_bundle(data)
    assert isinstance(events[-1], End)


# --- encoder and splitting ------------------------------------------------------------------


def test_encoder_refuses_misuse():
    with pytest.raises(LocalProtocolError):
        bundle.BundleEncoder(bundle_id=b"short", created_at_ms=0, post_count=0)
    with pytest.raises(LocalProtocolError):
        bundle.BundleEncoder(bundle_id=BID, created_at_ms=0, post_count=0, part=3, parts=2)
    with pytest.raises(LocalProtocolError):
        bundle.BundleEncoder(bundle_id=BID, created_at_ms=0, post_count=0, boards=["bad\u202eboard"])
    enc = bundle.BundleEncoder(bundle_id=BID, created_at_ms=0, post_count=1)
    with pytest.raises(LocalProtocolError):
        enc.add(POOL[0].raw)  # before start()
    enc.start()
    with pytest.raises(LocalProtocolError):
        enc.finish()  # one post promised
    enc.add(POOL[0].raw)
    with pytest.raises(LocalProtocolError):
        enc.add(POOL[1].raw)
    fresh = bundle.BundleEncoder(bundle_id=BID, created_at_ms=0, post_count=1)
    fresh.start()
    with pytest.raises(LocalProtocolError):
        fresh.add(b"x" * (limits.MAX_POST_BYTES + 1))


@settings(max_examples=examples(50), **SETTINGS)
@given(st.lists(st.sampled_from(POOL), max_size=30), st.integers(0, 3000))
def test_parts_fit_their_size_and_hold_every_post_once(items, extra):
    boards = ["labor", "劳动法"]
    split = bundle.min_split_bytes(boards) + extra
    counts = bundle.plan_parts([len(p.raw) for p in items], split, boards)
    assert sum(counts) == len(items) and len(counts) >= 1
    pos, seen = 0, []
    for number, count in enumerate(counts, start=1):
        chunk = items[pos : pos + count]
        pos += count
        data = encode(chunk, boards=boards, part=number, parts=len(counts))
        assert len(data) <= split
        events = bundle.decode_bundle(data)
        assert events[0].part == number and events[0].parts == len(counts)
        seen.extend(records(events))
    assert seen == [p.raw for p in items]


def test_split_size_limits():
    least = bundle.min_split_bytes([])
    assert least == bundle.part_overhead([]) + bundle.FRAME_OVERHEAD + limits.MAX_POST_BYTES
    with pytest.raises(LocalProtocolError):
        bundle.plan_parts([100], least - 1, [])
    assert bundle.plan_parts([], least, []) == [0]
    assert bundle.plan_parts([100] * 3, None, []) == [3]
    with pytest.raises(LocalProtocolError):
        bundle.plan_parts([limits.MAX_POST_BYTES + 1], None, [])


def test_part_tracker_any_order_and_missing_parts():
    tracker = bundle.PartTracker()
    other = bytes(16)
    for part in (4, 1, 2, 1):
        tracker.add(BID, part, 5)
    tracker.add(other, 1, 1)
    assert tracker.missing() == {BID: [3, 5]}
    (problem,) = tracker.problems()
    assert isinstance(problem, BundlePartsError) and problem.code == "bundle_parts"
    assert "missing parts 3, 5 of 5" in problem.message
    tracker.add(BID, 3, 5)
    tracker.add(BID, 5, 5)
    assert tracker.missing() == {} and tracker.problems() == []
    tracker.add(BID, 2, 6)
    assert "disagree" in tracker.problems()[0].message


def test_error_codes_are_documented_in_the_bundle_spec():
    text = DOC.read_text(encoding="utf-8")
    for code in ("bundle_format", "bundle_truncated", "bundle_damaged", "bundle_mismatch", "bundle_parts"):
        assert f"`{code}`" in text, code


# --- work stays linear in the size of the file ----------------------------------------------


def _bomb(kind: bytes, length: int, count: int) -> bytes:
    start = bundle.BundleEncoder(bundle_id=BID, created_at_ms=0, post_count=0).start()
    return start + (bundle.FRAME_MARKER + kind + length.to_bytes(4, "big")) * count


def _checksummed_bytes(monkeypatch, data: bytes, chunk: int | None = None) -> tuple[int, list]:
    total = 0
    real = bundle.crc32

    def counting(view):
        nonlocal total
        total += len(view)
        return real(view)

    monkeypatch.setattr(bundle, "crc32", counting)
    if chunk is None:
        events = bundle.decode_bundle(data)
    else:
        decoder = bundle.BundleDecoder()
        events = []
        for i in range(0, len(data), chunk):
            decoder.receive_data(data[i : i + chunk])
            events.extend(decoder.events())
        decoder.receive_data(b"")
        events.extend(decoder.events())
    monkeypatch.setattr(bundle, "crc32", real)
    return total, events


@pytest.mark.parametrize("kind, length", [(b"H", limits.MAX_BUNDLE_HEADER_BYTES), (b"P", limits.MAX_POST_BYTES),
                                          (b"T", bundle.MAX_TRAILER_BYTES)])
def test_resynchronizing_checksums_each_byte_a_bounded_number_of_times(monkeypatch, kind, length):
    # Frame heads 9 bytes apart, each claiming the largest length and failing its checksum:
    # the old reader checksummed `length` bytes for every 9 bytes of file.
    data = _bomb(kind, length, 60_000)
    work, events = _checksummed_bytes(monkeypatch, data)
    assert work <= (limits.BUNDLE_RESYNC_OVERLAP + 1) * len(data) + limits.MAX_BUNDLE_HEADER_BYTES
    assert [e.code for e in events if isinstance(e, Damaged)][:1] == ["bundle_damaged"]
    assert isinstance(events[-1], End) and not events[-1].complete


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65536])
def test_bounded_resynchronizing_reads_the_same_in_any_chunks(monkeypatch, chunk):
    good = encode(POOL[:4])
    junk = (bundle.FRAME_MARKER + b"P" + limits.MAX_POST_BYTES.to_bytes(4, "big")) * 3000
    spans = frame_spans(good)
    cut = spans[1][0]  # between the first and the second record
    data = good[:cut] + junk + good[cut:]
    _, whole = _checksummed_bytes(monkeypatch, data)
    work, chunked = _checksummed_bytes(monkeypatch, data, chunk)
    assert chunked == whole
    assert {e.raw for e in whole if isinstance(e, PostRecord)} == {p.raw for p in POOL[:4]}
    assert work <= (limits.BUNDLE_RESYNC_OVERLAP + 1) * len(data) + limits.MAX_BUNDLE_HEADER_BYTES


def test_records_are_not_checked_against_the_header_boards():
    # docs/bundles.md, "Reading": the header's boards say what the writer selected; a valid
    # post of another board is still delivered (the reader keeps it by the boards it carries).
    others = [p for p in POOL if p.board == "劳动法"]
    events = bundle.decode_bundle(encode(others, boards=["labor"]))
    assert records(events) == [p.raw for p in others] and not damages(events)
    assert events[-1].complete

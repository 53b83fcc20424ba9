"""Proof of work (protocol/work.py, the 8th item of posts.py; docs/protocol.md, "Proof of work").

* the work item's shape, its canonical form and its place in the order of checks;
* ``bad_work`` exactly when the id has fewer leading zero bits than the committed target;
* posts without work keep their 7-item bytes and ids;
* ``mine`` is pure, deterministic and bounded;
* the committed target, not the id's luck, is what a node's requirement is compared with.
"""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import bundle, limits, messages, posts, trust, wire, work
from dazibao.protocol.errors import (
    BodyError,
    FieldError,
    LocalProtocolError,
    NonCanonicalError,
    SignatureError,
    WorkError,
)
from dazibao.protocol.identity import SigningKey
from tests import factories
from tests.protocol.test_docs import DOC, code_blocks, labelled, leading_hex, section

KEY = SigningKey(bytes([1]) * 32)
T0 = factories.T0_MS
NOW = 1_700_003_600
SETTINGS = dict(deadline=None, database=None)


def unsigned7(body: str = "hello", created_at_ms: int = T0, kind: str = "post", parent: bytes | None = None) -> list:
    return [1, kind, "general", KEY.public_key, created_at_ms, parent, body]


def with_work(unsigned: list, target: int, nonce: bytes, key: SigningKey = KEY) -> bytes:
    return factories.signed([*unsigned, [target, nonce]], key)


def sign_bytes(unsigned_bytes: bytes, key: SigningKey = KEY) -> bytes:
    """A signed post around unsigned bytes as given (canonical or not), signed over their hash."""
    signature = key.sign(posts.POST_SIGNATURE_TAG + hashlib.sha256(unsigned_bytes).digest())
    return b"\x92" + unsigned_bytes + b"\xc4\x40" + signature


def first_nonce(unsigned: list, target: int, *, meets: bool) -> bytes:
    for n in range(1 << 20):
        nonce = n.to_bytes(8, "big")
        pid = hashlib.sha256(wire.pack([*unsigned, [target, nonce]])).digest()
        if work.meets(pid, target) == meets:
            return nonce
    raise AssertionError("no nonce")


# --- leading zero bits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "bits"),
    [(b"\x80" + bytes(31), 0), (b"\x40" + bytes(31), 1), (b"\x01" + bytes(31), 7), (b"\x00\x80" + bytes(30), 8),
     (b"\x00\x00\x01" + bytes(29), 23), (bytes(31) + b"\x01", 255), (bytes(32), 256), (b"\xff" * 32, 0)],
)
def test_leading_zero_bits(digest, bits):
    assert work.leading_zero_bits(digest) == bits
    assert work.meets(digest, bits)
    if bits < 256:
        assert not work.meets(digest, bits + 1)


@settings(max_examples=factories.examples(300), **SETTINGS)
@given(digest=st.binary(min_size=32, max_size=32), target=st.integers(0, 256))
def test_meets_agrees_with_leading_zero_bits(digest, target):
    # Written out independently: the bit string of the digest begins with `target` zeros.
    bitstring = "".join(f"{byte:08b}" for byte in digest)
    assert work.meets(digest, target) == (bitstring[:target] == "0" * target)
    assert work.leading_zero_bits(digest) == len(bitstring) - len(bitstring.lstrip("0"))


# --- mine -----------------------------------------------------------------------------------


def test_mine_finds_the_first_nonce_counting_from_zero():
    unsigned = unsigned7()
    nonce = work.mine(unsigned, 10)
    assert nonce == first_nonce(unsigned, 10, meets=True)
    n = int.from_bytes(nonce, "big")
    # Pure and deterministic: the same answer every time, and from any start up to it.
    assert work.mine(unsigned, 10) == nonce == work.mine(unsigned, 10, start=n)
    assert work.mine(unsigned, 10, start=n + 1) != nonce


def test_mine_is_bounded():
    unsigned = unsigned7()
    with pytest.raises(LocalProtocolError):
        work.mine(unsigned, 40, tries=1000)
    with pytest.raises(LocalProtocolError):
        work.mine(unsigned, 8, tries=0)
    with pytest.raises(LocalProtocolError):
        work.mine(unsigned, 8, start=-1)
    # The nonce space ends at 2^64 - 1.
    with pytest.raises(LocalProtocolError):
        work.mine(unsigned, 30, start=2**64 - 5)


@pytest.mark.parametrize("bits", [7, 41, 0, -1, True, 8.0, "8", None])
def test_mine_and_create_refuse_targets_out_of_bounds(bits):
    with pytest.raises(LocalProtocolError):
        work.mine(unsigned7(), bits)
    if bits is None:
        return  # create_post(work_bits=None) is a post without work
    with pytest.raises(LocalProtocolError):
        posts.create_post(KEY, kind="post", board="general", body="x", created_at_ms=T0, work_bits=bits)


def test_mine_needs_the_seven_item_array():
    with pytest.raises(LocalProtocolError):
        work.mine(unsigned7()[:6], 8)
    with pytest.raises(LocalProtocolError):
        work.mine([*unsigned7(), [8, bytes(8)]], 8)
    with pytest.raises(LocalProtocolError):
        work.mine([1, "post", "general", KEY.public_key, T0, None, object()], 8)


# --- posts with work ------------------------------------------------------------------------


def test_create_post_with_work():
    post = posts.create_post(KEY, kind="post", board="general", body="hello", created_at_ms=T0, work_bits=12)
    target, nonce = post.work
    assert target == 12 and len(nonce) == work.NONCE_BYTES
    assert post.raw[:3] == b"\x92\x98\x01" and post.raw[-66:-64] == b"\xc4\x40"
    value = wire.unpack(post.raw, max_bytes=limits.MAX_POST_BYTES)
    assert value[0] == [*unsigned7(), [12, nonce]]
    assert post.id == hashlib.sha256(wire.pack(value[0])).digest() == posts.claimed_id(post.raw)
    assert work.leading_zero_bits(post.id) >= 12
    assert posts.check_post(post.raw, NOW) == post
    assert posts.decode_post(post.raw).work == (12, nonce)
    assert posts.stored_work(post.raw) == (12, nonce)
    assert posts.refused_id(post.raw) == post.id


def test_posts_without_work_keep_their_seven_items_and_ids():
    post = posts.create_post(KEY, kind="post", board="general", body="hello", created_at_ms=T0)
    assert post.work is None and posts.stored_work(post.raw) is None
    assert post.raw[:3] == b"\x92\x97\x01"
    assert post.id == hashlib.sha256(wire.pack(unsigned7())).digest()
    worked = posts.create_post(KEY, kind="post", board="general", body="hello", created_at_ms=T0, work_bits=8)
    assert worked.id != post.id and worked.key != post.key


@pytest.mark.parametrize("kind,parent,body", [("reply", bytes(32), "re"), ("retract", bytes(32), ""),
                                              ("profile", None, "Ada"), ("moderation", bytes(32), "hide post spam"),
                                              ("charter", None, "\nA board.")])
def test_every_kind_may_carry_work(kind, parent, body):
    post = posts.create_post(KEY, kind=kind, board="general", body=body, created_at_ms=T0, parent=parent, work_bits=8)
    assert posts.check_post(post.raw, NOW) == post


def test_bad_work():
    unsigned = unsigned7()
    raw = with_work(unsigned, 16, first_nonce(unsigned, 16, meets=False))
    for check in (posts.decode_post, lambda r: posts.check_post(r, NOW)):
        with pytest.raises(WorkError) as info:
            check(raw)
        assert info.value.code == "bad_work"
    # Steps 1 to 8 passed: the refusal is reported under the id of these bytes.
    assert posts.refused_id(raw) == posts.claimed_id(raw)


def test_work_is_step_13_after_the_body_and_before_time_and_signature():
    # bad_body (step 12) comes first...
    unsigned = unsigned7(body=" ")
    with pytest.raises(BodyError):
        posts.check_post(with_work(unsigned, 16, first_nonce(unsigned, 16, meets=False)), NOW)
    # ...then bad_work (13), before future (14) and bad_signature (15).
    unsigned = unsigned7(created_at_ms=NOW * 1000 + 10**9)
    raw = with_work(unsigned, 16, first_nonce(unsigned, 16, meets=False))
    with pytest.raises(WorkError):
        posts.check_post(raw, NOW)
    unsigned = unsigned7()
    raw = wire.pack([[*unsigned, [16, first_nonce(unsigned, 16, meets=False)]], bytes(64)])
    with pytest.raises(WorkError):
        posts.check_post(raw, NOW)
    good = wire.pack([[*unsigned, [16, first_nonce(unsigned, 16, meets=True)]], bytes(64)])
    with pytest.raises(SignatureError):
        posts.check_post(good, NOW)


@pytest.mark.parametrize(
    "item",
    [None, [], [16], [16, bytes(8), 0], [7, bytes(8)], [41, bytes(8)], [True, bytes(8)], [-1, bytes(8)],
     ["16", bytes(8)], [16, bytes(7)], [16, bytes(9)], [16, "00000000"], [16, None], {"target": 16}, 16, b""],
)
def test_work_items_of_the_wrong_shape_are_bad_field(item):
    raw = factories.signed([*unsigned7(), item], KEY)
    with pytest.raises(FieldError):
        posts.decode_post(raw)


def test_nine_items_and_float_targets_are_bad_field():
    hit = first_nonce(unsigned7(), 8, meets=True)
    with pytest.raises(FieldError):
        posts.decode_post(factories.signed([*unsigned7(), [8, hit], None], KEY))
    raw = msgpack.packb([[*unsigned7(), [8.0, hit]], bytes(64)], use_bin_type=True)
    with pytest.raises(FieldError):
        posts.decode_post(raw)


def test_non_canonical_work_item():
    unsigned = unsigned7()
    nonce = first_nonce(unsigned, 16, meets=True)
    canonical = wire.pack([*unsigned, [16, nonce]])
    for old, new in [(b"\x92\x10\xc4\x08", b"\x92\xcc\x10\xc4\x08"), (b"\x92\x10\xc4\x08", b"\xdc\x00\x02\x10\xc4\x08"),
                     (b"\x10\xc4\x08" + nonce, b"\x10\xc5\x00\x08" + nonce), (b"\x98\x01", b"\xdc\x00\x08\x01")]:
        assert canonical.count(old) == 1
        with pytest.raises(NonCanonicalError):
            posts.decode_post(sign_bytes(canonical.replace(old, new)))


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=factories.examples(200), **SETTINGS)
@given(nonce=st.binary(min_size=8, max_size=8), target=st.integers(limits.MIN_POW_BITS, limits.MAX_POW_BITS),
       body=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40))
def test_id_bits_below_the_target_is_bad_work_else_accepted(nonce, target, body):
    unsigned = unsigned7(body=body)
    raw = with_work(unsigned, target, nonce)
    pid = hashlib.sha256(wire.pack([*unsigned, [target, nonce]])).digest()
    if work.leading_zero_bits(pid) < target:
        with pytest.raises(WorkError):
            posts.check_post(raw, NOW)
    else:  # pragma: no cover - about one example in 256 at the least target
        assert posts.check_post(raw, NOW).work == (target, nonce)


@settings(max_examples=factories.examples(200), **SETTINGS)
@given(committed=st.one_of(st.none(), st.integers(limits.MIN_POW_BITS, limits.MAX_POW_BITS)),
       required=st.integers(limits.MIN_POW_BITS, limits.MAX_POW_BITS), lucky_bits=st.integers(0, 256))
def test_committed_target_below_the_requirement_is_pow_required_whatever_the_id(committed, required, lucky_bits):
    # judge_stranger never sees the id: only the target the author signed.
    quota = trust.Quota(posts_per_day=10, bytes_per_day=10**6, pow_bits=required)
    verdict = trust.judge_stranger(quota, posts_today=0, bytes_today=0, size=200, work_target=committed)
    if committed is None or committed < required:
        assert verdict == "pow_required"
    else:
        assert verdict is None


def test_a_lucky_id_does_not_stand_for_a_higher_target():
    body = 0
    while True:
        post = posts.create_post(KEY, kind="post", board="general", body=f"lucky {body}", created_at_ms=T0, work_bits=8)
        if work.leading_zero_bits(post.id) >= 12:
            break
        body += 1
    view = trust.TrustView.build("general", (), (), T0)
    quota = trust.Quota(posts_per_day=10, bytes_per_day=10**6, pow_bits=12)
    assert trust.admit(view, quota, post, posts_today=0, bytes_today=0, local_author=False) == "pow_required"
    assert trust.admit(view, trust.Quota(10, 10**6, 8), post, posts_today=0, bytes_today=0, local_author=False) is None


# --- carried unchanged by batches and bundles ------------------------------------------------


def test_posts_with_work_travel_in_batches_and_bundles():
    worked = posts.create_post(KEY, kind="post", board="general", body="with work", created_at_ms=T0, work_bits=8)
    plain = posts.create_post(KEY, kind="post", board="general", body="without", created_at_ms=T0)
    raws = [worked.raw, plain.raw]
    assert list(messages.decode_posts(messages.encode_posts(raws)).posts) == raws
    data = bundle.encode_bundle(raws, bundle_id=bytes(16), created_at_ms=T0, boards=["general"])
    records = [e.raw for e in bundle.decode_bundle(data) if isinstance(e, bundle.PostRecord)]
    assert records == raws
    assert [posts.check_post(r, NOW) for r in records] == [worked, plain]


# --- the worked example of the spec ---------------------------------------------------------


def test_work_worked_example():
    text = section(DOC.read_text(encoding="utf-8"), "Proof of work")
    block = next(b for b in code_blocks(text) if "raw (" in b)
    fields = labelled(block)
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("raw ("))
    end = next(i for i, line in enumerate(lines) if line.startswith("id "))
    raw = bytes.fromhex("".join(leading_hex(line) for line in lines[start + 1 : end]))
    assert f"raw ({len(raw)} bytes)" in lines[start]
    assert f"SHA-256 of the {len(raw) - 1 - 66} bytes" in text
    made = posts.create_post(SigningKey(bytes.fromhex(fields["seed"])), kind=fields["kind"], board=fields["board"],
                             body=fields["body"], created_at_ms=int(fields["created_at"]),
                             work_bits=int(fields["work bits"]))
    assert made.raw == raw
    checked = posts.check_post(raw, made.created_at_ms / 1000)
    assert checked.id.hex() == fields["id"]
    assert work.leading_zero_bits(checked.id) == int(fields["zero bits"])
    target, nonce = checked.work
    assert f"is {int.from_bytes(nonce, 'big'):,}".replace(",", " ") in text and f"(`{nonce.hex()}`)" in text
    # The same post without work is the Posts worked example, id unchanged.
    plain = posts.create_post(SigningKey(bytes.fromhex(fields["seed"])), kind="post", board="general",
                              body="hello, wall", created_at_ms=1_700_000_000_000)
    assert plain.id.hex() == "edc0d09876966b3a7da480f4bb6664b54c8e014ff7fbfd63ec129b6a9c6d8c1d"

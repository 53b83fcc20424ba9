"""Hypothesis properties of the protocol core.

* what create_post makes, decode_post gives back exactly, and its bytes are canonical;
* every other encoding of the same value is refused, as is every single-bit change;
* whatever bytes or msgpack values arrive, the decoders raise only RemoteProtocolError
  subclasses (anything else escaping the protocol core is a bug, STYLE.md "Errors").

The example database is switched off so that running the suite writes nothing to the tree.
"""

from __future__ import annotations

import hashlib
import struct
import unicodedata

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dazibao.protocol import fields as field_blocks
from dazibao.protocol import identity, limits, moderation, posts, wire
from dazibao.protocol.errors import (
    BoardError,
    BodyError,
    MalformedError,
    NonCanonicalError,
    RemoteProtocolError,
)
from dazibao.protocol.identity import KdfParams, SigningKey
from tests.factories import examples

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
FAR_FUTURE_NOW = 10**10  # seconds; later than any created_at_ms the format allows, so time never refuses


def _passes(check, text: str) -> bool:
    try:
        check(text)
    except (BoardError, BodyError):
        return False
    return True


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


# --- strategies -----------------------------------------------------------------------------

CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
NAME_CHARS = st.one_of(st.characters(categories=["L", "M", "N", "P", "S"]), CJK, st.just(" "))
BOARDS = st.text(NAME_CHARS, min_size=1, max_size=64).map(_nfc).filter(lambda s: _passes(posts.check_board, s))
DISPLAY_NAMES = st.text(NAME_CHARS, min_size=1, max_size=64).map(_nfc).filter(
    lambda s: _passes(identity.check_display_name, s)
)
# Bodies may hold almost anything (format characters, private use, unassigned code points); only
# controls other than tab and newline are refused, and lone surrogates cannot be UTF-8.
BODY_CHARS = st.one_of(st.characters(exclude_categories=["Cc", "Cs"]), CJK, st.sampled_from("\n\t "))
BODIES = st.text(BODY_CHARS, min_size=1, max_size=300).filter(lambda s: _passes(posts.check_text_body, s))
SEEDS = st.binary(min_size=32, max_size=32)
IDS = st.binary(min_size=32, max_size=32)
TIMES = st.integers(min_value=0, max_value=10**13 - 1)


REASONS = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)


def _charter_ok(body: str) -> bool:
    try:
        posts.parse_charter_body(body)
    except BodyError:
        return False
    return True


@st.composite
def statement_bodies(draw, created_at_ms: int) -> str:
    action = draw(st.sampled_from(moderation.ACTIONS))
    subject = "author" if action == "vouch" else draw(st.sampled_from(moderation.SUBJECTS))
    expires = None
    if created_at_ms < 10**13 - 1 and draw(st.booleans()):
        expires = draw(st.integers(created_at_ms + 1, 10**13 - 1))
    return moderation.statement_body(action, subject, draw(REASONS), expires)


CHARTER_BODIES = st.builds(
    moderation.charter_body,
    st.lists(st.binary(min_size=32, max_size=32), max_size=limits.MAX_CHARTER_MODERATORS, unique=True),
    st.one_of(st.just(""), BODIES),
).filter(_charter_ok)


FIELD_VALUES = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40).map(
    str.strip).filter(bool)
# A text after a field block does not begin with a line feed (one empty line parts them).
TEXTS = BODIES.filter(lambda t: not t.startswith("\n"))
# One valid body of each collective-action kind (docs/protocol.md, "Collective action").
ACTION_BODIES = {
    posts.KIND_REPORT: st.builds(lambda c, p, t: field_blocks.field_block({"company": c, "practice": p}, t),
                                 FIELD_VALUES, st.sampled_from(field_blocks.PRACTICES), st.one_of(st.just(""), TEXTS)),
    posts.KIND_CORROBORATION: st.one_of(st.just(""), BODIES),
    posts.KIND_LETTER: st.builds(lambda t, b: field_blocks.field_block({"title": t}, b), FIELD_VALUES, TEXTS),
    posts.KIND_SIGNATURE: st.one_of(st.just(""), FIELD_VALUES),
    posts.KIND_PLEDGE: st.builds(lambda a, n: field_blocks.field_block({"action": a, "date": "2027-05-01",
                                                                   "threshold": str(n)}),
                                 FIELD_VALUES, st.integers(1, limits.MAX_PLEDGE_THRESHOLD)),
    posts.KIND_PIN: st.just(""),
    posts.KIND_TRANSLATION: st.builds(lambda b: field_blocks.field_block({"lang": "zh-Hans"}, b), TEXTS),
}
_WITH_PARENT = (posts.KIND_REPLY, posts.KIND_RETRACT, posts.KIND_MODERATION, posts.KIND_CORROBORATION,
                posts.KIND_SIGNATURE, posts.KIND_PIN, posts.KIND_TRANSLATION)


@st.composite
def post_fields(draw) -> dict:
    kind = draw(st.sampled_from(posts.KINDS))
    parent = draw(IDS) if kind in _WITH_PARENT else None
    created_at_ms = draw(TIMES)
    if kind == posts.KIND_RETRACT:
        body = ""
    elif kind == posts.KIND_PROFILE:
        body = draw(DISPLAY_NAMES)
    elif kind == posts.KIND_MODERATION:
        body = draw(statement_bodies(created_at_ms))
    elif kind == posts.KIND_CHARTER:
        body = draw(CHARTER_BODIES)
    elif kind in ACTION_BODIES:
        body = draw(ACTION_BODIES[kind])
    else:
        body = draw(BODIES)
    return dict(kind=kind, board=draw(BOARDS), body=body, created_at_ms=created_at_ms, parent=parent)


@st.composite
def created_posts(draw) -> posts.Post:
    return posts.create_post(SigningKey(draw(SEEDS)), **draw(post_fields()))


# --- round trip and canonical form ----------------------------------------------------------


@settings(max_examples=examples(300), **SETTINGS)
@given(seed=SEEDS, fields=post_fields())
def test_create_then_decode_round_trip(seed, fields):
    key = SigningKey(seed)
    post = posts.create_post(key, **fields)
    decoded = posts.check_post(post.raw, FAR_FUTURE_NOW)
    assert decoded == post
    assert (decoded.kind, decoded.board, decoded.body, decoded.created_at_ms, decoded.parent) == (
        fields["kind"], fields["board"], fields["body"], fields["created_at_ms"], fields["parent"]
    )
    assert decoded.author == key.public_key
    assert decoded.id == hashlib.sha256(wire.pack([1, fields["kind"], fields["board"], key.public_key,
                                                   fields["created_at_ms"], fields["parent"], fields["body"]])).digest()


@settings(max_examples=examples(50), **SETTINGS)
@given(board=st.text(CJK, min_size=1, max_size=64), body=st.text(CJK, min_size=1, max_size=2000))
def test_cjk_round_trip(board, body):
    post = posts.create_post(SigningKey(bytes(32)), kind="post", board=board, body=body, created_at_ms=0)
    decoded = posts.decode_post(post.raw)
    assert decoded.board == board and decoded.body == body


@settings(max_examples=examples(300), **SETTINGS)
@given(post=created_posts())
def test_created_posts_are_canonical(post):
    value = wire.unpack(post.raw, max_bytes=limits.MAX_POST_BYTES)
    assert wire.pack(value) == post.raw
    assert wire.unpack_canonical(post.raw, max_bytes=limits.MAX_POST_BYTES) == value


# A msgpack encoder that may pick a longer-than-needed form for each item.  The first form in
# each list is the shortest, which is what wire.pack writes.


def _int_forms(n: int) -> list[bytes]:
    forms = []
    if 0 <= n <= 0x7F:
        forms.append(bytes([n]))
    if -32 <= n < 0:
        forms.append(struct.pack(">b", n))
    for lo, hi, fmt, tag in [(0, 2**8 - 1, ">B", 0xCC), (0, 2**16 - 1, ">H", 0xCD), (0, 2**32 - 1, ">I", 0xCE),
                             (0, 2**64 - 1, ">Q", 0xCF), (-(2**7), 2**7 - 1, ">b", 0xD0), (-(2**15), 2**15 - 1, ">h", 0xD1),
                             (-(2**31), 2**31 - 1, ">i", 0xD2), (-(2**63), 2**63 - 1, ">q", 0xD3)]:
        if lo <= n <= hi:
            forms.append(bytes([tag]) + struct.pack(fmt, n))
    return forms


def _len_forms(n: int, fix: tuple[int, int] | None, tags: list[tuple[int, str]]) -> list[bytes]:
    forms = []
    if fix is not None and n <= fix[1]:
        forms.append(bytes([fix[0] | n]))
    for tag, fmt in tags:
        if n < 2 ** (8 * struct.calcsize(fmt)):
            forms.append(bytes([tag]) + struct.pack(fmt, n))
    return forms


def loose_encode(value, choose) -> tuple[bytes, bool]:
    """Encode ``value`` with ``choose(forms)`` picking each header; also say if any was long."""
    longer = False

    def pick(forms: list[bytes]) -> bytes:
        nonlocal longer
        i = choose(len(forms))
        longer |= i != 0
        return forms[i]

    def enc(v) -> bytes:
        if v is None:
            return b"\xc0"
        if v is True or v is False:
            return b"\xc3" if v else b"\xc2"
        if type(v) is int:
            return pick(_int_forms(v))
        if type(v) is str:
            data = v.encode("utf-8")
            return pick(_len_forms(len(data), (0xA0, 31), [(0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I")])) + data
        if type(v) is bytes:
            return pick(_len_forms(len(v), None, [(0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I")])) + v
        if type(v) is list:
            return pick(_len_forms(len(v), (0x90, 15), [(0xDC, ">H"), (0xDD, ">I")])) + b"".join(enc(x) for x in v)
        raise TypeError(type(v))

    return enc(value), longer


@settings(max_examples=examples(300), **SETTINGS)
@given(post=created_posts(), data=st.data())
def test_every_longer_encoding_is_refused(post, data):
    value = wire.unpack(post.raw, max_bytes=limits.MAX_POST_BYTES)
    encoded, longer = loose_encode(value, lambda n: data.draw(st.integers(0, n - 1)))
    # The loose encoder is a faithful msgpack encoder: the library reads back the same value.
    assert msgpack.unpackb(encoded, raw=False) == value
    if longer:
        assert encoded != post.raw
        try:
            posts.decode_post(encoded)
        except NonCanonicalError:
            pass
        else:
            raise AssertionError("a non-shortest encoding was accepted")
    else:
        assert encoded == post.raw
        assert posts.decode_post(encoded) == post


# --- bit flips ------------------------------------------------------------------------------


def _must_refuse(raw: bytes) -> None:
    try:
        posts.check_post(raw, FAR_FUTURE_NOW)
    except RemoteProtocolError:
        return
    raise AssertionError(f"accepted a modified post: {raw.hex()}")


@settings(max_examples=examples(500), **SETTINGS)
@given(post=created_posts(), data=st.data())
def test_any_bit_flip_is_refused(post, data):
    index = data.draw(st.integers(0, len(post.raw) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(post.raw)
    damaged[index] ^= 1 << bit
    _must_refuse(bytes(damaged))


def test_every_bit_flip_of_one_post_is_refused():
    # Exhaustive for one post of each kind, so no byte position is left to chance.
    key = SigningKey(bytes([9]) * 32)
    parent = hashlib.sha256(b"parent").digest()
    for fields in [dict(kind="post", body="工人们，集合"), dict(kind="reply", body="ok", parent=parent),
                   dict(kind="retract", body="", parent=parent), dict(kind="profile", body="夜猫子")]:
        post = posts.create_post(key, board="大字报", created_at_ms=1_700_000_000_000, **fields)
        for index in range(len(post.raw)):
            for bit in range(8):
                damaged = bytearray(post.raw)
                damaged[index] ^= 1 << bit
                _must_refuse(bytes(damaged))


# --- hostile input --------------------------------------------------------------------------

_SAMPLE_KEY = SigningKey(bytes([5]) * 32)
_SAMPLE_POSTS = [
    posts.create_post(_SAMPLE_KEY, kind="post", board="general", body="hello", created_at_ms=1_700_000_000_000).raw,
    posts.create_post(_SAMPLE_KEY, kind="reply", board="大字报", body="收到", created_at_ms=5, parent=bytes(32)).raw,
    # The objects of the moderation revision: work, a statement, a charter, a kind of a later revision.
    posts.create_post(_SAMPLE_KEY, kind="post", board="general", body="work", created_at_ms=7, work_bits=8).raw,
    posts.create_post(_SAMPLE_KEY, kind="moderation", board="general", body="block author spam 9", created_at_ms=8,
                      parent=bytes(32)).raw,
    posts.create_post(_SAMPLE_KEY, kind="charter", board="general", body=f"moderator {'ab' * 32}\n\nHi.",
                      created_at_ms=9).raw,
    wire.pack([[1, "poll", "general", _SAMPLE_KEY.public_key, 10, None, "A or B?"], bytes(64)]),
]
_SAMPLE_KEY_FILE = identity.seal_key_file(
    _SAMPLE_KEY, "sample", "pass", lambda n: bytes(range(n)), KdfParams(memory_kib=8192, iterations=1, lanes=1)
)


@st.composite
def mutated(draw, pool: list[bytes]) -> bytes:
    """A valid message with a few random edits: random bytes alone rarely get past byte one."""
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "flip", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[i : i + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[i:]
    return bytes(data)


HOSTILE_BYTES = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=64).map(lambda b: b"\x92\x97\x01" + b),
    st.binary(max_size=64).map(lambda b: b"\x92\x98\x01" + b),
    st.binary(max_size=200).map(lambda b: b"DZBK\x01\x01" + b),
    mutated(_SAMPLE_POSTS),
    mutated([_SAMPLE_KEY_FILE]),
)


def _only_remote_errors(fn, data) -> None:
    try:
        fn(data)
    except RemoteProtocolError:
        pass


# Already heavy in the dev profile (about 15 s): not scaled, to keep the ci run in budget.
@settings(max_examples=10_000, **SETTINGS)
@given(data=HOSTILE_BYTES)
def test_random_bytes_raise_only_remote_protocol_errors(data):
    # Any other exception propagates and fails the test, which is the point.
    _only_remote_errors(posts.decode_post, data)
    _only_remote_errors(lambda d: posts.check_post(d, FAR_FUTURE_NOW), data)
    _only_remote_errors(lambda d: wire.unpack_canonical(d, max_bytes=1 << 20), data)
    _only_remote_errors(identity.read_key_file_header, data)


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=80),
)
MSGPACK_VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=8),
        st.dictionaries(st.one_of(st.text(max_size=8), st.binary(max_size=8), st.integers(-5, 5)), children, max_size=5),
    ),
    max_leaves=40,
)


@st.composite
def post_shaped(draw):
    """A post whose every slot is either the right type or an arbitrary value."""
    def slot(good):
        return draw(st.one_of(good, MSGPACK_VALUES))

    unsigned = [
        slot(st.just(1)), slot(st.sampled_from(posts.KINDS + ("edit",))), slot(st.text(max_size=20)),
        slot(st.binary(min_size=32, max_size=32)), slot(TIMES), slot(st.one_of(st.none(), IDS)), slot(st.text(max_size=20)),
    ]
    unsigned = unsigned[: draw(st.integers(0, 8))] if draw(st.booleans()) else unsigned
    return [unsigned, slot(st.binary(min_size=64, max_size=64))]


# Already heavy in the dev profile (about 15 s): not scaled, to keep the ci run in budget.
@settings(max_examples=1_000, **SETTINGS)
@given(value=st.one_of(MSGPACK_VALUES, post_shaped()))
def test_random_msgpack_values_raise_only_remote_protocol_errors(value):
    data = msgpack.packb(value, use_bin_type=True, strict_types=False)
    _only_remote_errors(posts.decode_post, data)
    _only_remote_errors(lambda d: posts.check_post(d, FAR_FUTURE_NOW), data)
    _only_remote_errors(lambda d: wire.unpack_canonical(d, max_bytes=1 << 20), data)


@settings(max_examples=examples(30), **SETTINGS)
@given(depth=st.integers(min_value=2_000, max_value=100_000), layer=st.sampled_from([b"\x91", b"\x81\xa1k", b"\x92\xc0"]))
def test_deep_nesting_raises_only_malformed(depth, layer):
    data = layer * depth + b"\xc0"
    for fn in (lambda d: wire.unpack(d, max_bytes=len(d)), lambda d: wire.unpack_canonical(d, max_bytes=len(d))):
        try:
            fn(data)
        except MalformedError:
            continue
        raise AssertionError("deep nesting was accepted")
    post_sized = (layer * depth)[: limits.MAX_POST_BYTES - 1] + b"\xc0"
    try:
        posts.decode_post(post_sized)
    except MalformedError:
        return
    raise AssertionError("deep nesting in a post was accepted")


def test_one_hundred_thousand_nested_arrays():
    data = b"\x91" * 100_000 + b"\xc0"
    try:
        wire.unpack(data, max_bytes=len(data))
    except MalformedError as err:
        assert err.code == "malformed"
    else:
        raise AssertionError("accepted")

"""Unit tests of every rule in protocol/posts.py and protocol/wire.py.

Rules are tested from both ends: ``create_post`` must refuse what a receiver would refuse (so a
member never signs a post other nodes drop), and ``decode_post`` / ``check_post`` must refuse
the same thing arriving as correctly signed bytes (so a hostile sender gains nothing by skipping
our encoder).
"""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import pytest

from dazibao.protocol import errors, limits, posts, wire
from dazibao.protocol.errors import (
    BoardError,
    BodyError,
    FieldError,
    FutureError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    RemoteProtocolError,
    RetractionError,
    SignatureError,
    TooLargeError,
    UnknownKindError,
    VersionError,
)
from dazibao.protocol.identity import SigningKey, check_display_name, verify
from tests import factories

KEY_A = SigningKey(bytes([1]) * 32)
KEY_B = SigningKey(bytes([2]) * 32)
T0 = factories.T0_MS
NOW = 1_700_003_600  # s, an hour after T0
PARENT = hashlib.sha256(b"some earlier post").digest()


def make(kind="post", board="general", body="hello", created_at_ms=T0, parent=None, key=KEY_A) -> posts.Post:
    return factories.make_post(key, kind=kind, board=board, body=body, created_at_ms=created_at_ms, parent=parent)


def signed(unsigned: list, key: SigningKey = KEY_A) -> bytes:
    return factories.signed(unsigned, key)


def fields(kind="post", board="general", body="hello", created_at_ms=T0, parent=None, author=None, version=1) -> list:
    return [version, kind, board, KEY_A.public_key if author is None else author, created_at_ms, parent, body]


def refused_both_ways(error: type[RemoteProtocolError], **kw) -> None:
    """create_post raises ``error``, and the same fields, signed by hand, fail decode and check."""
    with pytest.raises(error):
        make(**kw)
    raw = signed(fields(**kw))
    with pytest.raises(error):
        posts.decode_post(raw)
    with pytest.raises(error):
        posts.check_post(raw, NOW)


def accepted_both_ways(**kw) -> posts.Post:
    post = make(**kw)
    assert posts.check_post(post.raw, NOW) == post
    assert posts.check_post(signed(fields(**kw)), NOW) == post
    return post


# --- the signed record ----------------------------------------------------------------------


def test_post_structure_id_and_signature():
    post = make()
    unsigned = [1, "post", "general", KEY_A.public_key, T0, None, "hello"]
    assert wire.unpack(post.raw, max_bytes=limits.MAX_POST_BYTES) == [unsigned, post.signature]
    assert post.id == hashlib.sha256(wire.pack(unsigned)).digest() == posts.post_id(wire.pack(unsigned))
    assert len(post.id) == posts.ID_BYTES == 32
    # The signature covers the domain tag plus the id, not the id alone.
    verify(KEY_A.public_key, b"dazibao/v1/post\x00" + post.id, post.signature)
    with pytest.raises(SignatureError):
        verify(KEY_A.public_key, post.id, post.signature)
    assert posts.decode_post(post.raw) == post


def test_post_is_deterministic():
    assert make().raw == make().raw
    assert make().raw != make(body="hello!").raw


def test_every_field_is_covered_by_the_id():
    base = make()
    for change in [dict(kind="profile", body="Name"), dict(board="generaL"), dict(body="hellO"),
                   dict(created_at_ms=T0 + 1), dict(key=KEY_B)]:
        assert make(**change).id != base.id


def test_verify_post_and_tampered_signature():
    post = make()
    posts.verify_post(post)
    bad = dataclasses.replace(post, signature=post.signature[:-1] + bytes([post.signature[-1] ^ 1]))
    with pytest.raises(SignatureError):
        posts.verify_post(bad)
    with pytest.raises(SignatureError):
        posts.verify_post(dataclasses.replace(post, author=KEY_B.public_key))


def test_signature_by_another_key_is_refused():
    unsigned = fields()
    pid = hashlib.sha256(wire.pack(unsigned)).digest()
    raw = wire.pack([unsigned, KEY_B.sign(posts.POST_SIGNATURE_TAG + pid)])
    posts.decode_post(raw)  # well-formed: the signature is only looked at by check_post
    with pytest.raises(SignatureError):
        posts.check_post(raw, NOW)


# --- kinds and their parent / body rules -----------------------------------------------------


def test_kinds():
    assert posts.KINDS == ("post", "reply", "retract", "profile", "moderation", "charter", *posts.ACTION_KINDS)
    assert posts.ACTION_KINDS == ("report", "corroboration", "letter", "signature", "pledge", "pin", "translation")


def test_post_kind():
    accepted_both_ways(kind="post", body="text")
    refused_both_ways(FieldError, kind="post", body="text", parent=PARENT)


def test_reply_kind():
    assert accepted_both_ways(kind="reply", body="text", parent=PARENT).parent == PARENT
    refused_both_ways(FieldError, kind="reply", body="text", parent=None)
    refused_both_ways(BodyError, kind="reply", body="", parent=PARENT)


def test_retract_kind():
    assert accepted_both_ways(kind="retract", body="", parent=PARENT).body == ""
    refused_both_ways(FieldError, kind="retract", body="", parent=None)
    refused_both_ways(BodyError, kind="retract", body="sorry", parent=PARENT)
    refused_both_ways(BodyError, kind="retract", body=" ", parent=PARENT)


def test_profile_kind():
    assert accepted_both_ways(kind="profile", body="Night Owl").body == "Night Owl"
    refused_both_ways(FieldError, kind="profile", body="Night Owl", parent=PARENT)
    refused_both_ways(BodyError, kind="profile", body="")
    refused_both_ways(BodyError, kind="profile", body="x" * 65)
    refused_both_ways(BodyError, kind="profile", body="Night\nOwl")  # a text body is not a name


@pytest.mark.parametrize("kind", ["", "POST", "Post", "post ", "profile\x00", "e-dit", "_edit", "x" * 33])
def test_unknown_kinds(kind):
    # Not a kind name ([a-z][a-z0-9_]{0,31}): refused as before (tests/protocol/test_forward_compat.py
    # has the kinds of later revisions, which are carried).
    refused_both_ways(UnknownKindError, kind=kind)


@pytest.mark.parametrize("kind", ["edit", "delete", "poll"])
def test_kinds_of_later_revisions_are_carried_but_never_created(kind):
    with pytest.raises(UnknownKindError):
        make(kind=kind)
    raw = signed(fields(kind=kind))
    assert posts.check_post(raw, NOW).kind == kind
    assert not posts.is_known_kind(kind)


def test_unknown_kind_is_refused_before_its_other_fields():
    # A future kind may have other parent/body rules; we must say "unknown kind", not "bad body".
    refused_both_ways(UnknownKindError, kind="Poll", body="", parent=PARENT)
    refused_both_ways(UnknownKindError, kind="Poll", board="", body="")


def test_create_post_local_errors():
    for created_at_ms in [-1, 10**13, True, 1.5, "0", None]:
        with pytest.raises(LocalProtocolError):
            make(created_at_ms=created_at_ms)
    for parent in [b"", bytes(31), bytes(33), "00" * 32, bytearray(32)]:
        with pytest.raises(LocalProtocolError):
            make(kind="reply", parent=parent)
    make(created_at_ms=0)
    make(created_at_ms=10**13 - 1)


# --- board names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "board",
    [
        "general", "a", "x" * 64, "two words", "Ünïcödé", "大字报", "字" * 64, "工会 通知", "rue-de-la-paix_2",
        "\U0001f4e2 news",  # an emoji (So) is a visible character
        "\U0001f4e2" * 48,  # 48 four-byte characters = 192 bytes, the byte limit exactly
        "العربية", "עברית",  # right-to-left scripts are fine; only the override characters are not
    ],
)
def test_board_names_accepted(board):
    assert posts.check_board(board) == board
    accepted_both_ways(board=board)


@pytest.mark.parametrize(
    ("board", "why"),
    [
        ("", "empty"),
        ("x" * 65, "65 code points"),
        ("字" * 65, "65 code points"),
        ("\U0001f4e2" * 49, "196 UTF-8 bytes"),
        ("cafe\u0301", "not NFC"),
        ("\u212b", "not NFC: ANGSTROM SIGN normalizes to U+00C5"),
        (" general", "leading space"),
        ("general ", "trailing space"),
        ("\tgeneral", "leading tab"),
        ("gen\neral", "newline (Cc)"),
        ("gen\x00eral", "NUL (Cc)"),
        ("gen\x7feral", "DEL (Cc)"),
        ("gen\x85eral", "NEL (Cc)"),
        ("gen\x1beral", "ESC (Cc)"),
        ("\u202elareneg", "RIGHT-TO-LEFT OVERRIDE"),
        ("gen\u202deral", "LEFT-TO-RIGHT OVERRIDE"),
        ("gen\u202aeral", "LEFT-TO-RIGHT EMBEDDING"),
        ("gen\u2066eral", "LEFT-TO-RIGHT ISOLATE"),
        ("gen\u2067eral", "RIGHT-TO-LEFT ISOLATE"),
        ("gen\u200feral", "RIGHT-TO-LEFT MARK"),
        ("gen\u200beral", "ZERO WIDTH SPACE"),
        ("gen\u200ceral", "ZERO WIDTH NON-JOINER"),
        ("gen\u200deral", "ZERO WIDTH JOINER"),
        ("gen\u2060eral", "WORD JOINER"),
        ("\ufeffgeneral", "BYTE ORDER MARK / ZERO WIDTH NO-BREAK SPACE"),
        ("gen\u00aderal", "SOFT HYPHEN (Cf)"),
        ("two\u00a0words", "NO-BREAK SPACE"),
        ("two\u3000words", "IDEOGRAPHIC SPACE"),
        ("two\u2002words", "EN SPACE"),
        ("two\u202fwords", "NARROW NO-BREAK SPACE"),
        ("two\u1680words", "OGHAM SPACE MARK"),
        ("two\u2028words", "LINE SEPARATOR"),
        ("two\u2029words", "PARAGRAPH SEPARATOR"),
        ("gen\ue000eral", "private use"),
        ("gen\udc80eral", "lone surrogate"),
    ],
)
def test_board_names_refused(board, why):
    with pytest.raises(BoardError):
        posts.check_board(board)
    with pytest.raises(BoardError):
        make(board=board)
    if "surrogate" in why:
        return  # a lone surrogate cannot be encoded as UTF-8, so it cannot arrive on the wire
    refused_both_ways(BoardError, board=board)


# Characters that render as nothing are refused (the default-ignorable code points and
# U+2800), so that "general" and "general" + one of them cannot be two boards that look alike.
@pytest.mark.parametrize("invisible", ["\u3164", "\u115f", "\uffa0", "\u034f", "\ufe0f", "\u2800", "\u17b4"])
def test_invisible_non_format_characters_in_board_names(invisible):
    with pytest.raises(BoardError):
        posts.check_board("general" + invisible)


@pytest.mark.parametrize("board", [None, b"general", 1, ["general"]])
def test_board_must_be_a_string(board):
    with pytest.raises(BoardError):
        posts.check_board(board)


def test_board_byte_limit_is_separate_from_the_char_limit():
    # 64 three-byte characters are exactly 192 bytes; 63 of them plus one four-byte character
    # are 64 code points but 193 bytes.
    assert posts.check_board("字" * 64)
    board = "字" * 63 + "\U0001f4e2"
    assert len(board) == 64 and len(board.encode()) == 193
    refused_both_ways(BoardError, board=board)


def test_board_name_error_code():
    with pytest.raises(BoardError) as info:
        posts.check_board("")
    assert info.value.code == "bad_board"


# --- bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "x",
        "line one\nline two",
        "col\tcol",
        "  indented, with trailing space  ",
        "工人们：明天上午九点，老地方集合。",
        "\u202eRTL override in running text is allowed: the body is prose, not a name",
        "emoji \U0001f4e2 and zero\u200bwidth",
        "a" * limits.MAX_BODY_BYTES,
        "字" * (limits.MAX_BODY_BYTES // 3),
    ],
)
def test_bodies_accepted(body):
    assert posts.check_text_body(body) == body
    accepted_both_ways(body=body)


@pytest.mark.parametrize(
    "body",
    [
        "",
        " ",
        "\n\t \n",
        "\u3000",  # an ideographic space is still only white space
        "a" * (limits.MAX_BODY_BYTES + 1),
        "字" * (limits.MAX_BODY_BYTES // 3) + "ab",  # 16385 bytes, far fewer code points
        "carriage\rreturn",
        "nul\x00byte",
        "bell\x07",
        "esc\x1b[31m",
        "del\x7f",
        "nel\x85",
    ],
)
def test_bodies_refused(body):
    with pytest.raises(BodyError):
        posts.check_text_body(body)
    refused_both_ways(BodyError, body=body)


def test_body_with_a_lone_surrogate_is_refused():
    with pytest.raises(BodyError):
        posts.check_text_body("bad \udc80 text")
    with pytest.raises(BodyError):
        make(body="bad \udc80 text")


@pytest.mark.parametrize("body", [None, b"hello", 1])
def test_body_must_be_a_string(body):
    with pytest.raises(BodyError):
        posts.check_text_body(body)


def test_largest_post_fits_the_post_limit():
    # The biggest body on the biggest board, as a reply, must be sendable: max_post_bytes has to
    # leave room for the envelope.
    post = make(kind="reply", board="字" * 64, body="a" * limits.MAX_BODY_BYTES, parent=PARENT)
    assert len(post.raw) < limits.MAX_POST_BYTES
    assert posts.check_post(post.raw, NOW) == post


# --- display names --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Night Owl", "夜猫子", "x" * 64, "字" * 64, "Zoë", "a"])
def test_display_names_accepted(name):
    assert check_display_name(name) == name
    accepted_both_ways(kind="profile", body=name)


@pytest.mark.parametrize(
    "name",
    ["", " Owl", "Owl ", "x" * 65, "\U0001f989" * 49, "Night\nOwl", "Ni\u200bght", "\u202eOwl", "Zoe\u0308", "Owl\x00",
     "Night\u00a0Owl"],
)
def test_display_names_refused(name):
    with pytest.raises(BodyError):
        check_display_name(name)
    refused_both_ways(BodyError, kind="profile", body=name)


@pytest.mark.parametrize("name", [None, b"Owl", 7])
def test_display_name_must_be_a_string(name):
    with pytest.raises(BodyError):
        check_display_name(name)


# --- time -----------------------------------------------------------------------------------


def test_future_window_edge():
    limit_ms = NOW * 1000 + limits.MAX_FUTURE_SKEW_S * 1000
    assert limits.MAX_FUTURE_SKEW_S == 300
    at_limit = make(created_at_ms=limit_ms)
    assert posts.check_post(at_limit.raw, NOW) == at_limit
    past_limit = make(created_at_ms=limit_ms + 1)
    with pytest.raises(FutureError) as info:
        posts.check_post(past_limit.raw, NOW)
    assert info.value.code == "future"
    # One millisecond of clock later and the same bytes are fine: the rule is about `now`.
    assert posts.check_post(past_limit.raw, NOW + 0.001) == past_limit
    # decode_post does not look at time at all.
    assert posts.decode_post(past_limit.raw) == past_limit


def test_future_window_with_fractional_now():
    now = NOW + 0.25
    edge = int(now * 1000) + limits.MAX_FUTURE_SKEW_S * 1000
    assert posts.check_post(make(created_at_ms=edge).raw, now)
    with pytest.raises(FutureError):
        posts.check_post(make(created_at_ms=edge + 1).raw, now)


def test_old_posts_are_accepted():
    # There is no lower bound: archives and sneakernet bundles carry old posts.
    for created_at_ms in [0, 1, T0 - 10**12]:
        assert posts.check_post(make(created_at_ms=created_at_ms).raw, NOW)


def test_future_is_checked_before_the_signature():
    # Cheap checks first: a far-future post is refused without spending a verification on it.
    unsigned = fields(created_at_ms=NOW * 1000 + 10**9)
    raw = wire.pack([unsigned, bytes(64)])
    with pytest.raises(FutureError):
        posts.check_post(raw, NOW)


@pytest.mark.parametrize("created_at_ms", [-1, 10**13, 2**63, 2**64 - 1])
def test_time_out_of_range_is_a_field_error(created_at_ms):
    with pytest.raises(FieldError):
        posts.decode_post(signed(fields(created_at_ms=created_at_ms)))


# --- retraction -----------------------------------------------------------------------------


def test_retraction_by_the_author():
    target = make(body="I was wrong")
    retraction = make(kind="retract", body="", parent=target.id, created_at_ms=T0 + 1)
    assert posts.check_retraction(retraction, target) is None


def test_retraction_by_another_author():
    target = make(body="mine", key=KEY_A)
    retraction = make(kind="retract", body="", parent=target.id, key=KEY_B)
    posts.check_post(retraction.raw, NOW)  # well-formed on its own
    with pytest.raises(RetractionError) as info:
        posts.check_retraction(retraction, target)
    assert info.value.code == "retract_not_author"


def test_check_retraction_misuse_is_local():
    target = make(body="one")
    other = make(body="two")
    with pytest.raises(LocalProtocolError):
        posts.check_retraction(make(kind="retract", body="", parent=other.id), target)
    with pytest.raises(LocalProtocolError):
        posts.check_retraction(make(kind="reply", body="re", parent=target.id), target)


# --- CJK round trip -------------------------------------------------------------------------


def test_cjk_round_trip_exact():
    board, body, name = "大字报", "工人们：明天上午九点，老地方集合。\n请转告。", "夜猫子"
    post = make(board=board, body=body)
    decoded = posts.check_post(post.raw, NOW)
    assert (decoded.board, decoded.body) == (board, body)
    assert board.encode("utf-8") in post.raw and body.encode("utf-8") in post.raw
    profile = posts.check_post(make(kind="profile", board=board, body=name).raw, NOW)
    assert profile.body == name


# --- post keys and their order --------------------------------------------------------------


def test_post_key_layout():
    post = make(board="大字报", created_at_ms=T0)
    assert post.key == posts.post_key("大字报", T0, post.id)
    assert post.key == "大字报".encode() + b"\x00" + T0.to_bytes(8, "big") + post.id


def test_post_keys_sort_by_board_bytes_then_time_then_id():
    # Prefixes of each other, upper before lower case, 2- and 3-byte UTF-8: byte order is not
    # code-point-by-code-point string order in general, and the key must follow the bytes.
    boards = ["a", "ab", "a b", "b", "Z", "大字报", "大", "é", "ez", "\U0001f4e2"]
    times = [0, 1, 255, 256, 2**32 - 1, 2**32, T0, 10**13 - 1]
    items = []
    for board in boards:
        for t in times:
            for i in range(2):
                pid = hashlib.sha256(f"{board}{t}{i}".encode()).digest()
                items.append((board, t, pid))
    by_key = sorted(items, key=lambda x: posts.post_key(*x))
    by_tuple = sorted(items, key=lambda x: (x[0].encode("utf-8"), x[1], x[2]))
    assert by_key == by_tuple
    # In particular a board sorts before any longer board it is a prefix of, whatever the times.
    assert posts.post_key("a", 10**13 - 1, b"\xff" * 32) < posts.post_key("ab", 0, bytes(32))


# --- decode_post: shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, FieldError),
        ({"post": 1}, FieldError),
        ([], FieldError),
        ([fields()], FieldError),
        ([fields(), bytes(64), None], FieldError),
        ([[], bytes(64)], FieldError),
        ([None, bytes(64)], FieldError),
        ([["1"], bytes(64)], FieldError),
        ([[True], bytes(64)], FieldError),
        ([[2], bytes(64)], VersionError),
        ([[0], bytes(64)], VersionError),
        ([[2**64 - 1, "anything"], bytes(64)], VersionError),
        ([fields()[:6], bytes(64)], FieldError),
        ([fields() + [None], bytes(64)], FieldError),
        ([fields(kind=1), bytes(64)], FieldError),
        ([fields(kind=b"post"), bytes(64)], FieldError),
        ([fields(board=b"general"), bytes(64)], FieldError),
        ([fields(author=bytes(33)), bytes(64)], FieldError),
        ([fields(author="a" * 32), bytes(64)], FieldError),
        ([fields(created_at_ms=True), bytes(64)], FieldError),
        ([fields(created_at_ms="1"), bytes(64)], FieldError),
        ([fields(kind="reply", parent=bytes(31)), bytes(64)], FieldError),
        ([fields(kind="reply", parent="x" * 32), bytes(64)], FieldError),
        ([fields(body=b"hello"), bytes(64)], FieldError),
        ([fields(body=None), bytes(64)], FieldError),
        ([fields(), bytes(63)], FieldError),
        ([fields(), bytes(65)], FieldError),
        ([fields(), "s" * 64], FieldError),
        ([fields(), None], FieldError),
    ],
)
def test_decode_post_shape_errors(value, error):
    with pytest.raises(error):
        posts.decode_post(wire.pack(value))


def test_decode_post_rejects_non_bytes():
    for data in [None, "text", 12, [1, 2]]:
        with pytest.raises(MalformedError):
            posts.decode_post(data)


def test_decode_post_accepts_bytes_like():
    post = make()
    assert posts.decode_post(bytearray(post.raw)) == post
    assert posts.decode_post(memoryview(post.raw)) == post
    assert type(posts.decode_post(memoryview(post.raw)).raw) is bytes


def test_decode_post_size_limit():
    with pytest.raises(TooLargeError) as info:
        posts.decode_post(bytes(limits.MAX_POST_BYTES + 1))
    assert info.value.code == "too_large"
    # At the limit the size check passes and the content is judged on its own.
    with pytest.raises(MalformedError):
        posts.decode_post(bytes(limits.MAX_POST_BYTES))


def test_decode_post_truncated_and_trailing():
    raw = make().raw
    for cut in range(len(raw)):
        with pytest.raises(MalformedError):
            posts.decode_post(raw[:cut])
    for extra in [b"\x00", b"\xc0", raw]:
        with pytest.raises(MalformedError):
            posts.decode_post(raw + extra)


def test_decode_post_non_canonical_forms():
    post = make(board="general", body="hello", created_at_ms=300)
    raw = post.raw
    variants = {
        "version as uint8": raw.replace(b"\x97\x01", b"\x97\xcc\x01", 1),
        "version as uint64": raw.replace(b"\x97\x01", b"\x97\xcf" + (1).to_bytes(8, "big"), 1),
        "time as uint32": raw.replace(b"\xcd\x01\x2c", b"\xce\x00\x00\x01\x2c", 1),
        "board as str8": raw.replace(b"\xa7general", b"\xd9\x07general", 1),
        "board as str16": raw.replace(b"\xa7general", b"\xda\x00\x07general", 1),
        "author as bin16": raw.replace(b"\xc4\x20", b"\xc5\x00\x20", 1),
        "inner array as array16": raw.replace(b"\x97\x01", b"\xdc\x00\x07\x01", 1),
        "outer array as array16": b"\xdc\x00\x02" + raw[1:],
        "signature as bin16": raw[:-66] + b"\xc5\x00\x40" + raw[-64:],
    }
    for name, data in variants.items():
        assert data != raw, name
        # Each variant decodes to exactly the same value as the canonical post...
        assert wire.unpack(data, max_bytes=10**6) == wire.unpack(raw, max_bytes=10**6), name
        # ...and is refused.
        with pytest.raises(NonCanonicalError):
            posts.decode_post(data)


def test_decode_post_float_anywhere_is_a_field_error():
    for unsigned in [fields(created_at_ms=float(T0)), fields(version=1.0), [1.0], fields(body=0.5)]:
        raw = msgpack.packb([unsigned, bytes(64)], use_bin_type=True)
        with pytest.raises(FieldError):
            posts.decode_post(raw)
    # A 32-bit float too.
    raw = msgpack.packb([fields(created_at_ms=1.5), bytes(64)], use_bin_type=True, use_single_float=True)
    with pytest.raises(FieldError):
        posts.decode_post(raw)


# --- wire -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, 1, -1, 127, 128, -32, -33, 255, 256, 2**16, 2**32, 2**64 - 1, -(2**63),
     "", "a", "字" * 100, b"", b"\x00" * 300, [], [1, [2, [3]]], {}, {"a": 1, "b": [b"x", None]}],
)
def test_wire_round_trip(value):
    data = wire.pack(value)
    assert wire.unpack(data, max_bytes=len(data)) == value
    assert wire.unpack_canonical(data, max_bytes=len(data)) == value


def test_wire_pack_uses_str_for_text_and_bin_for_bytes():
    assert wire.pack("a") == b"\xa1a"
    assert wire.pack(b"a") == b"\xc4\x01a"
    assert wire.pack(1) == b"\x01"
    assert wire.pack(300) == b"\xcd\x01\x2c"
    assert wire.pack(-1) == b"\xff"


def test_wire_unpack_limits_and_shape():
    with pytest.raises(TooLargeError):
        wire.unpack(b"\xc0\xc0", max_bytes=1)
    assert wire.unpack(b"\xc0", max_bytes=1) is None
    for data in [b"", b"\xc1", b"\x92\x01", b"\xc0\xc0", b"\xa2a", b"\xa1\xff", b"\xa3\xed\xa0\x80"]:
        with pytest.raises(MalformedError):
            wire.unpack(data, max_bytes=100)
    for data in [None, "text", 1]:
        with pytest.raises(MalformedError):
            wire.unpack(data, max_bytes=100)


@pytest.mark.parametrize(
    "data",
    [
        b"\xd4\x01\x00",  # fixext 1
        b"\xd5\x05\x00\x00",  # fixext 2
        b"\xc7\x00\x07",  # ext 8, empty
        b"\x91\xd4\x01\x00",  # nested in an array
        # Extension type -1 is msgpack's timestamp, which the library decodes itself without
        # calling ext_hook; it must be refused all the same.
        b"\xd6\xff\x00\x00\x00\x01",
        b"\xd7\xff" + bytes(8),
        b"\xc7\x0c\xff" + bytes(12),
        b"\x92\xc0\xd6\xff\x00\x00\x00\x01",
        b"\x81\xa1a\xd6\xff\x00\x00\x00\x01",
    ],
)
def test_wire_refuses_extension_types(data):
    for unpack in (wire.unpack, wire.unpack_canonical):
        with pytest.raises(MalformedError):
            unpack(data, max_bytes=100)


def test_wire_refuses_floats():
    for value in [1.5, [1, 2.0], {"a": 0.0}, [[[-0.0]]]]:
        for single in (False, True):
            data = msgpack.packb(value, use_single_float=single)
            with pytest.raises(FieldError):
                wire.unpack(data, max_bytes=100)


def test_wire_map_keys_must_be_strings():
    for data in [b"\x81\x01\x01", b"\x81\xc4\x01a\x01", b"\x81\xc0\x01", b"\x81\x90\x01", b"\x91\x81\xc4\x01a\x01"]:
        with pytest.raises(MalformedError):
            wire.unpack(data, max_bytes=100)
    assert wire.unpack(b"\x81\xa1a\x01", max_bytes=100) == {"a": 1}


def test_wire_unpack_canonical():
    assert wire.unpack_canonical(b"\x01", max_bytes=10) == 1
    for data in [
        b"\xcc\x01",  # 1 as uint8
        b"\xcd\x00\x01",  # 1 as uint16
        b"\xd0\x01",  # 1 as int8
        b"\xd0\xff",  # -1 as int8 instead of negative fixint
        b"\xd9\x01a",  # "a" as str8
        b"\xc5\x00\x01a",  # b"a" as bin16
        b"\xdc\x00\x00",  # [] as array16
        b"\xde\x00\x00",  # {} as map16
        b"\x82\xa1a\x01\xa1a\x02",  # duplicate key: decodes to a one-entry map
    ]:
        with pytest.raises(NonCanonicalError):
            wire.unpack_canonical(data, max_bytes=10)
        # The same bytes are fine for the non-canonical decoder.
        wire.unpack(data, max_bytes=10)


def test_wire_unpack_canonical_keeps_map_order_as_sent():
    # pack() writes a dict in insertion order, and unpack preserves the order it read, so any
    # key order re-encodes to the same bytes: a canonical key order is the message layer's job.
    data = b"\x82\xa1b\x01\xa1a\x02"
    assert wire.unpack_canonical(data, max_bytes=10) == {"b": 1, "a": 2}


def test_wire_expect_helpers():
    assert wire.expect_list([1, 2], 2, "x") == [1, 2]
    assert wire.expect_list([1, 2], None, "x") == [1, 2]
    for value, length in [((1, 2), 2), ([1], 2), ("ab", 2), (None, None)]:
        with pytest.raises(FieldError):
            wire.expect_list(value, length, "x")
    assert wire.expect_int(5, "x") == 5
    assert wire.expect_int(-5, "x", lo=-10) == -5
    for value, kw in [(True, {}), (1.0, {}), ("1", {}), (-1, {}), (2**64, {}), (11, {"hi": 10})]:
        with pytest.raises(FieldError):
            wire.expect_int(value, "x", **kw)
    assert wire.expect_bytes(b"ab", "x", length=2) == b"ab"
    for value, kw in [(bytearray(b"ab"), {}), ("ab", {}), (b"abc", {"length": 2})]:
        with pytest.raises(FieldError):
            wire.expect_bytes(value, "x", **kw)
    with pytest.raises(TooLargeError):
        wire.expect_bytes(b"abc", "x", max_len=2)
    assert wire.expect_str("s", "x") == "s"
    for value in [b"s", None, 1]:
        with pytest.raises(FieldError):
            wire.expect_str(value, "x")


def test_deep_nesting_is_malformed():
    # The decoder's own depth limit must turn hostile nesting into a protocol error, never a
    # RecursionError or a crash.
    for data in [b"\x91" * 100_000 + b"\xc0", b"\x81\xa1a" * 100_000 + b"\xc0"]:
        with pytest.raises(MalformedError):
            wire.unpack(data, max_bytes=len(data))
        with pytest.raises(MalformedError):
            wire.unpack_canonical(data, max_bytes=len(data))
    # As deep as fits in one post.
    with pytest.raises(MalformedError):
        posts.decode_post(b"\x91" * (limits.MAX_POST_BYTES - 1) + b"\xc0")


# --- the error tree -------------------------------------------------------------------------


def test_error_codes_are_stable_and_documented():
    assert set(errors.ERROR_CODES) == {
        "invalid", "malformed", "non_canonical", "bad_field", "unsupported_version", "too_large",
        "unknown_kind", "bad_board", "bad_body", "bad_signature", "future", "retract_not_author",
        "retract_wrong_board", "bad_reconcile", "bad_work",
        "keyfile", "keyfile_format", "keyfile_truncated", "keyfile_corrupt", "keyfile_params",
        "wrong_passphrase",
        "bundle", "bundle_format", "bundle_truncated", "bundle_damaged", "bundle_mismatch", "bundle_parts",
    }
    err = BoardError("board name must be 1 to 64 characters")
    assert str(err) == "bad_board: board name must be 1 to 64 characters"
    assert err.message == "board name must be 1 to 64 characters"
    assert str(FutureError()).startswith("future: ")
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_retraction_must_be_on_its_targets_board():
    key = SigningKey(bytes([41]) * 32)
    target = posts.create_post(key, kind="post", board="labor", body="x", created_at_ms=1_700_000_000_000)
    elsewhere = posts.create_post(key, kind="retract", board="other", body="", created_at_ms=1_700_000_000_001,
                                  parent=target.id)
    with pytest.raises(errors.RetractionBoardError) as info:
        posts.check_retraction(elsewhere, target)
    assert info.value.code == "retract_wrong_board"
    same = posts.create_post(key, kind="retract", board="labor", body="", created_at_ms=1_700_000_000_001,
                             parent=target.id)
    posts.check_retraction(same, target)


"""Objects of unknown kind (docs/protocol.md, "Objects of unknown kind").

A version-1 object whose kind this revision does not know is carried -- not refused -- when the
kind is a kind name (``[a-z][a-z0-9_]{0,31}``), the board obeys the board rule, the body is a str
within ``max_body_bytes``, the time is inside the window, the work (if any) is valid and the
signature verifies.  Any kind that is not a kind name is still ``unknown_kind``.  Objects of the
known kinds are unaffected.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import limits, posts, wire, work
from dazibao.protocol.errors import (
    BoardError,
    BodyError,
    FieldError,
    FutureError,
    SignatureError,
    UnknownKindError,
    WorkError,
)
from dazibao.protocol.identity import SigningKey
from tests import factories

KEY = SigningKey(bytes([7]) * 32)
T0 = factories.T0_MS
NOW = 1_700_003_600
PARENT = bytes(range(32))
SETTINGS = dict(deadline=None, database=None)
KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def obj(kind: object = "poll", board: object = "general", body: object = "Thursday or Friday?",
        parent: object = None, created_at_ms: int = T0, extra: tuple = (), key: SigningKey = KEY) -> bytes:
    return factories.signed([1, kind, board, key.public_key, created_at_ms, parent, body, *extra], key)


def test_known_kinds_and_kind_names():
    assert posts.KINDS == ("post", "reply", "retract", "profile", "moderation", "charter", *posts.ACTION_KINDS)
    assert posts.ACTION_KINDS == ("report", "corroboration", "letter", "signature", "pledge", "pin", "translation")
    for kind in posts.KINDS:
        assert posts.is_known_kind(kind) and posts.is_kind_name(kind)
    for kind in ("poll", "edit", "x", "a_1", "z" * 32):
        assert posts.is_kind_name(kind) and not posts.is_known_kind(kind)
    for kind in ("", "Poll", "1poll", "_poll", "po-ll", "pöll", "z" * 33, "poll\n", " poll", None, b"poll"):
        assert not posts.is_kind_name(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "body", "parent"),
    [
        ("poll", "Thursday or Friday?", None),
        ("edit", "", PARENT),  # empty body, with a parent
        ("x_2", "a\x00b\rc\x1b[0m", None),  # control characters: the body is not read
        ("blank", " \n\t", PARENT),
        ("z" + "9_" * 15 + "k", "longest kind name", None),
        ("blob", "b" * limits.MAX_BODY_BYTES, None),  # the body limit exactly
        ("cjk", "字" * (limits.MAX_BODY_BYTES // 3), None),
    ],
)
def test_unknown_kinds_are_carried(kind, body, parent):
    raw = obj(kind=kind, body=body, parent=parent)
    post = posts.check_post(raw, NOW)
    assert (post.kind, post.body, post.parent, post.raw) == (kind, body, parent, raw)
    assert post.id == posts.claimed_id(raw) and post.work is None
    assert posts.decode_post(raw) == post
    assert not posts.is_known_kind(post.kind)


def test_unknown_kinds_may_carry_work():
    unsigned = [1, "poll", "general", KEY.public_key, T0, None, "with work"]
    nonce = work.mine(unsigned, 8)
    post = posts.check_post(factories.signed([*unsigned, [8, nonce]], KEY), NOW)
    assert post.work == (8, nonce)
    for n in range(1000):
        bad = n.to_bytes(8, "big")
        if not work.meets(posts.post_id(wire.pack([*unsigned, [16, bad]])), 16):
            break
    with pytest.raises(WorkError):
        posts.check_post(factories.signed([*unsigned, [16, bad]], KEY), NOW)


@pytest.mark.parametrize("kind", ["", "Poll", "POLL", "1poll", "_poll", "po-ll", "po ll", "pöll", "z" * 33,
                                  "poll\x00", "poll\n", "ｐｏｌｌ"])
def test_kinds_that_are_not_kind_names_are_unknown_kind(kind):
    for check in (posts.decode_post, lambda r: posts.check_post(r, NOW)):
        with pytest.raises(UnknownKindError) as info:
            check(obj(kind=kind))
        assert info.value.code == "unknown_kind"


def test_the_kind_is_checked_before_the_board_and_the_body():
    with pytest.raises(UnknownKindError):
        posts.decode_post(obj(kind="Poll", board="", body="b" * (limits.MAX_BODY_BYTES + 1)))


def test_the_shared_rules_still_apply():
    with pytest.raises(BoardError):
        posts.decode_post(obj(board="gen\u200beral"))
    with pytest.raises(BodyError):
        posts.decode_post(obj(body="b" * (limits.MAX_BODY_BYTES + 1)))
    with pytest.raises(BodyError):
        posts.decode_post(obj(body="字" * (limits.MAX_BODY_BYTES // 3) + "ab"))  # 16385 bytes, fewer code points
    for parent in (bytes(31), bytes(33), "x" * 32, 0):
        with pytest.raises(FieldError):
            posts.decode_post(obj(parent=parent))
    for body in (b"x", None, 1, ["x"]):
        with pytest.raises(FieldError):
            posts.decode_post(obj(body=body))
    with pytest.raises(FutureError):
        posts.check_post(obj(created_at_ms=NOW * 1000 + limits.MAX_FUTURE_SKEW_S * 1000 + 1), NOW)
    raw = bytearray(obj())
    raw[-1] ^= 1
    with pytest.raises(SignatureError):
        posts.check_post(bytes(raw), NOW)


def test_known_kinds_keep_their_own_rules():
    # A known kind never falls back to the lenient rule: its body and parent are checked.
    for kind, body, parent, error in [("post", "", None, BodyError), ("post", "x", PARENT, FieldError),
                                      ("retract", "x", PARENT, BodyError), ("profile", "a\nb", None, BodyError),
                                      ("moderation", "hide post spam", None, FieldError),
                                      ("moderation", "hide it", PARENT, BodyError),
                                      ("charter", "\nok", PARENT, FieldError), ("charter", "hello", None, BodyError)]:
        with pytest.raises(error):
            posts.check_post(obj(kind=kind, body=body, parent=parent), NOW)


def test_unknown_kinds_are_never_created():
    for kind in ("poll", "edit"):
        with pytest.raises(UnknownKindError):
            posts.create_post(KEY, kind=kind, board="general", body="x", created_at_ms=T0)


def test_an_unknown_kind_object_can_be_retracted_by_its_author():
    target = posts.check_post(obj(kind="poll"), NOW)
    retraction = posts.create_post(KEY, kind="retract", board="general", body="", created_at_ms=T0 + 1,
                                   parent=target.id)
    posts.check_retraction(retraction, target)


# --- properties -----------------------------------------------------------------------------

KIND_NAMES = st.from_regex(KIND_NAME, fullmatch=True).filter(lambda k: k not in posts.KINDS)
ANY_BODY = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)


@settings(max_examples=factories.examples(200), **SETTINGS)
@given(kind=KIND_NAMES, body=ANY_BODY, parent=st.one_of(st.none(), st.binary(min_size=32, max_size=32)))
def test_any_kind_name_with_sound_fields_is_carried(kind, body, parent):
    post = posts.check_post(obj(kind=kind, body=body, parent=parent), NOW)
    assert (post.kind, post.body, post.parent) == (kind, body, parent)


@settings(max_examples=factories.examples(300), **SETTINGS)
@given(kind=st.text(max_size=40))
def test_a_kind_is_accepted_exactly_when_known_or_a_kind_name(kind):
    raw = obj(kind=kind, body="\nA board.", parent=None)
    try:
        posts.decode_post(raw)
    except UnknownKindError:
        assert not posts.is_known_kind(kind) and KIND_NAME.fullmatch(kind) is None
    except (BodyError, FieldError):
        assert posts.is_known_kind(kind)  # a known kind with a body or parent against its rules
    else:
        assert posts.is_known_kind(kind) or KIND_NAME.fullmatch(kind) is not None

"""The name rule is pinned to Unicode 14.0.0 and does not depend on the runtime's tables.

Board names and display names may hold only the code points of protocol/names_table.py
(docs/protocol.md, "Board-name rule"): generated once from Python 3.11's unicodedata by
tests/protocol/make_names_table.py, checked here to be what the generator writes.  No event
loop, no network.
"""

from __future__ import annotations

import importlib.util
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dazibao.protocol import identity, names, names_table, posts
from dazibao.protocol.errors import BoardError, BodyError

GENERATOR = Path(__file__).with_name("make_names_table.py")
ON_UNICODE_14 = unicodedata.unidata_version == names_table.UNICODE_VERSION


def _generator():
    spec = importlib.util.spec_from_file_location("make_names_table", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not ON_UNICODE_14, reason="the table is generated from Unicode 14.0.0 (Python 3.11)")
def test_the_table_is_what_the_generator_writes():
    generator = _generator()
    assert generator.UNICODE_VERSION == names_table.UNICODE_VERSION == names.NAME_UNICODE_VERSION
    assert generator.render() == Path(names_table.__file__).read_text(encoding="utf-8")


def test_the_table_is_sorted_disjoint_and_not_adjacent():
    table = names_table.ALLOWED
    assert table[0] == (0x20, 0x7E)
    for lo, hi in table:
        assert 0 <= lo <= hi <= sys.maxunicode
    for (_, hi), (lo, _) in zip(table, table[1:], strict=False):
        assert hi + 1 < lo


@pytest.mark.parametrize("cp, why", [
    (0x13439, "unassigned in 14.0.0, a format character (Cf) from 15.0"),
    (0x1FAE8, "unassigned in 14.0.0, an emoji from 15.0"),
    (0x0378, "unassigned in every version so far"),
    (0x202E, "a bidirectional override (Cf)"),
    (0x200D, "the zero-width joiner (Cf)"),
    (0x00A0, "a space separator other than U+0020"),
    (0x3164, "a Hangul filler (invisible)"),
    (0xE000, "private use (Co)"),
    (0xFE0F, "a variation selector (invisible)"),
    (0x2028, "the line separator (Zl)"),
])
def test_refused_code_points(cp, why):
    name = "rally" + chr(cp) + "x"
    assert not names.allowed_in_name(chr(cp)), why
    with pytest.raises(BoardError):
        posts.check_board(name)
    with pytest.raises(BodyError):
        identity.check_display_name(name)


@pytest.mark.parametrize("name", ["general", "劳动 法", "城市/北区", "Ünïcödé", "𠀀 ext-b", "emoji 🫠"])
def test_ordinary_names_pass(name):
    assert posts.check_board(name) == name
    assert identity.check_display_name(name) == name


def test_the_verdict_does_not_read_the_runtime_categories(monkeypatch):
    # A runtime whose tables say something else (a later Unicode version) gives the same verdicts:
    # the rule reads only the shipped table, and NFC only for code points assigned in 14.0.0.
    monkeypatch.setattr(unicodedata, "category", lambda ch: "Cf")
    posts._board_ok.cache_clear()
    try:
        assert posts.check_board("labor 劳动") == "labor 劳动"
        with pytest.raises(BoardError):
            posts.check_board("rally\U00013439")
    finally:
        posts._board_ok.cache_clear()


def test_names_are_checked_against_the_table_before_nfc():
    # U+0301 after "e" is allowed but not NFC; an unassigned code point is reported as such
    # even in a name that is not NFC either (NFC is only stable for assigned code points).
    with pytest.raises(BoardError, match="normalization form C"):
        posts.check_board("cafe\u0301")
    with pytest.raises(BoardError, match="U\\+13439"):
        posts.check_board("cafe\u0301\U00013439")


def test_leading_and_trailing_spaces_are_refused():
    for name in (" general", "general ", " "):
        with pytest.raises(BoardError):
            posts.check_board(name)
    assert posts.check_board("a  b") == "a  b"


allowed_chars = st.sampled_from(names_table.ALLOWED).flatmap(lambda r: st.integers(r[0], r[1])).map(chr)
any_chars = st.integers(0, sys.maxunicode).map(chr)


@given(st.lists(allowed_chars, min_size=1, max_size=40).map("".join))
def test_names_of_allowed_code_points_pass_when_trimmed_and_nfc(text):
    name = unicodedata.normalize("NFC", text).strip(" ")
    if not name or not all(names.allowed_in_name(ch) for ch in name) or len(name.encode()) > 192:
        return  # NFC of allowed code points can reach outside the table only by composing
    if len(name) > 64:
        name = name[:64].rstrip(" ")
        if not name or not unicodedata.is_normalized("NFC", name):
            return
    assert posts.check_board(name) == name


@given(st.text(max_size=8), any_chars, st.text(max_size=8))
def test_any_refused_code_point_refuses_the_name(before, ch, after):
    if names.allowed_in_name(ch):
        return
    with pytest.raises(BoardError):
        posts.check_board(before + ch + after)


@pytest.mark.skipif(not ON_UNICODE_14, reason="compares with the runtime's Unicode 14.0.0 tables")
@given(any_chars)
def test_on_unicode_14_the_table_is_the_category_rule(ch):
    generator = _generator()
    assert names.allowed_in_name(ch) == generator.allowed(ord(ch))

"""The Chinese catalog reads as Chinese written by a person: the agreed words, full-width
punctuation, and a translation for every message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from dazibao.node.web import i18n

PO = Path(i18n.__file__).parent / "locale" / "zh_Hans" / "LC_MESSAGES" / "messages.po"

# Machine-translation calques and the plain words that replace them.
RETIRED = {
    "承载": "保存并同步 (carry a board)",
    "对等节点": "其他节点 (peer)",
    "当前签名身份": "当前身份 (signing as)",
    "签名中": "使用中 (in use)",
    "口令": "密码 (passphrase)",
    "Gossip API": "节点同步接口",
    "管理声明": "版务声明 (one word for a moderation statement)",
}
CJK = r"[\u3400-\u9fff]"
# ASCII punctuation touching a Chinese character: Chinese text takes the full-width forms.
HALF_WIDTH = re.compile(rf"{CJK}[,;!?]|[,;!?]\s*{CJK}|{CJK}:(?!//)|{CJK}\(|\){CJK}")


def _entries():
    with PO.open("rb") as fh:
        catalog = read_po(fh, locale="zh_Hans")
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        yield message.id, strings


def test_every_message_is_translated():
    for msgid, strings in _entries():
        assert all(s.strip() for s in strings), f"untranslated: {msgid!r}"


@pytest.mark.parametrize("term", sorted(RETIRED))
def test_retired_terms_are_gone(term):
    offending = [msgid for msgid, strings in _entries() if any(term in s for s in strings)]
    assert not offending, f"{term} -> {RETIRED[term]}: {offending}"


def test_chinese_punctuation_is_full_width():
    offending = [(msgid, s) for msgid, strings in _entries() for s in strings if HALF_WIDTH.search(s)]
    assert not offending, offending


def test_the_ui_shows_the_new_words():
    zh = i18n.load_translations()["zh-Hans"]
    assert zh.gettext("Peers") == "其他节点"
    assert zh.gettext("Signing as") == "当前身份"
    assert zh.gettext("Passphrase") == "密码"
    assert zh.gettext("Carry every board") == "保存并同步所有版块"

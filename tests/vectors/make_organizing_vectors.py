"""Regenerate tests/vectors/organizing.json: vectors for the collective-action kinds (reports,
corroborations, letters, signatures, pledges, pins, translations) and for how a reader counts
them (docs/protocol.md, "Collective action").

Run from the repository root::

    python tests/vectors/make_organizing_vectors.py          # rewrite organizing.json
    python tests/vectors/make_organizing_vectors.py --check  # exit 1 if organizing.json is out of date

Deterministic: fixed 32-byte seeds, fixed ``created_at_ms``, a fixed ``now``; Ed25519 signing is
deterministic (RFC 8032).  tests/protocol/test_organizing.py checks that the committed file
equals what this script produces, and replays every case.  Valid objects are made with the
``create_*`` functions of protocol/organizing.py; each invalid one is built by hand with
``wire.pack``, broken in exactly one way and signed correctly, so a decoder that skipped the
rule under test would accept it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from dazibao.protocol import fields, limits, organizing, posts, wire
from dazibao.protocol.identity import SigningKey

OUT = Path(__file__).with_name("organizing.json")

SEEDS = [bytes([n]) * 32 for n in (1, 2, 3, 4, 5)]  # authors A, B, C; D a moderator; E a fresh key
T0_MS = 1_700_000_000_000
NOW = 1_700_003_600
BOARD = "labor"
TAG = posts.POST_SIGNATURE_TAG

SOURCE = (
    "dazibao's own vectors, written by tests/vectors/make_organizing_vectors.py from fixed seeds "
    "(01*32, 02*32, 03*32 authors, 04*32 a moderator, 05*32 a fresh key), fixed created_at_ms and a "
    "fixed now; rerunning the script gives this file byte for byte. The objects are those of "
    "docs/protocol.md 'Collective action'."
)
FORMAT = (
    "cases: name; description; raw_hex; now (seconds); expect ('valid' or the error code of "
    "'Checking a post from outside'); seed_hex. Valid cases also give kind, board, parent_hex, body, "
    "created_at_ms and fields (the field block as an object, null for kinds without one) and text. "
    "tally: a scenario of valid posts (by case name) with retracted ids, the vouched authors and "
    "the expected counts of 'What the objects mean'."
)


def _sign(key: SigningKey, unsigned: list[Any]) -> bytes:
    unsigned_bytes = wire.pack(unsigned)
    return b"\x92" + unsigned_bytes + b"\xc4\x40" + key.sign(TAG + posts.post_id(unsigned_bytes))


def _valid(name: str, description: str, seed: bytes, post: posts.Post) -> dict[str, Any]:
    obj = organizing.parse_object(post)
    block = None
    text = getattr(obj, "text", None)
    if post.kind in ("report", "letter", "pledge", "translation"):
        block, text = fields.parse_field_block(post.body)
    return {
        "name": name, "description": description, "raw_hex": post.raw.hex(), "id_hex": post.id.hex(),
        "now": NOW, "expect": "valid", "seed_hex": seed.hex(), "kind": post.kind, "board": post.board,
        "parent_hex": None if post.parent is None else post.parent.hex(), "body": post.body,
        "created_at_ms": post.created_at_ms, "fields": block, "text": text if text is not None else post.body,
    }


def _bad(name: str, description: str, seed: bytes, kind: str, body: str, expect: str,
         parent: bytes | None = None, at: int = T0_MS + 60_000) -> dict[str, Any]:
    key = SigningKey(seed)
    raw = _sign(key, [1, kind, BOARD, key.public_key, at, parent, body])
    return {"name": name, "description": description, "raw_hex": raw.hex(), "now": NOW, "expect": expect,
            "seed_hex": seed.hex()}


def build() -> dict[str, Any]:
    """The whole vector document as a JSON-ready dict."""
    a, b, c, d, e = (SigningKey(s) for s in SEEDS)
    at = T0_MS
    report = organizing.create_report(a, board=BOARD, company="Example Tech", practice="unpaid_overtime",
                                      city="Hangzhou", period="2026-01..2026-06", created_at_ms=at,
                                      text="We stay until ten every night without pay.")
    report2 = organizing.create_report(c, board=BOARD, company="ＥＸＡＭＰＬＥ  tech", practice="hours_996",
                                       created_at_ms=at + 1)
    report3 = organizing.create_report(b, board=BOARD, company="另一家公司", practice="wage_arrears",
                                       created_at_ms=at + 2, text="工资拖欠三个月。")
    corroboration = organizing.create_corroboration(b, report, created_at_ms=at + 10, text="Same on my team.")
    corroboration_empty = organizing.create_corroboration(e, report, created_at_ms=at + 11)
    letter = organizing.create_letter(a, board=BOARD, title="To the labor bureau",
                                      text="We ask you to enforce the Labour Law, article 41.", created_at_ms=at + 20)
    sig_b = organizing.create_signature(b, letter, created_at_ms=at + 21, line="engineer, Seattle")
    sig_c = organizing.create_signature(c, letter, created_at_ms=at + 22)
    sig_e = organizing.create_signature(e, letter, created_at_ms=at + 23, line="测试工程师，杭州")
    pledge = organizing.create_pledge(a, board=BOARD, action="leave at 6 p.m.", date="2027-03-01", threshold=2,
                                      created_at_ms=at + 30, text="Together, or not at all.")
    join_b = organizing.create_signature(b, pledge, created_at_ms=at + 31)
    join_c = organizing.create_signature(c, pledge, created_at_ms=at + 32)
    pin = organizing.create_pin(d, letter, created_at_ms=at + 40)
    translation = organizing.create_translation(b, letter, lang="zh-Hans", text="我们请求你们执行《劳动法》第四十一条。",
                                                created_at_ms=at + 50)
    retract_c = posts.create_post(c, kind="retract", board=BOARD, body="", parent=sig_c.id, created_at_ms=at + 60)
    valid = [
        ("valid_report", "A report with every field and a text.", SEEDS[0], report),
        ("valid_report_fullwidth", "A report whose company differs only in width, case and spaces.", SEEDS[2], report2),
        ("valid_report_chinese", "A report about a company named in Chinese.", SEEDS[1], report3),
        ("valid_corroboration", "A corroboration with a text.", SEEDS[1], corroboration),
        ("valid_corroboration_empty", "A corroboration with an empty body.", SEEDS[4], corroboration_empty),
        ("valid_letter", "A sign-on letter.", SEEDS[0], letter),
        ("valid_signature_line", "A signature with a public line.", SEEDS[1], sig_b),
        ("valid_signature_empty", "A signature without a public line.", SEEDS[2], sig_c),
        ("valid_signature_chinese", "A signature with a public line in Chinese.", SEEDS[4], sig_e),
        ("valid_pledge", "A pledge with threshold 2.", SEEDS[0], pledge),
        ("valid_pledge_join_b", "B joins the pledge.", SEEDS[1], join_b),
        ("valid_pledge_join_c", "C joins the pledge.", SEEDS[2], join_c),
        ("valid_pin", "The moderator pins the letter.", SEEDS[3], pin),
        ("valid_translation", "A translation of the letter into zh-Hans.", SEEDS[1], translation),
    ]
    cases = [_valid(*row) for row in valid]
    retraction = {"name": "valid_retract_signature_c", "description": "C withdraws their signature.",
                  "raw_hex": retract_c.raw.hex(), "id_hex": retract_c.id.hex(), "now": NOW, "expect": "valid",
                  "seed_hex": SEEDS[2].hex(), "kind": "retract", "board": BOARD,
                  "parent_hex": sig_c.id.hex(), "body": "", "created_at_ms": retract_c.created_at_ms,
                  "fields": None, "text": ""}
    cases.append(retraction)
    s = SEEDS[0]
    long_value = "x" * (limits.MAX_FIELD_CHARS + 1)
    many = "\n".join(f"f{i}: v" for i in range(limits.MAX_OBJECT_FIELDS + 1))
    cases += [
        _bad("report_missing_practice", "A report without its practice field.", s, "report", "company: X", "bad_body"),
        _bad("report_bad_practice", "A practice that is not a code.", s, "report", "company: X\npractice: Unpaid",
             "bad_body"),
        _bad("report_bad_period", "A period whose end is before its start.", s, "report",
             "company: X\npractice: other\nperiod: 2026-06..2026-01", "bad_body"),
        _bad("report_month_13", "A period in month 13.", s, "report", "company: X\npractice: other\nperiod: 2026-13",
             "bad_body"),
        _bad("report_with_parent", "A report naming a parent.", s, "report", "company: X\npractice: other",
             "bad_field", parent=bytes(32)),
        _bad("field_twice", "A field named twice.", s, "report", "company: X\ncompany: Y\npractice: other", "bad_body"),
        _bad("field_value_too_long", f"A value of max_field_chars + 1 ({limits.MAX_FIELD_CHARS + 1}) characters.", s,
             "report", f"company: {long_value}\npractice: other", "bad_body"),
        _bad("field_value_trailing_space", "A value ending in a space.", s, "report", "company: X \npractice: other",
             "bad_body"),
        _bad("field_no_space", "A field line without the space after the colon.", s, "report",
             "company:X\npractice: other", "bad_body"),
        _bad("too_many_fields", f"max_object_fields + 1 ({limits.MAX_OBJECT_FIELDS + 1}) field lines.", s, "report",
             f"company: X\npractice: other\n{many}", "bad_body"),
        _bad("empty_text_after_fields", "A field block followed by an empty line and no text.", s, "report",
             "company: X\npractice: other\n\n", "bad_body"),
        _bad("two_empty_lines", "Two empty lines between the fields and the text.", s, "letter",
             "title: T\n\n\ntext", "bad_body"),
        _bad("letter_without_text", "A letter without its text.", s, "letter", "title: T", "bad_body"),
        _bad("pledge_bad_date", "A pledge dated February 30.", s, "pledge",
             "action: strike\ndate: 2027-02-30\nthreshold: 5", "bad_body"),
        _bad("pledge_threshold_zero", "A threshold of 0.", s, "pledge", "action: strike\ndate: 2027-02-01\nthreshold: 0",
             "bad_body"),
        _bad("pledge_threshold_leading_zero", "A threshold with a leading zero.", s, "pledge",
             "action: strike\ndate: 2027-02-01\nthreshold: 05", "bad_body"),
        _bad("pledge_threshold_too_large", "A threshold of max_pledge_threshold + 1.", s, "pledge",
             f"action: strike\ndate: 2027-02-01\nthreshold: {limits.MAX_PLEDGE_THRESHOLD + 1}", "bad_body"),
        _bad("signature_two_lines", "A signature whose public line has a line break.", s, "signature", "a\nb",
             "bad_body", parent=letter.id),
        _bad("signature_without_parent", "A signature naming no letter.", s, "signature", "", "bad_field"),
        _bad("pin_with_body", "A pin with a body.", s, "pin", "look", "bad_body", parent=letter.id),
        _bad("translation_bad_lang", "A translation whose lang is not a language tag.", s, "translation",
             "lang: Chinese\n\n中文", "bad_body", parent=letter.id),
        _bad("corroboration_blank", "A corroboration of white space only.", s, "corroboration", "   ", "bad_body",
             parent=report.id),
        _bad("control_character", "A report whose text holds ESC.", s, "report",
             "company: X\npractice: other\n\nred \x1b[31m", "bad_body"),
    ]
    names = [case["name"] for case in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    tally = {
        "description": (
            "Counting on board 'labor' with the moderator 04*32 followed and vouching for 01*32 and 02*32; "
            "C (03*32) retracted their letter signature."),
        "posts": [name for name, *_ in valid] + ["valid_retract_signature_c"],
        "retracted_ids_hex": [sig_c.id.hex()],
        "vouched_hex": [a.public_key.hex(), b.public_key.hex()],
        "followed_moderators_hex": [d.public_key.hex()],
        "companies": [
            {"key": "example tech", "name": "Example Tech", "reports": 2, "corroborations": 2, "pseudonyms": 4,
             "vouched": 2},
            {"key": "另一家公司", "name": "另一家公司", "reports": 1, "corroborations": 0, "pseudonyms": 1, "vouched": 1},
        ],
        "letter": {"id_hex": letter.id.hex(), "total": 2, "vouched": 1,
                   "signers_hex": [b.public_key.hex(), e.public_key.hex()]},
        "pledge": {"id_hex": pledge.id.hex(), "threshold": 2, "others": 2, "vouched": 1, "met": True,
                   "met_by_vouched": False},
        "pinned_hex": [letter.id.hex()],
        "translations_zh_first_hex": [translation.id.hex()],
    }
    return {
        "source": SOURCE,
        "format": FORMAT,
        "max_object_fields": limits.MAX_OBJECT_FIELDS,
        "max_field_chars": limits.MAX_FIELD_CHARS,
        "max_pledge_threshold": limits.MAX_PLEDGE_THRESHOLD,
        "practices": list(fields.PRACTICES),
        "cases": cases,
        "tally": tally,
    }


def render() -> str:
    """The exact text of organizing.json: UTF-8, non-ASCII kept literal, one trailing newline."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.name} is out of date; rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

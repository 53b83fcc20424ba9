"""The collective-action kinds: their grammar (protocol/fields.py), their objects and how a
reader counts them (protocol/organizing.py), against tests/vectors/organizing.json and by
property (docs/protocol.md, "Collective action")."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dazibao.protocol import fields, limits, organizing, posts
from dazibao.protocol.errors import BodyError, RemoteProtocolError
from dazibao.protocol.identity import SigningKey
from tests.factories import examples

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
VECTOR_FILE = json.loads((VECTORS / "organizing.json").read_text(encoding="utf-8"))
CASES = VECTOR_FILE["cases"]
BY_NAME = {case["name"]: case for case in CASES}
DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
KEY = SigningKey(bytes([9]) * 32)
T0 = 1_700_000_000_000


def _generator():
    spec = importlib.util.spec_from_file_location("make_organizing_vectors", VECTORS / "make_organizing_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vector_file_is_what_the_generator_produces():
    assert (VECTORS / "organizing.json").read_text(encoding="utf-8") == _generator().render()


def test_vector_header_matches_the_limits():
    assert VECTOR_FILE["max_object_fields"] == limits.MAX_OBJECT_FIELDS
    assert VECTOR_FILE["max_field_chars"] == limits.MAX_FIELD_CHARS
    assert VECTOR_FILE["max_pledge_threshold"] == limits.MAX_PLEDGE_THRESHOLD
    assert VECTOR_FILE["practices"] == list(fields.PRACTICES)
    assert {c["kind"] for c in CASES if c["expect"] == "valid"} >= set(posts.ACTION_KINDS)
    assert {c["expect"] for c in CASES} == {"valid", "bad_body", "bad_field"}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_every_case_gives_its_outcome(case):
    raw = bytes.fromhex(case["raw_hex"])
    if case["expect"] != "valid":
        with pytest.raises(RemoteProtocolError) as caught:
            posts.check_post(raw, case["now"])
        assert caught.value.code == case["expect"]
        return
    post = posts.check_post(raw, case["now"])
    assert (post.kind, post.board, post.body, post.created_at_ms) == (
        case["kind"], case["board"], case["body"], case["created_at_ms"])
    assert post.id.hex() == case["id_hex"]
    assert post.author == SigningKey(bytes.fromhex(case["seed_hex"])).public_key
    if case["fields"] is not None:
        assert fields.parse_field_block(post.body) == (case["fields"], case["text"])
    if post.kind in posts.ACTION_KINDS:
        assert organizing.parse_object(post).id == post.id


def _objects(names):
    made = [posts.check_post(bytes.fromhex(BY_NAME[n]["raw_hex"]), BY_NAME[n]["now"]) for n in names]
    return [organizing.parse_object(p) for p in made if p.kind in posts.ACTION_KINDS]


def test_the_tally_scenario_counts_as_the_vectors_say():
    tally = VECTOR_FILE["tally"]
    objects = _objects(tally["posts"])
    retracted = {bytes.fromhex(h) for h in tally["retracted_ids_hex"]}
    vouched = {bytes.fromhex(h) for h in tally["vouched_hex"]}
    moderators = {bytes.fromhex(h) for h in tally["followed_moderators_hex"]}
    of = lambda cls: [o for o in objects if isinstance(o, cls)]  # noqa: E731
    companies = organizing.tally_companies(of(organizing.Report), of(organizing.Corroboration),
                                           retracted=retracted, vouched=vouched)
    assert [{"key": c.key, "name": c.name, "reports": c.reports, "corroborations": c.corroborations,
             "pseudonyms": c.pseudonyms, "vouched": c.vouched} for c in companies] == tally["companies"]
    letter = next(o for o in objects if isinstance(o, organizing.Letter))
    signatures = of(organizing.Signature)
    letter_tally = organizing.tally_signatures(letter, signatures, retracted=retracted, vouched=vouched)
    assert letter.id.hex() == tally["letter"]["id_hex"]
    assert (letter_tally.total, letter_tally.vouched) == (tally["letter"]["total"], tally["letter"]["vouched"])
    assert [row[0].hex() for row in letter_tally.signers] == tally["letter"]["signers_hex"]
    pledge = next(o for o in objects if isinstance(o, organizing.Pledge))
    progress = organizing.tally_pledge(pledge, signatures, retracted=retracted, vouched=vouched)
    expected = tally["pledge"]
    assert (progress.threshold, progress.others, progress.vouched, progress.met, progress.met_by_vouched) == (
        expected["threshold"], expected["others"], expected["vouched"], expected["met"], expected["met_by_vouched"])
    pins = organizing.pinned("labor", of(organizing.Pin), moderators, retracted=retracted)
    assert [p.hex() for p in pins] == tally["pinned_hex"]
    assert organizing.pinned("labor", of(organizing.Pin), set(), retracted=retracted) == []
    original = posts.check_post(bytes.fromhex(BY_NAME["valid_letter"]["raw_hex"]), VECTOR_FILE["cases"][0]["now"])
    found = organizing.translations_for(original, of(organizing.Translation), languages=["zh-CN"])
    assert [t.id.hex() for t in found] == tally["translations_zh_first_hex"]


# --- the grammar ------------------------------------------------------------------------------

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                 max_size=limits.MAX_FIELD_CHARS).map(str.strip).filter(bool)
TEXTS = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=300).filter(
    lambda t: t == "" or (t.strip() != "" and not t.startswith("\n")))


@settings(max_examples=examples(200), deadline=None)
@given(block=st.dictionaries(NAMES, VALUES, min_size=1, max_size=limits.MAX_OBJECT_FIELDS), text=TEXTS)
def test_a_field_block_round_trips(block, text):
    body = fields.field_block(block, text)
    assert fields.parse_field_block(body) == (block, text)


@settings(max_examples=examples(300), deadline=None)
@given(body=st.text(max_size=400))
def test_parsing_any_text_gives_a_result_or_bad_body(body):
    try:
        block, text = fields.parse_field_block(body)
    except BodyError as err:
        assert err.code == "bad_body"
    else:
        # Accepted bodies are exactly those the builder writes: one body per meaning.
        assert fields.field_block(block, text) == body


@settings(max_examples=examples(100), deadline=None)
@given(company=VALUES, city=st.none() | VALUES, text=TEXTS,
       practice=st.sampled_from(fields.PRACTICES) | NAMES,
       months=st.tuples(st.integers(2000, 2100), st.integers(1, 12), st.integers(0, 30)))
def test_reports_round_trip_through_create_and_check(company, city, text, practice, months):
    year, month, span = months
    end_year, end_month = year + (month - 1 + span) // 12, (month - 1 + span) % 12 + 1
    period = f"{year:04d}-{month:02d}..{end_year:04d}-{end_month:02d}"
    report = organizing.create_report(KEY, board="labor", company=company, practice=practice, city=city,
                                      period=period, text=text, created_at_ms=T0)
    parsed = organizing.parse_object(posts.check_post(report.raw, T0 // 1000))
    assert isinstance(parsed, organizing.Report)
    assert (parsed.company, parsed.practice, parsed.city, parsed.period, parsed.text) == (
        company, practice, city, period, text)


def test_unknown_fields_are_allowed_and_ignored():
    body = "company: X\npractice: other\nsector: logistics"
    report = posts.create_post(KEY, kind="report", board="labor", body=body, created_at_ms=T0)
    parsed = organizing.parse_object(report)
    assert isinstance(parsed, organizing.Report) and parsed.company == "X"


def test_company_keys_join_width_case_and_spaces_only():
    assert organizing.company_key("Example  Tech") == organizing.company_key("ＥＸＡＭＰＬＥ tech") == "example tech"
    assert organizing.company_key("Example Tech") != organizing.company_key("示例科技")


def test_a_pledge_is_met_only_by_others_and_never_once_retracted():
    a, b, c = (SigningKey(bytes([n]) * 32) for n in (11, 12, 13))
    pledge_post = organizing.create_pledge(a, board="labor", action="walk out", date="2027-05-01", threshold=1,
                                           created_at_ms=T0)
    pledge = organizing.parse_object(pledge_post)
    assert isinstance(pledge, organizing.Pledge)
    own = organizing.parse_object(organizing.create_signature(a, pledge, created_at_ms=T0 + 1))
    assert isinstance(own, organizing.Signature)
    assert not organizing.tally_pledge(pledge, [own]).met  # its author signing does not count
    joined = organizing.parse_object(organizing.create_signature(b, pledge, created_at_ms=T0 + 2))
    assert isinstance(joined, organizing.Signature)
    assert organizing.tally_pledge(pledge, [own, joined]).met
    assert not organizing.tally_pledge(pledge, [joined], vouched={a.public_key}).met_by_vouched
    assert organizing.tally_pledge(pledge, [joined], vouched={b.public_key}).met_by_vouched
    assert not organizing.tally_pledge(pledge, [joined], retracted={pledge.id}).met
    assert not organizing.tally_pledge(pledge, [joined], blocked={b.public_key}).met
    elsewhere = organizing.parse_object(posts.create_post(c, kind="signature", board="other", body="",
                                                          parent=pledge.id, created_at_ms=T0 + 3))
    assert isinstance(elsewhere, organizing.Signature)
    assert organizing.tally_pledge(pledge, [elsewhere]).others == 0  # another board's signature


def test_signing_twice_counts_once_with_the_newest_line():
    a, b = SigningKey(bytes([21]) * 32), SigningKey(bytes([22]) * 32)
    letter = organizing.parse_object(organizing.create_letter(a, board="labor", title="T", text="Text.",
                                                              created_at_ms=T0))
    assert isinstance(letter, organizing.Letter)
    first = organizing.parse_object(organizing.create_signature(b, letter, created_at_ms=T0 + 1, line="old"))
    second = organizing.parse_object(organizing.create_signature(b, letter, created_at_ms=T0 + 2, line="new"))
    assert isinstance(first, organizing.Signature) and isinstance(second, organizing.Signature)
    tally = organizing.tally_signatures(letter, [second, first])
    assert tally.total == 1 and tally.signers[0][1] == "new" and tally.signers[0][2] == T0 + 1
    # Withdrawing the newest of two leaves the older one standing.
    assert organizing.tally_signatures(letter, [first, second], retracted={second.id}).signers[0][1] == "old"


def test_the_spec_lists_every_kind_limit_and_practice():
    section = DOC.split("## Collective action", 1)[1].split("\n## ", 1)[0]
    for kind in posts.ACTION_KINDS:
        assert f"`{kind}`" in section
    for practice in fields.PRACTICES:
        assert f"`{practice}`" in section
    for name in ("max_object_fields", "max_field_chars", "max_pledge_threshold"):
        assert f"`{name}`" in section
    unknown = DOC.split("## Objects of unknown kind", 1)[1].split("\n## ", 1)[0]
    for kind in posts.ACTION_KINDS:
        assert f"`{kind}`" in unknown

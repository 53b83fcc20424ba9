"""Collective action in the read-only public view (node/web/public_organizing.py), over real
HTTP and a real store: the ranked company list and a company's reports, a letter with its
signers, a pledge with its progress, each with both figures, the sentence saying whose vouching
counts, the ids of the signed posts, and no form, button or member link anywhere."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from dazibao.node.config import DataDir, load_config
from dazibao.node.service import NodeCore
from dazibao.node.web.public import make_public_app
from dazibao.protocol import identity, limits, moderation, organizing, posts

from .conftest import key

BOARD = "labor"
HOSTILE = "<script>window.__pwned=1</script>"
FORMS = re.compile(r"<form|<button|<input|<textarea|<select|method=\"post\"", re.IGNORECASE)
MEMBER_LINKS = re.compile(r'(?:href|action)="/(?:compose|ids|hidden|status|withdraw|report/)')


@pytest.fixture
async def site(tmp_path, aiohttp_client):
    data = DataDir(tmp_path / "mirror")
    data.create()
    config = load_config(data, environ={"DAZIBAO_PUBLIC_VIEW_LISTEN": "127.0.0.1:0"})
    core = NodeCore(data, config)
    await core.open()
    moderator, alice, bob, carol = key(1), key(2), key(3), key(4)
    t = core.now_ms() - 600_000
    report = organizing.create_report(alice, board=BOARD, company="Example Tech", practice="unpaid_overtime",
                                      city="Hangzhou", created_at_ms=t, text=f"Stay until ten. {HOSTILE}")
    other = organizing.create_report(carol, board=BOARD, company="Other Co", practice="no_contract",
                                     created_at_ms=t + 1)
    letter = organizing.create_letter(moderator, board=BOARD, title="To the labor bureau", created_at_ms=t + 2,
                                      text="Enforce article 41.")
    pledge = organizing.create_pledge(carol, board=BOARD, action="Leave at six", date="2027-03-01", threshold=2,
                                      created_at_ms=t + 3)
    signature = organizing.create_signature(alice, letter, created_at_ms=t + 6, line=f"engineer {HOSTILE}")
    guide = posts.create_post(moderator, kind="post", board=BOARD, created_at_ms=t + 9, body="Labour Law, article 41")
    batch = [
        report, other, letter, pledge, signature, guide,
        organizing.create_translation(bob, guide, lang="zh-Hans", text="《劳动法》第四十一条", created_at_ms=t + 10),
        moderation.create_statement(moderator, board=BOARD, action="vouch", subject="author",
                                    target=alice.public_key, reason="trusted", created_at_ms=t + 4),
        organizing.create_corroboration(bob, report, created_at_ms=t + 5, text="Same here."),
        organizing.create_signature(bob, letter, created_at_ms=t + 7),
        organizing.create_signature(alice, pledge, created_at_ms=t + 8),
    ]
    await core.ingest_checked(batch, "http://peer.test:7470")
    await core.db.call(lambda s: s.add_moderator(BOARD, moderator.public_key, source="cli", now_ms=core.now_ms()))
    client = await aiohttp_client(make_public_app(core, config))
    try:
        yield client, {"report": report, "letter": letter, "pledge": pledge, "signature": signature,
                       "alice": alice, "guide": guide}
    finally:
        await client.close()
        await core.close()


async def _get(client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, (path, response.status)
    text = await response.text()
    assert not FORMS.search(text), FORMS.search(text).group(0)
    assert not MEMBER_LINKS.search(text), MEMBER_LINKS.search(text).group(0)
    assert "the moderators this node follows on this board" in text and "operator" in text
    return text


async def test_public_view_shows_companies_letters_and_pledges_read_only(site):
    client, seeded = site
    companies = await _get(client, f"/b/{BOARD}/companies")
    assert companies.index("Example Tech") < companies.index("Other Co")  # the vouched pseudonym ranks first
    assert "2 pseudonyms, 1 vouched" in companies and "1 pseudonym, 0 vouched" in companies
    company = await _get(client, f"/b/{BOARD}/company?c={quote('example tech')}")
    assert seeded["report"].id.hex() in company and "Same here." in company and "Hangzhou" in company
    assert "<script>window" not in company and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in company
    assert identity.fingerprint(seeded["alice"].public_key) in company

    letters = await _get(client, f"/b/{BOARD}/letters")
    assert "To the labor bureau" in letters and seeded["letter"].id.hex() in letters
    letter = await _get(client, f"/letter/{seeded['letter'].id.hex()}")
    assert "Enforce article 41." in letter and "Signatures: 2, vouched: 1." in letter
    assert seeded["signature"].id.hex() in letter and "<script>window" not in letter

    pledges = await _get(client, f"/b/{BOARD}/pledges")
    assert "Leave at six" in pledges and seeded["pledge"].id.hex() in pledges
    pledge = await _get(client, f"/pledge/{seeded['pledge'].id.hex()}")
    assert "1 of 2 others pledged (1 vouched)" in pledge and "The threshold is not met yet." in pledge

    # A thread shows a post's translations beside it.
    thread = await (await client.get(f"/p/{seeded['guide'].id.hex()}")).text()
    assert '<article class="translation" lang="zh-Hans">' in thread and "《劳动法》第四十一条" in thread
    assert not FORMS.search(thread)

    # In Chinese too, and a page that is not there is a plain 404.
    chinese = await (await client.get(f"/b/{BOARD}/companies", headers={"Accept-Language": "zh-CN"})).text()
    assert "运营者" in chinese
    assert (await client.get(f"/letter/{seeded['pledge'].id.hex()}")).status == 404
    assert (await client.get(f"/b/{BOARD}/company?c=nobody")).status == 404
    # Read-only: the member UI's writing addresses do not exist here.
    for path in (f"/b/{BOARD}/companies", f"/letter/{seeded['letter'].id.hex()}/sign",
                 f"/pledge/{seeded['pledge'].id.hex()}/join"):
        assert (await client.post(path, data={"text": "x"})).status in (404, 405)


async def test_a_company_page_shows_a_bounded_number_of_reports(site, monkeypatch):
    """A company flooded with reports shows only its newest ``ui_organizing_items`` on one page."""
    client, seeded = site
    monkeypatch.setattr(limits, "UI_ORGANIZING_ITEMS", 1)
    company = await _get(client, f"/b/{BOARD}/company?c={quote('example tech')}")
    assert "Same here." in company and seeded["report"].id.hex() not in company
    assert "Only the newest 1 are listed." in company
    assert "2 pseudonyms, 1 vouched" in company  # the counts still count everything

"""Collective action in the member UI (pages/organizing.py), in process: company reports and
corroborations, letters and signatures, the delivery folder, pledges and the met-pledge
banner, pins and translations.  Every form signs through CoreAuthor, and bad input writes
nothing."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from dazibao.node.authoring import CoreAuthor
from dazibao.node.store import Store
from dazibao.node.web.i18n import Msg
from dazibao.node.web.pages import organizing as pages
from dazibao.node.web.pages.common import FormError
from dazibao.node.web.pages.organizing import PRACTICE_LABELS
from dazibao.protocol import fields, organizing, posts

from .conftest import PASSPHRASE, T0_MS, key


async def _alice(h, name: str = "alice") -> str:
    resp = await h.post("/ids/new", {"name": name, "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE})
    assert resp.status == 303, await resp.text()
    return h.session().active


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_known_practice_has_a_label():
    assert tuple(PRACTICE_LABELS) == fields.PRACTICES


@given(company=st.text(max_size=300), code=st.text(max_size=40), city=st.text(max_size=40),
       period=st.text(max_size=20))
@example(company=" Acme\tLogistics ", code="wage_arrears", city="", period=" 2026-01..2026-06 ")
@example(company="Acme", code="other", city="Shen\x07zhen", period="")
def test_what_the_report_form_accepts_every_node_accepts(company, code, city, period):
    """A report the form's checks let through is one the protocol's grammar accepts, so a
    member never gets past the form to a refusal at signing."""
    try:
        values = (pages._one_line(company, Msg("empty")), pages._practice("__other__", code),
                  pages._one_line(city, None), pages._period(period))
    except FormError:
        return
    post = organizing.create_report(key(3), board="labor", company=values[0], practice=values[1],
                                    city=values[2] or None, period=values[3] or None, created_at_ms=T0_MS)
    assert isinstance(organizing.parse_object(post), organizing.Report)


async def test_core_author_publishes_an_object_with_the_profile_first(harness):
    author = CoreAuthor(harness.core)
    k = key(3)
    told: list = []
    harness.core.on_new_posts.append(lambda new, source=None: told.extend(p.kind for p in new))
    draft = await author.publish(k, "lin", lambda now: organizing.create_letter(
        k, board="labor", title="Pay us", text="We ask.", created_at_ms=now), board="labor")
    assert draft.profile is not None and draft.profile.kind == posts.KIND_PROFILE
    stored = await harness.core.db.call(Store.object, draft.post.id)
    assert isinstance(stored, organizing.Letter) and stored.title == "Pay us"
    letters = await harness.core.db.call(lambda s: s.list_posts("labor", 10, kinds=[posts.KIND_LETTER]))
    assert [r.id for r in letters] == [draft.post.id]
    # The node's listeners (the push to peers, the author names, the live feed) are told at once.
    assert told == [posts.KIND_PROFILE, posts.KIND_LETTER]
    again = await author.publish(k, "lin", lambda now: organizing.create_letter(
        k, board="labor", title="Second", text="Again.", created_at_ms=now), board="labor")
    assert again.profile is None


async def test_report_corroboration_and_the_vouched_count(harness):
    fp = await _alice(harness)
    resp = await harness.post("/b/labor/companies", {"company": "Acme Logistics", "practice": "unpaid_overtime",
                                                     "city": "Shenzhen", "period": "2026-03",
                                                     "text": "Nobody is paid after 6.", "as": fp})
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/b/labor/company?c=acme+logistics"
    page = _text(await (await harness.client.get("/b/labor/companies")).text())
    assert "Acme Logistics" in page and "1 pseudonym, 0 vouched" in page
    found = await harness.core.db.call(Store.companies, "labor", now_ms=harness.core.now_ms())
    report = found.reports[0]
    # A stranger corroborates from another node; alice (a local pseudonym: a moderator here) vouches.
    stranger = key(9)
    corroboration = organizing.create_corroboration(stranger, report, created_at_ms=harness.core.now_ms(), text="me too")
    await harness.core.ingest_checked([corroboration], "http://peer.test:7470")
    page = _text(await (await harness.client.get("/b/labor/company?c=ACME  logistics")).text())
    assert "2 pseudonyms, 0 vouched" in page and "Shenzhen" in page and "Unpaid overtime" in page
    unlocked = harness.session().unlocked[fp]
    await CoreAuthor(harness.core).moderate(unlocked.key, board="labor", action="vouch", subject="author",
                                            target=stranger.public_key, reason="known")
    page = _text(await (await harness.client.get("/b/labor/company?c=acme logistics")).text())
    assert "2 pseudonyms, 1 vouched" in page and "vouched" in page
    # Alice corroborates her own company's report: still two pseudonyms.
    resp = await harness.post(f"/report/{report.id.hex()}/corroborate", {"text": "", "as": fp})
    assert resp.status == 303
    page = _text(await (await harness.client.get("/b/labor/company?c=acme logistics")).text())
    assert "2 pseudonyms, 1 vouched" in page and "Corroborations: 2" in page


async def test_bad_report_fields_write_nothing(harness):
    fp = await _alice(harness)
    before = await harness.snapshot()
    for bad in ({"company": "", "practice": "other"},
                {"company": "Acme", "practice": "__other__", "other": "Not A Code"},
                {"company": "Acme", "practice": "other", "period": "March"},
                {"company": "Acme", "practice": "other", "text": "bell \x07"},
                {"company": "Acme\x7f", "practice": "other"},
                {"company": "x" * 300, "practice": "other"}):
        resp = await harness.post("/b/labor/companies", {**bad, "as": fp})
        assert resp.status == 400, bad
        assert 'class="error"' in await resp.text()
    resp = await harness.post("/b/labor/companies", {"company": "Acme", "practice": "other", "period": "三月"},
                              lang="zh")
    assert resp.status == 400 and "月份" in await resp.text()
    assert await harness.snapshot() == before
    # Without an unlocked pseudonym nothing is signed either.
    await harness.post("/ids/lock", {"fp": "all"})
    before = await harness.snapshot()
    resp = await harness.post("/b/labor/companies", {"company": "Acme", "practice": "other"})
    assert resp.status == 400 and "Unlock a pseudonym first" in await resp.text()
    assert await harness.snapshot() == before


async def test_letter_sign_withdraw_and_deliver(harness):
    fp = await _alice(harness)
    resp = await harness.post("/b/labor/letters", {"title": "Pay the overtime", "text": "We ask the company.", "as": fp})
    assert resp.status == 303, await resp.text()
    url = resp.headers["Location"]
    letter_id = bytes.fromhex(url.rsplit("/", 1)[1])
    others = [organizing.create_signature(key(n), (await harness.core.db.call(Store.object, letter_id)),
                                          created_at_ms=harness.core.now_ms(), line=f"line {n}") for n in (4, 5)]
    await harness.core.ingest_checked(others, "http://peer.test:7470")
    resp = await harness.post(url + "/sign", {"line": "Solidarity", "as": fp})
    assert resp.status == 303
    page = _text(await (await harness.client.get(url)).text())
    assert "Signatures: 3, vouched: 0." in page and "Solidarity" in page
    assert "public and permanent" in page
    html = await (await harness.client.get(url)).text()
    withdraw = re.findall(r'action="(/withdraw/[0-9a-f]{64})"', html)
    assert len(withdraw) == 1
    resp = await harness.post(withdraw[0], {})
    assert resp.status == 303 and resp.headers["Location"] == url
    page = _text(await (await harness.client.get(url)).text())
    assert "Signatures: 2, vouched: 0." in page and "Withdraw my signature" not in page
    listing = _text(await (await harness.client.get("/b/labor/letters")).text())
    assert "Pay the overtime" in listing and "Signatures: 2, vouched: 0." in listing
    resp = await harness.post(url + "/deliver", {})
    assert resp.status == 200
    folder = re.search(r'<code class="path">([^<]+)</code>', await resp.text()).group(1)
    assert folder.startswith(str(harness.data.root / "deliveries" / letter_id.hex()[:16]))
    from pathlib import Path
    assert sorted(p.name for p in Path(folder).iterdir()) == ["VERIFY.txt", "letter.dzb", "letter.html",
                                                             "signatures.csv"]
    # Someone else's signature cannot be withdrawn from here.
    before = await harness.snapshot()
    resp = await harness.post(f"/withdraw/{others[0].id.hex()}", {})
    assert resp.status == 400
    assert await harness.snapshot() == before


async def test_pledge_met_shows_a_banner_on_the_boards_and_board_pages(harness):
    fp = await _alice(harness)
    resp = await harness.post("/b/labor/pledges", {"action": "Refuse overtime", "date": "2026-05-01",
                                                   "threshold": "2", "as": fp})
    assert resp.status == 303, await resp.text()
    url = resp.headers["Location"]
    pledge = await harness.core.db.call(Store.object, bytes.fromhex(url.rsplit("/", 1)[1]))
    assert "A pledge you made or joined is met" not in await (await harness.client.get("/b/labor")).text()
    joins = [organizing.create_signature(key(n), pledge, created_at_ms=harness.core.now_ms()) for n in (4, 5)]
    await harness.core.ingest_checked(joins, "http://peer.test:7470")
    page = _text(await (await harness.client.get(url)).text())
    assert "2 of 2 others pledged (0 vouched)" in page and "The threshold is met." in page
    for path in ("/", "/b/labor"):
        html = await (await harness.client.get(path)).text()
        assert "A pledge you made or joined is met" in html and "Refuse overtime" in html, path
    # A fresh pseudonym made for the pledge from its page: back to the pledge, and it signs.
    html = await (await harness.client.get(url)).text()
    assert f'name="next" value="{url}#join"' in html
    resp = await harness.post("/ids/new", {"name": "walkout-1", "passphrase": PASSPHRASE, "passphrase2": PASSPHRASE,
                                           "next": url + "#join"})
    assert resp.status == 303 and resp.headers["Location"] == url + "#join"
    fresh = harness.session().active
    assert fresh != fp
    assert (await harness.post(url + "/join", {"as": fresh})).status == 303
    page = _text(await (await harness.client.get(url)).text())
    assert "3 of 2 others pledged" in page and "walkout-1" in page
    before = await harness.snapshot()
    for bad in ({"action": "x", "date": "May", "threshold": "2"}, {"action": "x", "date": "2026-05-01",
                                                                    "threshold": "0"}):
        assert (await harness.post("/b/labor/pledges", {**bad, "as": fp})).status == 400
    assert await harness.snapshot() == before


async def test_pin_and_translation_on_a_thread(harness):
    fp = await _alice(harness)
    resp = await harness.post("/compose", {"board": "labor", "body": "How to claim unpaid wages", "action": "publish"})
    post_url = resp.headers["Location"]
    resp = await harness.post(post_url + "/pin", {"as": fp})
    assert resp.status == 303
    board = await (await harness.client.get("/b/labor")).text()
    assert "Pinned by your moderators" in board and f'href="{post_url}"' in board
    resp = await harness.post(post_url + "/translate", {"lang": "zh-Hans", "text": "如何讨回欠薪", "as": fp})
    assert resp.status == 303
    thread = await (await harness.client.get(post_url)).text()
    assert "如何讨回欠薪" in thread and 'lang="zh-Hans"' in thread and "Unpin" in thread
    before = await harness.snapshot()
    assert (await harness.post(post_url + "/translate", {"lang": "xx", "text": "t", "as": fp})).status == 400
    assert await harness.snapshot() == before
    # A reply's translation is shown under the reply on the thread's page.
    resp = await harness.post("/compose", {"board": "labor", "body": "Step one: keep your pay slips",
                                           "parent": post_url.rsplit("/", 1)[1], "action": "publish"})
    assert resp.status == 303, await resp.text()
    reply = (await harness.core.db.call(Store.newest_replies, bytes.fromhex(post_url.rsplit("/", 1)[1]), 1))[0]
    resp = await harness.post(f"/p/{reply.id.hex()}/translate", {"lang": "zh-Hans", "text": "第一步：保留工资单",
                                                                 "as": fp})
    assert resp.status == 303
    thread = await (await harness.client.get(post_url)).text()
    assert f'id="translations-{reply.id.hex()}"' in thread and "第一步：保留工资单" in thread
    pin_id = re.search(r'action="/withdraw/([0-9a-f]{64})"', thread).group(1)
    assert (await harness.post(f"/withdraw/{pin_id}", {})).status == 303
    assert "Pinned by your moderators" not in await (await harness.client.get("/b/labor")).text()


async def test_pages_render_in_chinese(harness):
    fp = await _alice(harness)
    await harness.post("/b/labor/companies", {"company": "Acme", "practice": "wage_arrears", "as": fp})
    for path in ("/b/labor/companies", "/b/labor/company?c=acme", "/b/labor/letters", "/b/labor/pledges"):
        resp = await harness.client.get(path, headers={"Accept-Language": "zh-CN"})
        assert resp.status == 200, path
        assert 'lang="zh-Hans"' in await resp.text()

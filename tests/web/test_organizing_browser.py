"""Collective action in a real browser (headless Chromium) against real `dazibao run` processes
on 127.0.0.1 that exchange what they sign with `dazibao sync`: a company report corroborated
from a second node and vouched for; a letter signed from three nodes, one signature withdrawn,
and its delivery folder checked offline with `dazibao import` on an empty node; and, in
Chinese, a pledge that reaches its threshold shown on every pledger's node, and a pinned guide
shown only to a follower of the moderator who pinned it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dazibao.node.config import DataDir
from dazibao.node.keys import KeyStore
from dazibao.node.store import Store
from dazibao.protocol import identity, posts

from ..node.procs import dazibao, posts_json, wait_until
from .conftest import FAST_KDF, PASSPHRASE, T0_MS, UiNode, seed_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _member(start_node, tmp_path: Path, name: str, n: int, batch=()) -> tuple[UiNode, str]:
    """A node holding one pseudonym ``name`` (key seed ``n``); its public key in hex."""
    data = tmp_path / name
    seed_store(data, list(batch))
    KeyStore(data / "keys", kdf=FAST_KDF).create(name, PASSPHRASE, seed=bytes([n]) * 32)
    return start_node(name), identity.SigningKey(bytes([n]) * 32).public_key.hex()


def _unlock(page, node: UiNode) -> None:
    page.goto(node.ui_url + "ids")
    if page.locator("form.unlock").count() == 0:  # unlocked in this browser already
        return
    page.locator("form.unlock input[name=passphrase]").fill(PASSPHRASE)
    page.locator("form.unlock button[type=submit]").click()
    expect(page.locator("form.unlock")).to_have_count(0)


def _sync(a: UiNode, b: UiNode) -> None:
    """``a`` reconciles with ``b`` (both directions), as a member would with `dazibao sync`."""
    dazibao(a.data, "sync", b.url)


def _has(node: UiNode, kind: str, count: int) -> bool:
    with Store(str(DataDir(node.data).database), read_only=True) as store:
        return len(store.list_posts("labor", count, kinds=[kind])) >= count


def test_report_corroborated_and_a_letter_signed_from_three_nodes(start_node, new_context, tmp_path):
    seed = [posts.create_post(identity.SigningKey(bytes([9]) * 32), kind="post", board="labor", body="Welcome",
                              created_at_ms=T0_MS)]
    a, a_key = _member(start_node, tmp_path, "amy", 11, seed)
    b, b_key = _member(start_node, tmp_path, "bo", 12, seed)
    c, _ = _member(start_node, tmp_path, "chen", 13, seed)
    context, watch = new_context([a.origin, b.origin, c.origin])
    page = context.new_page()

    # Amy files a report on node A; the form says who signs.
    _unlock(page, a)
    page.goto(a.ui_url + "b/labor")
    page.locator("nav.organizing-links").get_by_role("link", name="Companies").click()
    form = page.locator("form.report-form")
    expect(form.locator(".publishing-as")).to_contain_text("amy")
    form.get_by_label("Company").fill("Acme Logistics")
    form.locator("select[name=practice]").select_option("unpaid_overtime")
    form.get_by_label("City (optional)").fill("Shenzhen")
    form.get_by_label("When (optional)").fill("2026-03")
    form.get_by_role("button", name="Sign and publish the report").click()
    expect(page.locator("h1")).to_contain_text("Acme Logistics")
    expect(page.locator(".summary")).to_contain_text("1 pseudonym, 0 vouched")

    # Bo, on node B, corroborates it: "this happened to me too".
    _sync(b, a)
    wait_until(lambda: _has(b, "report", 1), "the report reaches B")
    _unlock(page, b)
    page.goto(b.ui_url + "b/labor/companies")
    page.get_by_role("link", name="Acme Logistics").click()
    page.get_by_role("button", name="This happened to me too").click()
    expect(page.locator(".summary")).to_contain_text("2 pseudonyms, 0 vouched")

    # Back on A: two pseudonyms; once Amy (a moderator on her own node) vouches for Bo, one vouched.
    _sync(a, b)
    wait_until(lambda: _has(a, "corroboration", 1), "the corroboration reaches A")
    dazibao(a.data, "moderate", "vouch", "labor", "--author", b_key, "--reason", "trusted", "--as", "amy")
    page.goto(a.ui_url + "b/labor/companies")
    row = page.locator("tr.company").filter(has_text="Acme Logistics")
    expect(row).to_contain_text("2 pseudonyms, 1 vouched")
    expect(page.locator(".vouched-note")).to_be_visible()

    # A letter written and signed on A, then signed on B and C.
    _unlock(page, a)
    page.goto(a.ui_url + "b/labor/letters")
    page.get_by_label("Title").fill("Pay the overtime")
    page.get_by_label("Text of the letter").fill("We ask Acme Logistics to pay every hour worked.")
    page.get_by_role("button", name="Sign and publish the letter").click()
    expect(page.locator("p.warning")).to_contain_text("public and permanent")
    page.get_by_role("button", name="Sign", exact=True).click()
    letter_url = page.url
    letter_path = letter_url.split("/", 3)[3]
    for other in (b, c):
        _sync(other, a)
        wait_until(lambda other=other: _has(other, "letter", 1), "the letter arrives")
        _unlock(page, other)
        page.goto(other.ui_url + letter_path)
        page.get_by_label("Public line (optional), shown beside your signature").fill(f"from {other.data.name}")
        page.get_by_role("button", name="Sign", exact=True).click()
        expect(page.locator(".signature-count")).to_contain_text("Signatures:")
        _sync(a, other)
    wait_until(lambda: _has(a, "signature", 3), "three signatures on A")
    page.goto(letter_url)
    expect(page.locator(".signature-count")).to_contain_text("Signatures: 3, vouched: 1.")
    expect(page.locator("ol.signers")).to_contain_text("from chen")

    # Amy withdraws her signature; then makes the delivery folder.
    page.get_by_role("button", name="Withdraw my signature").click()
    expect(page.locator(".signature-count")).to_contain_text("Signatures: 2, vouched: 1.")
    expect(page.get_by_role("button", name="Withdraw my signature")).to_have_count(0)
    page.get_by_role("button", name="Make the delivery folder").click()
    folder = Path(page.locator("section.delivered code.path").inner_text())
    assert folder.parent == a.data / "deliveries"
    assert (folder / "VERIFY.txt").exists()

    # The recipient checks the bundle offline, on an empty node.
    empty = tmp_path / "recipient"
    seed_store(empty, [])
    dazibao(empty, "import", str(folder / "letter.dzb"))
    kinds = [p["kind"] for p in posts_json(empty, "labor")]
    assert kinds.count("letter") == 1 and kinds.count("signature") == 2
    watch.check(page)


def test_pledge_met_and_pinned_guide_in_chinese(start_node, new_context, tmp_path):
    guide = posts.create_post(identity.SigningKey(bytes([9]) * 32), kind="post", board="labor",
                              body="如何讨回欠薪：一步一步", created_at_ms=T0_MS)
    a, a_key = _member(start_node, tmp_path, "amy", 21, [guide])
    b, _ = _member(start_node, tmp_path, "bo", 22, [guide])
    c, _ = _member(start_node, tmp_path, "chen", 23, [guide])
    context, watch = new_context([a.origin, b.origin, c.origin], locale="zh-CN")
    page = context.new_page()

    # Amy pledges on A, in Chinese: she acts if one other pledges too.
    _unlock(page, a)
    page.goto(a.ui_url + "b/labor/pledges")
    expect(page.locator("p.warning")).to_contain_text("公开且永久")
    expect(page.get_by_role("link", name="为这次承诺新建一个化名")).to_be_visible()
    form = page.locator("form.pledge-form")
    form.locator("input[name=action]").fill("拒绝周六加班")
    form.locator("input[name=date]").fill("2026-05-02")
    form.locator("input[name=threshold]").fill("1")
    form.locator("button[type=submit]").click()
    expect(page.locator(".progress")).to_contain_text("已有 0 人响应，目标 1 人")
    pledge_path = page.url.split("/", 3)[3]
    page.goto(a.ui_url)
    expect(page.locator(".met-pledges")).to_have_count(0)

    # Bo joins on B: the pledge is met, and both pledgers' nodes say so on their boards pages.
    _sync(b, a)
    wait_until(lambda: _has(b, "pledge", 1), "the pledge reaches B")
    _unlock(page, b)
    page.goto(b.ui_url + pledge_path)
    page.locator("form.join-form button[type=submit]").click()
    expect(page.locator(".pledge-met")).to_contain_text("已达到人数")
    for node in (b, a):
        if node is a:
            _sync(a, b)
            wait_until(lambda: _has(a, "signature", 1), "the pledge's signature reaches A")
        page.goto(node.ui_url)
        expect(page.locator(".met-pledges")).to_contain_text("拒绝周六加班")
        page.goto(node.ui_url + "b/labor")
        expect(page.locator(".met-pledges")).to_contain_text("你发起或参加的承诺已达到人数")

    # Amy pins the guide; B follows Amy as a moderator of labor, C does not.
    _unlock(page, a)
    page.goto(a.ui_url + f"p/{guide.id.hex()}")
    page.get_by_role("button", name="置顶到版块顶部").click()
    expect(page.get_by_role("button", name="取消置顶")).to_be_visible()
    dazibao(b.data, "moderators", "add", "labor", a_key)
    for node in (b, c):
        _sync(node, a)
        wait_until(lambda node=node: _has(node, "pin", 1), "the pin arrives")
    page.goto(b.ui_url + "b/labor")
    expect(page.locator("section.pinned")).to_contain_text("如何讨回欠薪")
    page.goto(c.ui_url + "b/labor")
    expect(page.locator("section.pinned")).to_have_count(0)
    assert re.search("如何讨回欠薪", page.locator("main").inner_text())  # listed as a thread, not pinned
    watch.check(page)

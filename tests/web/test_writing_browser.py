"""Signer clarity and drafts in a real browser (headless Chromium) against `dazibao run`:
the wrong-signer trap (publish as B in a thread: the reply form then defaults to B, and
choosing A asks to confirm first), and a draft that survives the idle lock."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dazibao.protocol import posts

from .conftest import PASSPHRASE, T0_MS, key

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _create_pseudonym(page, ui_url: str, name: str) -> str:
    page.goto(ui_url + "ids")
    form = page.locator("form[action='/ids/new']")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=passphrase]").fill(PASSPHRASE)
    form.locator("input[name=passphrase2]").fill(PASSPHRASE)
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice").first).to_contain_text("created and unlocked")
    return page.locator(".ids li.active .fp").inner_text()


def _thread(board: str) -> posts.Post:
    return posts.create_post(key(9), kind="post", board=board, body="加班费怎么算？", created_at_ms=T0_MS)


def test_wrong_signer_trap(start_node, new_context):
    root = _thread("劳动法")
    node = start_node("signer", batch=[root])
    context, watch = new_context([node.origin])
    page = context.new_page()
    a = _create_pseudonym(page, node.ui_url, "阿明")
    b = _create_pseudonym(page, node.ui_url, "小白")
    page.locator(".ids li").filter(has_text=a).get_by_role("button", name="Sign with this one").click()
    expect(page.locator(".who")).to_contain_text("阿明")

    # The reply form says who publishes, next to its button; publish as B.
    page.goto(node.ui_url + f"p/{root.id.hex()}")
    form = page.locator("section.replies form.compose")
    expect(form.locator(".buttons .publishing-as")).to_contain_text("Publishing as")
    expect(form.locator("select[name=as]")).to_have_value(a)
    form.locator("textarea[name=body]").fill("我是小白")
    form.locator("select[name=as]").select_option(b)
    form.get_by_role("button", name="Reply").click()
    expect(page.locator("#live-list article.post")).to_have_count(1)
    expect(page.locator("#live-list article.post .fp")).to_have_text(b)

    # The reply form now defaults to B, the pseudonym used in this thread.
    form = page.locator("section.replies form.compose")
    expect(form.locator("select[name=as]")).to_have_value(b)
    expect(form.locator(".thread-signer")).to_contain_text(b)

    # Choosing A asks to confirm first, and says why; nothing is published meanwhile.
    form.locator("textarea[name=body]").fill("我是阿明")
    form.locator("select[name=as]").select_option(a)
    form.get_by_role("button", name="Reply").click()
    expect(page.locator("h1")).to_have_text("Publish under another pseudonym?")
    expect(page.locator("main")).to_contain_text("links them publicly")
    page.get_by_role("button", name=re.compile("instead$")).click()  # keep B after all
    expect(page.locator("#live-list article.post")).to_have_count(2)
    expect(page.locator("#live-list article.post").nth(1).locator(".fp")).to_have_text(b)
    watch.check(page)


def test_draft_survives_the_idle_lock(start_node, new_context):
    root = _thread("劳动法")
    node = start_node("drafts", batch=[root], DAZIBAO_UI_IDLE_LOCK_S="3")
    context, watch = new_context([node.origin])
    page = context.new_page()
    fp = _create_pseudonym(page, node.ui_url, "阿明")

    page.goto(node.ui_url + f"p/{root.id.hex()}")
    page.locator("section.replies textarea[name=body]").fill("草稿：周末加班应当支付双倍工资。")
    page.wait_for_timeout(4_000)  # idle past the lock
    page.locator("section.replies button[value=publish]").click()

    # Not published: the text is kept, and unlocking leads back to the form with it.
    expect(page.locator(".draft-kept")).to_contain_text("kept as a draft")
    page.locator(".draft-kept a").click()
    unlock = page.locator(".ids li").filter(has_text=fp).locator("form.unlock")
    unlock.locator("input[name=passphrase]").fill(PASSPHRASE)
    unlock.get_by_role("button", name="Unlock").click()
    expect(page).to_have_url(re.compile(rf"/p/{root.id.hex()}#reply$"))
    expect(page.locator("section.replies textarea[name=body]")).to_have_value("草稿：周末加班应当支付双倍工资。")
    expect(page.locator("#live-list article.post")).to_have_count(0)

    # Now it is published, once.
    page.locator("section.replies button[value=publish]").click()
    expect(page.locator("#live-list article.post")).to_have_count(1)
    page.goto(node.ui_url + f"p/{root.id.hex()}")
    expect(page.locator("section.replies textarea[name=body]")).to_have_value("")
    watch.check(page)

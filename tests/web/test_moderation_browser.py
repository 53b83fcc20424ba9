"""Moderation in a real browser (headless Chromium) against a real `dazibao run` process: a
member hides a post with a signed statement, after confirming; the post is then shown
collapsed with who hid it and why, and revealed with a click (no script needed)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from dazibao.protocol import posts

from .conftest import PASSPHRASE, T0_MS, key

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_hide_then_collapsed_then_reveal(start_node, new_context):
    board = "劳动法"
    spam = posts.create_post(key(9), kind="post", board=board, body="低价手表 cheap watches\n\nbuy now",
                             created_at_ms=T0_MS)
    node = start_node("moderation", batch=[spam])
    context, watch = new_context([node.origin])
    page = context.new_page()

    # A pseudonym to sign with.
    page.goto(node.ui_url + "ids")
    form = page.locator("form[action='/ids/new']")
    form.locator("input[name=name]").fill("版主小王")
    form.locator("input[name=passphrase]").fill(PASSPHRASE)
    form.locator("input[name=passphrase2]").fill(PASSPHRASE)
    form.locator("button[type=submit]").click()
    expect(page.locator(".who")).to_contain_text("版主小王")
    fp = page.locator(".ids li.active .fp").inner_text()

    # The thread: the post is shown as usual, with a "Moderate" action under it.
    page.goto(node.ui_url + f"p/{spam.id.hex()}")
    article = page.locator("article.post").first
    expect(article.locator(".body")).to_contain_text("cheap watches")
    article.get_by_role("link", name="Moderate").click()
    expect(page).to_have_url(re.compile(r"/moderate$"))

    # Hide this post as spam, for 30 days; review, then confirm.
    moderate = page.locator("form.moderate-form")
    moderate.locator("input[name=subject][value=post]").check()
    moderate.locator("input[name=action][value=hide]").check()
    moderate.locator("select[name=reason]").select_option("spam")
    moderate.locator("input[name=expires]").fill("30")
    expect(moderate).to_contain_text(fp)  # "Publishing as NAME · fingerprint"
    moderate.get_by_role("button", name="Review…").click()
    expect(page.locator("h1")).to_have_text("Publish this statement?")
    expect(page.locator(".publishing-as")).to_contain_text("版主小王")
    expect(page.locator(".publishing-as")).to_contain_text(fp)
    page.get_by_role("button", name="Sign and publish").click()

    # Back on the thread: collapsed, with who hid it and why; the text is not visible ...
    expect(page.locator(".notice").first).to_contain_text("Your statement was published")
    article = page.locator("article.post").first
    expect(article.locator(".hidden-by")).to_contain_text("Hidden by")
    expect(article.locator(".hidden-by")).to_contain_text("版主小王")
    expect(article.locator(".hidden-by")).to_contain_text(fp)
    expect(article.locator(".hidden-by")).to_contain_text("(spam)")
    body = article.locator("details.reveal .body")
    expect(body).to_be_hidden()
    # ... until the member reveals it.
    article.locator("details.reveal summary").click()
    expect(body).to_be_visible()
    expect(body).to_contain_text("cheap watches")

    # The board page shows it collapsed too.
    page.goto(node.ui_url + "b/" + quote(board, safe=""))
    thread = page.locator(f"#p-{spam.id.hex()}")
    expect(thread.locator(".hidden-by")).to_contain_text("版主小王")
    expect(thread.locator("details.reveal a.title")).to_be_hidden()
    thread.locator("details.reveal summary").click()
    expect(thread.locator("details.reveal a.title")).to_be_visible()
    watch.check(page)

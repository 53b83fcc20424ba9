"""The member UI in a real browser (headless Chromium) against real `dazibao run` processes:
what a member does, two nodes syncing, and the screenshots shown in README.md."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from dazibao.protocol import posts

from .conftest import PASSPHRASE, T0_MS, WAIT_MS, key

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def _profile(n: int, name: str, board: str, at: int = T0_MS) -> posts.Post:
    return posts.create_post(key(n), kind="profile", board=board, body=name, created_at_ms=at)


def _post(n: int, board: str, body: str, at: int, parent: posts.Post | None = None) -> posts.Post:
    return posts.create_post(key(n), kind="reply" if parent else "post", board=board, body=body, created_at_ms=at,
                             parent=parent.id if parent else None)


def _board_url(node, board: str) -> str:
    return node.ui_url + "b/" + quote(board, safe="")


def _create_pseudonym(page, ui_url: str, name: str, board: str) -> str:
    page.goto(ui_url + "ids")
    form = page.locator("form[action='/ids/new']")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=passphrase]").fill(PASSPHRASE)
    form.locator("input[name=passphrase2]").fill(PASSPHRASE)
    form.locator("input[name=board]").fill(board)
    form.locator("button[type=submit]").click()
    expect(page.locator(".notice").first).to_contain_text("created and unlocked")
    expect(page.locator(".who")).to_contain_text(name)
    return page.locator(".ids li.active .fp").inner_text()


def test_member_flow(start_node, new_context):
    board = "劳动法"
    stranger_post = _post(9, board, "工资拖欠三个月了，怎么办？", T0_MS + 1)
    node = start_node("member", batch=[_profile(9, "陌生人", board), stranger_post])
    context, watch = new_context([node.origin])
    page = context.new_page()

    page.goto(node.ui_url)
    expect(page.locator(".boards")).to_contain_text(board)
    fp = _create_pseudonym(page, node.ui_url, "小明", board)
    assert re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){5}", fp)

    # A new post, previewed first.
    page.goto(_board_url(node, board))
    page.locator("details.new-post summary").click()
    page.locator(".new-post textarea[name=body]").fill("加班费怎么算？\n\n周末加班只给**调休**，合法吗？")
    page.locator(".new-post button[value=preview]").click()
    expect(page.locator(".preview strong")).to_have_text("调休")
    page.locator("form.compose button[value=publish]").click()
    post = page.locator("article.post").first
    expect(post.locator(".body strong")).to_have_text("调休")
    expect(post.locator(".author .name")).to_have_text("小明")
    expect(post.locator(".author .fp")).to_have_text(fp)
    thread_url = page.url

    # A reply.
    page.locator("section.replies textarea[name=body]").fill("同意。保留打卡记录：`上班 9:00`")
    page.locator("section.replies button[value=publish]").click()
    replies = page.locator("#live-list article.post")
    expect(replies).to_have_count(1)
    expect(replies.first.locator(".body code")).to_have_text("上班 9:00")

    # The board lists the thread, newest activity first, with its reply count.
    page.goto(_board_url(node, board))
    expect(page.locator(".threads li").first).to_contain_text("加班费怎么算？")
    expect(page.locator(".threads li").first).to_contain_text("1 reply")

    # Search in Chinese, two-character and longer terms, highlighted.
    page.goto(node.ui_url + "search")
    page.locator("input[name=q]").fill("调休")
    page.locator("form.search button[type=submit]").click()
    expect(page.locator(".results li")).to_have_count(1)
    expect(page.locator(".results mark")).to_have_text("调休")
    page.goto(node.ui_url + "search?q=" + quote("打卡记录"))
    expect(page.locator(".results mark")).to_have_text("打卡记录")
    page.goto(node.ui_url + "search?q=" + quote("工资 怎么办"))
    expect(page.locator(".results li")).to_have_count(1)
    expect(page.locator(".results mark")).to_have_count(2)

    # Retract the reply.
    page.goto(thread_url)
    page.locator("#live-list article.post").first.get_by_role("link", name="Retract").click()
    expect(page).to_have_url(re.compile(r"/retract$"))
    page.locator("form.buttons button.danger").click()
    expect(page.locator(".notice")).to_contain_text("retracted")
    expect(page.locator("#live-list article.post")).to_have_count(0)
    page.goto(node.ui_url + "search?q=" + quote("打卡记录"))
    expect(page.locator(".results li")).to_have_count(0)

    # Hide the stranger: their thread disappears from the board; show them again.
    page.goto(_board_url(node, board))
    page.get_by_role("link", name="工资拖欠三个月了，怎么办？").click()
    expect(page.locator("article.post .author .name")).to_have_text("陌生人")
    page.get_by_role("button", name="Hide this author").click()
    expect(page.locator("main")).to_contain_text("local to this node")  # asks to confirm first
    page.locator("form.buttons button.danger").click()
    expect(page.locator(".notice").first).to_contain_text("now hidden")
    page.goto(_board_url(node, board))
    expect(page.locator(".threads li")).to_have_count(1)
    expect(page.locator("main")).to_contain_text("1 post by a hidden author is not shown.")
    page.goto(node.ui_url + "hidden")
    expect(page.locator(".hidden-authors li")).to_have_count(1)
    expect(page.locator(".hidden-authors")).to_contain_text("陌生人")
    page.get_by_role("button", name="Show again").click()
    expect(page.locator(".hidden-authors li")).to_have_count(0)
    page.goto(_board_url(node, board))
    expect(page.locator(".threads li")).to_have_count(2)

    # Export the key file: the encrypted file, as a download.
    page.goto(node.ui_url + "ids")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export key file").click()
    saved = Path(download.value.path()).read_bytes()
    assert saved == (node.data / "keys" / f"{fp}.dzbkey").read_bytes()
    assert download.value.suggested_filename == f"{fp}.dzbkey"

    # Lock, a wrong passphrase, unlock.
    page.locator(".who button").click()
    expect(page.locator(".who")).to_contain_text("No pseudonym unlocked.")
    page.locator(".unlock input[name=passphrase]").fill("not the passphrase")
    page.locator(".unlock button").click()
    expect(page.locator(".error")).to_contain_text("Wrong passphrase for 小明")
    page.locator(".unlock input[name=passphrase]").fill(PASSPHRASE)
    page.locator(".unlock button").click()
    expect(page.locator(".who")).to_contain_text("小明")

    # The status page, then the whole UI in Chinese.
    page.goto(node.ui_url + "status")
    expect(page.locator(".facts")).to_contain_text("Posts stored")
    page.locator("footer button[value=zh-Hans]").click()
    expect(page.locator("nav[aria-label] a").first).to_have_text("版块")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    watch.check(page)


def test_post_written_in_one_ui_appears_in_the_other(start_node, new_context):
    b = start_node("b")
    a = start_node("a", peers=(b.url,))  # the eager push from a reaches b; anti-entropy is hourly
    context, watch = new_context([a.origin, b.origin])
    page_a, page_b = context.new_page(), context.new_page()
    page_b.goto(_board_url(b, "news"))
    expect(page_b.locator("main")).to_contain_text("No posts on this board yet.")

    fp = _create_pseudonym(page_a, a.ui_url, "organizer", "news")
    page_a.goto(a.ui_url + "compose?board=news")
    page_a.locator("textarea[name=body]").fill("Strike on Friday\n\nMeet at the **north gate**.")
    page_a.locator("button[value=publish]").click()
    expect(page_a.locator("article.post .body strong")).to_have_text("north gate")

    # The open page of node b shows it without a reload (static/live.js) ...
    arrived = page_b.locator("#live-list li", has_text="Strike on Friday")
    expect(arrived).to_be_visible(timeout=WAIT_MS)
    expect(arrived.locator(".fp")).to_have_text(fp)
    # ... and after a reload, rendered by node b, with the author's name and fingerprint.
    page_b.reload()
    page_b.get_by_role("link", name="Strike on Friday").click()
    expect(page_b.locator("article.post .body strong")).to_have_text("north gate")
    expect(page_b.locator("article.post .author .name")).to_have_text("organizer")
    expect(page_b.locator("article.post .author .fp")).to_have_text(fp)
    # Each UI has its own session: nothing is unlocked on node b.
    expect(page_b.locator(".who")).to_contain_text("No pseudonym unlocked.")
    watch.check(page_a)
    watch.check(page_b)


def test_screenshots_for_the_readme(start_node, new_context, tmp_path):
    """Takes board.png and thread.png (fixed keys, texts and times): into docs/screenshots when
    DAZIBAO_WRITE_SCREENSHOTS=1, else into a temporary folder, so that a test run never
    changes a tracked file."""
    out = DOCS if os.environ.get("DAZIBAO_WRITE_SCREENSHOTS") == "1" else tmp_path
    board = "劳动法"
    names = {1: "小明", 2: "Li Wei", 3: "organizer-北京", 4: "张姐"}
    batch = [_profile(n, name, board) for n, name in names.items()]
    root = _post(1, board, "加班费怎么算？\n\n公司说**周末加班**只给调休，不给加班费。这合法吗？", T0_MS + 60_000)
    meeting = _post(2, board, "Meeting on Friday at noon\n\n> bring your contract and your pay slips\n\n"
                              "Details: https://example.org/meeting", T0_MS + 120_000)
    notice = _post(4, board, "食堂涨价的事，大家怎么看？", T0_MS + 30_000)
    replies = [
        _post(3, board, "根据《劳动法》第四十四条：休息日安排劳动者工作又不能安排补休的，支付不低于工资的"
                        "**百分之二百**的工资报酬。", T0_MS + 180_000, root),
        _post(2, board, "Same here. Keep a record of your hours: `date, start, end`.", T0_MS + 240_000, root),
        _post(4, board, "> 只给调休\n\n调休也要双方同意才行。", T0_MS + 300_000, root),
    ]
    node = start_node("shots", batch=batch + [root, meeting, notice] + replies)
    out.mkdir(parents=True, exist_ok=True)

    context, watch = new_context([node.origin], viewport={"width": 960, "height": 620})
    page = context.new_page()
    page.goto(_board_url(node, board))
    expect(page.locator(".threads li")).to_have_count(3)
    page.screenshot(path=str(out / "board.png"))

    phone, phone_watch = new_context([node.origin], viewport={"width": 390, "height": 844}, locale="zh-CN",
                                     device_scale_factor=1, is_mobile=True, has_touch=True)
    page2 = phone.new_page()
    page2.goto(node.ui_url + f"p/{root.id.hex()}")
    expect(page2.locator("#live-list article.post")).to_have_count(3)
    page2.screenshot(path=str(out / "thread.png"), full_page=True)
    for name in ("board.png", "thread.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    watch.check(page)
    phone_watch.check(page2)

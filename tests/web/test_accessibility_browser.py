"""Accessibility and search in a real browser (headless Chromium) against a real `dazibao run`:
axe-core finds no serious or critical violation on the main pages, in both colour schemes and
both languages; a keyboard reaches the skip link first; a phone's tap targets are large enough;
Chinese bodies carry ``lang``; the characters-left counter; and search with punctuation, the
count, the thread title and the author filter."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from dazibao.protocol import identity, posts

from .conftest import PASSPHRASE, T0_MS, key

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BOARD = "劳动法"


def _post(n: int, body: str, at: int, parent: posts.Post | None = None, board: str = BOARD) -> posts.Post:
    return posts.create_post(key(n), kind="reply" if parent else "post", board=board, body=body,
                             created_at_ms=at, parent=parent.id if parent else None)


def _profile(n: int, name: str) -> posts.Post:
    return posts.create_post(key(n), kind="profile", board=BOARD, body=name, created_at_ms=T0_MS)


ROOT = _post(1, "加班费怎么算？\n\n公司说**周末加班**只给调休，不给加班费。", T0_MS + 60_000)
MEETING = _post(2, "Meeting on Friday\n\nUnpaid overtime, again: bring your pay slips.", T0_MS + 120_000)
REPLIES = [
    _post(3, "根据《劳动法》第四十四条，休息日加班要付加班费。", T0_MS + 180_000, ROOT),
    _post(2, "Same here. Keep a record of your hours.", T0_MS + 240_000, ROOT),
]
BATCH = [_profile(1, "小明"), _profile(2, "Li Wei"), _profile(3, "张姐"), ROOT, MEETING, *REPLIES]


@pytest.fixture
def node(start_node):
    return start_node("a11y", batch=BATCH)


def _axe_problems(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_main_pages_pass_axe(node, new_context, scheme, locale):
    pytest.importorskip("axe_playwright_python", reason="pip install axe-playwright-python (the test extras)")
    context, watch = new_context([node.origin], locale=locale, color_scheme=scheme)
    page = context.new_page()
    paths = ["", "b/" + quote(BOARD, safe=""), f"p/{ROOT.id.hex()}", f"p/{REPLIES[0].id.hex()}",
             "search?q=" + quote("加班费"), "search?q=nothing-here", "ids", "status", "hidden",
             f"a/{key(2).public_key.hex()}"]
    problems = {}
    for path in paths:
        page.goto(node.ui_url + path)
        found = _axe_problems(page)
        if found:
            problems[path] = found
    assert not problems, problems
    watch.check(page)


def test_keyboard_headings_lang_and_tap_targets(node, new_context):
    context, watch = new_context([node.origin], viewport={"width": 390, "height": 844}, is_mobile=True,
                                 has_touch=True, locale="zh-CN")
    page = context.new_page()
    page.goto(node.ui_url + f"p/{ROOT.id.hex()}")
    # The first Tab reaches the skip link, and following it moves to the page's content.
    page.keyboard.press("Tab")
    skip = page.locator("a.skip")
    expect(skip).to_be_focused()
    expect(skip).to_have_text("跳到正文")
    assert skip.bounding_box()["y"] >= 0  # shown while it has the focus
    expect(page.locator("h1")).to_have_count(1)
    expect(page.locator("h1")).to_contain_text("加班费怎么算")
    # Chinese bodies say so; English ones are not marked with the page's language.
    expect(page.locator(f"#p-{ROOT.id.hex()} .body")).to_have_attribute("lang", "zh")
    expect(page.locator(f"#p-{REPLIES[1].id.hex()} .body")).to_have_attribute("lang", "")
    # Every control a finger aims at, outside running text, is at least 44 px high on a phone.
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        '.top nav a, button, input, select, textarea, .pager a, .post .actions a, .post .meta a, .crumbs a'))
        .filter(e => e.offsetParent !== null)
        .map(e => [e.outerHTML.slice(0, 80), e.getBoundingClientRect().height])
        .filter(([, h]) => h < 44)""")
    assert not small, small
    # Times say their zone.
    expect(page.locator(f"#p-{ROOT.id.hex()} time")).to_contain_text("UTC+00:00")
    watch.check(page)


def test_characters_left_as_the_member_types(node, new_context):
    context, watch = new_context([node.origin], locale="zh-CN")
    page = context.new_page()
    page.goto(node.ui_url + "ids")
    form = page.locator("form[action='/ids/new']")
    form.locator("input[name=name]").fill("阿明")
    form.locator("input[name=passphrase]").fill(PASSPHRASE)
    form.locator("input[name=passphrase2]").fill(PASSPHRASE)
    form.locator("input[name=board]").fill(BOARD)
    form.locator("button[type=submit]").click()
    page.goto(node.ui_url + f"p/{ROOT.id.hex()}")
    area = page.locator("section.replies textarea[name=body]")
    counter = page.locator("#reply-counter")
    area.fill("工" * 100)  # 300 bytes of 16,384: 16,084 left, 5,361 more Chinese characters
    expect(counter).to_have_text("还能输入 5,361 个字")
    area.fill("工" * 6000)
    expect(counter).to_have_text("超出 539 个字")
    expect(counter).to_have_class("counter over")
    # Without the script's help the server says the same.
    page.locator("section.replies button[value=publish]").click()
    expect(page.locator(".error")).to_contain_text("正文超出 539 个字")
    watch.check(page)


def test_search_punctuation_count_title_and_author(node, new_context):
    context, watch = new_context([node.origin])
    page = context.new_page()
    page.goto(node.ui_url + "search?q=" + quote("加班费？"))
    results = page.locator("ol.results > li")
    expect(results).to_have_count(2)
    expect(page.locator("p.count")).to_have_text("2 posts found.")
    # The reply shows the title of the thread it belongs to.
    reply = results.filter(has_text="第四十四条")
    expect(reply.locator(".title a")).to_have_text("加班费怎么算？")
    expect(reply.locator(".title a")).to_have_attribute("href", f"/p/{ROOT.id.hex()}")
    expect(reply.locator(".snippet")).to_have_attribute("lang", "zh")

    page.goto(node.ui_url + "search?q=" + quote("overtime,") + "&board=" + quote(BOARD))
    expect(results).to_have_count(1)
    expect(page.locator("p.count")).to_have_text("1 post found.")
    expect(results.first.locator("mark")).to_have_text("overtime")

    # One author's posts, from the field or the query.
    fp = identity.fingerprint(key(2).public_key)
    page.goto(node.ui_url + "search")
    page.locator("input[name=author]").fill(fp[:9])
    page.locator("form.search button[type=submit]").click()
    expect(results).to_have_count(2)
    expect(results.locator(".author .name")).to_have_text(["Li Wei", "Li Wei"])
    page.goto(node.ui_url + "search?q=" + quote(f"hours author:{fp}"))
    expect(results).to_have_count(1)
    page.goto(node.ui_url + "search?author=xyz")
    expect(page.locator(".error")).to_contain_text("first 8 characters")
    watch.check(page)


CONTRAST = """(sel) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const e = document.querySelector(sel);
  const s = getComputedStyle(e);
  let bg = e.parentElement;
  while (getComputedStyle(bg).backgroundColor === "rgba(0, 0, 0, 0)") { bg = bg.parentElement; }
  const [a, b] = [lum(s.borderTopColor), lum(getComputedStyle(bg).backgroundColor)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_field_borders_contrast_with_their_background(node, new_context, scheme):
    # WCAG 1.4.11: the edge of a text field is what shows where to type; axe does not check it.
    context, watch = new_context([node.origin], color_scheme=scheme)
    page = context.new_page()
    page.goto(node.ui_url + "search")
    for selector in ("input[name=q]", "input[name=board]", "form.search button[type=submit]"):
        assert page.evaluate(CONTRAST, selector) >= 3, selector
    watch.check(page)

"""Take the screenshots of docs/screenshots/: a node filled with sample posts, in headless
Chromium, at desktop and phone sizes, light and dark, English and Chinese.

    python -m tests.web.screenshots [OUT_DIR]

Fixed keys, texts and times (and TZ=UTC), so that a run changes a picture only when the UI
changed.  Each picture is one viewport (not the full page), at a device scale of 1, so that
the set stays a few hundred KB.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from dazibao.protocol import posts

from .conftest import CHROMIUM, CHROMIUM_ARGS, T0_MS, UiNode, key, node_env, seed_store

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BOARD = "劳动法"
DESKTOP = {"width": 960, "height": 620}
PHONE = {"width": 390, "height": 760}


def sample() -> tuple[list[posts.Post], posts.Post]:
    """The sample posts, and the thread the pictures show."""
    def post(n: int, body: str, minutes: int, parent: posts.Post | None = None) -> posts.Post:
        return posts.create_post(key(n), kind="reply" if parent else "post", board=BOARD, body=body,
                                 created_at_ms=T0_MS + minutes * 60_000, parent=parent.id if parent else None)

    names = {1: "小明", 2: "Li Wei", 3: "organizer-北京", 4: "张姐"}
    batch = [posts.create_post(key(n), kind="profile", board=BOARD, body=name, created_at_ms=T0_MS)
             for n, name in names.items()]
    root = post(1, "加班费怎么算？\n\n公司说**周末加班**只给调休，不给加班费。这合法吗？", 1)
    batch += [
        root,
        post(2, "Meeting on Friday at noon\n\n> bring your contract and your pay slips\n\n"
                "Details: https://example.org/meeting", 2),
        post(4, "食堂涨价的事，大家怎么看？", 0),
        post(3, "根据《劳动法》第四十四条：休息日安排劳动者工作又不能安排补休的，支付不低于工资的"
                "**百分之二百**的工资报酬。", 3, root),
        post(2, "Same here. Keep a record of your hours: `date, start, end`.", 4, root),
        post(4, "> 只给调休\n\n调休也要双方同意才行。", 5, root),
    ]
    return batch, root


def take(out: Path) -> list[Path]:
    """Write the pictures into ``out``; return their paths."""
    from playwright.sync_api import sync_playwright

    batch, root = sample()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="dazibao-shots-") as tmp:
        data = Path(tmp) / "node"
        seed_store(data, batch)
        node = UiNode(data, env=node_env()).start()
        try:
            board_url = node.ui_url + "b/" + quote(BOARD, safe="")
            shots = [
                ("desktop-light-en-board.png", DESKTOP, "light", "en-US", board_url, False),
                ("desktop-dark-zh-search.png", DESKTOP, "dark", "zh-CN", node.ui_url + "search?q=" + quote("加班费？"),
                 False),
                ("phone-light-zh-thread.png", PHONE, "light", "zh-CN", node.ui_url + f"p/{root.id.hex()}", True),
                ("phone-dark-en-thread.png", PHONE, "dark", "en-US", node.ui_url + f"p/{root.id.hex()}", True),
            ]
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    for name, viewport, scheme, locale, url, phone in shots:
                        context = browser.new_context(viewport=viewport, color_scheme=scheme, locale=locale,
                                                      device_scale_factor=1, is_mobile=phone, has_touch=phone)
                        page = context.new_page()
                        page.goto(url)
                        page.wait_for_load_state("networkidle")
                        page.screenshot(path=str(out / name))
                        context.close()
                        written.append(out / name)
                finally:
                    browser.close()
        finally:
            node.stop()
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCS
    for path in take(target):
        print(f"{path} ({path.stat().st_size // 1024} KB)")

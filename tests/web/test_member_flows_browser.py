"""A new member's flows in a real browser (headless Chromium) against real `dazibao run`
processes: first steps without the terminal (a peer added and synced with, a key file
imported, a pseudonym removed), a reply typed before a restart of the node, the replies to
one's pseudonyms and the marks of what is new since the last visit; and the first steps in
Chinese on a phone-sized screen."""

from __future__ import annotations

import os
import re
import socket
import threading

import pytest
from playwright.sync_api import expect

from dazibao.node.config import DataDir
from dazibao.node.keys import KeyStore
from dazibao.node.store import Store
from dazibao.node.web.i18n import load_translations
from dazibao.protocol import identity, posts

from ..node.procs import posts_json
from .conftest import FAST_KDF, PASSPHRASE, T0_MS, UiNode, key, node_env, seed_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _post(n: int, board: str, body: str, at: int, parent: posts.Post | None = None) -> posts.Post:
    return posts.create_post(key(n), kind="reply" if parent else "post", board=board, body=body, created_at_ms=at,
                             parent=parent.id if parent else None)


def _profile(n: int, name: str, board: str) -> posts.Post:
    return posts.create_post(key(n), kind="profile", board=board, body=name, created_at_ms=T0_MS)


def test_first_steps_a_peer_added_in_the_ui_is_synced_with(start_node, new_context):
    stranger = _post(9, "labor", "Overtime is unpaid again this month.", T0_MS + 1)
    source = start_node("source", batch=[_profile(9, "Lin", "labor"), stranger])
    node = start_node("newcomer")
    context, watch = new_context([node.origin])
    page = context.new_page()

    # An empty node says what to do first, in words and links, not commands.
    page.goto(node.ui_url)
    steps = page.locator("section.first-steps")
    expect(steps).to_contain_text("Add a peer")
    assert "dazibao peers add" not in page.locator("main").inner_text()
    steps.get_by_role("link", name="Read what others can see before you start").click()
    expect(page.locator("main")).to_contain_text("Posts are public and permanent")
    expect(page.locator("main")).to_contain_text("which boards this node follows")
    expect(page.locator("main")).to_contain_text("shows its pseudonym's name in the clear")
    expect(page.locator("main")).to_contain_text("cannot tell whether this node wrote it")
    page.locator("ol.steps").get_by_role("link", name="Add a peer").click()

    # A bad address is explained and adds nothing; the source node's address is added.
    form = page.locator("form[action='/peers/add']")
    form.locator("input[name=url]").fill("ftp://example.org")
    form.get_by_role("button", name="Add peer").click()
    expect(page.locator(".error")).to_contain_text("not a peer address this node can use")
    expect(page.locator(".peers-list")).to_have_count(0)
    form.locator("input[name=url]").fill(source.url)
    form.get_by_role("button", name="Add peer").click()
    expect(page.locator(".notice")).to_contain_text("added")
    expect(page.locator(".peers-list li")).to_have_count(1)

    # Sync now: each peer's progress, on a page that reloads itself until it is done.
    page.get_by_role("button", name="Sync now").click()
    line = page.locator(".sync-progress li").filter(has_text=source.url)
    expect(line).to_have_attribute("data-phase", "done", timeout=30_000)
    expect(line).to_contain_text("Boards in common: labor")
    page.goto(node.ui_url)
    expect(page.locator(".boards")).to_contain_text("labor")
    page.goto(node.ui_url + "b/labor")
    expect(page.locator(".threads")).to_contain_text("Overtime is unpaid again this month.")
    assert stranger.id.hex() in {p["id"] for p in posts_json(node.data)}

    # Removed: no more syncs with it.
    page.goto(node.ui_url + "peers")
    page.locator(".peers-list li").filter(has_text=source.url).get_by_role("button", name="Remove").click()
    expect(page.locator(".notice")).to_contain_text("removed")
    expect(page.locator(".peers-list")).to_have_count(0)
    watch.check(page)


def test_a_key_file_is_imported_and_a_pseudonym_removed(start_node, new_context, tmp_path):
    node = start_node("keys")
    backup = tmp_path / "mei.dzbkey"
    backup.write_bytes(identity.seal_key_file(key(4), "Mei", PASSPHRASE, os.urandom, FAST_KDF))
    fp = identity.fingerprint(key(4).public_key)
    context, watch = new_context([node.origin])
    page = context.new_page()
    page.goto(node.ui_url + "ids")
    page.get_by_role("link", name="Import a key file").click()
    page.locator("input[name=keyfile]").set_input_files(str(backup))
    page.locator("input[name=passphrase]").fill("not the passphrase")
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".error")).to_contain_text("Wrong passphrase for Mei")
    assert not (node.data / "keys" / f"{fp}.dzbkey").exists()
    page.locator("input[name=keyfile]").set_input_files(str(backup))
    page.locator("input[name=passphrase]").fill(PASSPHRASE)
    page.get_by_role("button", name="Import").click()
    expect(page.locator(".notice")).to_contain_text("imported and unlocked")
    expect(page.locator(".who")).to_contain_text("Mei")
    assert (node.data / "keys" / f"{fp}.dzbkey").read_bytes() == backup.read_bytes()

    # Removing asks for the name, and says what stays and what is lost.
    page.locator(".ids li").filter(has_text=fp).get_by_role("link", name="Remove from this machine…").click()
    expect(page.locator("main")).to_contain_text("stay public and signed")
    expect(page.locator("main")).to_contain_text("deleted from this machine for good")
    page.locator("input[name=confirm_name]").fill("mei")
    page.get_by_role("button", name="Remove from this machine").click()
    expect(page.locator("p.error")).to_contain_text("nothing was removed")
    assert (node.data / "keys" / f"{fp}.dzbkey").exists()
    page.locator("input[name=confirm_name]").fill("Mei")
    page.get_by_role("button", name="Remove from this machine").click()
    expect(page.locator(".notice")).to_contain_text("was removed from this machine")
    expect(page.locator(".who")).to_contain_text("No pseudonym unlocked.")
    assert not (node.data / "keys" / f"{fp}.dzbkey").exists()
    watch.check(page)


# --- a reply typed before a restart ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FixedUiNode(UiNode):
    """`dazibao run` with its UI on a fixed port, so that a restarted node answers the page a
    browser still shows."""

    def __init__(self, *args, ui_port: int, **kwargs) -> None:
        super().__init__(*args, ui_listen=f"127.0.0.1:{ui_port}", **kwargs)


def _replies(data) -> list[str]:
    """The replies stored in ``data`` (read beside the running node, as another process may)."""
    store = Store(str(DataDir(data).database))
    try:
        return [r.body for r in store.list_posts(None, 100, kinds=["reply"])]
    finally:
        store.close()


def test_a_reply_typed_before_a_restart_is_kept_and_published_only_when_asked(tmp_path, new_context):
    root = _post(9, "labor", "Who else was told to stay late?", T0_MS)
    data = tmp_path / "restart"
    seed_store(data, [root])
    KeyStore(data / "keys", kdf=FAST_KDF).create("Ah Ming", PASSPHRASE)
    node = FixedUiNode(data, env=node_env(), ui_port=_free_port()).start()
    try:
        context, watch = new_context([node.origin])
        page = context.new_page()
        page.goto(node.ui_url + "ids")
        page.locator("form.unlock input[name=passphrase]").fill(PASSPHRASE)
        page.locator("form.unlock").get_by_role("button", name="Unlock").click()
        expect(page.locator(".who")).to_contain_text("Ah Ming")

        page.goto(node.ui_url + f"p/{root.id.hex()}")
        text = "Me too, three times last week."
        page.locator("section.replies textarea[name=body]").fill(text)
        node.stop()
        node.start()  # a real restart: sessions, unlocked keys and drafts were in the old process
        page.locator("section.replies button[value=publish]").click()

        # Nothing published; the member is asked to unlock, then finds the text in the form.
        expect(page).to_have_url(re.compile(r"/ids\?next="))
        expect(page.locator(".notice")).to_contain_text("Nothing was published: your text is kept")
        assert _replies(data) == []
        unlock = page.locator(".ids li").filter(has_text="Ah Ming").locator("form.unlock")
        unlock.locator("input[name=passphrase]").fill(PASSPHRASE)
        unlock.get_by_role("button", name="Unlock").click()
        expect(page).to_have_url(re.compile(rf"/p/{root.id.hex()}#reply$"))
        expect(page.locator("section.replies textarea[name=body]")).to_have_value(text)
        expect(page.locator("#live-list article.post")).to_have_count(0)
        assert _replies(data) == []

        page.locator("section.replies button[value=publish]").click()
        expect(page.locator("#live-list article.post")).to_have_count(1)
        assert _replies(data) == [text]
        watch.check(page)
    finally:
        node.stop()


# --- replies to me and what is new since the last visit -------------------------------------------------


def test_replies_to_my_pseudonyms_and_new_since_the_last_visit(start_node, new_context, tmp_path):
    mine = _post(5, "labor", "Shall we meet on Friday?", T0_MS)
    first = _post(9, "labor", "Friday works for me.", T0_MS + 1, mine)
    elsewhere = _post(7, "labor", "A thread of someone else", T0_MS + 2)
    data = tmp_path / "reader"
    seed_store(data, [_profile(5, "Ah Ming", "labor"), _profile(9, "Lin", "labor"), mine, first, elsewhere,
                      _post(8, "labor", "Not to me", T0_MS + 3, elsewhere)])
    KeyStore(data / "keys", kdf=FAST_KDF).create("Ah Ming", PASSPHRASE, seed=bytes([5]) * 32)
    node = start_node("reader")
    context, watch = new_context([node.origin])
    page = context.new_page()

    page.goto(node.ui_url)  # the first visit: what is here already is not "new"
    expect(page.locator(".boards .unread")).to_have_count(0)
    page.get_by_role("link", name="Replies to me").click()
    items = page.locator(".replies-to-me > li")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("Friday works for me.")
    expect(items.first.locator(".crumbs")).to_contain_text("Shall we meet on Friday?")
    page.goto(node.ui_url + "b/labor")
    page.goto(node.ui_url + f"p/{mine.id.hex()}")
    expect(page.locator(".unread-marker")).to_have_count(0)

    # Two replies arrive (another process writes the store; the node sees it within a second).
    second = _post(8, "labor", "Which café?", T0_MS + 10, mine)
    third = _post(9, "labor", "The one by the station.", T0_MS + 11, mine)
    seed_store(data, [second, third])
    page.goto(node.ui_url)
    expect(page.locator(".boards li").filter(has_text="labor").locator(".unread")).to_contain_text(
        "2 new since your last visit")
    page.goto(node.ui_url + "b/labor")
    thread = page.locator(".threads li").filter(has_text="Shall we meet on Friday?")
    expect(thread.locator(".unread")).to_contain_text("2 new replies since your last visit")
    expect(page.locator(".threads li").filter(has_text="someone else").locator(".unread")).to_have_count(0)
    page.goto(node.ui_url + "replies")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text("The one by the station.")  # newest first
    thread_url = node.ui_url + f"p/{mine.id.hex()}"
    page.goto(thread_url)
    # The marker sits right above the first reply that arrived since the last visit.
    marker_next = page.locator(".unread-marker + article.post")
    expect(marker_next).to_contain_text("Which café?")
    expect(page.locator(".unread-marker")).to_have_count(1)
    page.goto(thread_url)
    expect(page.locator(".unread-marker")).to_have_count(0)
    page.goto(node.ui_url)
    expect(page.locator(".boards .unread")).to_have_count(0)
    watch.check(page)


# --- in Chinese, on a phone --------------------------------------------------------------------------


def test_first_steps_in_chinese_on_a_phone_without_scripts(start_node, new_context):
    node = start_node("zh")
    context, watch = new_context([node.origin], viewport={"width": 390, "height": 844}, locale="zh-CN",
                                 is_mobile=True, has_touch=True, java_script_enabled=False)
    page = context.new_page()
    page.goto(node.ui_url)
    expect(page.locator("section.first-steps h2")).to_have_text("第一步")
    page.get_by_role("link", name="开始之前，先了解别人能看到什么").click()
    expect(page.locator("main")).to_contain_text("帖子是公开且永久的")
    page.goto(node.ui_url + "peers")
    expect(page.locator("h1")).to_have_text(load_translations()["zh-Hans"].gettext("Peers"))
    form = page.locator("form[action='/peers/add']")
    form.locator("input[name=url]").fill("ftp://example.org")
    form.get_by_role("button", name="添加").click()
    expect(page.locator(".error")).to_contain_text("这不是本节点可用的节点地址")
    form.locator("input[name=url]").fill("http://127.0.0.1:9")
    form.get_by_role("button", name="添加").click()
    expect(page.locator(".notice")).to_contain_text("已添加其他节点 http://127.0.0.1:9")
    # Without scripts too: nothing listens there, and the line says so.
    page.get_by_role("button", name="立即同步").click()
    expect(page.locator(".sync-progress li")).to_have_attribute("data-phase", "failed", timeout=30_000)
    expect(page.locator(".sync-progress li")).to_contain_text("失败：unreachable")
    # The page fits the phone's width: nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    watch.check(page)


def test_sync_progress_updates_in_place_with_scripts(start_node, new_context):
    # A peer that accepts the connection and says nothing until it hangs up.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True)
    accepting.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    node = start_node("live")
    context, watch = new_context([node.origin])
    page = context.new_page()
    try:
        page.goto(node.ui_url + "peers")
        page.locator("input[name=url]").fill(url)
        page.get_by_role("button", name="Add peer").click()
        page.get_by_role("button", name="Sync now").click()
        line = page.locator(".sync-progress li")
        expect(line).to_have_attribute("data-phase", "connecting")
        expect(page.get_by_role("button", name="Sync now")).to_be_disabled()
        page.evaluate("window.__samePage = true")
        accepting.join(timeout=20)
    finally:
        for conn in held:
            conn.close()
        server.close()
    # static/live.js updates the line where it is: the page was not reloaded.
    expect(line).to_have_attribute("data-phase", "failed", timeout=30_000)
    expect(line).to_contain_text("failed: unreachable")
    assert page.evaluate("window.__samePage === true")
    expect(page.get_by_role("button", name="Sync now")).to_be_enabled()
    expect(page.locator(".sync-running")).to_have_count(0)
    watch.check()

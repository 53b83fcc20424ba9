"""Hostile posts, display names and board names, signed and stored as a peer would deliver
them, rendered on every page type of a real node in a real browser.

On every page: no script of the page's content runs (no dialog, no ``window.__pwned``, no
page error), nothing is requested from another origin (every request is checked and any
foreign one aborted), and the DOM holds only the UI's own elements: no element outside the
templates' set, no event-handler or style attribute, no script but the UI's own file, and no
address to another origin except the http(s) links of post bodies, each with
rel="noopener noreferrer nofollow".
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from dazibao.node.config import DataDir
from dazibao.node.service import BOARDS_META
from dazibao.node.store import Store
from dazibao.protocol import identity, posts
from dazibao.protocol.errors import DazibaoError
from dazibao.protocol.moderation import create_charter, create_statement

from . import hostile
from .conftest import T0_MS, seed_store

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPLY_THREADS = 5

# Elements the templates produce, plus those of the formatting subset.
DOM_CHECK = """
() => {
  const allowed = new Set(['html', 'head', 'meta', 'title', 'link', 'script', 'body', 'header', 'div', 'a',
    'span', 'nav', 'form', 'input', 'button', 'main', 'p', 'footer', 'h1', 'h2', 'details', 'summary', 'label',
    'textarea', 'select', 'option', 'ol', 'ul', 'li', 'time', 'bdi', 'code', 'pre', 'em', 'strong',
    'blockquote', 'br', 'mark', 'article', 'section', 'dl', 'dt', 'dd', 'table', 'thead', 'tbody', 'tr',
    'th', 'td', 'datalist', 'fieldset', 'legend']);
  const urlAttrs = ['href', 'src', 'action', 'formaction', 'xlink:href', 'srcset', 'data', 'poster',
    'background', 'ping', 'manifest', 'cite'];
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    const tag = el.tagName.toLowerCase();
    if (!allowed.has(tag)) bad.push('element ' + tag);
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      if (name.startsWith('on')) bad.push(tag + ' has ' + name);
      if (name === 'style') bad.push(tag + ' has style');
      if (urlAttrs.includes(name)) {
        let url;
        try { url = new URL(attr.value, location.href); } catch (e) { bad.push('bad url ' + attr.value); continue; }
        if (url.origin === location.origin) continue;
        const fromBody = tag === 'a' && name === 'href' && el.closest('.body') !== null;
        if (!fromBody || !/^https?:$/.test(url.protocol) || el.rel !== 'noopener noreferrer nofollow')
          bad.push(tag + ' ' + name + '=' + attr.value);
      }
    }
  }
  for (const s of document.scripts) {
    if (!s.src.startsWith(location.origin + '/static/live.js')) bad.push('script ' + (s.src || s.text.slice(0, 40)));
  }
  if (document.querySelectorAll('base, iframe, frame, object, embed, img, svg, math, style').length)
    bad.push('forbidden element present');
  return bad;
}
"""


def _key(i: int) -> identity.SigningKey:
    return identity.SigningKey(hashlib.sha256(b"hostile author %d" % i).digest())


@pytest.fixture(scope="module")
def corpus():
    names, bodies, boards = hostile.names(), hostile.bodies(), hostile.boards()
    assert len(names) >= 100 and len(bodies) >= 100 and boards
    keys = [_key(i) for i in range(len(names))]
    batch: list[posts.Post] = []
    for i, (k, name) in enumerate(zip(keys, names, strict=True)):
        batch.append(posts.create_post(k, kind="profile", board="xss", body=name, created_at_ms=T0_MS + i))
    roots = []
    for i, body in enumerate(bodies):
        post = posts.create_post(keys[i % len(keys)], kind="post", board="xss", body=body,
                                 created_at_ms=T0_MS + 1_000 + i)
        batch.append(post)
        if i < REPLY_THREADS:
            roots.append(post)
    # Every body again as a reply, so that every one is rendered in full on a thread page.
    for i, body in enumerate(bodies):
        batch.append(posts.create_post(keys[(i + 7) % len(keys)], kind="reply", board="xss", body=body,
                                       created_at_ms=T0_MS + 10_000 + i, parent=roots[i % REPLY_THREADS].id))
    for j, board in enumerate(boards):
        batch.append(posts.create_post(keys[j], kind="post", board=board, body=bodies[j], created_at_ms=T0_MS + j))
    # Moderation with hostile names: two keys hide posts and an author (an unknown reason code
    # too), and the board's opener signs a charter with a hostile description.
    moderators = [keys[1], keys[2]]
    for i, target in enumerate(p for p in batch if p.kind == "post" and p.board == "xss"):
        if i % 3 == 0:
            batch.append(create_statement(moderators[i % 2], board="xss", action="hide", subject="post",
                                          target=target.id, reason="spam" if i % 2 else "x_unknown_reason",
                                          created_at_ms=T0_MS + 20_000 + i))
    batch.append(create_statement(keys[2], board="xss", action="hide", subject="author", target=keys[5].public_key,
                                  reason="provocation", created_at_ms=T0_MS + 30_000))
    for body in bodies:
        try:
            batch.append(create_charter(keys[0], board="xss", moderators=[keys[1].public_key, keys[3].public_key],
                                        description=body, created_at_ms=T0_MS + 40_000))
        except DazibaoError:  # a body that is not a valid description (e.g. a "moderator" line)
            continue
        break
    return {"names": names, "bodies": bodies, "boards": boards, "keys": keys, "roots": roots, "batch": batch,
            "moderators": moderators}


def _follow(data, corpus) -> None:
    with Store(str(DataDir(data).database)) as store:
        for k in corpus["moderators"]:
            store.add_moderator("xss", k.public_key, source="ui", now_ms=T0_MS)


def _visit(page, watch, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    # Give anything that would fire late (onload, animations, lazy loads) a moment, bounded.
    page.wait_for_load_state("load")
    page.wait_for_timeout(50)
    watch.check(page)
    bad = page.evaluate(DOM_CHECK)
    assert not bad, (url, bad[:10])


def test_hostile_content_runs_nothing_and_loads_nothing(tmp_path, corpus, start_node, new_context):
    # The node follows the hostile boards, so that their names are on the status page too.
    data = tmp_path / "hostile"
    seed_store(data, corpus["batch"])
    store = Store(str(DataDir(data).database))
    store.set_meta(BOARDS_META, json.dumps(sorted(["xss", *corpus["boards"]])))
    store.close()
    _follow(data, corpus)
    node = start_node("hostile")
    ui = node.ui_url
    context, watch = new_context([node.origin])
    page = context.new_page()

    # Boards page (hostile board names), and every hostile board.
    _visit(page, watch, ui)
    expect(page.locator(".boards li")).to_have_count(len(corpus["boards"]) + 1)
    for board in corpus["boards"]:
        _visit(page, watch, ui + "b/" + quote(board, safe=""))
        expect(page.locator("h1 bdi")).to_have_text(board)

    # Every page of the hostile board: every title and every hostile name.
    pages = -(-len(corpus["bodies"]) // 25)
    seen_names: set[str] = set()
    for n in range(1, pages + 1):
        _visit(page, watch, ui + f"b/xss?page={n}")
        seen_names.update(" ".join(t.split()) for t in page.locator(".threads .author .name").all_inner_texts())
    assert seen_names == {" ".join(n.split()) for n in corpus["names"]}

    # Thread pages: every body rendered in full (as a reply), and some as the thread's post.
    rendered = 0
    for root in corpus["roots"]:
        _visit(page, watch, ui + f"p/{root.id.hex()}")
        rendered += page.locator("#live-list article.post").count()
    assert rendered == len(corpus["bodies"])
    for body_post in corpus["batch"][len(corpus["names"]) + REPLY_THREADS:][:20]:
        if body_post.kind == "post":
            _visit(page, watch, ui + f"p/{body_post.id.hex()}")
            _visit(page, watch, ui + f"p/{body_post.id.hex()}/moderate")
    # Posts hidden by the hostile-named moderators are collapsed, saying who hid them; the
    # charter with its hostile description is offered on the board's page.
    _visit(page, watch, ui + "b/xss")
    assert page.locator(".threads .hidden-by li").count() > 0
    expect(page.locator(".charter")).to_have_count(1)

    # Search results: hostile snippets with hostile search terms highlighted.
    for term in ["script", "<img", "onerror", "javascript:", "evil.example", "\"><", "工资", "*"]:
        for n in (1, 2):
            _visit(page, watch, ui + "search?q=" + quote(term) + f"&page={n}")
        if term != "*":
            assert page.locator(".results mark").count() > 0 or n == 2

    # Author pages (names, name history, titles), the compose preview, the status page.
    for k in corpus["keys"][::4]:
        _visit(page, watch, ui + f"a/{k.public_key.hex()}")
    for body in corpus["bodies"][:6] + corpus["bodies"][-3:]:
        _visit(page, watch, ui + "compose?board=xss")
        page.locator("textarea[name=body]").fill(body)
        page.locator("button[value=preview]").click()
        page.wait_for_load_state("load")
        watch.check(page)
        assert not page.evaluate(DOM_CHECK)
    _visit(page, watch, ui + "status")
    expect(page.locator(".facts")).to_contain_text(corpus["boards"][0])

    # Hide every hostile author (through the UI's own form, as the page would post it), then
    # the list of hidden authors shows every hostile name at once.
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    for k in corpus["keys"]:
        response = context.request.post(ui + "authors/hide", form={"csrf_token": token, "author": k.public_key.hex(),
                                                                       "confirm": "1"},
                                        max_redirects=0)
        assert response.status == 303
    _visit(page, watch, ui + "hidden")
    expect(page.locator(".hidden-authors li")).to_have_count(len(corpus["keys"]))
    _visit(page, watch, ui + "b/xss")
    expect(page.locator(".threads li")).to_have_count(0)
    watch.check(page)


def test_hostile_content_on_the_public_view(tmp_path, corpus, start_node, new_context):
    # The read-only public view of a mirror faces the internet: the same hostile corpus, the
    # same checks, on every page type it serves.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp_path / "public"
    seed_store(data, corpus["batch"])
    _follow(data, corpus)
    node = start_node("public", DAZIBAO_PUBLIC_VIEW_LISTEN=f"127.0.0.1:{port}")
    view = f"http://127.0.0.1:{port}/"
    context, watch = new_context([node.origin, f"http://127.0.0.1:{port}"])
    page = context.new_page()

    _visit(page, watch, view)
    for board in corpus["boards"]:
        _visit(page, watch, view + "b/" + quote(board, safe=""))
    pages = -(-len(corpus["bodies"]) // 25)
    for n in range(1, pages + 1):
        _visit(page, watch, view + f"b/xss?page={n}")
    assert page.locator(".hidden-by li").count() > 0 or pages > 1
    rendered = 0
    for root in corpus["roots"]:
        _visit(page, watch, view + f"p/{root.id.hex()}")
        rendered += page.locator("#live-list article.post").count()
    assert rendered == len(corpus["bodies"])
    for term in ["script", "<img", "onerror", "javascript:", "工资"]:
        _visit(page, watch, view + "search?q=" + quote(term))
    for k in corpus["keys"][::10]:
        _visit(page, watch, view + f"a/{k.public_key.hex()}")
    # No form of the member UI is on any of these pages.
    assert page.locator("form[method=post]").count() == 0
    watch.check(page)

"""An author's page (``/a/<key>``), hiding and showing authors, and the hidden-authors list."""

from __future__ import annotations

import asyncio

from aiohttp import web

from dazibao.protocol import identity, limits
from dazibao.protocol.moderation import Statement
from dazibao.protocol.posts import KIND_POST, KIND_REPLY

from ...store import ModeratorRow, PostRow, Store
from ..base import UI, redirect, state
from ..i18n import N_, Msg
from ..security import safe_next
from .common import (
    FormError,
    authors_of,
    field,
    invalid,
    moderation_of,
    next_location,
    page_number,
    parse_author_key,
)

__all__ = ["HIDDEN_PAGE_SIZE", "AUTHOR_NAMES_SHOWN", "AUTHOR_SCAN_ROWS", "AUTHOR_POSTS_SHOWN", "BOARD_SUGGESTIONS",
           "author_page", "hide_page", "hide_author", "unhide_author", "hidden_page"]

HIDDEN_PAGE_SIZE = limits.UI_HIDDEN_PAGE_AUTHORS
AUTHOR_NAMES_SHOWN = limits.UI_AUTHOR_NAMES_SHOWN
AUTHOR_SCAN_ROWS = 5_000
AUTHOR_POSTS_SHOWN = 30
#: Boards offered (as suggestions of a text field) for following this key's moderation.
BOARD_SUGGESTIONS = 50


def _recent_by_author(store: Store, author: bytes, scan: int, limit: int) -> tuple[list[PostRow], bool]:
    # The store has no index by author (node/store.py explains why), so the newest rows are
    # scanned, a bounded number of them.
    found: list[PostRow] = []
    before = None
    scanned = 0
    while scanned < scan and len(found) < limit:
        page = store.list_posts(None, 500, before, kinds=[KIND_POST, KIND_REPLY])
        scanned += len(page)
        found.extend(r for r in page if r.author == author)
        if len(page) < 500:
            return found[:limit], True
        before = (page[-1].created_at_ms, page[-1].id)
    return found[:limit], False


def _moderation_facts(store: Store, author: bytes, now_ms: int) -> tuple[list[tuple[str, Statement]],
                                                                        list[ModeratorRow]]:
    """What followed moderators say about ``author`` (by board), and where ``author`` moderates for this node."""
    return store.author_moderation(author, now_ms=now_ms), [r for r in store.moderators() if r.key == author]


async def author_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        key = parse_author_key(request.match_info["author"])
    except FormError as exc:
        return invalid(request, exc, 404)
    authors = await authors_of(request)
    view = authors.view(key)
    rows, complete = ([], True) if view.hidden else await ui.core.reads.call(
        _recent_by_author, key, AUTHOR_SCAN_ROWS, AUTHOR_POSTS_SHOWN)
    history = ui.authors.history(key)
    about, moderates = await ui.core.reads.call(_moderation_facts, key, ui.core.now_ms())
    mod = await moderation_of(request, authors, {r.board for r in rows} | {board for board, _ in about})
    suggestions = sorted(set(ui.core.boards) | {r.board for r in rows} | {p.board for p in history})
    return ui.page(request, "author.html", nav="", title=view.name or view.fingerprint, author=view,
                   history=history[:AUTHOR_NAMES_SHOWN], older_names=max(0, len(history) - AUTHOR_NAMES_SHOWN),
                   posts=[mod.post(r) for r in rows], complete=complete,
                   about=[mod.statement(st) for _, st in about],
                   moderates=sorted({r.board for r in moderates}, key=lambda b: b.encode("utf-8", "surrogatepass")),
                   board_suggestions=suggestions[:BOARD_SUGGESTIONS])


async def hide_page(request: web.Request) -> web.Response:
    """``GET /authors/hide?author=<key>``: what hiding an author does, and a form to confirm it."""
    try:
        key = parse_author_key(request.query.get("author", ""))
    except FormError as exc:
        return invalid(request, exc)
    return await _hide_confirm(request, key, safe_next(request.query.get("next"), f"/a/{key.hex()}"))


async def _hide_confirm(request: web.Request, key: bytes, back: str) -> web.Response:
    ui = request.app[UI]
    authors = await authors_of(request)
    view = authors.view(key)
    if view.local:
        return invalid(request, FormError(Msg(N_(
            "This is one of your own pseudonyms: it cannot be hidden on this node. To stop using it, lock it "
            "on the Pseudonyms page."))))
    return ui.page(request, "hide_confirm.html", nav="", title=Msg(N_("Hide this author?")), author=view, back=back)


async def hide_author(request: web.Request) -> web.Response:
    """Hide an author once the member confirmed it (``confirm=1``); else the confirmation page.

    One's own pseudonyms are refused: their posts would vanish from one's own view.
    """
    ui = request.app[UI]
    try:
        key = parse_author_key(field(request, "author"))
    except FormError as exc:
        return invalid(request, exc)
    local = await asyncio.to_thread(ui.member_keys().list)
    if any(p.public_key == key for p in local) or field(request, "confirm") != "1":
        return await _hide_confirm(request, key, next_location(request, f"/a/{key.hex()}"))
    return await _set_hidden(request, True)


async def unhide_author(request: web.Request) -> web.Response:
    return await _set_hidden(request, False)


async def _set_hidden(request: web.Request, hidden: bool) -> web.Response:
    ui = request.app[UI]
    try:
        key = parse_author_key(field(request, "author"))
    except FormError as exc:
        return invalid(request, exc)
    await ui.authors.set_hidden(key, hidden)
    name = ui.authors.name(key) or identity.fingerprint(key)
    if hidden:
        state(request).session.notify(Msg(N_("Posts by %(name)s are now hidden on this node."), {"name": name}))
    else:
        state(request).session.notify(Msg(N_("Posts by %(name)s are shown again."), {"name": name}))
    return redirect(next_location(request, f"/a/{key.hex()}"))


async def hidden_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    authors = await authors_of(request)
    try:
        page = page_number(request)
    except FormError as exc:
        return invalid(request, exc)
    # The list is the member's own (one form per author), kept in memory; only a page of it
    # is rendered.
    hidden = sorted((authors.view(k) for k in ui.authors.hidden), key=lambda a: (a.name or "", a.fingerprint))
    shown = hidden[(page - 1) * HIDDEN_PAGE_SIZE : page * HIDDEN_PAGE_SIZE]
    return ui.page(request, "hidden.html", nav="hidden", title=Msg(N_("Hidden authors")), authors=shown,
                   page=page, more=len(hidden) > page * HIDDEN_PAGE_SIZE)

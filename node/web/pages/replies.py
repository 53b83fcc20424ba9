"""Replies to your pseudonyms (``/replies``): the replies to posts of this machine's
pseudonyms, newest first, with the thread they belong to.

Computed on this node only, from the stored posts (node/store/marks.py keeps the list by
triggers): nothing is asked of any peer, and nothing of it leaves the machine.  Pages follow
one another by position (``before=<created_at_ms>-<id hex>``), so a page is one index read
however many replies there are.
"""

from __future__ import annotations

import re

from aiohttp import web

from dazibao.protocol import limits

from ...store import PostRow, Store
from ..base import UI
from ..i18n import N_, Msg
from ..render import title_of
from .common import authors_of, bad_position, invalid, moderation_of

__all__ = ["replies_page", "PAGE_SIZE"]

PAGE_SIZE = limits.UI_REPLIES_PAGE_POSTS
_CURSOR = re.compile(r"^([0-9]{1,19})-([0-9a-f]{64})$")


def _page(store: Store, before: tuple[int, bytes] | None) -> tuple[list[PostRow], dict[bytes, PostRow]]:
    rows = store.replies_to_me(PAGE_SIZE + 1, before)
    parents = store.get_many(list({r.parent for r in rows[:PAGE_SIZE] if r.parent is not None}))
    return rows, parents


async def replies_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    text = request.query.get("before")
    before = None
    if text is not None:
        match = _CURSOR.match(text)
        if match is None:
            return invalid(request, bad_position())
        before = (int(match.group(1)), bytes.fromhex(match.group(2)))
    rows, parents = await ui.core.db.call(_page, before)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    authors = await authors_of(request)
    mod = await moderation_of(request, authors, {r.board for r in rows})
    # A reply by one of this machine's pseudonyms is the member's own, whichever one it answers.
    local = {p.public_key for p in authors.local}
    items = []
    for r in rows:
        if authors.hidden(r.author) or r.author in local:
            continue
        parent = parents.get(r.parent) if r.parent is not None else None
        items.append({"post": mod.post(r), "parent": mod.post(parent) if parent is not None else None,
                      "parent_title": title_of(parent.body) if parent is not None else ""})
    next_url = f"/replies?before={rows[-1].created_at_ms}-{rows[-1].id.hex()}" if more and rows else ""
    return ui.page(request, "replies.html", nav="replies", title=Msg(N_("Replies to your pseudonyms")),
                   items=items, hidden=sum(1 for r in rows if authors.hidden(r.author)), next_url=next_url,
                   first_url="/replies" if before is not None else "", has_local=bool(authors.local))

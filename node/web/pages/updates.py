"""Live updates (``/api/updates``): new posts of a board or a thread as JSON, for static/live.js."""

from __future__ import annotations

from aiohttp import web

from dazibao.protocol.posts import KIND_POST, KIND_REPLY

from ...store import Store
from ..base import UI, iso, when
from ..render import title_of
from .common import authors_of, moderation_of

__all__ = ["updates"]


async def updates(request: web.Request) -> web.Response:
    ui = request.app[UI]
    cursor = request.query.get("after", "")[:64]
    board = request.query.get("board")
    thread = request.query.get("thread", "").lower()
    since = ui.feed.since(cursor)
    items = []
    wanted = [p for p in since.posts if p.kind in (KIND_POST, KIND_REPLY) and p.author not in ui.authors.hidden
              and (board is None or (p.board == board and p.kind == KIND_POST))
              and (not thread or (p.parent is not None and p.parent.hex() == thread and p.kind == KIND_REPLY))]
    if wanted:
        stored = await ui.core.db.call(Store.has, [p.id for p in wanted])
        authors = await authors_of(request)
        mod = await moderation_of(request, authors, {p.board for p in wanted if p.id in stored})
        for p in wanted:
            if p.id not in stored:
                continue  # retracted since
            if mod.hidden(p.board, p.id, p.author):
                # Shown collapsed, with who hid it and why, which only a rendered page does:
                # the page asks the member to reload rather than leave it out silently.
                return web.json_response({"cursor": since.cursor, "reload": True, "items": []},
                                         headers={"Cache-Control": "no-store"})
            view = authors.view(p.author)
            items.append({
                "id": p.id.hex(), "kind": p.kind, "board": p.board, "title": title_of(p.body),
                "text": p.body if thread else "", "url": f"/p/{p.id.hex()}",
                "time": when(p.created_at_ms), "iso": iso(p.created_at_ms),
                "author": {"name": view.name or "", "fingerprint": view.fingerprint, "url": f"/a/{view.hex}",
                           "shared": view.shared_name},
            })
    return web.json_response({"cursor": since.cursor, "reload": not since.complete, "items": items},
                             headers={"Cache-Control": "no-store"})

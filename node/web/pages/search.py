"""The search page (``/search``): Chinese and English full-text search, one page of hits."""

from __future__ import annotations

from aiohttp import web

from ...store import Store
from ..base import UI
from ..i18n import N_, Msg
from ..render import highlight
from .common import FormError, authors_of, moderation_of, page_number, parse_board

__all__ = ["SEARCH_PAGE_SIZE", "MAX_SEARCH_RESULTS", "MAX_QUERY_CHARS", "search_page"]

SEARCH_PAGE_SIZE = 25
MAX_SEARCH_RESULTS = 500
MAX_QUERY_CHARS = 200


async def search_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    query = request.query.get("q", "")
    board_text = request.query.get("board", "").strip()
    errors: list[Msg] = []
    results = []
    more = False
    page = 1
    hidden = 0
    try:
        page = page_number(request)
        board = parse_board(board_text) if board_text else None
        if len(query) > MAX_QUERY_CHARS:
            raise FormError(Msg(N_("The search text is too long: at most %(max)s characters."),
                                {"max": MAX_QUERY_CHARS}))
    except FormError as exc:
        errors.append(exc.msg)
    else:
        offset = (page - 1) * SEARCH_PAGE_SIZE
        if query.strip() and offset < MAX_SEARCH_RESULTS:
            # Only this page's hits (and one more, to know whether there is a next page) are read.
            hits = await ui.core.db.call(Store.search, query, board, SEARCH_PAGE_SIZE + 1, offset=offset)
            more = len(hits) > SEARCH_PAGE_SIZE and page * SEARCH_PAGE_SIZE < MAX_SEARCH_RESULTS
            hits = hits[:SEARCH_PAGE_SIZE]
            authors = await authors_of(request)
            mod = await moderation_of(request, authors, {hit.post.board for hit in hits})
            for hit in hits:
                if authors.hidden(hit.post.author):
                    hidden += 1
                    continue
                results.append({"post": mod.post(hit.post), "snippet": highlight(hit.snippet, hit.spans)})
    return ui.page(request, "search.html", status=400 if errors else 200, nav="search", title=Msg(N_("Search")),
                   query=query, board=board_text, results=results, page=page, more=more,
                   hidden=hidden, errors=errors, searched=bool(query.strip()) and not errors)

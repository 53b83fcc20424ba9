"""The search page (``/search``): Chinese and English full-text search, one page of hits.

A search runs on a read connection of the node's read pool (``NodeCore.reads``), so that
neither the event loop nor the store's writer waits for it, and it is interrupted after
``search_timeout_ms``.  The page shows how many posts were found, each hit's thread title, and
takes ``author:FINGERPRINT`` or the author field to search one author's posts.
"""

from __future__ import annotations

from aiohttp import web

from dazibao.protocol import limits

from ...service import NodeCore
from ...store import Store
from ...store.search import SearchQuery, SearchResults, SearchTimeout, parse_query
from ..base import UI
from ..i18n import N_, Msg
from ..render import highlight, title_of
from .common import FormError, authors_of, moderation_of, page_number, parse_board

__all__ = ["SEARCH_PAGE_SIZE", "MAX_SEARCH_RESULTS", "MAX_QUERY_CHARS", "search_page"]

SEARCH_PAGE_SIZE = 25
MAX_SEARCH_RESULTS = limits.MAX_SEARCH_RESULTS
MAX_QUERY_CHARS = 200


async def run(core: NodeCore, query: SearchQuery, board: str | None, offset: int) -> SearchResults:
    """One page of hits (and one more, to know whether there is a next page), on a read
    connection of the node's read pool: off the event loop and off the writer."""
    return await core.reads.call(Store.search_page, query, board, SEARCH_PAGE_SIZE + 1, offset=offset)


async def search_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    query = request.query.get("q", "")
    board_text = request.query.get("board", "").strip()
    author_text = request.query.get("author", "").strip()
    errors: list[Msg] = []
    results = []
    more = False
    page = 1
    hidden = 0
    total = 0
    capped = False
    text = " ".join(t for t in (query, f"author:{author_text}" if author_text else "") if t)
    parsed = parse_query(text)
    try:
        page = page_number(request)
        board = parse_board(board_text) if board_text else None
        if len(query) > MAX_QUERY_CHARS:
            raise FormError(Msg(N_("The search text is too long: at most %(max)s characters."),
                                {"max": MAX_QUERY_CHARS}))
        if author_text and not parsed.authors:
            raise FormError(Msg(N_("Type at least the first 8 characters of the author's fingerprint.")))
    except FormError as exc:
        errors.append(exc.msg)
    else:
        offset = (page - 1) * SEARCH_PAGE_SIZE
        if parsed and offset < limits.MAX_SEARCH_RESULTS:
            try:
                found = await run(ui.core, parsed, board, offset)
            except SearchTimeout:
                errors.append(Msg(N_("The search took too long. Add a longer word (three characters or more) "
                                     "or choose a board.")))
            else:
                total, capped = min(found.total, found.capped_at), found.capped
                hits = found.hits[:SEARCH_PAGE_SIZE]
                more = len(found.hits) > SEARCH_PAGE_SIZE and page * SEARCH_PAGE_SIZE < found.capped_at
                authors = await authors_of(request)
                mod = await moderation_of(request, authors, {hit.post.board for hit in hits})
                for hit in hits:
                    if authors.hidden(hit.post.author):
                        hidden += 1
                        continue
                    root = found.roots.get(hit.post.parent) if hit.post.parent is not None else hit.post
                    # A thread started by a hidden author, or hidden by a moderator, keeps its title
                    # to itself, as on the board page.
                    shown = (root is not None and not authors.hidden(root.author)
                             and not mod.hides(root))
                    results.append({"post": mod.post(hit.post), "snippet": highlight(hit.snippet, hit.spans),
                                    "title": title_of(root.body) if shown and root is not None else "",
                                    "thread": (root.id.hex() if root is not None else hit.post.id.hex())})
    return ui.page(request, "search.html", status=400 if errors else 200, nav="search", title=Msg(N_("Search")),
                   query=query, board=board_text, author=author_text, results=results, page=page, more=more,
                   hidden=hidden, total=total, capped=capped, errors=errors,
                   searched=bool(parsed) and not errors)

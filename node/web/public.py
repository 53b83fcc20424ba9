"""The read-only public web view a mirror may serve on a listener of its own (docs/mirror.md,
"A live read-only view").

It is the member UI's own pages, templates and rendering (node/web/pages/, :mod:`.base`) with
only the reading routes: the boards, a board, a thread, search, an author, the live-update
feed and the static files; and the collective-action pages (companies, letters, pledges) of
:mod:`.public_organizing`, read-only templates of their own.  Nothing else is routed, so composing, retracting, hiding,
following, the pseudonym and key pages, the status page and the language form do not exist
here (404), and the templates, told ``public``, show no link or form to them.

Every request passes :func:`public_guard`:

1. the Host header must be the listen address or one of ``public_view_hosts`` (else 421);
2. only GET and HEAD are answered (else 405), so nothing can be changed through it;
3. there are no sessions: no cookie is read for a session or ever set.

Every response carries the same security headers as the member UI (a strict
Content-Security-Policy among them).  Unlike the member UI, it answers requests from other
sites (Fetch Metadata) as any other: it is public, so another site learns nothing from it that
it could not fetch itself, and ``Cross-Origin-Resource-Policy: same-origin`` keeps other sites
from embedding its responses in a visitor's browser.  The node's hidden-authors list is not applied: it is
the member's private choice, and the public view would otherwise publish it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import Config, ConfigError, parse_listen
from ..service import NodeCore
from . import i18n, security
from .authors import AuthorBook
from .base import (
    STATE,
    UI,
    RequestState,
    Templates,
    WebUI,
    ephemeral_session,
    following_posts,
    load_static,
    security_headers,
    serve_static,
)
from .i18n import N_, Msg
from .live import LiveFeed
from .pagecache import KeptPage, PageCache, etag_matches
from .pages import authors, boards, search, thread, updates
from .public_organizing import add_routes as add_organizing_routes
from .sessions import SessionStore

__all__ = ["make_public_app", "PublicAuthorBook", "PAGES"]

MAX_REQUEST_BYTES = 16 * 1024


class PublicAuthorBook(AuthorBook):
    """Names and fingerprints as in the member UI, without the member's hidden-authors list."""

    async def load(self) -> None:
        await self._load_profiles()  # ``hidden`` stays empty

    async def set_hidden(self, author: bytes, hidden: bool) -> bool:  # never routed; refuse anyway
        return False


#: The kept pages of the public view (node/web/pagecache.py).
PAGES = web.AppKey("public_pages", PageCache)
_NOT_KEPT = ("/api/", "/static/")
_PAGE_HEADERS = {"content-type", "cache-control"}

_ERRORS = {
    404: Msg(N_("There is no such page here.")),
    405: Msg(N_("This address cannot be used that way.")),
}


@web.middleware
async def public_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ui = request.app[UI]
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname or not security.host_allowed(request.headers.get("Host"), ui.allowed_hosts(sockname[1])):
        return web.Response(status=421, text="421 Misdirected Request: unknown Host.\n")
    request[STATE] = RequestState(ui.language(request), ephemeral_session(), ui.feed.cursor)
    if request.method not in ("GET", "HEAD"):
        response = ui.error_page(request, 405, _ERRORS[405])
        response.headers["Allow"] = "GET, HEAD"
        return response
    # Every page is the same for every visitor: one rendering serves all who ask for it until
    # a post is stored (node/web/pagecache.py).  The live feed and the static files are not
    # pages (the first answers for a cursor, the second is served from memory already).
    pages = request.app[PAGES]
    key = (request[STATE].lang, request.path_qs)
    cacheable = not request.path.startswith(_NOT_KEPT)
    if cacheable:
        kept = pages.get(key)
        if kept is not None:
            return _kept_response(request, kept)
    generation = pages.generation
    try:
        answer = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _ERRORS.get(exc.status, Msg(N_("This request could not be handled.")))
        return ui.error_page(request, exc.status, message)
    # Only a plain page is kept: a kept page is given back with the headers every page has, so
    # one that says anything more in its headers is rendered for each request.
    if (cacheable and answer.status == 200 and isinstance(answer, web.Response)
            and answer.content_type == "text/html" and isinstance(answer.body, bytes)
            and {name.lower() for name in answer.headers} <= _PAGE_HEADERS):
        return _kept_response(request, pages.put(key, answer.body, generation))
    return answer


def _kept_response(request: web.Request, page: KeptPage) -> web.Response:
    """A page as rendered, with its ``ETag``; 304 Not Modified when the request names that tag.

    ``Cache-Control: no-store`` stays, as on every page: a reader's browser keeps no copy of
    what they read on disk.  The tag serves clients that ask again on their own (a feed
    reader, a script, a proxy told to revalidate).
    """
    headers = {"Cache-Control": "no-store", "ETag": page.etag}
    if etag_matches(request.headers.get("If-None-Match"), page.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=page.body, content_type="text/html", charset="utf-8", headers=headers)


def make_public_app(core: NodeCore, config: Config) -> web.Application:
    """The read-only public view as an aiohttp application, for ``public_view_listen`` only.

    ``core`` must be open before the application starts.
    """
    if not config.public_view_listen:
        raise ConfigError("public_view_listen is not set")
    host, _ = parse_listen(config.public_view_listen, "public_view_listen")
    app = web.Application(middlewares=[public_guard], client_max_size=MAX_REQUEST_BYTES)
    app[UI] = WebUI(
        core=core,
        keys=None,
        config=config,
        node=None,
        sessions=SessionStore(config.ui_idle_lock_s),  # stays empty: no session is ever made
        authors=PublicAuthorBook(core.db),
        feed=LiveFeed(),
        templates=Templates(i18n.load_translations()),
        static=load_static(),
        listen_host=host,
        public=True,
        view_hosts=tuple(config.public_view_hosts),
    )
    app[PAGES] = PageCache()
    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(_lifecycle)
    add = app.router.add_get  # add_get answers HEAD too
    add("/static/{name}", serve_static)
    add("/", boards.index)
    add("/b/{board:[^/]+}", boards.board_page)
    add("/p/{post_id}", thread.thread_page)
    add("/search", search.search_page)
    add("/a/{author}", authors.author_page)
    add("/api/updates", updates.updates)
    add_organizing_routes(app)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    ui, pages = app[UI], app[PAGES]
    async with following_posts(ui):
        ui.core.on_new_posts.append(pages.on_new_posts)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                ui.core.on_new_posts.remove(pages.on_new_posts)

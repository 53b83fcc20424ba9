"""The member UI's aiohttp application: its state, the guard every request passes, and pages.

Every request first passes :func:`guard` (docs/web-ui.md, "Security model"):

1. the Host header must be one of this listener's names (else 421), which defeats DNS
   rebinding;
1a. a request another site's page makes (Fetch Metadata, :func:`.security.resource_policy`)
   gets a constant 403, except a top-level GET navigation (a link the member followed), which
   gets one constant page with a link to continue: neither runs any query, so no other site
   can learn what the node holds, or that it runs;
2. a POST (the only method that changes anything) must come with no foreign Origin and no
   cross-site Fetch Metadata, from a live session, within the size limit, and carry that
   session's CSRF token (else 403 or 413): a refused request never reaches a handler, so it
   changes nothing;
3. any other method than GET, HEAD and POST is refused (405).

Every response, error pages and static files included, carries the security headers of
:mod:`.security` (a strict Content-Security-Policy among them).

This module builds the application and its routing table; the handlers are in
node/web/pages/ (one module per page), and what they share with this module is in
node/web/base.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import Config, parse_listen
from ..keys import KeyStore
from ..service import NodeCore
from . import i18n, security
from .authors import AuthorBook
from .base import (
    CSRF_FIELD,
    MAX_FORM_BYTES,
    STATE,
    UI,
    NodeInfo,
    RequestState,
    Templates,
    WebUI,
    ephemeral_session,
    following_posts,
    load_static,
    security_headers,
    serve_static,
    session_cookie_name,
)
from .i18n import N_, Msg
from .live import LiveFeed
from .pages import (
    authors,
    boards,
    compose,
    keyfiles,
    language,
    moderation,
    organizing,
    peers,
    pseudonyms,
    replies,
    rescue,
    search,
    status,
    thread,
    updates,
    welcome,
)
from .peersync import SYNC_NOW, SyncNow
from .sessions import SessionStore

__all__ = ["UI", "WebUI", "NodeInfo", "make_ui_app", "add_routes", "MAX_FORM_BYTES", "CSRF_FIELD",
           "session_cookie_name"]

log = logging.getLogger("dazibao.web")

SWEEP_INTERVAL_S = 15.0


async def _refuse(request: web.Request, ui: WebUI, status: int, message: Msg) -> web.Response:
    log.info("refused %s %s: %s", request.method, request.path, message.text)
    return ui.error_page(request, status, message, Msg(N_("Request refused")))


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ui = request.app[UI]
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname or not security.host_allowed(request.headers.get("Host"), ui.allowed_hosts(sockname[1])):
        return web.Response(status=421, text="421 Misdirected Request: unknown Host.\n")
    # Before any session, store or language lookup: what another site's page gets back must
    # not depend on anything the node holds, in its bytes or in its timing.
    verdict = security.resource_policy(request.method, request.headers.get("Sec-Fetch-Site"),
                                       request.headers.get("Sec-Fetch-Mode"), request.headers.get("Sec-Fetch-Dest"))
    if verdict == security.REFUSE:
        return web.Response(status=403, body=security.CROSS_SITE_REFUSED, content_type="text/plain",
                            charset="utf-8", headers={"Cache-Control": "no-store"})
    if verdict == security.NAVIGATION:
        return ui.cross_site_page(ui.language(request))
    port = sockname[1]
    # The live cursor is taken before a handler reads the store, so that live updates miss
    # nothing in between.
    st = request[STATE] = RequestState(ui.language(request), ephemeral_session(), ui.feed.cursor)
    if request.path.startswith(("/static/", "/api/")):
        if request.method not in ("GET", "HEAD"):
            return ui.error_page(request, 405, Msg(N_("This address cannot be used that way.")))
        return await handler(request)

    cookie = session_cookie_name(port)
    session = ui.sessions.get(request.cookies.get(cookie))
    new_session = False
    if request.method == "POST":
        host = request.headers["Host"]
        if not security.origin_allowed(request.headers.get("Origin"), host, request.headers.get("Sec-Fetch-Site")):
            return await _refuse(request, ui, 403, Msg(N_("This form was sent from another site, so it was refused.")))
        if not security.fetch_site_allowed(request.headers.get("Sec-Fetch-Site")):
            return await _refuse(request, ui, 403, Msg(N_("This form was sent from another site, so it was refused.")))
        # A post or reply form from before a restart keeps its text (pages/rescue.py).
        keep_text = rescue.rescuable(request)
        if session is None and not keep_text:
            return await _refuse(request, ui, 403, Msg(N_(
                "Your session has expired (or the node was restarted). Nothing was changed: "
                "go back, reload the page and try again.")))
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            return await _refuse(request, ui, 413, Msg(N_("This form is too large to be sent.")))
        # What the UI's forms send; the key file upload is the one multipart form.
        if request.content_type != "application/x-www-form-urlencoded" and not (
                request.content_type == "multipart/form-data" and request.path == keyfiles.IMPORT_PATH):
            return await _refuse(request, ui, 403, Msg(N_("This request is not a form of this page.")))
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return await _refuse(request, ui, 413, Msg(N_("This form is too large to be sent.")))
        token = form.get(CSRF_FIELD)
        if session is None or not isinstance(token, str) or not security.tokens_equal(token, session.csrf):
            if keep_text:
                new_session = session is None
                if session is None:
                    session = ui.sessions.create()
                ui.sessions.touch(session)
                kept = rescue.rescue_submission(ui, session, form)
                if new_session:
                    kept.set_cookie(cookie, session.id, httponly=True, samesite="Strict", path="/")
                return kept
            return await _refuse(request, ui, 403, Msg(N_(
                "This form's security token is missing or out of date. Nothing was changed: "
                "go back, reload the page and try again.")))
        st.session = session
        st.form = form
    elif request.method in ("GET", "HEAD"):
        if session is None:
            if security.fetch_site_allowed(request.headers.get("Sec-Fetch-Site")):
                session = ui.sessions.create()
                new_session = True
            else:
                session = ephemeral_session()
    else:
        return ui.error_page(request, 405, Msg(N_("This address cannot be used that way.")))

    if session.id:
        ui.sessions.touch(session)
        st.persistent = True
    st.session = session
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: Msg(N_("There is no such page here.")),
            405: Msg(N_("This address cannot be used that way.")),
            413: Msg(N_("This form is too large to be sent.")),
        }.get(exc.status, Msg(N_("This request could not be handled.")))
        response = ui.error_page(request, exc.status, message)
    if new_session:
        response.set_cookie(cookie, session.id, httponly=True, samesite="Strict", path="/")
    return response


def make_ui_app(core: NodeCore, keys: KeyStore, config: Config, *, node: NodeInfo | None = None,
                clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The member UI as an aiohttp application, for the ``ui_listen`` listener only.

    ``core`` must be open before the application starts; ``node`` (optional) names the
    node's listeners on the status page.
    """
    app = web.Application(middlewares=[guard], client_max_size=MAX_FORM_BYTES)
    host, _ = parse_listen(config.ui_listen, "ui_listen")
    app[UI] = WebUI(
        core=core,
        keys=keys,
        config=config,
        node=node,
        sessions=SessionStore(config.ui_idle_lock_s, clock=clock),
        authors=AuthorBook(core.db),
        feed=LiveFeed(),
        templates=Templates(i18n.load_translations()),
        static=load_static(),
        listen_host=host,
    )
    # The running node's own peer client, when it offers one (node/web/peersync.py).
    app[SYNC_NOW] = SyncNow(core, config, getattr(node, "peer_client", None))
    app.on_response_prepare.append(security_headers)
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/static/{name}", serve_static)
    add_routes(app.router)
    return app


def add_routes(router: web.UrlDispatcher) -> None:
    """Every address of the member UI (the public view routes only the reading ones)."""
    get, post = router.add_get, router.add_post
    get("/", boards.index)
    get("/b", boards.open_board)
    get("/b/{board:[^/]+}", boards.board_page)  # braces too: aiohttp's default pattern refuses them
    post("/boards/follow", boards.follow)
    post("/boards/unfollow", boards.unfollow)
    post("/boards/all", boards.carry_all)
    get("/p/{post_id}", thread.thread_page)
    get("/p/{post_id}/retract", compose.retract_page)
    post("/p/{post_id}/retract", compose.retract)
    get("/p/{post_id}/moderate", moderation.moderate_page)
    post("/p/{post_id}/moderate", moderation.moderate)
    post("/moderation/undo", moderation.undo)
    post("/moderators/leave", moderation.leave)
    post("/moderators/add", moderation.add)
    post("/moderators/adopt", moderation.adopt)
    get("/compose", compose.compose_page)
    post("/compose", compose.compose)
    get("/search", search.search_page)
    get("/ids", pseudonyms.ids_index)
    post("/ids/new", pseudonyms.id_new)
    post("/ids/unlock", pseudonyms.id_unlock)
    post("/ids/lock", pseudonyms.id_lock)
    post("/ids/use", pseudonyms.id_use)
    post("/ids/export", pseudonyms.id_export)
    get("/a/{author}", authors.author_page)
    get("/authors/hide", authors.hide_page)
    post("/authors/hide", authors.hide_author)
    post("/authors/unhide", authors.unhide_author)
    get("/hidden", authors.hidden_page)
    get("/status", status.status_page)
    post("/lang", language.set_language)
    get("/api/updates", updates.updates)
    get("/welcome", welcome.welcome_page)
    get("/peers", peers.peers_index)
    get("/api/sync", peers.sync_status)
    post("/peers/add", peers.peer_add)
    post("/peers/remove", peers.peer_remove)
    post("/peers/sync", peers.peers_sync)
    get("/replies", replies.replies_page)
    get("/ids/import", keyfiles.import_page)
    post("/ids/import", keyfiles.import_key)
    get("/ids/remove", keyfiles.remove_page)
    post("/ids/remove", keyfiles.remove_key)
    # Collective action (pages/organizing.py).
    get("/b/{board:[^/]+}/companies", organizing.companies_page)
    post("/b/{board:[^/]+}/companies", organizing.report_new)
    get("/b/{board:[^/]+}/company", organizing.company_page)
    post("/report/{post_id}/corroborate", organizing.corroborate)
    get("/b/{board:[^/]+}/letters", organizing.letters_page)
    post("/b/{board:[^/]+}/letters", organizing.letter_new)
    get("/letter/{post_id}", organizing.letter_page)
    post("/letter/{post_id}/sign", organizing.letter_sign)
    post("/letter/{post_id}/deliver", organizing.letter_deliver)
    get("/b/{board:[^/]+}/pledges", organizing.pledges_page)
    post("/b/{board:[^/]+}/pledges", organizing.pledge_new)
    get("/pledge/{post_id}", organizing.pledge_page)
    post("/pledge/{post_id}/join", organizing.pledge_join)
    post("/withdraw/{post_id}", organizing.withdraw)
    post("/p/{post_id}/pin", organizing.pin)
    post("/p/{post_id}/translate", organizing.translate)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    ui = app[UI]

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            ui.sessions.sweep()

    async with following_posts(ui):
        task = asyncio.create_task(sweep(), name="ui-session-sweep")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            ui.sessions.lock_all()
            if SYNC_NOW in app:
                await app[SYNC_NOW].close()

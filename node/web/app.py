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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from aiohttp import web

from ..config import Config, parse_listen
from ..keys import KeyStore
from ..service import NodeCore
from . import i18n, security
from .authors import AuthorBook
from .i18n import Msg, N_
from .live import LiveFeed
from .render import render_body
from .sessions import Session, SessionStore

__all__ = ["UI", "WebUI", "NodeInfo", "make_ui_app", "MAX_FORM_BYTES", "CSRF_FIELD", "session_cookie_name"]

log = logging.getLogger("dazibao.web")

#: Largest form accepted: a body of max_body_bytes, percent-encoded, and the other fields.
MAX_FORM_BYTES = 256 * 1024
CSRF_FIELD = "csrf_token"
LANG_COOKIE = "dazibao_lang"
SWEEP_INTERVAL_S = 15.0
_STATIC = {
    "style.css": "text/css; charset=utf-8",
    "live.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


class NodeInfo(Protocol):
    """What the status page shows of the running node (server.Node provides it)."""

    gossip_url: str
    ui_url: str


def session_cookie_name(port: int) -> str:
    # Browsers share cookies between all ports of 127.0.0.1, so each listener names its own.
    return f"dazibao_session_{port}"


@dataclass(slots=True)
class StaticFile:
    body: bytes
    content_type: str
    version: str


class Templates:
    """One Jinja2 environment per language, autoescaping everything."""

    def __init__(self, translations: Mapping[str, Any]) -> None:
        self.translations = dict(translations)
        self.envs: dict[str, jinja2.Environment] = {}
        for lang, tr in self.translations.items():
            env = jinja2.Environment(
                loader=jinja2.PackageLoader(__package__, "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
                extensions=["jinja2.ext.i18n"],
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_gettext_translations(tr, newstyle=True)
            env.filters["t"] = _make_translate(tr)
            env.filters["when"] = when
            env.filters["iso"] = iso
            env.filters["board_url"] = board_url
            env.filters["body"] = render_body
            env.filters["q"] = lambda value: quote(str(value), safe="")
            env.tests["msg"] = lambda value: isinstance(value, Msg)
            self.envs[lang] = env

    def render(self, lang: str, name: str, context: Mapping[str, Any]) -> str:
        return self.envs[lang].get_template(name).render(context)


def _make_translate(tr) -> Callable[[Any], str]:
    # Only messages of the UI are translated: a board name or a post title that happens to be
    # the text of a message is shown as it is.
    def translate(value: Any) -> str:
        if isinstance(value, Msg):
            return value.translate(tr)
        return str(value)

    return translate


def when(ms: int) -> str:
    """A post time as the member's machine shows it (its local time zone), to the minute."""
    try:
        return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "?"


def iso(ms: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return ""


def board_url(board: str) -> str:
    return "/b/" + quote(board, safe="")


@dataclass(eq=False)
class WebUI:
    """Everything the UI's handlers share."""

    core: NodeCore
    keys: KeyStore | None  # None in the public view (node/web/public.py): no key is ever read
    config: Config
    node: NodeInfo | None
    sessions: SessionStore
    authors: AuthorBook
    feed: LiveFeed
    templates: Templates
    static: dict[str, StaticFile]
    listen_host: str
    #: The read-only public view (node/web/public.py): its pages show no member-only link or
    #: form, and it answers the ``public_view_hosts`` names.
    public: bool = False
    view_hosts: tuple[str, ...] = ()
    #: Argon2id takes 64 MiB and a good part of a second per key file: at most two at once,
    #: however many unlock forms arrive together.
    kdf_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    _allowed: dict[int, frozenset[str]] = field(default_factory=dict)
    _cross_site_pages: dict[str, bytes] = field(default_factory=dict)

    def allowed_hosts(self, port: int) -> frozenset[str]:
        if port not in self._allowed:
            self._allowed[port] = (security.public_allowed_hosts(self.listen_host, port, self.view_hosts)
                                   if self.public else security.allowed_hosts(self.listen_host, port))
        return self._allowed[port]

    def language(self, request: web.Request) -> str:
        return i18n.negotiate(request.headers.get("Accept-Language"), request.cookies.get(LANG_COOKIE),
                              self.config.ui_language)

    def page(self, request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
        """Render template ``name`` as the response, in the request's language."""
        st = state(request)
        session, lang = st.session, st.lang
        active = session.active_key()
        base = {
            "lang": lang,
            "csrf_token": session.csrf,
            "active": active.pseudonym if active else None,
            "unlocked": [u.pseudonym for u in session.unlocked.values()],
            "notices": session.take_notices() if st.persistent else [],
            "errors": [],
            "here": request.path_qs,
            "nav": "",
            "title": "",
            "static": {name: f"/static/{name}?v={f.version}" for name, f in self.static.items()},
            "live_url": "",
            "live_cursor": st.live_cursor,
            "public": self.public,
        }
        base.update(context)
        text = self.templates.render(lang, name, base)
        return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    def cross_site_page(self, lang: str) -> web.Response:
        """The page a link from another site gets: the same bytes whatever the link's address.

        It names nothing of the node (no post, no board, no count, no live cursor), and its
        "continue" link (``href=""``, the page's own address) makes the member's next request
        a same-origin one.
        """
        if lang not in self._cross_site_pages:
            text = self.templates.render(lang, "cross_site.html", {
                "lang": lang,
                "static": {name: f"/static/{name}?v={f.version}" for name, f in self.static.items()},
            })
            self._cross_site_pages[lang] = text.encode("utf-8")
        return web.Response(body=self._cross_site_pages[lang], content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    def error_page(self, request: web.Request, status: int, message: Msg, title: Msg | None = None) -> web.Response:
        return self.page(request, "error.html", status=status, errors=[message],
                         title=title or Msg(N_("Something went wrong")))


UI = web.AppKey("ui", WebUI)


def _load_static() -> dict[str, StaticFile]:
    root = resources.files(__package__) / "static"
    out = {}
    for name, content_type in _STATIC.items():
        body = (root / name).read_bytes()
        out[name] = StaticFile(body, content_type, hashlib.sha256(body).hexdigest()[:12])
    return out


@dataclass(slots=True)
class RequestState:
    """What the guard found out about a request, for the handlers."""

    lang: str
    session: Session
    live_cursor: str
    persistent: bool = False  # the session is a stored one (not a page opened from elsewhere)
    form: Any = None  # the checked form of a POST


# A typed request key (aiohttp >= 3.14); a plain string key before that.
STATE: Any = web.RequestKey("dazibao_ui", RequestState) if hasattr(web, "RequestKey") else "dazibao_ui"


def state(request: web.Request) -> RequestState:
    return request[STATE]


def _ephemeral_session() -> Session:
    # For a page opened from another site: the session cookie is SameSite=Strict, so the
    # browser did not send it.  The page is shown without starting a new session (which would
    # replace the member's own); its forms carry no usable token.
    return Session(id="", csrf="", last_active_s=0.0)


async def _refuse(request: web.Request, ui: WebUI, status: int, message: Msg) -> web.Response:
    log.info("refused %s %s: %s", request.method, request.path, message.text)
    return ui.error_page(request, status, message, Msg(N_("Request refused")))


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
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
    st = request[STATE] = RequestState(ui.language(request), _ephemeral_session(), ui.feed.cursor)
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
        if session is None:
            return await _refuse(request, ui, 403, Msg(N_(
                "Your session has expired (or the node was restarted). Nothing was changed: "
                "go back, reload the page and try again.")))
        st.session = session
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            return await _refuse(request, ui, 413, Msg(N_("This form is too large to be sent.")))
        if request.content_type != "application/x-www-form-urlencoded":  # what the UI's forms send
            return await _refuse(request, ui, 403, Msg(N_("This request is not a form of this page.")))
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return await _refuse(request, ui, 413, Msg(N_("This form is too large to be sent.")))
        token = form.get(CSRF_FIELD)
        if not isinstance(token, str) or not security.tokens_equal(token, session.csrf):
            return await _refuse(request, ui, 403, Msg(N_(
                "This form's security token is missing or out of date. Nothing was changed: "
                "go back, reload the page and try again.")))
        st.form = form
    elif request.method in ("GET", "HEAD"):
        if session is None:
            if security.fetch_site_allowed(request.headers.get("Sec-Fetch-Site")):
                session = ui.sessions.create()
                new_session = True
            else:
                session = _ephemeral_session()
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


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in security.SECURITY_HEADERS.items():
        response.headers[name] = value


async def _static(request: web.Request) -> web.Response:
    ui = request.app[UI]
    item = ui.static.get(request.match_info["name"])
    if item is None:
        raise web.HTTPNotFound()
    return web.Response(body=item.body, content_type=item.content_type.split(";")[0],
                        charset="utf-8" if "charset" in item.content_type else None,
                        headers={"Cache-Control": "max-age=86400"})


def make_ui_app(core: NodeCore, keys: KeyStore, config: Config, *, node: NodeInfo | None = None,
                clock: Callable[[], float] = time.monotonic) -> web.Application:
    """The member UI as an aiohttp application, for the ``ui_listen`` listener only.

    ``core`` must be open before the application starts; ``node`` (optional) names the
    node's listeners on the status page.
    """
    from . import views  # the handlers import this module's helpers

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
        static=_load_static(),
        listen_host=host,
    )
    app.on_response_prepare.append(_security_headers)
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/static/{name}", _static)
    views.add_routes(app.router)
    return app


@contextlib.asynccontextmanager
async def following_posts(ui: WebUI) -> AsyncIterator[None]:
    """Keep the author names and the live feed current with the node's new posts."""
    await ui.authors.load()
    callbacks = [ui.authors.on_new_posts, ui.feed.on_new_posts]
    ui.core.on_new_posts.extend(callbacks)
    try:
        yield
    finally:
        for callback in callbacks:
            with contextlib.suppress(ValueError):
                ui.core.on_new_posts.remove(callback)


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


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser goes to ``location`` with a GET."""
    return web.Response(status=303, headers={"Location": location})

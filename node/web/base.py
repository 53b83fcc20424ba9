"""What every page of the member UI and of the public view shares: the UI's state
(:class:`WebUI`, reached from a request as ``request.app[UI]``), what the guard found out about a
request (:func:`state`), the templates, the static files, and small URL and time helpers.

node/web/app.py (the member UI) and node/web/public.py (the read-only public view) build their
applications from these; the handlers in node/web/pages/ use them.  This module imports
neither, so that the pages and the applications never import each other in a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import gettext
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from urllib.parse import quote

import jinja2
from aiohttp import web

from dazibao.protocol import limits, posts

from ..config import Config
from ..keys import KeyStore
from ..service import NodeCore
from . import i18n, security
from .authors import AuthorBook
from .bodycache import BODIES
from .i18n import N_, Msg
from .live import LiveFeed
from .render import render_body
from .sessions import Session, SessionStore
from .textlang import iso_utc, lang_attr, number, when_zoned

__all__ = [
    "MAX_FORM_BYTES", "CSRF_FIELD", "LANG_COOKIE", "NodeInfo", "session_cookie_name", "StaticFile", "Templates",
    "when", "iso", "board_url", "WebUI", "UI", "load_static", "RequestState", "STATE", "state",
    "ephemeral_session", "security_headers", "serve_static", "following_posts", "forget_retracted", "redirect",
]

#: Largest form accepted: a body of max_body_bytes, percent-encoded, and the other fields.
MAX_FORM_BYTES = 256 * 1024
CSRF_FIELD = "csrf_token"
LANG_COOKIE = "dazibao_lang"
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

    def __init__(self, translations: Mapping[str, gettext.NullTranslations]) -> None:
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
                # The templates are files of the installed package: checking their times on
                # every page (a dozen stat calls) would only cost.
                auto_reload=False,
            )
            # Added by the i18n extension at run time, so the type stubs do not know it.
            env.install_gettext_translations(tr, newstyle=True)  # type: ignore[attr-defined]
            env.filters["t"] = _make_translate(tr)
            env.filters["when"] = when
            env.filters["iso"] = iso
            env.filters["board_url"] = board_url
            env.filters["body"] = render_body
            env.filters["q"] = lambda value: quote(str(value), safe="")
            env.filters["num"] = number
            env.filters["langattr"] = lang_attr
            env.globals["max_body_bytes"] = limits.MAX_BODY_BYTES
            env.tests["msg"] = lambda value: isinstance(value, Msg)
            self.envs[lang] = env

    def render(self, lang: str, name: str, context: Mapping[str, Any]) -> str:
        return self.envs[lang].get_template(name).render(context)


def _make_translate(tr: gettext.NullTranslations) -> Callable[[Any], str]:
    # Only messages of the UI are translated: a board name or a post title that happens to be
    # the text of a message is shown as it is.
    def translate(value: Any) -> str:
        if isinstance(value, Msg):
            return value.translate(tr)
        return str(value)

    return translate


def when(ms: int) -> str:
    """A post time in the node's local time zone, to the minute, with the zone (textlang.py)."""
    return when_zoned(ms)


def iso(ms: int) -> str:
    """A post time as ISO 8601 in UTC (textlang.py)."""
    return iso_utc(ms)


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

    def member_keys(self) -> KeyStore:
        """The member's key folder; raises HTTPNotFound in the public view, which never reads it."""
        if self.keys is None or self.public:
            raise web.HTTPNotFound()
        return self.keys

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
            # One per page: a writing form sends it back, so that a resubmission, or a form
            # shown before the idle lock, is shown again instead of published (sessions.py).
            "form_token": session.form_token() if st.persistent else "",
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


def load_static() -> dict[str, StaticFile]:
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
    """What the guard found out about ``request``."""
    found: RequestState = request[STATE]
    return found


def ephemeral_session() -> Session:
    # For a page opened from another site: the session cookie is SameSite=Strict, so the
    # browser did not send it.  The page is shown without starting a new session (which would
    # replace the member's own); its forms carry no usable token.
    return Session(id="", csrf="", last_active_s=0.0)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in security.SECURITY_HEADERS.items():
        response.headers[name] = value


async def serve_static(request: web.Request) -> web.Response:
    ui = request.app[UI]
    item = ui.static.get(request.match_info["name"])
    if item is None:
        raise web.HTTPNotFound()
    return web.Response(body=item.body, content_type=item.content_type.split(";")[0],
                        charset="utf-8" if "charset" in item.content_type else None,
                        headers={"Cache-Control": "max-age=86400"})


@contextlib.asynccontextmanager
async def following_posts(ui: WebUI) -> AsyncIterator[None]:
    """Keep the author names and the live feed current with the node's new posts."""
    await ui.authors.load()
    callbacks = [ui.authors.on_new_posts, ui.feed.on_new_posts, forget_retracted]
    ui.core.on_new_posts.extend(callbacks)
    try:
        yield
    finally:
        for callback in callbacks:
            with contextlib.suppress(ValueError):
                ui.core.on_new_posts.remove(callback)


def forget_retracted(new: Iterable[posts.Post], source: str | None = None) -> None:
    """Drop the kept HTML of the posts that ``new`` retracts (node/web/bodycache.py): the pages
    no longer show them, and their text need not stay in memory."""
    BODIES.forget(p.parent for p in new if p.kind == posts.KIND_RETRACT and p.parent is not None)


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser goes to ``location`` with a GET."""
    return web.Response(status=303, headers={"Location": location})

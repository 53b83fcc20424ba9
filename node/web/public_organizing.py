"""Collective action in the read-only public view (node/web/public.py, docs/mirror.md): a
board's ranked companies and each company's reports, its sign-on letters and threshold pledges,
each letter with its signers and each pledge with its progress.

The member UI's pages for the same objects (pages/organizing.py) carry forms and read the
member's own pseudonyms; these handlers read only what the store counts, at the same addresses
(``/b/<board>/companies``, ``/b/<board>/company?c=``, ``/b/<board>/letters``,
``/b/<board>/pledges``, ``/letter/<id>``, ``/pledge/<id>``), and render ``public_*.html``
templates that have no form and no button.  Every count is the store's two figures, all
pseudonyms and those vouched for by the moderators this node follows on the board, with a
sentence saying that those moderators are the operator's choice; every row shows the id of the
signed post it comes from.  Lists are bounded by ``ui_organizing_items``, and every tally by
``max_tally_objects`` (the pages say "at least" when it was reached).
"""

from __future__ import annotations

from aiohttp import web

from dazibao.protocol import limits, organizing, posts
from dazibao.protocol.organizing import Corroboration, Letter, Pledge

from ..store import Store
from .base import UI, WebUI
from .i18n import N_, Msg
from .pages.common import FormError, authors_of, invalid, parse_board, parse_post_id

__all__ = ["add_routes", "companies_page", "company_page", "letters_page", "pledges_page", "letter_page",
           "pledge_page"]


def _now(ui: WebUI) -> int:
    return ui.core.now_ms()


def _missing(request: web.Request) -> web.Response:
    return request.app[UI].error_page(request, 404, Msg(N_(
        "This is not on this node. It may have been withdrawn, or not have reached this node yet.")),
        Msg(N_("Not found")))


def _board(request: web.Request) -> str:
    """The board of the address; raises FormError."""
    return parse_board(request.match_info["board"])


async def companies_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = _board(request)
    except FormError as exc:
        return invalid(request, exc, 404)
    found = await ui.core.reads.call(Store.companies, board, now_ms=_now(ui))
    return ui.page(request, "public_companies.html", nav="boards", title=Msg(N_("Companies")), board=board,
                   companies=found.companies, complete=found.complete)


def _read_company(store: Store, board: str, key: str, now_ms: int) -> tuple[organizing.CompanyTally | None,
                                                                              list[organizing.Object], set[bytes],
                                                                              bool]:
    """The company ``key`` of ``board``, its reports and corroborations (oldest first), the
    vouched authors among them, and whether every object was counted."""
    found = store.companies(board, now_ms=now_ms)
    tally = next((c for c in found.companies if c.key == key), None)
    if tally is None:
        return None, [], set(), found.complete
    # The newest ui_organizing_items reports and corroborations: a company flooded with reports
    # must not make one page read and show all of them.
    items = [o for o in (store.object(pid) for _, pid, _ in tally.timeline[-limits.UI_ORGANIZING_ITEMS:])
             if o is not None]
    view = store.trust_view(board, now_ms=now_ms)
    return tally, items, {o.author for o in items if view.vouched(o.author)}, found.complete


async def company_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = _board(request)
    except FormError as exc:
        return invalid(request, exc, 404)
    key = organizing.company_key(request.query.get("c", ""))
    tally, items, vouched, complete = await ui.core.reads.call(_read_company, board, key, _now(ui))
    if tally is None:
        return _missing(request)
    authors = await authors_of(request)
    return ui.page(request, "public_company.html", nav="boards", title=tally.name, board=board, company=tally,
                   items=items, vouched=vouched, complete=complete, authors=authors,
                   left_out=len(tally.timeline) - len(items), max_items=limits.UI_ORGANIZING_ITEMS,
                   is_corroboration=lambda o: isinstance(o, Corroboration))


def _read_list(store: Store, board: str, kind: str, now_ms: int) -> list[object]:
    """The newest ``ui_organizing_items`` letters or pledges of ``board`` with their counts, newest first."""
    objects = store.objects_of(board, kind)[-limits.UI_ORGANIZING_ITEMS:]
    read = store.letter if kind == posts.KIND_LETTER else store.pledge
    views = [read(o.id, now_ms=now_ms) for o in reversed(objects)]
    return [v for v in views if v is not None]


async def _list_page(request: web.Request, kind: str, template: str, title: Msg) -> web.Response:
    ui = request.app[UI]
    try:
        board = _board(request)
    except FormError as exc:
        return invalid(request, exc, 404)
    views = await ui.core.reads.call(_read_list, board, kind, _now(ui))
    return ui.page(request, template, nav="boards", title=title, board=board, views=views,
                   max_items=limits.UI_ORGANIZING_ITEMS)


async def letters_page(request: web.Request) -> web.Response:
    return await _list_page(request, posts.KIND_LETTER, "public_letters.html", Msg(N_("Letters")))


async def pledges_page(request: web.Request) -> web.Response:
    return await _list_page(request, posts.KIND_PLEDGE, "public_pledges.html", Msg(N_("Pledges")))


def _read_letter(store: Store, letter_id: bytes, now_ms: int) -> tuple[object, set[bytes]] | None:
    view = store.letter(letter_id, now_ms=now_ms)
    if view is None:
        return None
    trust = store.trust_view(view.letter.board, now_ms=now_ms)
    return view, {row[0] for row in view.signatures.signers if trust.vouched(row[0])}


async def letter_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        letter_id = parse_post_id(request.match_info["post_id"])
    except FormError:
        return _missing(request)
    read = await ui.core.reads.call(_read_letter, letter_id, _now(ui))
    if read is None:
        return _missing(request)
    view, vouched = read
    letter: Letter = view.letter  # type: ignore[attr-defined]
    authors = await authors_of(request)
    return ui.page(request, "public_letter.html", nav="boards", title=letter.title, letter=letter, view=view,
                   vouched=vouched, authors=authors)


async def pledge_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        pledge_id = parse_post_id(request.match_info["post_id"])
    except FormError:
        return _missing(request)
    view = await ui.core.reads.call(Store.pledge, pledge_id, now_ms=_now(ui))
    if view is None:
        return _missing(request)
    pledge: Pledge = view.pledge
    authors = await authors_of(request)
    return ui.page(request, "public_pledge.html", nav="boards", title=pledge.action, pledge=pledge, view=view,
                   authors=authors)


def add_routes(app: web.Application) -> None:
    """Route the pages above (GET, which answers HEAD too) on the public view's ``app``."""
    add = app.router.add_get
    add("/b/{board:[^/]+}/companies", companies_page)
    add("/b/{board:[^/]+}/company", company_page)
    add("/b/{board:[^/]+}/letters", letters_page)
    add("/b/{board:[^/]+}/pledges", pledges_page)
    add("/letter/{post_id}", letter_page)
    add("/pledge/{post_id}", pledge_page)

"""Collective action in the member UI (docs/organizing.md): a board's companies and their
reports, its sign-on letters and its threshold pledges, each with its page and forms, the
pinned guides and met pledges shown on board pages, and translations on thread pages.

Everything here is read through the store's room for collective action
(node/store/organizing.py) on a read connection (``ui.core.reads``), counted by the pure rules
of protocol/organizing.py, and signed through :meth:`CoreAuthor.publish` and
:meth:`CoreAuthor.retract` (node/authoring.py), the path the command line takes too.  Every
form is checked field by field before anything is signed: bad input gets the page back with
a translated message and status 400, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import datetime
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from dazibao.protocol import fields, limits, organizing, posts
from dazibao.protocol.errors import BoardError, BodyError
from dazibao.protocol.organizing import Letter, Pledge, Report
from dazibao.protocol.posts import Post

from ...authoring import CoreAuthor, NotRetractableError, NotStoredError
from ...delivery import DeliveryError, deliver_letter
from ...store import StorageFullError, Store
from ..base import UI, board_url, redirect, state
from ..i18n import N_, Msg
from ..sessions import Session, Unlocked
from . import boards as _boards
from .common import FormError, authors_of, field, invalid, parse_board, parse_post_id
from .organizing_reads import (
    LANGUAGES,
    board_extras,
    local_keys,
    met_pledges,
    now_ms_of,
    own_signatures,
    read_company,
    read_letter,
    read_list,
    thread_extras,
)

__all__ = [
    "companies_page", "company_page", "report_new", "corroborate", "letters_page", "letter_page", "letter_new",
    "letter_sign", "letter_deliver", "pledges_page", "pledge_page", "pledge_new", "pledge_join", "withdraw",
    "pin", "translate", "board_extras", "thread_extras", "met_pledges", "LANGUAGES",
]

#: What the known practice codes (protocol/fields.py PRACTICES) are called on pages; any other
#: code is shown as the code itself.
PRACTICE_LABELS = {
    "hours_996": Msg(N_("996 hours (9 a.m. to 9 p.m., six days a week)")),
    "unpaid_overtime": Msg(N_("Unpaid overtime")),
    "forced_overtime": Msg(N_("Forced overtime")),
    "illegal_dismissal": Msg(N_("Illegal dismissal")),
    "wage_arrears": Msg(N_("Wages paid late or not at all")),
    "no_contract": Msg(N_("No written contract")),
    "no_social_insurance": Msg(N_("No social insurance")),
    "non_compete_abuse": Msg(N_("Abusive non-compete agreement")),
    "discrimination": Msg(N_("Discrimination")),
    "other": Msg(N_("Other")),
}
_OTHER_CODE = "__other__"
_CODE = re.compile("[a-z][a-z0-9_]{0,31}")
#: The folder under the node's data folder where letters' delivery folders are made.
DELIVERIES = "deliveries"


# --- reading ----------------------------------------------------------------------------------


def _text(request: web.Request, name: str) -> str:
    return field(request, name).replace("\r\n", "\n").replace("\r", "\n")


def _signer(session: Session, fp: str) -> Unlocked:
    """The pseudonym that signs: the one chosen in the form, else the active one.  Raises FormError."""
    signer = session.unlocked.get(fp) if fp else session.active_key()
    if signer is None:
        raise FormError(Msg(N_("Unlock a pseudonym first, on the Pseudonyms page: what you sign here is signed "
                               "with it.")))
    return signer


def _one_line(text: str, empty: Msg | None) -> str:
    """A field value: one line, no spaces at its ends, at most max_field_chars characters, no
    control character.  Raises FormError: ``empty`` when it is empty (None: the field is
    optional and "" is returned)."""
    value = " ".join(text.split())
    if not value:
        if empty is not None:
            raise FormError(empty)
        return ""
    if len(value) > limits.MAX_FIELD_CHARS:
        raise FormError(Msg(N_("A field is too long: at most %(max)s characters."), {"max": limits.MAX_FIELD_CHARS}))
    try:
        fields.check_text_chars(value)
    except BodyError:
        raise FormError(Msg(N_("The text is too long, or contains an invisible control character. Shorten it "
                               "or remove the character and try again."))) from None
    return value


def _free_text(text: str, *, required: bool) -> str:
    if not text.strip():
        if required:
            raise FormError(Msg(N_("Write something first: the text is empty.")))
        return ""
    try:
        fields.check_text_chars(text)
    except BodyError:
        raise FormError(Msg(N_("The text is too long, or contains an invisible control character. Shorten it "
                               "or remove the character and try again."))) from None
    return text


async def _publish(request: web.Request, signer: Unlocked, board: str, make: Callable[[int], Post]) -> Post:
    """Sign and store ``make(now)`` by ``signer`` on ``board``.  Raises FormError when the
    object is outside the grammar (nothing stored), HTTPInsufficientStorage (507) when the
    store is full and HTTPInternalServerError when it refuses the object."""
    ui = request.app[UI]
    author = CoreAuthor(ui.core, has_profile=ui.authors.has_profile_on)
    try:
        # A grammar check before the board is followed or anything is stored.
        make(ui.core.now_ms())
    except (BodyError, BoardError):
        raise FormError(Msg(N_("This cannot be signed: a field is outside what nodes accept. Check the "
                               "values and try again."))) from None
    await _boards.ensure_carried(request, board)
    try:
        draft = await author.publish(signer.key, signer.pseudonym.name, make, board=board)
    except StorageFullError:
        raise web.HTTPInsufficientStorage(reason="storage full: nothing was stored") from None
    except NotStoredError as exc:
        raise web.HTTPInternalServerError(reason=f"not stored: {exc.code}") from None
    return draft.post


# --- companies --------------------------------------------------------------------------------


def _companies_url(board: str) -> str:
    return board_url(board) + "/companies"


def _company_url(board: str, key: str) -> str:
    return board_url(board) + "/company?" + urlencode({"c": key})


def _report_form(values: dict[str, str] | None = None) -> dict[str, str]:
    base = {"company": "", "practice": "", "other": "", "city": "", "period": "", "text": "", "as": ""}
    base.update(values or {})
    return base


async def companies_page(request: web.Request, *, errors: list[Msg] | None = None, status: int = 200,
                         form: dict[str, str] | None = None) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    found = await ui.core.reads.call(Store.companies, board, now_ms=now_ms_of(ui))
    return ui.page(request, "companies.html", status=status, nav="boards", title=Msg(N_("Companies")),
                   board=board, companies=found.companies, complete=found.complete, errors=errors or [],
                   form=_report_form(form), practices=PRACTICE_LABELS, other_code=_OTHER_CODE,
                   company_url=lambda key: _company_url(board, key))


async def company_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    key = organizing.company_key(request.query.get("c", ""))
    company, vouched, complete = await ui.core.reads.call(read_company, board, key, now_ms_of(ui))
    if company is None:
        return ui.error_page(request, 404, Msg(N_("No company of that name is reported on this board here.")),
                             Msg(N_("Company not found")))
    authors = await authors_of(request)
    return ui.page(request, "company.html", nav="boards", title=company.tally.name, board=board, company=company,
                   vouched=vouched, complete=complete, authors=authors, companies_url=_companies_url(board),
                   practices=PRACTICE_LABELS)


async def report_new(request: web.Request) -> web.Response:
    session = state(request).session
    form = _report_form({k: field(request, k) for k in ("company", "practice", "other", "city", "period", "as")})
    form["text"] = _text(request, "text")
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    errors: list[Msg] = []

    def check(read: Callable[[], str]) -> str:
        try:
            return read()
        except FormError as exc:
            errors.append(exc.msg)
            return ""

    company = check(lambda: _one_line(form["company"], Msg(N_("Fill in the company's name."))))
    practice = check(lambda: _practice(form["practice"], form["other"]))
    city = check(lambda: _one_line(form["city"], None))
    period = check(lambda: _period(form["period"]))
    text = check(lambda: _free_text(form["text"], required=False))
    signer = None
    try:
        signer = _signer(session, form["as"])
    except FormError as exc:
        errors.append(exc.msg)
    if errors or signer is None:
        return await companies_page(request, errors=errors, status=400, form=form)
    try:
        await _publish(request, signer, board, lambda now: organizing.create_report(
            signer.key, board=board, company=company, practice=practice, city=city or None, period=period or None,
            text=text, created_at_ms=now))
    except FormError as exc:
        return await companies_page(request, errors=[exc.msg], status=400, form=form)
    session.notify(Msg(N_("Your report was signed and published.")))
    return redirect(_company_url(board, organizing.company_key(company)))


def _practice(choice: str, other: str) -> str:
    code = other.strip() if choice == _OTHER_CODE else choice.strip()
    if not _CODE.fullmatch(code):
        raise FormError(Msg(N_("Choose what happened, or type a code of lowercase letters, digits and _ "
                               "(starting with a letter).")))
    return code


def _period(text: str) -> str:
    value = text.strip()
    if not value:
        return ""
    try:
        fields.parse_period(value)
    except BodyError:
        raise FormError(Msg(N_("The period is a month (2026-03) or a range of months (2026-01..2026-06)."))) from None
    return value


async def corroborate(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session = state(request).session
    try:
        report = await ui.core.reads.call(Store.object, parse_post_id(request.match_info["post_id"]))
        if not isinstance(report, Report):
            raise FormError(Msg(N_("That report is not on this node (any more).")))
        text = _free_text(_text(request, "text"), required=False)
        signer = _signer(session, field(request, "as"))
        await _publish(request, signer, report.board, lambda now: organizing.create_corroboration(
            signer.key, report, created_at_ms=now, text=text))
    except FormError as exc:
        return invalid(request, exc)
    session.notify(Msg(N_("You said this happened to you too. Your corroboration is signed and public.")))
    return redirect(_company_url(report.board, organizing.company_key(report.company)))


# --- letters ----------------------------------------------------------------------------------


def _letters_url(board: str) -> str:
    return board_url(board) + "/letters"


async def letters_page(request: web.Request, *, errors: list[Msg] | None = None, status: int = 200,
                       form: dict[str, str] | None = None) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    letters = await ui.core.reads.call(read_list, board, posts.KIND_LETTER, now_ms_of(ui))
    return ui.page(request, "letters.html", status=status, nav="boards", title=Msg(N_("Letters")), board=board,
                   letters=letters, errors=errors or [],
                   form=form or {"title": "", "text": "", "as": ""}, max_items=limits.UI_ORGANIZING_ITEMS)


async def letter_new(request: web.Request) -> web.Response:
    session = state(request).session
    form = {"title": field(request, "title"), "text": _text(request, "text"), "as": field(request, "as")}
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    try:
        title = _one_line(form["title"], Msg(N_("Fill in the letter's title.")))
        text = _free_text(form["text"], required=True)
        signer = _signer(session, form["as"])
        new = await _publish(request, signer, board, lambda now: organizing.create_letter(
            signer.key, board=board, title=title, text=text, created_at_ms=now))
    except FormError as exc:
        return await letters_page(request, errors=[exc.msg], status=400, form=form)
    session.notify(Msg(N_("Your letter was signed and published. Sign it too if you want to be counted.")))
    return redirect(f"/letter/{new.id.hex()}")


async def _object_or_404(request: web.Request, kind: type) -> object | None:
    ui = request.app[UI]
    try:
        post_id = parse_post_id(request.match_info["post_id"])
    except FormError:
        return None
    found = await ui.core.reads.call(Store.object, post_id)
    return found if isinstance(found, kind) else None


async def letter_page(request: web.Request, *, errors: list[Msg] | None = None, status: int = 200,
                      delivered: str = "") -> web.Response:
    ui = request.app[UI]
    letter = await _object_or_404(request, Letter)
    if not isinstance(letter, Letter):
        return _missing(request)
    now = now_ms_of(ui)
    read = await ui.core.reads.call(read_letter, letter.id, now)
    if read is None:
        return _missing(request)
    view, vouched = read
    keys = await local_keys(ui)
    mine = await ui.core.reads.call(own_signatures, letter.id, keys)
    authors = await authors_of(request)
    return ui.page(request, "letter.html", status=status, nav="boards", title=letter.title, letter=letter,
                   view=view, vouched=vouched, mine=mine, authors=authors, errors=errors or [],
                   delivered=delivered, letters_url=_letters_url(letter.board))


def _missing(request: web.Request) -> web.Response:
    return request.app[UI].error_page(request, 404, Msg(N_(
        "This is not on this node. It may have been withdrawn, or not have reached this node yet.")),
        Msg(N_("Not found")))


async def _sign(request: web.Request, target: Letter | Pledge) -> FormError | None:
    session = state(request).session
    try:
        line = _one_line(field(request, "line"), None)
        signer = _signer(session, field(request, "as"))
        await _publish(request, signer, target.board, lambda now: organizing.create_signature(
            signer.key, target, created_at_ms=now, line=line))
    except FormError as exc:
        return exc
    return None


async def letter_sign(request: web.Request) -> web.Response:
    letter = await _object_or_404(request, Letter)
    if not isinstance(letter, Letter):
        return _missing(request)
    failed = await _sign(request, letter)
    if failed is not None:
        return await letter_page(request, errors=[failed.msg], status=400)
    state(request).session.notify(Msg(N_("You signed the letter. Your signature is public and permanent.")))
    return redirect(f"/letter/{letter.id.hex()}")


async def letter_deliver(request: web.Request) -> web.Response:
    ui = request.app[UI]
    letter = await _object_or_404(request, Letter)
    if not isinstance(letter, Letter):
        return _missing(request)
    now = now_ms_of(ui)
    stamp = datetime.datetime.fromtimestamp(now / 1000, datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = Path(ui.core.data.root) / DELIVERIES / f"{letter.id.hex()[:16]}-{stamp}"
    try:
        await asyncio.to_thread(folder.parent.mkdir, parents=True, exist_ok=True)
        done = await ui.core.reads.call(deliver_letter, letter.id, folder, now_ms=now)
    except (DeliveryError, OSError):
        return await letter_page(request, errors=[Msg(N_(
            "The delivery folder could not be written (the disk may be full). Nothing was left half-written."))],
            status=500)
    return await letter_page(request, delivered=str(done.folder))


# --- pledges ----------------------------------------------------------------------------------


def _pledges_url(board: str) -> str:
    return board_url(board) + "/pledges"


async def pledges_page(request: web.Request, *, errors: list[Msg] | None = None, status: int = 200,
                       form: dict[str, str] | None = None) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    pledges = await ui.core.reads.call(read_list, board, posts.KIND_PLEDGE, now_ms_of(ui))
    return ui.page(request, "pledges.html", status=status, nav="boards", title=Msg(N_("Pledges")), board=board,
                   pledges=pledges, errors=errors or [], max_items=limits.UI_ORGANIZING_ITEMS,
                   form=form or {"action": "", "date": "", "threshold": "", "text": "", "as": ""},
                   fresh_url="/ids?" + urlencode({"next": _pledges_url(board)}))


async def pledge_new(request: web.Request) -> web.Response:
    session = state(request).session
    form = {k: field(request, k) for k in ("action", "date", "threshold", "as")}
    form["text"] = _text(request, "text")
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    try:
        action = _one_line(form["action"], Msg(N_("Fill in what you will do.")))
        date = form["date"].strip()
        try:
            fields.parse_pledge_date(date)
        except BodyError:
            raise FormError(Msg(N_("The date is a day of the calendar, like 2026-05-01."))) from None
        threshold = form["threshold"].strip()
        if not threshold.isdigit() or not 1 <= int(threshold) <= 9_999_999:
            raise FormError(Msg(N_("The threshold is a whole number of other people, from 1 to 9999999.")))
        text = _free_text(form["text"], required=False)
        signer = _signer(session, form["as"])
        new = await _publish(request, signer, board, lambda now: organizing.create_pledge(
            signer.key, board=board, action=action, date=date, threshold=int(threshold), text=text,
            created_at_ms=now))
    except FormError as exc:
        return await pledges_page(request, errors=[exc.msg], status=400, form=form)
    session.notify(Msg(N_("Your pledge was signed and published.")))
    return redirect(f"/pledge/{new.id.hex()}")


async def pledge_page(request: web.Request, *, errors: list[Msg] | None = None, status: int = 200) -> web.Response:
    ui = request.app[UI]
    pledge = await _object_or_404(request, Pledge)
    if not isinstance(pledge, Pledge):
        return _missing(request)
    view = await ui.core.reads.call(Store.pledge, pledge.id, now_ms=now_ms_of(ui))
    if view is None:
        return _missing(request)
    keys = await local_keys(ui)
    mine = await ui.core.reads.call(own_signatures, pledge.id, keys)
    authors = await authors_of(request)
    return ui.page(request, "pledge.html", status=status, nav="boards", title=pledge.action, pledge=pledge,
                   view=view, mine=mine, authors=authors, errors=errors or [], wrote=pledge.author in keys,
                   pledges_url=_pledges_url(pledge.board))


async def pledge_join(request: web.Request) -> web.Response:
    pledge = await _object_or_404(request, Pledge)
    if not isinstance(pledge, Pledge):
        return _missing(request)
    failed = await _sign(request, pledge)
    if failed is not None:
        return await pledge_page(request, errors=[failed.msg], status=400)
    state(request).session.notify(Msg(N_("You joined the pledge. It is public and permanent.")))
    return redirect(f"/pledge/{pledge.id.hex()}")


# --- withdrawing, pins and translations -------------------------------------------------------


async def withdraw(request: web.Request) -> web.Response:
    """Retract this session's pseudonym's signature (of a letter or pledge) or pin: ``post_id``
    is the signature or pin; ``next`` where to go after."""
    ui = request.app[UI]
    session = state(request).session
    try:
        row = await ui.core.reads.call(Store.get, parse_post_id(request.match_info["post_id"]))
        if row is None or row.kind not in (posts.KIND_SIGNATURE, posts.KIND_PIN):
            raise FormError(Msg(N_("That signature is not on this node (any more).")))
        signer = session.key_of(row.author)
        if signer is None:
            raise FormError(Msg(N_("Unlock the pseudonym that signed this first, on the Pseudonyms page.")))
        await CoreAuthor(ui.core).retract(signer.key, row)
    except FormError as exc:
        return invalid(request, exc)
    except NotRetractableError:
        return invalid(request, FormError(Msg(N_("Only the pseudonym that signed this can withdraw it."))), 403)
    except StorageFullError:
        raise web.HTTPInsufficientStorage(reason="storage full: nothing was stored") from None
    except NotStoredError as exc:
        raise web.HTTPInternalServerError(reason=f"not stored: {exc.code}") from None
    session.notify(Msg(N_("Withdrawn: removed here, and other nodes remove it when they receive the withdrawal. "
                          "Anyone who already copied it may keep it.")))
    parent = row.parent.hex() if row.parent else ""
    if row.kind == posts.KIND_PIN:
        return redirect(f"/p/{parent}")
    target = await ui.core.reads.call(Store.object, row.parent) if row.parent else None
    return redirect(f"/pledge/{parent}" if isinstance(target, Pledge) else f"/letter/{parent}")


async def pin(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session = state(request).session
    try:
        row = await ui.core.reads.call(Store.get, parse_post_id(request.match_info["post_id"]))
        if row is None or row.kind not in (posts.KIND_POST, posts.KIND_REPLY):
            raise FormError(Msg(N_("Only posts and replies can be pinned.")))
        signer = _signer(session, field(request, "as"))
        original = row.to_post()
        # A local pseudonym is followed as a moderator on every board of this node.
        await ui.core.sync_identities()
        await _publish(request, signer, row.board, lambda now: organizing.create_pin(
            signer.key, original, created_at_ms=now))
    except FormError as exc:
        return invalid(request, exc)
    session.notify(Msg(N_("Pinned: it is shown at the top of the board for everyone who follows you as a "
                          "moderator there.")))
    return redirect(f"/p/{row.id.hex()}")


async def translate(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session = state(request).session
    try:
        row = await ui.core.reads.call(Store.get, parse_post_id(request.match_info["post_id"]))
        if row is None or row.kind not in (posts.KIND_POST, posts.KIND_REPLY):
            raise FormError(Msg(N_("Only posts and replies can be translated.")))
        lang = field(request, "lang").strip()
        if lang not in {code for code, _ in LANGUAGES}:
            raise FormError(Msg(N_("Choose the language of your translation.")))
        text = _free_text(_text(request, "text"), required=True)
        signer = _signer(session, field(request, "as"))
        original = row.to_post()
        await _publish(request, signer, row.board, lambda now: organizing.create_translation(
            signer.key, original, lang=lang, text=text, created_at_ms=now))
    except FormError as exc:
        return invalid(request, exc)
    session.notify(Msg(N_("Your translation was signed and published.")))
    return redirect(f"/p/{row.id.hex()}#translations-{row.id.hex()}")

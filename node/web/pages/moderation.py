"""Moderation in the member UI (docs/moderation.md; docs/web-ui.md, "Moderation").

- Following: leave a moderator (``POST /moderators/leave``), use a key's moderation on a board
  (``POST /moderators/add``), adopt the moderators a board's charter suggests
  (``POST /moderators/adopt``).  Each is one click and says what it did.
- Moderating: a post's moderation page (``GET /p/<id>/moderate``) offers a new statement about
  the post or its author (hide, block, vouch; a reason code; an optional expiry; which unlocked
  pseudonym signs it) and lists the member's own statements about them, each with an undo.
  A statement is public and signed, so nothing is signed before a confirmation page
  (``step=review``, which writes nothing) is confirmed (``step=sign``).  An undo
  (``POST /moderation/undo``) is the retraction of the statement, confirmed the same way.

Every form is a POST checked by the guard (node/web/app.py: session, CSRF token, origin);
every field is validated before anything is written, and bad input gets the page back with a
translated message (status 400) and writes nothing.  Signing goes through node/authoring.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dazibao.protocol import limits
from dazibao.protocol.moderation import ACTIONS, KIND_MODERATION, REASONS, SUBJECTS, Charter, Statement, parse_statement
from dazibao.protocol.posts import KIND_POST, KIND_REPLY

from ...authoring import CoreAuthor, NoCharterError, NotStoredError
from ...store import PostRow, StorageFullError, Store
from ..authors import AuthorView
from ..base import UI, WebUI, board_url, redirect, state
from ..i18n import N_, Msg
from ..moderation import REASON_LABELS, action_label, expiry_text
from ..sessions import Session, Unlocked
from .common import (
    FormError,
    Moderation,
    authors_of,
    field,
    get_post,
    invalid,
    moderation_of,
    next_location,
    not_here,
    own_signer,
    parse_author_key,
    parse_board,
    parse_post_id,
)

__all__ = [
    "MAX_EXPIRY_DAYS", "MODERATED_KINDS", "CharterView", "charter_view", "StatementForm", "parse_statement_form",
    "moderate_page", "moderate", "undo", "leave", "add", "adopt",
]

#: The longest expiry the form offers, in days (ten years); the protocol allows far more.
MAX_EXPIRY_DAYS = 3_650
DAY_MS = 86_400_000
#: The kinds a moderation page is offered for (statements may name any post id; the UI shows
#: only these).
MODERATED_KINDS = (KIND_POST, KIND_REPLY)


# --- the charter on a board's page ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CharterView:
    """A board's charter as its page shows it: who signed it and whom it suggests."""

    charter: Charter
    author: AuthorView
    #: Every suggested moderator, with whether the node follows it on the board already.
    moderators: list[tuple[AuthorView, bool]]

    @property
    def missing(self) -> int:
        return sum(1 for _, followed in self.moderators if not followed)


def charter_view(mod: Moderation, charter: Charter | None) -> CharterView | None:
    """How a board page shows ``charter`` (None when there is none or it suggests no one)."""
    if charter is None or not charter.moderators:
        return None
    suggested = [(mod.authors.view(k), mod.follows(charter.board, k)) for k in charter.moderators]
    return CharterView(charter, mod.authors.view(charter.author), suggested)


# --- reading the forms ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatementForm:
    """A checked moderation form: what to sign, and who signs it."""

    subject: str
    action: str
    reason: str
    days: int | None
    signer: Unlocked

    def target(self, row: PostRow) -> bytes:
        return row.id if self.subject == "post" else row.author


def _form_values(request: web.Request) -> dict[str, str]:
    return {name: field(request, name).strip() for name in ("subject", "action", "reason", "expires", "as")}


def parse_statement_form(values: dict[str, str], session: Session) -> tuple[StatementForm | None, list[Msg]]:
    """The statement a moderation form asks for, or the messages saying what is wrong with it."""
    errors: list[Msg] = []
    subject, action, reason, expires = values["subject"], values["action"], values["reason"], values["expires"]
    if subject not in SUBJECTS:
        errors.append(Msg(N_("Choose what the statement is about: this post or its author.")))
    if action not in ACTIONS:
        errors.append(Msg(N_("Choose an action: hide, block or vouch.")))
    elif action == "vouch" and subject == "post":
        errors.append(Msg(N_("Only an author can be vouched for, not a single post.")))
    if reason not in REASONS:
        errors.append(Msg(N_("Choose one of the reasons in the list.")))
    days: int | None = None
    if expires:
        if not expires.isdigit() or not 1 <= int(expires) <= MAX_EXPIRY_DAYS:
            errors.append(Msg(N_("The expiry is a number of days from 1 to %(max)s, or empty for none."),
                              {"max": MAX_EXPIRY_DAYS}))
        else:
            days = int(expires)
    signer = session.unlocked.get(values["as"]) if values["as"] else session.active_key()
    if signer is None:
        errors.append(Msg(N_("Unlock a pseudonym first, on the Pseudonyms page: statements are signed with it.")))
    if errors:
        return None, errors
    assert signer is not None
    return StatementForm(subject, action, reason, days, signer), []


def _check_carried(ui: WebUI, board: str) -> None:
    if not ui.core.carries(board):
        raise FormError(Msg(N_("This node does not carry %(board)s. Follow the board first."), {"board": board}))


def _name(ui: WebUI, key: bytes) -> str:
    view = ui.authors.view(key)
    return f"{view.name} · {view.fingerprint}" if view.name else view.fingerprint


# --- the moderation page of a post ------------------------------------------------------------------


def _own_statements(store: Store, row: PostRow, keys: list[bytes]) -> list[Statement]:
    found = store.statements_about(row.board, row.id) + store.statements_about(row.board, row.author)
    mine = [st for st in found if st.moderator in keys]
    return sorted(mine, key=lambda st: (st.created_at_ms, st.id), reverse=True)


async def _moderate_response(request: web.Request, row: PostRow, *, values: dict[str, str] | None = None,
                             errors: list[Msg] | None = None, status: int = 200) -> web.Response:
    ui = request.app[UI]
    session = state(request).session
    authors = await authors_of(request)
    mod = await moderation_of(request, authors, [row.board])
    keys = [p.public_key for p in authors.local]
    own = await ui.core.db.call(_own_statements, row, keys) if keys else []
    now = ui.core.now_ms()
    statements = [{"view": mod.statement(st), "unlocked": session.key_of(st.moderator) is not None,
                   "expired": st.expires_at_ms is not None and st.expires_at_ms <= now} for st in own]
    active = session.active_key()
    defaults = {"subject": "post", "action": "hide", "reason": "", "expires": "",
                "as": active.pseudonym.fingerprint if active else ""}
    return ui.page(request, "moderate.html", status=status, nav="boards", title=Msg(N_("Moderate")),
                   post=mod.post(row), statements=statements, values=values or defaults, errors=errors or [],
                   reasons=[(code, Msg(REASON_LABELS[code])) for code in REASONS],
                   signers=[u.pseudonym for u in session.unlocked.values()], carried=ui.core.carries(row.board))


async def _moderated_post(request: web.Request) -> PostRow | None:
    try:
        row = await get_post(request.app[UI], parse_post_id(request.match_info["post_id"]))
    except FormError:
        return None
    return row if row is not None and row.kind in MODERATED_KINDS else None


async def moderate_page(request: web.Request) -> web.Response:
    row = await _moderated_post(request)
    if row is None:
        return not_here(request)
    return await _moderate_response(request, row)


async def moderate(request: web.Request) -> web.Response:
    """Review (``step=review``: a confirmation page, nothing written) or sign (``step=sign``)."""
    ui = request.app[UI]
    row = await _moderated_post(request)
    if row is None:
        return not_here(request)
    values = _form_values(request)
    form, errors = parse_statement_form(values, state(request).session)
    try:
        _check_carried(ui, row.board)
    except FormError as exc:
        errors.append(exc.msg)
    if form is None or errors:
        return await _moderate_response(request, row, values=values, errors=errors, status=400)
    if field(request, "step") != "sign":
        return await _confirm_new(request, row, form, values)
    now = ui.core.now_ms()
    expires = now + form.days * DAY_MS if form.days else None
    author = CoreAuthor(ui.core)
    signer = form.signer
    try:
        if not ui.authors.has_profile_on(signer.pseudonym.public_key, row.board):
            # As before a first post (the profile rule): followers see "hidden by NAME", not
            # only a fingerprint.
            await author.profile(signer.key, signer.pseudonym.name, board=row.board)
        await author.moderate(signer.key, board=row.board, action=form.action, subject=form.subject,
                              target=form.target(row), reason=form.reason, expires_at_ms=expires)
    except StorageFullError:
        raise web.HTTPInsufficientStorage(reason="storage full: the statement was not stored") from None
    except NotStoredError as exc:
        raise web.HTTPInternalServerError(reason=f"not stored: {exc.code}") from None
    state(request).session.notify(Msg(N_(
        "Your statement was published, signed by %(name)s. Everyone who follows this pseudonym's moderation "
        "on %(board)s applies it."), {"name": _name(ui, form.signer.pseudonym.public_key), "board": row.board}))
    return redirect(await _after(ui, row))


async def _after(ui: WebUI, row: PostRow) -> str:
    """Where to go after a statement about ``row``: its thread, or its board if a block took it away."""
    if await get_post(ui, row.id) is not None:
        if row.kind == KIND_REPLY and row.parent:
            return f"/p/{row.parent.hex()}#p-{row.id.hex()}"
        return f"/p/{row.id.hex()}"
    if row.kind == KIND_REPLY and row.parent and await get_post(ui, row.parent) is not None:
        return f"/p/{row.parent.hex()}"
    return board_url(row.board)


async def _confirm_new(request: web.Request, row: PostRow, form: StatementForm, values: dict[str, str]) -> web.Response:
    ui = request.app[UI]
    authors = await authors_of(request)
    now = ui.core.now_ms()
    return ui.page(request, "moderate_confirm.html", nav="boards", title=Msg(N_("Confirm")), mode="new",
                   post=authors.post(row), signer=authors.view(form.signer.pseudonym.public_key),
                   signer_name=form.signer.pseudonym.name,
                   new_name=not ui.authors.has_profile_on(form.signer.pseudonym.public_key, row.board),
                   subject=form.subject, action=form.action, action_text=action_label(form.action),
                   reason=Msg(REASON_LABELS[form.reason]),
                   expires=expiry_text(now + form.days * DAY_MS) if form.days else "", values=values,
                   action_url=f"/p/{row.id.hex()}/moderate", cancel_url=f"/p/{row.id.hex()}/moderate",
                   statement=None, board=row.board, next="", target_author=None)


# --- undo -----------------------------------------------------------------------------------------


async def undo(request: web.Request) -> web.Response:
    """Withdraw one of the member's own statements: its retraction, after a confirmation."""
    ui = request.app[UI]
    session: Session = state(request).session
    try:
        statement_id = parse_post_id(field(request, "statement"))
    except FormError:
        return invalid(request, FormError(Msg(N_("That is not a statement id (64 hexadecimal characters)."))))
    row = await get_post(ui, statement_id)
    if row is None or row.kind != KIND_MODERATION:
        return invalid(request, FormError(Msg(N_(
            "This statement is not on this node (any more): it may have been undone already."))), 404)
    try:
        signer = await own_signer(
            ui, session, row.author,
            locked=Msg(N_("Unlock the pseudonym that signed this statement first, on the Pseudonyms page.")),
            foreign=Msg(N_("You can only undo statements signed by your own pseudonyms.")))
    except FormError as exc:
        return invalid(request, exc, 403)
    statement = parse_statement(row.to_post())
    back = next_location(request, board_url(row.board))
    if field(request, "step") != "sign":
        authors = await authors_of(request)
        mod = await moderation_of(request, authors, [row.board])
        target = await get_post(ui, statement.target) if statement.subject == "post" else None
        return ui.page(request, "moderate_confirm.html", nav="boards", title=Msg(N_("Confirm")), mode="undo",
                       post=authors.post(target) if target is not None else None,
                       signer=authors.view(row.author), signer_name=signer.pseudonym.name, new_name=False,
                       subject=statement.subject, action=statement.action,
                       action_text=action_label(statement.action),
                       reason=mod.statement(statement).reason, expires=expiry_text(statement.expires_at_ms),
                       values={}, action_url="/moderation/undo", cancel_url=back,
                       statement=mod.statement(statement), board=row.board, next=back,
                       target_author=authors.view(statement.target) if statement.subject == "author" else None)
    try:
        await CoreAuthor(ui.core).retract(signer.key, row)
    except StorageFullError:
        raise web.HTTPInsufficientStorage(reason="storage full: the undo was not stored") from None
    except NotStoredError as exc:
        raise web.HTTPInternalServerError(reason=f"not stored: {exc.code}") from None
    session.notify(Msg(N_("Your statement was undone: this node no longer applies it, and other nodes stop when "
                          "the undo reaches them.")))
    return redirect(back)


# --- following moderators ------------------------------------------------------------------------------


def _board_and_key(request: web.Request) -> tuple[str, bytes]:
    return parse_board(field(request, "board")), parse_author_key(field(request, "key"))


async def leave(request: web.Request) -> web.Response:
    """Stop following a moderator on a board: its statements no longer apply here."""
    ui = request.app[UI]
    try:
        board, key = _board_and_key(request)
    except FormError as exc:
        return invalid(request, exc)
    rows = await ui.core.db.call(Store.moderators, board)
    from_config = any(r.key == key and r.source == "config" for r in rows)
    removed = await ui.core.db.call(Store.remove_moderator, board, key, now_ms=ui.core.now_ms())
    # The refusals it caused are forgotten: the reconciliation index follows now.
    await ui.core.refresh()
    if removed:
        state(request).session.notify(Msg(N_(
            "You left %(name)s on %(board)s: its hides no longer apply here, and the posts it blocked can come "
            "back with the next sync."), {"name": _name(ui, key), "board": board}))
        if from_config:
            state(request).session.notify(Msg(N_(
                "This moderator is also named in the moderators setting of config.toml: remove it there too, "
                "or the node follows it again when it restarts.")))
    else:
        state(request).session.notify(Msg(N_("%(name)s is not a moderator you follow on %(board)s."),
                                          {"name": _name(ui, key), "board": board}))
    return redirect(next_location(request, board_url(board)))


async def add(request: web.Request) -> web.Response:
    """Follow a key's moderation on a board."""
    ui = request.app[UI]
    try:
        board, key = _board_and_key(request)
        _check_carried(ui, board)
    except FormError as exc:
        return invalid(request, exc)
    session = state(request).session
    followed = await ui.core.db.call(Store.moderators, board)
    if any(r.key == key for r in followed):
        session.notify(Msg(N_("You already follow %(name)s on %(board)s."), {"name": _name(ui, key), "board": board}))
        return redirect(next_location(request, board_url(board)))
    try:
        await ui.core.db.call(Store.add_moderator, board, key, source="ui", now_ms=ui.core.now_ms())
    except ValueError:
        return invalid(request, FormError(Msg(N_(
            "You already follow %(max)s moderators on %(board)s, the most one board can have. Leave one first."),
            {"max": limits.MAX_MODERATORS_PER_BOARD, "board": board})))
    # The posts it blocks left the store: the reconciliation index follows now.
    await ui.core.refresh()
    session.notify(Msg(N_(
        "You now follow %(name)s on %(board)s: the posts it hides there are shown collapsed, and the posts and "
        "authors it blocks are removed from this node."), {"name": _name(ui, key), "board": board}))
    return redirect(next_location(request, board_url(board)))


async def adopt(request: web.Request) -> web.Response:
    """Follow every moderator the board's charter suggests."""
    ui = request.app[UI]
    try:
        board = parse_board(field(request, "board"))
        _check_carried(ui, board)
    except FormError as exc:
        return invalid(request, exc)
    no_charter = FormError(Msg(N_("%(board)s has no charter suggesting moderators on this node."),
                               {"board": board}))
    charter: Charter | None = await ui.core.db.call(Store.charter, board)
    if charter is None or not charter.moderators:
        return invalid(request, no_charter)
    try:
        added = await CoreAuthor(ui.core).adopt_charter(board)
    except NoCharterError:  # the opener changed meanwhile
        return invalid(request, no_charter)
    except ValueError:
        return invalid(request, FormError(Msg(N_(
            "You already follow %(max)s moderators on %(board)s, the most one board can have. Leave one first."),
            {"max": limits.MAX_MODERATORS_PER_BOARD, "board": board})))
    session = state(request).session
    if added:
        session.notify(Msg(N_("You now follow the moderators of the charter of %(board)s: %(names)s."),
                           {"board": board, "names": ", ".join(_name(ui, k) for k in added)}))
    else:
        session.notify(Msg(N_("You already follow every moderator of the charter of %(board)s."), {"board": board}))
    return redirect(next_location(request, board_url(board)))

"""Writing: the compose page (``/compose``: a new post or a reply, with a preview) and
retracting one's own post (``/p/<id>/retract``).

Both sign and store through node/authoring.py, the path the command line takes too.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from aiohttp import web

from dazibao.protocol.posts import KIND_REPLY, Post

from ...authoring import REPLYABLE_KINDS, RETRACTABLE_KINDS, CoreAuthor, NotStoredError
from ...keys import Pseudonym
from ...store import PostRow, StorageFullError, Store
from ..base import UI, board_url, redirect, state
from ..i18n import N_, Msg
from ..sessions import Session, Unlocked
from . import thread
from .boards import ensure_carried
from .common import (
    HEX_ID,
    FormError,
    authors_of,
    compose_form,
    field,
    get_post,
    invalid,
    not_here,
    own_signer,
    parse_board,
    parse_body,
    parse_post_id,
)
from .writing import draft_key, fill_form, form_location, keep_draft, last_local_author, pseudonym_of

__all__ = ["compose_page", "compose", "retract_page", "retract"]


async def compose_page(request: web.Request) -> web.Response:
    board = request.query.get("board", "")
    parent = request.query.get("parent", "")
    form = compose_form(board=board, parent=parent)
    fill_form(state(request).session, form)
    return await _compose_response(request, form)


async def _compose_response(request: web.Request, form: dict[str, str], *, errors: list[Msg] | None = None,
                            preview: str | None = None, status: int = 200, locked: bool = False) -> web.Response:
    ui = request.app[UI]
    parent_view = None
    thread_signer = None
    if form["parent"] and HEX_ID.match(form["parent"]):
        row = await get_post(ui, bytes.fromhex(form["parent"]))
        if row is not None:
            authors = await authors_of(request)
            parent_view = authors.post(row)
            thread_signer = await _thread_signer(request, row.id, authors.local)
            unlocked = state(request).session.unlocked
            if not form["as"] and thread_signer is not None and thread_signer.fingerprint in unlocked:
                form["as"] = thread_signer.fingerprint
    return ui.page(request, "compose.html", status=status, nav="boards", title=Msg(N_("Write")),
                   form=form, errors=errors or [], preview=preview, parent=parent_view, thread_signer=thread_signer,
                   locked=locked,
                   unlock_url="/ids?" + urlencode({"next": form_location(form["board"], form["parent"])}))


async def _thread_signer(request: web.Request, post_id: bytes, local: list[Pseudonym]) -> Pseudonym | None:
    """The member's pseudonym that wrote the latest post of this thread, if any."""
    keys = frozenset(p.public_key for p in local)
    found = await request.app[UI].core.db.call(last_local_author, post_id, keys) if keys else None
    return pseudonym_of(local, found)


async def compose(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    form = compose_form(board=field(request, "board").strip(), parent=field(request, "parent").strip().lower(),
                        body=field(request, "body"), as_fp=field(request, "as"))
    publish = field(request, "action") != "preview"
    errors: list[Msg] = []
    parent_row = None
    if form["parent"]:
        try:
            parent_row = await get_post(ui, parse_post_id(form["parent"]))
            if parent_row is None:
                errors.append(Msg(N_("The post you are replying to is not on this node (any more).")))
            elif parent_row.kind not in REPLYABLE_KINDS:
                errors.append(Msg(N_("You can only reply to posts and replies.")))
                parent_row = None
            else:
                form["board"] = parent_row.board
        except FormError as exc:
            errors.append(exc.msg)
    board = body = None
    try:
        board = parse_board(form["board"])
    except FormError as exc:
        errors.append(exc.msg)
    try:
        body = parse_body(form["body"])
    except FormError as exc:
        errors.append(exc.msg)
    # Whatever happens next, the text is kept (in memory) until it is published.
    keep_draft(session, form)
    signer = session.unlocked.get(form["as"]) if form["as"] else session.active_key()
    if publish and signer is None:
        errors.append(Msg(N_("Unlock a pseudonym first, on the Pseudonyms page: posts are signed with it.")))
    if errors or not publish:
        preview = body if not errors else None
        return await _compose_response(request, form, errors=errors, preview=preview, status=400 if errors else 200,
                                       locked=publish and signer is None)
    assert board is not None and body is not None and signer is not None
    token = field(request, "form_token")
    if session.form_is_stale(token):
        # A browser's resubmission, or a form shown before the idle lock: never published at
        # once, the member sees the text again and decides.
        return await _compose_response(request, form, errors=[Msg(N_(
            "This form was already sent, or it was shown before your pseudonyms were locked. Nothing was "
            "published: check the text below and publish it again if you want to."))], preview=body, status=409)
    if parent_row is not None:
        local = await asyncio.to_thread(ui.member_keys().list)
        used = await _thread_signer(request, parent_row.id, local)
        if (used is not None and used.public_key != signer.pseudonym.public_key
                and field(request, "confirm_signer") != signer.pseudonym.fingerprint):
            return ui.page(request, "signer_confirm.html", nav="boards",
                           title=Msg(N_("Publish under another pseudonym?")), form=form, signer=signer.pseudonym,
                           used=used, used_unlocked=used.fingerprint in session.unlocked,
                           parent_hex=parent_row.id.hex())
    new = await _publish(request, signer, board, body, parent_row)
    session.spend_form(token)
    session.drop_draft(draft_key(form["board"], form["parent"]))
    if parent_row is not None:
        count = await ui.core.db.call(Store.reply_count, parent_row.id)
        return redirect(thread.reply_location(parent_row, count, new.id))
    return redirect(f"/p/{new.id.hex()}")


async def _publish(request: web.Request, signer: Unlocked, board: str, body: str, parent: PostRow | None) -> Post:
    """Sign and store a post (and, on a board where this pseudonym has none yet, its profile).

    Raises HTTPInsufficientStorage (507) when the store is full and HTTPInternalServerError
    when it refuses the post; nothing is stored then.
    """
    ui = request.app[UI]
    await ensure_carried(request, board)
    author = CoreAuthor(ui.core, has_profile=ui.authors.has_profile_on)
    try:
        draft = await author.post(signer.key, signer.pseudonym.name, board=board, body=body,
                                  parent=parent.id if parent is not None else None)
    except StorageFullError:
        # Nothing was stored; an error page (507) instead of a crash, without a traceback.
        raise web.HTTPInsufficientStorage(reason="storage full: the post was not stored") from None
    except NotStoredError as exc:
        raise web.HTTPInternalServerError(reason=f"not stored: {exc.code}") from None
    return draft.post


async def retract_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        row = await get_post(ui, parse_post_id(request.match_info["post_id"]))
    except FormError:
        return not_here(request)
    if row is None:
        return not_here(request)
    authors = await authors_of(request)
    return ui.page(request, "retract.html", nav="boards", title=Msg(N_("Retract")), post=authors.post(row))


async def retract(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    try:
        row = await get_post(ui, parse_post_id(request.match_info["post_id"]))
    except FormError:
        return not_here(request)
    if row is None:
        return not_here(request)
    if row.kind not in RETRACTABLE_KINDS:
        return invalid(request, FormError(Msg(N_("Only posts, replies and profiles can be retracted."))))
    try:
        signer = await own_signer(
            ui, session, row.author,
            locked=Msg(N_("Unlock the pseudonym that wrote this post first, on the Pseudonyms page.")),
            foreign=Msg(N_("You can only retract posts written by your own pseudonyms.")))
    except FormError as exc:
        return invalid(request, exc, 403)
    try:
        await CoreAuthor(ui.core).retract(signer.key, row)
    except StorageFullError:
        raise web.HTTPInsufficientStorage(reason="storage full: the retraction was not stored") from None
    except NotStoredError as exc:
        raise web.HTTPInternalServerError(reason=f"not stored: {exc.code}") from None
    session.notify(Msg(N_("The post was retracted: it is removed here, and other nodes remove it when "
                          "they receive the retraction.")))
    if row.kind == KIND_REPLY and row.parent:
        return redirect(f"/p/{row.parent.hex()}")
    return redirect(board_url(row.board))

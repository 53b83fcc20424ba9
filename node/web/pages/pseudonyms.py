"""The pseudonyms page (``/ids``): create, unlock, choose, lock and export pseudonyms.

Unlocked keys live in the member's session only (node/web/sessions.py).  Argon2id runs off
the event loop, at most ``WebUI.kdf_slots`` at once.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from dazibao.protocol import identity
from dazibao.protocol.errors import KeyFileError, WrongPassphraseError

from ...authoring import CoreAuthor, NotStoredError
from ...keys import KeyStoreError, Pseudonym
from ...store import StorageFullError, StoreError
from ..base import UI, redirect, state
from ..i18n import N_, Msg
from ..security import safe_next
from ..sessions import Session
from .boards import ensure_carried
from .common import FormError, authors_of, field, next_location, parse_board, parse_display_name

__all__ = ["MIN_PASSPHRASE_CHARS", "MAX_PASSPHRASE_CHARS", "ids_page", "ids_index", "id_new", "id_unlock", "id_lock",
           "id_use", "id_export"]

MIN_PASSPHRASE_CHARS = 8
MAX_PASSPHRASE_CHARS = 1_024


async def ids_page(request: web.Request, errors: list[Msg] | None = None, status: int = 200,
                   values: dict[str, str] | None = None) -> web.Response:
    ui = request.app[UI]
    local = await asyncio.to_thread(ui.member_keys().list)
    damaged = await asyncio.to_thread(ui.member_keys().damaged)
    authors = await authors_of(request)
    session: Session = state(request).session
    pseudonyms = [{"p": p, "author": authors.view(p.public_key), "unlocked": p.fingerprint in session.unlocked,
                   "active": p.fingerprint == session.active} for p in local]
    # Where unlocking leads back to (the form the member was writing in, say).
    back = safe_next(request.query.get("next") or (field(request, "next") if request.method == "POST" else ""), "")
    return ui.page(request, "ids.html", status=status, nav="ids", title=Msg(N_("Pseudonyms")), back=back,
                   pseudonyms=pseudonyms, damaged=[path.name for path, _ in damaged], errors=errors or [],
                   values=values or {"name": "", "board": ""},
                   idle_minutes=max(1, round(ui.config.ui_idle_lock_s / 60)))


async def ids_index(request: web.Request) -> web.Response:
    """The pseudonyms page, with no message."""
    return await ids_page(request)


def _find_local(local: list[Pseudonym], fp: str) -> Pseudonym:
    for p in local:
        if p.fingerprint == fp:
            return p
    raise FormError(Msg(N_("There is no such pseudonym on this machine.")))


async def id_new(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    values = {"name": field(request, "name"), "board": field(request, "board")}
    passphrase, repeat = field(request, "passphrase"), field(request, "passphrase2")
    errors: list[Msg] = []
    name = board = None
    try:
        name = parse_display_name(values["name"])
    except FormError as exc:
        errors.append(exc.msg)
    if values["board"].strip():
        try:
            board = parse_board(values["board"])
        except FormError as exc:
            errors.append(exc.msg)
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        errors.append(Msg(N_("The passphrase must have at least %(min)s characters; a long one is better."),
                          {"min": MIN_PASSPHRASE_CHARS}))
    elif len(passphrase) > MAX_PASSPHRASE_CHARS:
        errors.append(Msg(N_("The passphrase is too long.")))
    elif passphrase != repeat:
        errors.append(Msg(N_("The two passphrases are not the same.")))
    if errors:
        return await ids_page(request, errors, 400, values)
    assert name is not None
    seed = os.urandom(identity.SEED_BYTES)
    try:
        async with ui.kdf_slots:
            pseudonym = await asyncio.to_thread(ui.member_keys().create, name, passphrase, seed)
    except KeyStoreError:
        return await ids_page(request, [Msg(N_("A pseudonym called %(name)s already exists on this machine."),
                                            {"name": name})], 400, values)
    key = identity.SigningKey(seed)
    try:
        # The node follows its own pseudonyms' moderation statements on every board.
        await ui.core.sync_identities()
    except StoreError:
        pass  # a full disk: recorded the next time the node starts
    session.unlock(pseudonym, key)
    session.active = pseudonym.fingerprint
    session.notify(Msg(N_("Pseudonym %(name)s created and unlocked. Its fingerprint is %(fp)s."),
                       {"name": name, "fp": pseudonym.fingerprint}))
    if board is not None:
        await ensure_carried(request, board)
        try:
            await CoreAuthor(ui.core).profile(key, name, board=board)
        except (NotStoredError, StorageFullError):
            # The pseudonym exists and is unlocked; its name goes out with its first post there.
            pass
        else:
            session.notify(Msg(N_("Its name was published on %(board)s."), {"board": board}))
    # A form elsewhere (a pledge's "fresh pseudonym") leads back to where it was.
    return redirect(next_location(request, "/ids"))


async def id_unlock(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    passphrase = field(request, "passphrase")
    try:
        pseudonym = _find_local(await asyncio.to_thread(ui.member_keys().list), field(request, "fp"))
        if not passphrase or len(passphrase) > MAX_PASSPHRASE_CHARS:
            raise FormError(Msg(N_("Type the pseudonym's passphrase.")))
        data = await asyncio.to_thread(pseudonym.path.read_bytes)
        try:
            async with ui.kdf_slots:
                key, _ = await asyncio.to_thread(identity.open_key_file, data, passphrase)
        except WrongPassphraseError:
            raise FormError(Msg(N_("Wrong passphrase for %(name)s."), {"name": pseudonym.name})) from None
        except KeyFileError:
            raise FormError(Msg(N_("The key file of %(name)s cannot be opened: it is damaged or was made "
                                   "by a newer version."), {"name": pseudonym.name})) from None
    except FormError as exc:
        return await ids_page(request, [exc.msg], 400)
    session.unlock(pseudonym, key)
    session.notify(Msg(N_("%(name)s is unlocked."), {"name": pseudonym.name}))
    return redirect(next_location(request, "/ids"))


async def id_lock(request: web.Request) -> web.Response:
    session: Session = state(request).session
    fp = field(request, "fp")
    session.lock(None if fp == "all" else fp)
    session.notify(Msg(N_("Locked.")))
    return redirect(next_location(request, "/ids"))


async def id_use(request: web.Request) -> web.Response:
    session: Session = state(request).session
    fp = field(request, "fp")
    if fp not in session.unlocked:
        return await ids_page(request, [Msg(N_("Unlock this pseudonym first."))], 400)
    session.active = fp
    session.notify(Msg(N_("New posts will be signed by %(name)s."), {"name": session.unlocked[fp].pseudonym.name}))
    return redirect(next_location(request, "/ids"))


async def id_export(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        pseudonym = _find_local(await asyncio.to_thread(ui.member_keys().list), field(request, "fp"))
    except FormError as exc:
        return await ids_page(request, [exc.msg], 400)
    data = await asyncio.to_thread(pseudonym.path.read_bytes)
    # The file is still encrypted under the passphrase; the name is the fingerprint, which
    # holds only [a-z2-7-].
    return web.Response(body=data, content_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{pseudonym.fingerprint}.dzbkey"',
        "Cache-Control": "no-store",
    })

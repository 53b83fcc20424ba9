"""Key files in the member UI: import a pseudonym's key file (``/ids/import``) and remove a
pseudonym from this machine (``/ids/remove``).

Import makes the checks of ``dazibao id import`` (node/cli_ids.py): the file must be a key
file whose header reads, its pseudonym must not be here already (same key, or same name), and
the passphrase must open it; then the file is copied as it is, still encrypted, mode 0600.
It is the one form of the UI sent as ``multipart/form-data`` (the guard in node/web/app.py
accepts that for this address only, within the same size limit).

Removing deletes the key file: the posts stay public and signed, and the key is gone from
this machine for good unless a copy exists elsewhere, so the member confirms by typing the
pseudonym's name.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from dazibao.protocol import identity
from dazibao.protocol.errors import KeyFileError, WrongPassphraseError

from ...keys import KEY_SUFFIX, Pseudonym, write_private_file
from ...store import StoreError
from ..base import UI, redirect, state
from ..i18n import N_, Msg
from .common import FormError, field
from .pseudonyms import MAX_PASSPHRASE_CHARS

__all__ = ["import_page", "import_key", "remove_page", "remove_key", "IMPORT_PATH"]

IMPORT_PATH = "/ids/import"


async def import_page(request: web.Request, errors: list[Msg] | None = None, status: int = 200) -> web.Response:
    return request.app[UI].page(request, "key_import.html", status=status, nav="ids",
                                title=Msg(N_("Import a key file")), errors=errors or [])


async def _check_import(request: web.Request, data: bytes, passphrase: str
                        ) -> tuple[identity.KeyFileHeader, identity.SigningKey]:
    ui = request.app[UI]
    if not data:
        raise FormError(Msg(N_("Choose the key file to import.")))
    try:
        header = identity.read_key_file_header(data)
    except KeyFileError as exc:
        raise FormError(Msg(N_("This is not a dazibao key file, or it is damaged (%(reason)s)."),
                            {"reason": exc.code})) from None
    for p in await asyncio.to_thread(ui.member_keys().list):
        if p.public_key == header.public_key:
            raise FormError(Msg(N_("This pseudonym is already on this machine, as %(name)s."), {"name": p.name}))
        if p.name == header.name:
            raise FormError(Msg(N_("A pseudonym called %(name)s already exists on this machine."),
                                {"name": p.name}))
    if not passphrase or len(passphrase) > MAX_PASSPHRASE_CHARS:
        raise FormError(Msg(N_("Type the pseudonym's passphrase.")))
    try:
        async with ui.kdf_slots:
            key, _ = await asyncio.to_thread(identity.open_key_file, data, passphrase)
    except WrongPassphraseError:
        raise FormError(Msg(N_("Wrong passphrase for %(name)s."), {"name": header.name})) from None
    except KeyFileError as exc:
        raise FormError(Msg(N_("This is not a dazibao key file, or it is damaged (%(reason)s)."),
                            {"reason": exc.code})) from None
    return header, key


async def import_key(request: web.Request) -> web.Response:
    ui = request.app[UI]
    form = state(request).form
    upload = form.get("keyfile")
    data = upload.file.read() if isinstance(upload, web.FileField) else b""
    try:
        header, key = await _check_import(request, data, field(request, "passphrase"))
    except FormError as exc:
        return await import_page(request, [exc.msg], 400)
    keys = ui.member_keys()
    target = keys.folder / (identity.fingerprint(header.public_key) + KEY_SUFFIX)

    def write() -> None:
        keys.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_file(target, data)

    try:
        await asyncio.to_thread(write)
    except OSError:
        return await import_page(request, [Msg(N_("The key file could not be written on this machine (the disk "
                                                   "may be full)."))], 507)
    try:
        await ui.core.sync_identities()
    except StoreError:
        pass  # a full disk: recorded the next time the node starts
    pseudonym = Pseudonym(header.name, header.public_key, target)
    session = state(request).session
    session.unlock(pseudonym, key)
    session.notify(Msg(N_("Pseudonym %(name)s imported and unlocked. Its fingerprint is %(fp)s."),
                       {"name": pseudonym.name, "fp": pseudonym.fingerprint}))
    return redirect("/ids")


async def _find(request: web.Request, fp: str) -> Pseudonym:
    for p in await asyncio.to_thread(request.app[UI].member_keys().list):
        if p.fingerprint == fp:
            return p
    raise FormError(Msg(N_("There is no such pseudonym on this machine.")))


async def remove_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        pseudonym = await _find(request, request.query.get("fp", ""))
    except FormError as exc:
        return ui.error_page(request, 404, exc.msg)
    return ui.page(request, "key_remove.html", nav="ids", title=Msg(N_("Remove a pseudonym from this machine")),
                   p=pseudonym)


async def remove_key(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        pseudonym = await _find(request, field(request, "fp"))
    except FormError as exc:
        return ui.error_page(request, 404, exc.msg)
    if field(request, "confirm_name").strip() != pseudonym.name:
        return ui.page(request, "key_remove.html", status=400, nav="ids",
                       title=Msg(N_("Remove a pseudonym from this machine")), p=pseudonym,
                       errors=[Msg(N_("The name you typed is not %(name)s: nothing was removed."),
                                   {"name": pseudonym.name})])
    ui.sessions.lock_everywhere(pseudonym.fingerprint)
    try:
        await asyncio.to_thread(pseudonym.path.unlink)
    except FileNotFoundError:
        pass  # removed meanwhile (by another form or by hand): the outcome is the same
    except OSError:
        return ui.error_page(request, 500, Msg(N_("The key file could not be removed from this machine.")))
    try:
        await ui.core.sync_identities()
    except StoreError:
        pass
    state(request).session.notify(Msg(N_(
        "%(name)s was removed from this machine. Its posts stay public and signed."), {"name": pseudonym.name}))
    return redirect("/ids")

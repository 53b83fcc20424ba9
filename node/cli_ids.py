"""The pseudonym commands: `dazibao id new|list|export|import`.

node/cli.py adds :data:`id_group` to the main command group.  They follow the conventions of
every command (node/cli_common.py): ``--data-dir``, one-line errors, ``--json``.  Key files
stay encrypted wherever they go: export copies one out, import copies one in, once its
passphrase is checked to open it.
"""

from __future__ import annotations

from pathlib import Path

import click

from dazibao.protocol import identity

from .cli_common import Context, json_option, pass_ctx, passphrase_option, unlock_with_retries
from .cli_common import emit_json as _emit_json
from .cli_common import fail as _fail
from .cli_common import new_passphrase as _new_passphrase
from .keys import KEY_SUFFIX, KeyStoreError, Pseudonym, write_private_file

__all__ = ["id_group", "pseudonym_json"]


def pseudonym_json(p: Pseudonym) -> dict[str, str]:
    """A pseudonym as the commands print it in JSON."""
    return {"name": p.name, "fingerprint": p.fingerprint, "public_key": p.public_key.hex()}


@click.group("id")
def id_group() -> None:
    """Manage pseudonyms (each one a key pair; keys never leave this machine unencrypted)."""


@id_group.command("new")
@click.argument("name")
@passphrase_option
@json_option
@pass_ctx
def id_new(ctx: Context, name: str, passphrase_file: str | None, as_json: bool) -> None:
    """Create a pseudonym called NAME."""
    ctx.require_init()
    try:
        p = ctx.keys().create(name, _new_passphrase(passphrase_file))
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _emit_json(pseudonym_json(p))
    else:
        click.echo(f"pseudonym {p.name}  {p.fingerprint}")


@id_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def id_list(ctx: Context, as_json: bool) -> None:
    """List pseudonyms with their fingerprints."""
    ctx.require_init()
    items = ctx.keys().list()
    for path, reason in ctx.keys().damaged():
        click.echo(f"dazibao: warning: key file {path.name} cannot be read: {reason}", err=True)
    if as_json:
        _emit_json([{"name": p.name, "fingerprint": p.fingerprint, "public_key": p.public_key.hex()} for p in items])
        return
    for p in items:
        click.echo(f"{p.fingerprint}  {p.name}")


@id_group.command("export")
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the encrypted key file.")
@json_option
@pass_ctx
def id_export(ctx: Context, name: str, output: Path, as_json: bool) -> None:
    """Write NAME's encrypted key file to a file (mode 0600); `dazibao id import` reads it."""
    ctx.require_init()
    try:
        p = ctx.keys().export(name, output)
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
    if as_json:
        _emit_json({**pseudonym_json(p), "file": str(output)})
    else:
        click.echo(f"exported {p.name} ({p.fingerprint}) to {output}")


@id_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@passphrase_option
@json_option
@pass_ctx
def id_import(ctx: Context, file: Path, passphrase_file: str | None, as_json: bool) -> None:
    """Add the pseudonym of an encrypted key file written by `dazibao id export`.

    The key file is copied as it is (still encrypted, mode 0600), after its passphrase is
    checked to open it: the pseudonym keeps its name, key and passphrase.
    """
    from dazibao.protocol.errors import KeyFileError

    ctx.require_init()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        header = identity.read_key_file_header(data)
    except KeyFileError as exc:
        raise _fail(f"{file}: {exc.message}") from None
    keys = ctx.keys()
    for p in keys.list():
        if p.public_key == header.public_key:
            raise _fail(f"this pseudonym is already here, as {p.name!r} ({p.fingerprint})")
        if p.name == header.name:
            raise _fail(f"a pseudonym called {p.name!r} already exists here (rename it first)")

    def check(passphrase: str) -> None:
        try:
            identity.open_key_file(data, passphrase)
        except KeyFileError as exc:
            raise KeyStoreError(f"{file}: {exc.message}", exc.code) from None

    unlock_with_retries(check, passphrase_file)
    target = keys.folder / (identity.fingerprint(header.public_key) + KEY_SUFFIX)
    try:
        keys.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private_file(target, data)
    except OSError as exc:
        raise _fail(f"cannot write {target}: {exc.strerror or exc}") from None
    p = Pseudonym(header.name, header.public_key, target)
    if as_json:
        _emit_json(pseudonym_json(p))
    else:
        click.echo(f"imported pseudonym {p.name}  {p.fingerprint}")

"""The moderation commands: `dazibao moderators ...` (whom this node follows) and `dazibao
moderate ...` (statements signed by one of the member's pseudonyms).  docs/moderation.md says
what they mean; docs/running.md lists them.

node/cli.py adds :data:`MODERATION_COMMANDS` to the main command group.  They follow the
conventions of every command (node/cli_common.py): ``--data-dir``, one-line errors
(``dazibao: error: ...``, exit status 1), ``--json`` on the listing commands.  They write to the
store directly; a node running on the same data folder follows within a second.
"""

from __future__ import annotations

import re
import time
from typing import Any

import click

from dazibao.protocol import identity, posts
from dazibao.protocol.errors import DazibaoError, RemoteProtocolError
from dazibao.protocol.moderation import KIND_MODERATION, REASONS

from .authoring import AuthoringError, StoreAuthor
from .cli_common import Context, json_option, pass_ctx, passphrase_option, unlock_pseudonym, when
from .cli_common import emit_json as _emit_json
from .cli_common import fail as _fail
from .config import ConfigError, parse_public_key
from .store import Store, StoreError

__all__ = ["MODERATION_COMMANDS", "moderators_group", "moderate_group"]

_REASON = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: The longest expiry --expires takes, in days (ten years).
MAX_EXPIRES_DAYS = 3_650
_DAY_MS = 86_400_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _board(board: str) -> str:
    try:
        return posts.check_board(board)
    except RemoteProtocolError as exc:
        raise _fail(f"board {board!r}: {exc.message}") from None


def _key(text: str, what: str = "KEY") -> bytes:
    try:
        return parse_public_key(text)
    except ConfigError:
        raise _fail(f"{what} must be a public key: 64 hex digits (see `dazibao id list --json`)") from None


def _post_id(text: str, what: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != posts.ID_BYTES:
        raise _fail(f"{what} must be a full post id: 64 hex digits")
    return value


def _who(store: Store, key: bytes) -> str:
    """A key as the member sees it: fingerprint, and the local pseudonym's name if it is one."""
    names = {row.public_key: row.name for row in store.list_identities()}
    shown = identity.fingerprint(key)
    return f"{shown} ({names[key]})" if key in names else shown


# --- dazibao moderators ---------------------------------------------------------------------------


@click.group("moderators")
def moderators_group() -> None:
    """Whom this node follows as moderators, board by board.

    \b
    A followed moderator's `block` statements keep posts off this node (they are neither
    stored nor forwarded), its `hide` statements collapse posts in the web UI, and its
    `vouch` statements exempt authors from the stranger quota.  Your own pseudonyms are
    followed on every board.
    """


@moderators_group.command("list")
@click.option("--board", help="Only this board.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def moderators_list(ctx: Context, board: str | None, as_json: bool) -> None:
    """List the moderators this node follows, by board."""
    if board is not None:
        board = _board(board)
    store = ctx.store()
    try:
        rows = store.moderators(board)
        shown = [(r, _who(store, r.key)) for r in rows]
    finally:
        store.close()
    if as_json:
        _emit_json([{"board": r.board, "key": r.key.hex(), "fingerprint": identity.fingerprint(r.key),
                     "source": r.source, "added_at_ms": r.added_at_ms} for r, _ in shown])
        return
    if not rows:
        click.echo("no moderators followed" + (f" on {board!r}" if board else "")
                   + "; add one with `dazibao moderators add BOARD KEY`")
        return
    for r, who in shown:
        click.echo(f"{r.board}  {r.key.hex()}  {who}  [{r.source}]  since {when(r.added_at_ms)}")


@moderators_group.command("add")
@click.argument("board")
@click.argument("key", metavar="KEY")
@json_option
@pass_ctx
def moderators_add(ctx: Context, board: str, key: str, as_json: bool) -> None:
    """Follow KEY (a public key, 64 hex digits) as a moderator of BOARD.

    Its blocks apply at once: posts it blocks that are stored here are removed.
    """
    board, public_key = _board(board), _key(key)
    store = ctx.store()
    try:
        known = {r.key for r in store.moderators(board)}
        store.add_moderator(board, public_key, source="cli", now_ms=_now_ms())
        who = _who(store, public_key)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        _emit_json({"board": board, "key": public_key.hex(), "fingerprint": identity.fingerprint(public_key),
                    "added": public_key not in known})
    else:
        click.echo(("already following" if public_key in known else "following") + f" {who} on {board}")


@moderators_group.command("remove")
@click.argument("board")
@click.argument("key", metavar="KEY")
@json_option
@pass_ctx
def moderators_remove(ctx: Context, board: str, key: str, as_json: bool) -> None:
    """Stop following KEY as a moderator of BOARD.

    What only its statements blocked comes back at the next sync.
    """
    board, public_key = _board(board), _key(key)
    store = ctx.store()
    try:
        removed = store.remove_moderator(board, public_key, now_ms=_now_ms())
    except StoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if not removed:
        raise _fail(f"{identity.fingerprint(public_key)} is not a moderator followed on {board!r}")
    if as_json:
        _emit_json({"board": board, "key": public_key.hex(), "fingerprint": identity.fingerprint(public_key),
                    "removed": True})
    else:
        click.echo(f"no longer following {identity.fingerprint(public_key)} on {board}")


@moderators_group.command("charter")
@click.argument("board")
@click.option("--adopt", is_flag=True, help="Follow the moderators the charter names.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def moderators_charter(ctx: Context, board: str, adopt: bool, as_json: bool) -> None:
    """Show the charter of BOARD: the moderators its opener proposes; --adopt follows them.

    The opener is the author of the oldest post this node holds on the board.  Anyone can
    backdate a post to claim that place, so check the keys before you adopt them.
    """
    board = _board(board)
    store = ctx.store()
    try:
        if not store.count(board):
            raise _fail(f"no posts on board {board!r} here: unknown board")
        charter = store.charter(board)
        if charter is None:
            raise _fail(f"board {board!r} has no charter here (none by the author of its first post)")
        added: list[bytes] = []
        if adopt:
            try:
                added = StoreAuthor(store).adopt_charter(board, now_ms=_now_ms())
            except (ValueError, AuthoringError, StoreError) as exc:
                raise _fail(str(exc)) from None
        names = [(k, _who(store, k)) for k in charter.moderators]
        opener = _who(store, charter.author)
    finally:
        store.close()
    if as_json:
        _emit_json({"board": board, "id": charter.id.hex(), "author": charter.author.hex(),
                    "created_at_ms": charter.created_at_ms, "moderators": [k.hex() for k in charter.moderators],
                    "description": charter.description, "adopted": [k.hex() for k in added]})
        return
    click.echo(f"charter of {board} by its opener {opener}, {when(charter.created_at_ms)}:")
    for key, who in names:
        click.echo(f"  moderator {key.hex()}  {who}")
    if charter.description:
        click.echo("")
        click.echo(charter.description)
    if adopt:
        click.echo(f"now following {len(added)} more moderator{'s' if len(added) != 1 else ''} on {board}")
    elif charter.moderators:
        click.echo(f"to follow them: dazibao moderators charter {board} --adopt")


# --- dazibao moderate ------------------------------------------------------------------------------


@click.group("moderate")
def moderate_group() -> None:
    """Sign a moderation statement with one of your pseudonyms, or undo one.

    \b
    Nodes that follow the pseudonym as a moderator of the board apply it:
      hide   collapse a post, or every post of an author, behind a notice
      block  do not store or forward a post, or anything by an author on the board
      vouch  trust an author on the board (no stranger quota, no proof of work)
    A statement is a signed post: it travels like one and is public.
    """


def _statement_command(action: str, summary: str) -> click.Command:
    @click.command(action, help=summary)
    @click.argument("board")
    @click.option("--post", "post_id", metavar="ID", help="The post (64 hex digits)." if action != "vouch"
                  else "Not for vouch: only authors are vouched for.")
    @click.option("--author", metavar="KEY", help="The author's public key (64 hex digits).")
    @click.option("--reason", required=True, metavar="CODE",
                  help=f"A reason code: {', '.join(REASONS)}, or your own ([a-z][a-z0-9_]*, 32 at most).")
    @click.option("--expires", type=click.FloatRange(0, MAX_EXPIRES_DAYS, min_open=True), metavar="DAYS",
                  help="End the statement's effect after this many days (default: never).")
    @click.option("--as", "as_name", required=True, metavar="PSEUDONYM", help="The pseudonym that signs it.")
    @passphrase_option
    @json_option
    @pass_ctx
    def command(ctx: Context, board: str, post_id: str | None, author: str | None, reason: str,
                expires: float | None, as_name: str, passphrase_file: str | None, as_json: bool) -> None:
        _moderate(ctx, action, board, post_id, author, reason, expires, as_name, passphrase_file, as_json)

    return command


def _moderate(ctx: Context, action: str, board: str, post_id: str | None, author: str | None, reason: str,
              expires: float | None, as_name: str, passphrase_file: str | None, as_json: bool = False) -> None:
    board = _board(board)
    if (post_id is None) == (author is None):
        raise _fail("give exactly one of --post ID or --author KEY")
    if action == "vouch" and post_id is not None:
        raise _fail("vouch is for authors only: use --author KEY")
    if not _REASON.fullmatch(reason):
        raise _fail("--reason takes a code of lowercase letters, digits and _ (at most 32), "
                    f"such as {', '.join(REASONS[:4])}")
    subject, target = ("post", _post_id(post_id, "--post")) if post_id is not None else ("author", _key(author or "",
                                                                                                      "--author"))
    store = ctx.store()
    try:
        if subject == "post":
            row = store.get(target)
            if row is not None and row.board != board:
                raise _fail(f"that post is on board {row.board!r}, not {board!r}")
        key = _unlock(ctx, as_name, passphrase_file)
        now = _now_ms()
        expires_at = None if expires is None else now + int(expires * _DAY_MS)
        try:
            statement = StoreAuthor(store).moderate(key, board=board, action=action, subject=subject, target=target,
                                                    reason=reason, expires_at_ms=expires_at, now_ms=now)
        except (AuthoringError, StoreError) as exc:
            raise _fail(str(exc)) from None
        except DazibaoError as exc:
            raise _fail(getattr(exc, "message", str(exc))) from None
    finally:
        store.close()
    if as_json:
        _emit_json({"id": statement.id.hex(), "board": board, "action": action, "subject": subject,
                    "target": target.hex(), "reason": reason, "expires_at_ms": expires_at})
    else:
        click.echo(statement.id.hex())


def _unlock(ctx: Context, name: str, passphrase_file: str | None) -> identity.SigningKey:
    return unlock_pseudonym(ctx, name, passphrase_file)[1]


for _action, _summary in (
    ("hide", "Hide a post (--post) or an author's posts (--author) on BOARD behind a notice."),
    ("block", "Block a post (--post) or an author (--author) on BOARD: not stored, not forwarded."),
    ("vouch", "Vouch for an author (--author) on BOARD: no stranger quota, no proof of work."),
):
    moderate_group.add_command(_statement_command(_action, _summary))


@moderate_group.command("undo")
@click.argument("statement_id", metavar="STATEMENT_ID")
@click.option("--as", "as_name", required=True, metavar="PSEUDONYM", help="The pseudonym that signed it.")
@passphrase_option
@json_option
@pass_ctx
def moderate_undo(ctx: Context, statement_id: str, as_name: str, passphrase_file: str | None, as_json: bool) -> None:
    """Undo a statement: retract it, here and, by gossip, on every node.

    What it blocked comes back at the next sync on the nodes that follow you.
    """
    target = _post_id(statement_id, "STATEMENT_ID")
    store = ctx.store()
    try:
        row = store.get(target)
        if row is None or row.kind != KIND_MODERATION:
            raise _fail(f"no moderation statement {statement_id} here")
        key = _unlock(ctx, as_name, passphrase_file)
        if key.public_key != row.author:
            raise _fail(f"that statement was not signed by {as_name!r}")
        try:
            retraction = StoreAuthor(store).retract(key, row, now_ms=_now_ms())
        except (AuthoringError, StoreError) as exc:
            raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        _emit_json({"undone": target.hex(), "retraction": retraction.id.hex()})
    else:
        click.echo(f"undone {statement_id} ({retraction.id.hex()})")


@moderate_group.command("charter")
@click.argument("board")
@click.option("--moderator", "moderators", multiple=True, metavar="KEY",
              help="A moderator to suggest (64 hex digits); repeat for several.")
@click.option("--description", default="", metavar="TEXT", help="What the board is for, and its rules.")
@click.option("--as", "as_name", required=True, metavar="PSEUDONYM", help="The pseudonym that signs it.")
@passphrase_option
@json_option
@pass_ctx
def moderate_charter(ctx: Context, board: str, moderators: tuple[str, ...], description: str, as_name: str,
                     passphrase_file: str | None, as_json: bool) -> None:
    """Sign a charter for BOARD: a description and the moderators you suggest to newcomers.

    It counts only if you opened the board (wrote its oldest post on a node); nodes show it and
    let their members adopt its moderators, never by themselves.  A newer charter replaces it.
    """
    board = _board(board)
    keys = [_key(m, "--moderator") for m in moderators]
    if not keys and not description.strip():
        raise _fail("give at least one --moderator KEY or a --description")
    store = ctx.store()
    try:
        key = _unlock(ctx, as_name, passphrase_file)
        try:
            charter = StoreAuthor(store).charter(key, board=board, moderators=keys, description=description,
                                                 now_ms=_now_ms())
        except (AuthoringError, StoreError) as exc:
            raise _fail(str(exc)) from None
        except DazibaoError as exc:
            raise _fail(getattr(exc, "message", str(exc))) from None
        opener = store.charter(board)
        counts = opener is not None and opener.id == charter.id
    finally:
        store.close()
    if as_json:
        _emit_json({"id": charter.id.hex(), "board": board, "moderators": [k.hex() for k in keys],
                    "counts_as_the_boards": counts})
    else:
        click.echo(charter.id.hex())
    if not counts:
        click.echo(f"note: {as_name!r} did not write the oldest post on {board!r} here, so this node does not "
                   "treat the charter as the board's", err=True)


def status_lines(moderators: dict[str, list[dict[str, Any]]], refusals: dict[str, int]) -> list[str]:
    """The lines `dazibao status` prints about moderation."""
    lines = []
    if refusals:
        lines.append("refused by policy (remembered): "
                     + ", ".join(f"{code} {n}" for code, n in sorted(refusals.items())))
    for board, rows in sorted(moderators.items()):
        lines.append(f"moderators of {board}: " + ", ".join(f"{r['fingerprint']} [{r['source']}]" for r in rows))
    return lines


MODERATION_COMMANDS: tuple[click.Command, ...] = (moderators_group, moderate_group)

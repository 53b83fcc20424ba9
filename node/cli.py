"""The `dazibao` command line (docs/running.md).

Every command takes ``--data-dir DIR`` (or ``DAZIBAO_DATA_DIR``; default: the user's data
folder).  Passphrases come from ``DAZIBAO_PASSPHRASE``, ``--passphrase-file F`` or a prompt,
and are never echoed or written down.  Errors print one line to stderr and exit non-zero;
listing commands take ``--json``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dazibao.protocol import identity, posts
from dazibao.protocol.errors import DazibaoError, RemoteProtocolError, ValidationError

from . import __version__
from .authoring import AuthoringError, StoreAuthor, check_reply_target
from .cli_common import (
    MIN_PASSPHRASE_CHARS,
    READER_KINDS,
    Context,
    UserError,
    add_data_dir_options,
    json_option,
    pass_ctx,
    passphrase_option,
    read_passphrase,
    reader_board_counts,
    resolve_post_id,
    unlock_pseudonym,
    unlock_with_retries,
    warn_unknown_boards,
)
from .cli_common import emit_json as _emit_json
from .cli_common import fail as _fail
from .cli_common import new_passphrase as _new_passphrase
from .cli_common import when as _when
from .cli_ids import id_group, pseudonym_json
from .cli_mirror import MIRROR_COMMANDS
from .cli_moderation import MODERATION_COMMANDS, status_lines
from .cli_organizing import ORGANIZING_COMMANDS
from .cli_transport import TRANSPORT_COMMANDS
from .config import Config, ConfigError, DataDir, default_data_dir, normalize_peer_url
from .keys import KeyStoreError
from .store import Store, StoreError

if TYPE_CHECKING:
    from .sync import SyncReport

# The helpers every command module shares live in node/cli_common.py; these names are kept
# for the commands below.
__all__ = ["cli", "main", "Context", "UserError", "MIN_PASSPHRASE_CHARS", "read_passphrase"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="DAZIBAO_DATA_DIR",
              default=None, help="Data folder of the node [env DAZIBAO_DATA_DIR; default: the user's data folder].")
@click.version_option(__version__, prog_name="dazibao")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None) -> None:
    """dazibao: a federated wall of signed, pseudonymous posts.

    \b
    Start here:
      dazibao init --name 小明        create the data folder and a first pseudonym
      dazibao run                     start the node (gossip API; member web UI)
      dazibao post --board labor "hello"
      dazibao sync http://organizer.example:7470
    """
    ctx.obj = Context(data_dir or default_data_dir())


@cli.command()
@click.option("--name", default="member", show_default=True, help="Name of the first pseudonym.")
@passphrase_option
@json_option
@pass_ctx
def init(ctx: Context, name: str, passphrase_file: str | None, as_json: bool) -> None:
    """Create the data folder, its config file and a first pseudonym."""
    ctx.config()  # a bad setting (in the environment, say) stops here, before anything is written
    created = ctx.data.create()
    if not as_json:
        click.echo(("created" if created else "using") + f" data folder {ctx.data.root}")
    Store(str(ctx.data.database)).close()
    keys = ctx.keys()
    out: dict[str, Any] = {"data_dir": str(ctx.data.root), "created": created, "pseudonym": None}
    if keys.list():
        if as_json:
            _emit_json(out)
        else:
            click.echo("pseudonyms already exist: see `dazibao id list`")
        return
    try:
        p = keys.create(name, _new_passphrase(passphrase_file))
    except KeyStoreError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _emit_json({**out, "pseudonym": pseudonym_json(p)})
    else:
        click.echo(f"pseudonym {p.name}  {p.fingerprint}")


@cli.command()
@click.option("--gossip-listen", metavar="HOST:PORT", help="Gossip API listener [config gossip_listen].")
@click.option("--ui-listen", metavar="HOST:PORT", help="Member web UI listener [config ui_listen].")
@click.option("--peer", "peers", multiple=True, metavar="URL", help="A peer to sync with (repeatable).")
@pass_ctx
def run(ctx: Context, gossip_listen: str | None, ui_listen: str | None, peers: tuple[str, ...]) -> None:
    """Start the node: gossip API and member web UI, until Ctrl-C."""
    from .server import AlreadyRunningError, run_node
    from .transport import TlsFilesError

    if ctx.data.create():
        click.echo(f"created data folder {ctx.data.root}")
    config = ctx.config(gossip_listen=gossip_listen, ui_listen=ui_listen)
    if peers:
        try:
            extra = tuple(normalize_peer_url(p, proxy=config.proxy) for p in peers)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        from dataclasses import replace

        config = replace(config, peers=tuple(dict.fromkeys(config.peers + extra)))
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    # What clients send must not flood the log: malformed HTTP at debug only, the rest of what
    # aiohttp and asyncio say about connections capped per minute (node/listeners.py).
    from .listeners import install_log_guard

    install_log_guard()
    import asyncio  # here, like the node itself: most commands never start an event loop

    try:
        asyncio.run(run_node(ctx.data, config))
    except (AlreadyRunningError, TlsFilesError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot start the node: {exc.strerror or exc}") from None


@cli.command()
@click.option("--board", help="Board to post to (a reply defaults to its parent's board).")
@click.option("--as", "as_name", metavar="NAME", help="Pseudonym to sign with (needed if you have several).")
@click.option("--reply-to", metavar="ID",
              help="The post this replies to: its id, or at least 8 of its first hex digits (as `dazibao posts` "
                   "shows).")
@passphrase_option
@json_option
@click.argument("text")
@pass_ctx
def post(ctx: Context, board: str | None, as_name: str | None, reply_to: str | None,
         passphrase_file: str | None, as_json: bool, text: str) -> None:
    """Sign and store a post.  TEXT of - reads the text from standard input.

    A node running on the same data folder gossips it without a restart.
    """
    if text == "-":
        text = sys.stdin.read()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    store = ctx.store()
    try:
        parent = None
        if reply_to:
            parent = resolve_post_id(store, reply_to, "--reply-to")
            row = store.get(parent)
            if row is not None:
                if board is not None and board != row.board:
                    raise _fail(f"the post replied to is on board {row.board!r}, not {board!r}")
                try:
                    check_reply_target(row)
                except AuthoringError as exc:
                    raise _fail(str(exc)) from None
                board = row.board
        if board is None:
            raise _fail("--board is required" + (" (the post replied to is not known here)" if parent else ""))
        try:
            posts.check_board(board)
            posts.check_text_body(text)
        except RemoteProtocolError as exc:
            raise _fail(exc.message) from None
        pseudonym, key = unlock_pseudonym(ctx, as_name, passphrase_file)
        # The same path as the web UI's: on a board where this pseudonym has published no
        # profile yet, its name goes first, so that readers elsewhere see it.
        try:
            draft = StoreAuthor(store).post(key, pseudonym.name, board=board, body=text,
                                            now_ms=int(time.time() * 1000), parent=parent)
        except (AuthoringError, StoreError) as exc:
            raise _fail(str(exc)) from None
        except ValidationError as exc:
            raise _fail(exc.message) from None
    finally:
        store.close()
    if as_json:
        p = draft.post
        _emit_json({"id": p.id.hex(), "board": p.board, "kind": p.kind, "parent": p.parent.hex() if p.parent else None,
                    "created_at_ms": p.created_at_ms, "published": [q.id.hex() for q in draft.batch]})
    else:
        click.echo(draft.post.id.hex())


@cli.command()
@click.argument("post_id", metavar="ID")
@passphrase_option
@json_option
@pass_ctx
def retract(ctx: Context, post_id: str, passphrase_file: str | None, as_json: bool) -> None:
    """Retract one of your own posts: its content is removed here and, by gossip, everywhere.

    ID is the post's id, or at least 8 of its first hex digits (as `dazibao posts` shows).
    The post's id is remembered so that no peer can bring it back.
    """
    store = ctx.store()
    try:
        target_id = resolve_post_id(store, post_id, "ID")
        row = store.get(target_id)
        if row is None:
            raise _fail(f"no post {post_id} here")
        mine = [p for p in ctx.keys().list() if p.public_key == row.author]
        if not mine:
            raise _fail("that post was not written by any of your pseudonyms")
        _, key = unlock_with_retries(lambda secret: ctx.keys().unlock(mine[0].name, secret), passphrase_file)
        try:
            retraction = StoreAuthor(store).retract(key, row, now_ms=int(time.time() * 1000))
        except (AuthoringError, StoreError) as exc:
            raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        _emit_json({"retracted": target_id.hex(), "retraction": retraction.id.hex()})
    else:
        click.echo(f"retracted {target_id.hex()} ({retraction.id.hex()})")


@cli.command("posts")
@click.option("--board", help="Only this board.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="How many, newest first.")
@click.option("--all-kinds", is_flag=True,
              help="Also list retractions, profiles, moderation statements and charters.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def posts_cmd(ctx: Context, board: str | None, limit: int, all_kinds: bool, as_json: bool) -> None:
    """List stored posts and replies, newest first (replies marked as such)."""
    store = ctx.store()
    try:
        if board is not None:
            try:
                posts.check_board(board)
            except RemoteProtocolError as exc:
                raise _fail(f"--board {board!r}: {exc.message}") from None
            warn_unknown_boards(store, [board])
        # Objects of kinds this version does not know are stored and forwarded, never listed.
        rows = store.list_posts(board=board, limit=limit, kinds=posts.KINDS if all_kinds else READER_KINDS)
    finally:
        store.close()
    if as_json:
        _emit_json([
            {"id": r.id.hex(), "board": r.board, "kind": r.kind, "author": r.author.hex(),
             "fingerprint": identity.fingerprint(r.author), "created_at_ms": r.created_at_ms,
             "parent": r.parent.hex() if r.parent else None, "body": r.body}
            for r in rows
        ])
        return
    for r in rows:
        first = r.body.split("\n", 1)[0]
        first = first if len(first) <= 72 else first[:71] + "…"
        if r.kind == posts.KIND_REPLY and r.parent:
            first = f"↳ reply to {r.parent.hex()[:12]}: {first}"
        elif r.kind not in READER_KINDS:
            first = f"[{r.kind}] {first}"
        click.echo(f"{_when(r.created_at_ms)}  {r.board}  {r.id.hex()[:12]}  {identity.fingerprint(r.author)}  {first}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def boards(ctx: Context, as_json: bool) -> None:
    """Boards this node holds, with their counts of posts and replies and the newest one."""
    store = ctx.store()
    try:
        infos = reader_board_counts(store)
    finally:
        store.close()
    if as_json:
        _emit_json([{"board": b, "posts": n, "last_at_ms": last} for b, n, last in infos])
        return
    for b, n, last in infos:
        click.echo(f"{n:8d}  {_when(last) if last else '-':20s}  {b}")


@cli.group()
def peers() -> None:
    """Manage known peers."""


@peers.command("add")
@click.argument("url")
@json_option
@pass_ctx
def peers_add(ctx: Context, url: str, as_json: bool) -> None:
    """Add a peer by its gossip URL (http://host:port, https://host:port#spki=PIN)."""
    try:
        url = normalize_peer_url(url, proxy=ctx.config().proxy)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    store = ctx.store()
    try:
        added = store.add_peer(url, "cli", int(time.time() * 1000))
    finally:
        store.close()
    if as_json:
        _emit_json({"url": url, "added": added})
    else:
        click.echo(f"peer {url}" + ("" if added else " (already known)"))


@peers.command("remove")
@click.argument("url")
@json_option
@pass_ctx
def peers_remove(ctx: Context, url: str, as_json: bool) -> None:
    """Forget a peer: no more syncs with it (a running node stops within seconds).

    A peer set in the config file's `peers` comes back at the next start: remove it there.
    """
    try:
        url = normalize_peer_url(url)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if url in ctx.config().peers:
        raise _fail(f"{url} is set in the config file's `peers` ({ctx.data.config}): remove it there")
    store = ctx.store()
    try:
        removed = store.remove_peer(url)
    except StoreError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if not removed:
        raise _fail(f"{url} is not a known peer (see `dazibao peers list`)")
    if as_json:
        _emit_json({"url": url, "removed": True})
    else:
        click.echo(f"removed peer {url}")


@peers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def peers_list(ctx: Context, as_json: bool) -> None:
    """List known peers and their health."""
    store = ctx.store()
    try:
        rows = store.list_peers()
    finally:
        store.close()
    if as_json:
        _emit_json([
            {"url": r.url, "source": r.source, "last_ok_at_ms": r.last_ok_at_ms, "failures": r.failures,
             "last_error": r.last_error, "posts_received": r.posts_received, "posts_rejected": r.posts_rejected}
            for r in rows
        ])
        return
    for r in rows:
        ok = _when(r.last_ok_at_ms) if r.last_ok_at_ms else "never"
        state = f"failing x{r.failures}: {r.last_error}" if r.failures else "ok"
        click.echo(f"{r.url}  last sync {ok}  {state}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Is the node running; its posts, boards and peers with their health; the moderators it
    follows and the posts it refused by policy."""
    store = ctx.store()
    try:
        rows, infos = store.list_peers(), reader_board_counts(store)
        total = sum(n for _, n, _ in infos)
        storage = store.storage()
        refusals = store.refusal_counts()
        moderators: dict[str, list[dict[str, Any]]] = {}
        for m in store.moderators():
            moderators.setdefault(m.board, []).append(
                {"key": m.key.hex(), "fingerprint": identity.fingerprint(m.key), "source": m.source})
    finally:
        store.close()
    node = ctx.data.running_node()
    now_ms = int(time.time() * 1000)
    peers_out: list[dict[str, Any]] = [
        {"url": r.url, "source": r.source, "healthy": r.failures == 0 and r.last_ok_at_ms is not None,
         "failures": r.failures, "last_ok_at_ms": r.last_ok_at_ms, "last_error": r.last_error,
         "retry_in_s": max(0, (r.next_try_at_ms - now_ms) // 1000),
         "posts_received": r.posts_received, "posts_rejected": r.posts_rejected}
        for r in rows
    ]
    if as_json:
        _emit_json({"running": node is not None, "pid": node and node.get("pid"),
                    "gossip_url": node and node.get("gossip_url"), "ui_url": node and node.get("ui_url"),
                    "posts": total, "boards": len(infos), "peers": peers_out,
                    "read_only": bool(node and node.get("read_only")), "storage": storage,
                    "refusals": refusals, "moderators": moderators})
        return
    if node:
        click.echo(f"node running (pid {node['pid']}): gossip API {node.get('gossip_url')}"
                   + (f", web UI {node['ui_url']}" if node.get("ui_url") else ""))
    else:
        click.echo("node not running (start it with `dazibao run`)")
    click.echo(f"{total} posts on {len(infos)} boards; {len(rows)} peers")
    cap = f" of at most {storage['max_bytes'] // 2**20} MiB" if storage["max_bytes"] else ""
    click.echo(f"store: {storage['db_bytes'] // 2**20} MiB{cap}, write-ahead log {storage['wal_bytes'] // 2**20} MiB")
    if node and node.get("read_only"):
        click.echo("storage full: the node runs read-only (it serves reads, refuses new posts); "
                   "free some disk space or raise max_store_bytes")
    for line in status_lines(moderators, refusals):
        click.echo(line)
    for p in peers_out:
        ok = _when(p["last_ok_at_ms"]) if p["last_ok_at_ms"] else "never"
        state = "ok" if p["healthy"] else (f"failing x{p['failures']}, retry in {p['retry_in_s']} s: {p['last_error']}"
                                           if p["failures"] else "not yet synced")
        click.echo(f"  {p['url']}  [{p['source']}]  last sync {ok}  received {p['posts_received']}"
                   f"  rejected {p['posts_rejected']}  {state}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--full", is_flag=True, help="Run SQLite's full integrity check (slower) instead of the quick one.")
@pass_ctx
def doctor(ctx: Context, as_json: bool, full: bool) -> None:
    """Check the store without changing it; exit status 1 if any problem is found.

    Integrity, row counts, the search index, the expected indexes, the sizes of the database
    and its write-ahead log against their bounds, the schema version and the free disk.
    """
    from .doctor import examine

    ctx.require_init()
    report = examine(ctx.data.database, max_bytes=ctx.config().max_store_bytes, full=full)
    if as_json:
        _emit_json(report.to_json())
    else:
        click.echo(report.text())
    if not report.healthy:
        raise SystemExit(1)


@cli.command()
@click.argument("url")
@click.option("--board", "boards_", multiple=True, help="Only these boards (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def sync(ctx: Context, url: str, boards_: tuple[str, ...], as_json: bool) -> None:
    """Reconcile once with the peer at URL, both directions, and print what moved."""
    from .sync import PeerError

    ctx.require_init()
    config = ctx.config()
    try:
        url = normalize_peer_url(url, proxy=config.proxy)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if boards_:
        store = ctx.store()
        try:
            warn_unknown_boards(store, boards_)
        finally:
            store.close()
    import asyncio

    try:
        report = asyncio.run(_sync(ctx.data, config, url, list(boards_), show_progress=not as_json))
    except PeerError as exc:
        raise _fail(f"sync failed: {exc}") from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _emit_json(report.as_dict())
        return
    click.echo(
        f"synced with {report.peer}: boards {', '.join(report.boards) or '(none in common)'}; "
        f"{report.rounds} rounds, {report.reconcile_bytes_sent + report.reconcile_bytes_received} bytes "
        f"of reconciliation; received {report.received}, sent {report.sent}, "
        f"rejected {len(report.rejected)}"
    )
    for pid, code in report.rejected[:20]:
        click.echo(f"  rejected {pid[:16] or '?'}: {code}")
    if report.bad_boards:
        click.echo(f"  ignored {report.bad_boards} invalid board names in the peer's /v1/info")


async def _sync(data: DataDir, config: Config, url: str, boards: list[str], *, show_progress: bool) -> SyncReport:
    import random

    from tqdm import tqdm

    from dazibao.protocol import gossip

    from .service import NodeCore
    from .sync import PeerClient, PeerError, sync_with
    from .transport import open_session, parse_proxy

    core = NodeCore(data, config)
    bars: dict[str, tqdm[Any]] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if not show_progress or not sys.stderr.isatty():
            return
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=phase, unit="post", file=sys.stderr, leave=False)
        bar.n = done
        bar.refresh()

    await core.open()
    try:
        # PeerClient bounds every request in time and size and never follows a redirect; the
        # session goes through the proxy setting, as the running node's do (node/transport.py).
        proxy = parse_proxy(config.proxy) if config.proxy else None
        async with open_session(proxy) as session:
            try:
                client = PeerClient(session, url, proxied=proxy is not None)
                report = await sync_with(core, client, boards=boards or None, progress=progress)
            except PeerError as exc:
                # A known peer that fails here is backed off as the running node would do.
                rows = {row.url: row for row in await core.db.call(Store.list_peers)}
                if url in rows:
                    now = core.now_ms()
                    await core.db.call(Store.record_peer_failure, url, now, f"{exc.code}: {exc.message}"[:300],
                                       now + gossip.backoff_ms(rows[url].failures + 1, random.SystemRandom()))
                raise
        known = {row.url for row in await core.db.call(Store.list_peers)}
        if url in known:
            await core.db.call(Store.record_peer_success, url, core.now_ms(), report.received, len(report.rejected))
        return report
    finally:
        for bar in bars.values():
            bar.close()
        await core.close()


for _command in (id_group, *MIRROR_COMMANDS, *MODERATION_COMMANDS, *TRANSPORT_COMMANDS, *ORGANIZING_COMMANDS):
    cli.add_command(_command)
add_data_dir_options(cli)


def main() -> None:
    """Entry point of the `dazibao` command."""
    try:
        cli(standalone_mode=True)
    except (DazibaoError, StoreError, KeyStoreError, ConfigError) as exc:  # a last net: one line, no trace
        click.echo(f"dazibao: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

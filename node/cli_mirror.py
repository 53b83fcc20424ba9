"""The mirror operator's commands: `dazibao export`, `dazibao import`, `dazibao publish`.

node/cli.py adds :data:`MIRROR_COMMANDS` to the main command group.  They follow the
conventions of every command (node/cli_common.py, whose helpers they use): ``--data-dir``,
one-line errors (``dazibao: error: ...``, exit status 1), ``--json`` summaries on stdout,
progress bars on stderr only on a terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .cli_common import Context, warn_unknown_boards
from .cli_common import emit_json as _emit_json
from .cli_common import fail as _fail
from .config import Config, DataDir

if TYPE_CHECKING:
    from tqdm import tqdm

    from .bundles import ImportReport

__all__ = ["MIRROR_COMMANDS", "export_cmd", "import_cmd", "publish_cmd"]

_MAX_PROBLEM_LINES = 50


def _bar(show: bool, **kwargs: Any) -> tqdm[Any]:
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=not show, leave=False, **kwargs)


def _advance(bar: tqdm[Any]) -> Callable[[int], None]:
    """A progress callback that moves ``bar`` on by the amount done."""
    def advance(done: int) -> None:
        bar.update(done)

    return advance


def _show_progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- export ---------------------------------------------------------------------------------


@click.command("export")
@click.option("--board", "boards", multiple=True, metavar="BOARD",
              help="Export this board (repeatable). Default: the boards this node carries (as chosen in the "
                   "web UI, else config `boards`), or every board it has.")
@click.option("--since", metavar="TIME",
              help="Only posts created at or after TIME: a date (2024-05-01), a UTC date and time "
                   "(2024-05-01T12:00Z), or an age (7d, 12h, 30m, 2w).")
@click.option("--split-bytes", metavar="N",
              help="Split into numbered parts of at most N bytes each (K, M, G suffixes: 1024-based), "
                   "for channels that limit file size.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The bundle file to write (with --split-bytes: FILE's name with .partNN-of-MM added).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def export_cmd(ctx: Context, boards: tuple[str, ...], since: str | None, split_bytes: str | None, output: Path,
               as_json: bool) -> None:
    """Write posts to a bundle file, to carry where the network does not reach.

    A bundle holds signed posts: whoever carries it cannot alter or forge them, and
    `dazibao import` on the other side checks every one.  Retractions travel too.

    \b
    Examples:
      dazibao export --board labor -o labor.dzb
      dazibao export --board labor --board 劳动法 --since 30d -o recent.dzb
      dazibao export --board labor --split-bytes 10M -o labor.dzb   # labor.part1-of-3.dzb, ...
    """
    from dazibao.protocol import bundle
    from dazibao.protocol.errors import RemoteProtocolError
    from dazibao.protocol.posts import check_board

    from .bundles import BundleFileError, export_bundle, parse_since, parse_size
    from .store import StoreError

    now_ms = _now_ms()
    for board in boards:
        try:
            check_board(board)
        except RemoteProtocolError as exc:
            raise _fail(f"--board {board!r}: {exc.message}") from None
    try:
        since_ms = parse_since(since, now_ms) if since is not None else None
    except ValueError as exc:
        raise _fail(f"--since: {exc}") from None
    split = None
    if split_bytes is not None:
        try:
            split = parse_size(split_bytes)
        except ValueError as exc:
            raise _fail(f"--split-bytes: {exc}") from None
    if not output.parent.is_dir():
        raise _fail(f"cannot write {output}: folder {output.parent} does not exist")
    ctx.require_init()
    store = ctx.store()
    try:
        from .service import chosen_boards

        warn_unknown_boards(store, boards)
        chosen = list(boards) or sorted(chosen_boards(store, ctx.config())) or None
        if split is not None:
            least = bundle.min_split_bytes(chosen or [])
            if split < least:
                raise _fail(f"--split-bytes must be at least {least} bytes, so that the largest post fits in a part")
        with _bar(_show_progress(as_json), unit="post", desc="export") as bar:
            report = export_bundle(store, output, boards=chosen, since_ms=since_ms, split_bytes=split,
                                   now_ms=now_ms, progress=_advance(bar))
    except (BundleFileError, StoreError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        _emit_json(report.as_dict())
        return
    what = ", ".join(report.boards) if report.boards else "every board"
    click.echo(f"exported {report.posts} posts of {what} ({report.bytes} bytes) to "
               + (str(report.files[0]) if len(report.files) == 1 else f"{len(report.files)} parts:"))
    if len(report.files) > 1:
        for path in report.files:
            click.echo(f"  {path}")


# --- import ---------------------------------------------------------------------------------


@click.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.pass_obj
def import_cmd(ctx: Context, files: tuple[Path, ...], as_json: bool) -> None:
    """Check and store the posts of bundle files (the parts of a split bundle in any order).

    Every post is checked as if it came from a peer (form, rules, time, signature); only
    valid posts are stored, on the boards this node carries.  A damaged or cut-off file, a
    missing part, or an altered or forged post is reported by name, and every intact, valid
    post is still stored.  Importing the same file twice changes nothing.  Exits with status 1
    if anything was wrong.

    \b
    Examples:
      dazibao import labor.dzb
      dazibao import labor.part*.dzb
      dazibao import --json labor.dzb
    """
    from .bundles import BundleFileError, check_bundle_file
    from .store import StoreError

    ctx.require_init()
    for path in files:
        try:
            check_bundle_file(path)
        except BundleFileError as exc:
            raise _fail(f"{exc} (nothing was imported)") from None
    import asyncio  # only commands that talk to the store through the node's core need a loop

    config = ctx.config()
    total = 0
    for path in files:
        try:
            total += path.stat().st_size
        except OSError:
            pass
    try:
        with _bar(_show_progress(as_json), total=total, unit="B", unit_scale=True, desc="import") as bar:
            report = asyncio.run(_import(ctx.data, config, list(files), _advance(bar)))
    except BundleFileError as exc:
        raise _fail(f"{exc} (nothing more was imported)") from None
    except StoreError as exc:
        raise _fail(str(exc)) from None
    problems = report.problems()
    if as_json:
        _emit_json(report.as_dict())
    else:
        click.echo(f"imported {report.added} new post{'s' if report.added != 1 else ''} from "
                   f"{len(files)} file{'s' if len(files) != 1 else ''}; {report.duplicates} already here")
        if report.refused:
            click.echo("not taken (valid, but not for this node): "
                       + ", ".join(f"{n} {code}" for code, n in sorted(report.refused.items())))
        if report.expired:
            click.echo(f"dropped {report.expired} post{'s' if report.expired != 1 else ''} older than this node's "
                       "retention for their board (config retention_days)")
        for line in problems[:_MAX_PROBLEM_LINES]:
            click.echo(f"dazibao: warning: {line}", err=True)
        if len(problems) > _MAX_PROBLEM_LINES:
            click.echo(f"dazibao: warning: ... and {len(problems) - _MAX_PROBLEM_LINES} more", err=True)
    if problems:
        parts = []
        damaged_files = sum(1 for f in report.files if f.damaged)
        if damaged_files:
            parts.append(f"damage in {damaged_files} file{'s' if damaged_files != 1 else ''}")
        if report.invalid_count:
            parts.append(f"{report.invalid_count} invalid post{'s' if report.invalid_count != 1 else ''} refused")
        if report.missing_parts:
            gone = sum(len(v) for v in report.missing_parts.values())
            parts.append(f"{gone} missing part{'s' if gone != 1 else ''} of a split bundle")
        if report.part_problems and not report.missing_parts:
            parts.append("parts that do not belong together")
        raise _fail(f"import incomplete: {', '.join(parts) or 'see the warnings above'}; "
                    f"every intact, valid post was imported ({report.added} new)")


async def _import(data: DataDir, config: Config, files: list[Path], progress: Callable[[int], None]) -> ImportReport:
    from .bundles import import_bundles
    from .service import NodeCore

    core = NodeCore(data, config)
    await core.open()
    try:
        return await import_bundles(files, lambda raws: core.ingest_raw(raws, source="import"), progress=progress)
    finally:
        await core.close()


# --- publish --------------------------------------------------------------------------------


@click.command("publish")
@click.option("--board", "boards", multiple=True, required=True, metavar="BOARD",
              help="A board to publish (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The folder to write: new, empty, or a previous `dazibao publish` output.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default=None,
              help="The copy's language: en or zh (Simplified Chinese); default: the publish_language setting.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def publish_cmd(ctx: Context, boards: tuple[str, ...], out_dir: Path, lang: str | None, as_json: bool) -> None:
    """Write a static, read-only HTML copy of boards, with their bundle beside it.

    The folder works from any static web host or straight from a disk: relative links, no
    script, nothing loaded from elsewhere.  It holds index.html, a page per board and per
    thread, style.css, and posts.dzb, the bundle readers import to check the copy.
    Publishing again into the same folder updates it in place and removes the pages of
    posts that were retracted or purged; nothing else in the folder is touched.

    \b
    Examples:
      dazibao publish --board labor --out site/
      dazibao publish --board labor --board 劳动法 --out /var/www/mirror --lang zh
    """
    from .publish import PublishError, publish
    from .store import StoreError

    ctx.require_init()
    language = lang or ctx.config().publish_language
    store = ctx.store()
    try:
        warn_unknown_boards(store, boards)
        with _bar(_show_progress(as_json), unit="page", desc="publish") as bar:
            report = publish(store, out_dir, list(boards), now_ms=_now_ms(), progress=_advance(bar), lang=language)
    except (PublishError, StoreError) as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        _emit_json(report.as_dict())
        return
    click.echo(f"published {report.posts} posts in {report.threads} threads of {', '.join(report.boards)} "
               f"to {report.out_dir} ({report.written} files written, {report.unchanged} unchanged"
               + (f", {len(report.removed)} removed" if report.removed else "") + ")")
    click.echo(f"readers can check the copy with: dazibao import {report.out_dir / 'posts.dzb'}")


#: The mirror operator's commands, in the order `dazibao --help` lists them.
MIRROR_COMMANDS: tuple[click.Command, ...] = (export_cmd, import_cmd, publish_cmd)

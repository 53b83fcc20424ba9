"""The collective-action commands: `dazibao report ...`, `dazibao letter ...`, `dazibao pledge ...`,
`dazibao pin` and `dazibao translate` (docs/organizing.md says how to use them safely;
docs/protocol.md, "Collective action", what they sign).

node/cli.py adds :data:`ORGANIZING_COMMANDS` to the main command group.  They follow the
conventions of every command (node/cli_common.py): ``--data-dir``, one-line errors
(``dazibao: error: ...``, exit status 1), ``--as`` for the signing pseudonym, ``--json`` on every
command.  They write to the store directly; a node running on the same data folder gossips
what they sign within a second.  Withdrawing anything signed here is `dazibao retract ID`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dazibao.protocol import fields, organizing, posts
from dazibao.protocol.errors import DazibaoError, RemoteProtocolError
from dazibao.protocol.identity import SigningKey, fingerprint
from dazibao.protocol.posts import Post

from .authoring import AuthoringError, StoreAuthor
from .cli_common import Context, json_option, pass_ctx, passphrase_option, resolve_post_id, unlock_pseudonym, when
from .cli_common import emit_json as _emit_json
from .cli_common import fail as _fail
from .organizing_export import companies_csv, company_rows
from .store import Store, StoreError

__all__ = ["ORGANIZING_COMMANDS"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(text: str | None) -> str:
    if text is None:
        return ""
    if text == "-":
        text = sys.stdin.read()
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sign(ctx: Context, store: Store, as_name: str | None, passphrase_file: str | None, board: str,
          make: Callable[[SigningKey], Callable[[int], Post]]) -> Post:
    """Unlock the pseudonym and store what ``make(key)(now_ms)`` signs; one-line errors."""
    pseudonym, key = unlock_pseudonym(ctx, as_name, passphrase_file)
    try:
        return StoreAuthor(store).publish(key, pseudonym.name, make(key), board=board, now_ms=_now_ms()).post
    except (AuthoringError, StoreError) as exc:
        raise _fail(str(exc)) from None
    except DazibaoError as exc:
        raise _fail(getattr(exc, "message", str(exc))) from None


def _check(check: Callable[[], Any]) -> None:
    """Run a grammar check before any passphrase is asked for."""
    try:
        check()
    except RemoteProtocolError as exc:
        raise _fail(exc.message) from None


def _target(store: Store, text: str, what: str, kinds: tuple[str, ...]) -> organizing.Object:
    post_id = resolve_post_id(store, text, what)
    found = store.object(post_id)
    if found is None or _kind_of(found) not in kinds:
        raise _fail(f"{what}: no {' or '.join(kinds)} {post_id.hex()[:16]} here")
    return found


def _kind_of(obj: organizing.Object) -> str:
    return {
        organizing.Report: posts.KIND_REPORT, organizing.Corroboration: posts.KIND_CORROBORATION,
        organizing.Letter: posts.KIND_LETTER, organizing.Signature: posts.KIND_SIGNATURE,
        organizing.Pledge: posts.KIND_PLEDGE, organizing.Pin: posts.KIND_PIN,
        organizing.Translation: posts.KIND_TRANSLATION,
    }[type(obj)]


def _done(post: Post, as_json: bool, **extra: Any) -> None:
    if as_json:
        _emit_json({"id": post.id.hex(), "kind": post.kind, "board": post.board, **extra})
    else:
        click.echo(post.id.hex())


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--as", "as_name", metavar="NAME", help="Pseudonym to sign with (needed if you have several).")(f)
    return json_option(passphrase_option(f))


# --- dazibao report ----------------------------------------------------------------------------


_REPORT_HELP = f"""Company reports: what a pseudonym saw at a company, corroborated by others.

\b
Practices known by name: {", ".join(fields.PRACTICES)}
(any code of lowercase letters, digits and _ is accepted).
A report is a signed public post: anyone can read it, forever.  See docs/organizing.md.
"""


@click.group("report", help=_REPORT_HELP)
def report_group() -> None:
    pass


@report_group.command("new")
@click.argument("board")
@click.option("--company", required=True, help="The company's name, as people know it.")
@click.option("--practice", required=True, metavar="CODE", help="What happened: a practice code (see above).")
@click.option("--city", help="The city (optional).")
@click.option("--period", metavar="YYYY-MM[..YYYY-MM]", help="When: a month or a range of months (optional).")
@click.argument("text", required=False)
@_options
@pass_ctx
def report_new(ctx: Context, board: str, company: str, practice: str, city: str | None, period: str | None,
               text: str | None, as_name: str | None, passphrase_file: str | None, as_json: bool) -> None:
    """Sign and store a report on BOARD; TEXT (optional, - reads standard input) tells more."""
    body_text = _text(text)
    values = {"company": company, "practice": practice, **({"city": city} if city else {}),
              **({"period": period} if period else {})}
    _check(lambda: (posts.check_board(board), fields.check_report_body(fields.field_block(values, body_text))))
    store = ctx.store()
    try:
        post = _sign(ctx, store, as_name, passphrase_file, board, lambda key: lambda now: organizing.create_report(
            key, board=board, company=company, practice=practice, city=city, period=period, text=body_text,
            created_at_ms=now))
    finally:
        store.close()
    _done(post, as_json, company=company, practice=practice)


@report_group.command("corroborate")
@click.argument("report_id", metavar="REPORT_ID")
@click.argument("text", required=False)
@_options
@pass_ctx
def report_corroborate(ctx: Context, report_id: str, text: str | None, as_name: str | None,
                       passphrase_file: str | None, as_json: bool) -> None:
    """Say that the report REPORT_ID matches what you saw (TEXT optional)."""
    body_text = _text(text)
    _check(lambda: fields.check_corroboration_body(body_text))
    store = ctx.store()
    try:
        report = _target(store, report_id, "REPORT_ID", (posts.KIND_REPORT,))
        assert isinstance(report, organizing.Report)
        post = _sign(ctx, store, as_name, passphrase_file, report.board, lambda key: lambda now: (
            organizing.create_corroboration(key, report, created_at_ms=now, text=body_text)))
    finally:
        store.close()
    _done(post, as_json, report=report.id.hex())


@report_group.command("companies")
@click.argument("board")
@click.option("--csv", "as_csv", is_flag=True, help="One row per report, with its post id, for a spreadsheet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the companies, their counts and their items.")
@pass_ctx
def report_companies(ctx: Context, board: str, as_csv: bool, as_json: bool) -> None:
    """The companies reported on BOARD, most vouched pseudonyms first.

    Counts give all pseudonyms and those vouched for by the moderators this node follows on the
    board: anyone can make many pseudonyms.  Every row carries the id of the signed post it
    comes from, so a reader can check it (`dazibao posts --all-kinds`, or any node).
    """
    _check(lambda: posts.check_board(board))
    store = ctx.store()
    try:
        rows, complete = company_rows(store, board, now_ms=_now_ms())
    finally:
        store.close()
    if as_json:
        _emit_json({"board": board, "complete": complete, "companies": rows})
        return
    if as_csv:
        # Cells a spreadsheet would run as formulas are written as text (node/organizing_export.py).
        click.echo(companies_csv(rows), nl=False)
        return
    if not rows:
        click.echo(f"no company reports on {board} here")
        return
    for c in rows:
        practices = ", ".join(f"{k} {v}" for k, v in c["practices"].items())
        click.echo(f"{c['company']}: {c['pseudonyms']} pseudonyms ({c['vouched']} vouched), {c['reports']} reports, "
                   f"{c['corroborations']} corroborations; {practices}")
    if not complete:
        click.echo("(the board holds more reports than one count reads: these figures are lower bounds)")


# --- dazibao letter ----------------------------------------------------------------------------


@click.group("letter")
def letter_group() -> None:
    """Sign-on letters: write one, sign it, count its signatures, deliver it.

    A signature is public and permanent once gossiped; `dazibao retract SIGNATURE_ID` withdraws
    it on every node that hears of it.  See docs/organizing.md before signing.
    """


@letter_group.command("new")
@click.argument("board")
@click.option("--title", required=True, help="The letter's title.")
@click.argument("text")
@_options
@pass_ctx
def letter_new(ctx: Context, board: str, title: str, text: str, as_name: str | None, passphrase_file: str | None,
               as_json: bool) -> None:
    """Sign and store a letter on BOARD; TEXT of - reads it from standard input."""
    body_text = _text(text)
    _check(lambda: (posts.check_board(board), fields.check_letter_body(fields.field_block({"title": title},
                                                                                          body_text))))
    store = ctx.store()
    try:
        post = _sign(ctx, store, as_name, passphrase_file, board, lambda key: lambda now: organizing.create_letter(
            key, board=board, title=title, text=body_text, created_at_ms=now))
    finally:
        store.close()
    _done(post, as_json, title=title)


def _sign_target(ctx: Context, target_id: str, what: str, kind: str, line: str, as_name: str | None,
                 passphrase_file: str | None, as_json: bool) -> None:
    _check(lambda: fields.check_signature_body(line))
    store = ctx.store()
    try:
        target = _target(store, target_id, what, (kind,))
        assert isinstance(target, organizing.Letter | organizing.Pledge)
        post = _sign(ctx, store, as_name, passphrase_file, target.board, lambda key: lambda now: (
            organizing.create_signature(key, target, created_at_ms=now, line=line)))
    finally:
        store.close()
    _done(post, as_json, target=target.id.hex())


@letter_group.command("sign")
@click.argument("letter_id", metavar="LETTER_ID")
@click.option("--line", default="", help='A public line shown with your signature, e.g. "engineer, Seattle".')
@_options
@pass_ctx
def letter_sign(ctx: Context, letter_id: str, line: str, as_name: str | None, passphrase_file: str | None,
                as_json: bool) -> None:
    """Sign the letter LETTER_ID (withdraw later with `dazibao retract SIGNATURE_ID`)."""
    _sign_target(ctx, letter_id, "LETTER_ID", posts.KIND_LETTER, line, as_name, passphrase_file, as_json)


@letter_group.command("show")
@click.argument("letter_id", metavar="LETTER_ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def letter_show(ctx: Context, letter_id: str, as_json: bool) -> None:
    """The letter LETTER_ID, its count of signatures (all and vouched) and its signers."""
    store = ctx.store()
    try:
        view = store.letter(resolve_post_id(store, letter_id, "LETTER_ID"), now_ms=_now_ms())
        if view is None:
            raise _fail(f"LETTER_ID: no letter {letter_id} here")
        trust = store.trust_view(view.letter.board, now_ms=_now_ms())
        names = store.names_on(view.letter.board, [row[0] for row in view.signatures.signers])
    finally:
        store.close()
    letter, tally = view.letter, view.signatures
    signers = [{"author": a.hex(), "fingerprint": fingerprint(a), "name": names[a][0] if a in names else None,
                "line": line, "signed_at_ms": at, "signature_id": sid.hex(), "vouched": trust.vouched(a)}
               for a, line, at, sid in tally.signers]
    if as_json:
        _emit_json({"id": letter.id.hex(), "board": letter.board, "title": letter.title, "text": letter.text,
                    "author": letter.author.hex(), "created_at_ms": letter.created_at_ms, "signatures": tally.total,
                    "vouched": tally.vouched, "complete": view.complete, "signers": signers})
        return
    click.echo(f"{letter.title}  ({letter.board}, {when(letter.created_at_ms)})")
    click.echo("")
    click.echo(letter.text)
    click.echo("")
    more = "" if view.complete else " (at least)"
    click.echo(f"{tally.total} signatures{more}, {tally.vouched} vouched for by the moderators this node follows")
    for s in signers:
        mark = " (vouched)" if s["vouched"] else ""
        click.echo(f"  {s['name'] or '(no name)'} {s['fingerprint']}{mark}  {s['line']}")


@letter_group.command("deliver")
@click.argument("letter_id", metavar="LETTER_ID")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def letter_deliver(ctx: Context, letter_id: str, folder: Path, as_json: bool) -> None:
    """Write FOLDER for the letter's recipient: the letter as a web page, its signatures, the
    signed objects as a bundle, and how to check them offline with `dazibao import`."""
    from .delivery import DeliveryError, deliver_letter

    store = ctx.store()
    try:
        done = deliver_letter(store, resolve_post_id(store, letter_id, "LETTER_ID"), folder, now_ms=_now_ms())
    except DeliveryError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    if as_json:
        _emit_json({"folder": str(done.folder), "letter": done.letter_id.hex(), "signatures": done.signatures,
                    "vouched": done.vouched, "objects": done.objects, "bundle_sha256": done.bundle_sha256})
    else:
        click.echo(f"wrote {done.folder}: {done.signatures} signatures ({done.vouched} vouched), "
                   f"{done.objects} signed objects in letter.dzb (SHA-256 {done.bundle_sha256[:16]}...)")


# --- dazibao pledge ----------------------------------------------------------------------------


@click.group("pledge")
def pledge_group() -> None:
    """Threshold pledges: "I will do X on date D if at least N others pledge too".

    A pledge is public and signed by the pseudonym you choose: consider a fresh pseudonym used
    for nothing else (`dazibao id new`).  See docs/organizing.md for what a pledge reveals.
    """


@pledge_group.command("new")
@click.argument("board")
@click.option("--action", required=True, help="What you will do.")
@click.option("--date", "date", required=True, metavar="YYYY-MM-DD", help="When.")
@click.option("--threshold", required=True, type=click.IntRange(1), help="How many others must pledge first.")
@click.argument("text", required=False)
@_options
@pass_ctx
def pledge_new(ctx: Context, board: str, action: str, date: str, threshold: int, text: str | None,
               as_name: str | None, passphrase_file: str | None, as_json: bool) -> None:
    """Sign and store a pledge on BOARD (TEXT optional)."""
    body_text = _text(text)
    values = {"action": action, "date": date, "threshold": str(threshold)}
    _check(lambda: (posts.check_board(board), fields.check_pledge_body(fields.field_block(values, body_text))))
    store = ctx.store()
    try:
        post = _sign(ctx, store, as_name, passphrase_file, board, lambda key: lambda now: organizing.create_pledge(
            key, board=board, action=action, date=date, threshold=threshold, text=body_text, created_at_ms=now))
    finally:
        store.close()
    _done(post, as_json, threshold=threshold)


@pledge_group.command("join")
@click.argument("pledge_id", metavar="PLEDGE_ID")
@_options
@pass_ctx
def pledge_join(ctx: Context, pledge_id: str, as_name: str | None, passphrase_file: str | None,
                as_json: bool) -> None:
    """Join the pledge PLEDGE_ID (withdraw with `dazibao retract ID`)."""
    _sign_target(ctx, pledge_id, "PLEDGE_ID", posts.KIND_PLEDGE, "", as_name, passphrase_file, as_json)


@pledge_group.command("show")
@click.argument("pledge_id", metavar="PLEDGE_ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def pledge_show(ctx: Context, pledge_id: str, as_json: bool) -> None:
    """The pledge PLEDGE_ID and its progress: others pledged (all and vouched), met or not."""
    store = ctx.store()
    try:
        view = store.pledge(resolve_post_id(store, pledge_id, "PLEDGE_ID"), now_ms=_now_ms())
    finally:
        store.close()
    if view is None:
        raise _fail(f"PLEDGE_ID: no pledge {pledge_id} here")
    p, g = view.pledge, view.progress
    if as_json:
        _emit_json({"id": p.id.hex(), "board": p.board, "action": p.action, "date": p.date, "threshold": p.threshold,
                    "others": g.others, "vouched": g.vouched, "met": g.met, "met_by_vouched": g.met_by_vouched,
                    "complete": view.complete})
        return
    state = "MET" if g.met else "not met yet"
    click.echo(f"{p.action} on {p.date} if {p.threshold} others pledge: {g.others} have ({g.vouched} vouched): {state}"
               + ("; met by vouched pseudonyms too" if g.met_by_vouched else ""))


# --- pins and translations ---------------------------------------------------------------------


@click.command("pin")
@click.argument("post_id", metavar="POST_ID")
@_options
@pass_ctx
def pin(ctx: Context, post_id: str, as_name: str | None, passphrase_file: str | None, as_json: bool) -> None:
    """Pin POST_ID at the top of its board, for readers who follow your pseudonym as a moderator
    there (undo with `dazibao retract PIN_ID`)."""
    store = ctx.store()
    try:
        target = store.get(resolve_post_id(store, post_id, "POST_ID"))
        if target is None:
            raise _fail(f"POST_ID: no post {post_id} here")
        post = _sign(ctx, store, as_name, passphrase_file, target.board,
                     lambda key: lambda now: organizing.create_pin(key, target.to_post(), created_at_ms=now))
    finally:
        store.close()
    _done(post, as_json, target=target.id.hex())


@click.command("translate")
@click.argument("post_id", metavar="POST_ID")
@click.option("--lang", required=True, metavar="TAG", help="The language of your translation: en, zh-Hans, ...")
@click.argument("text")
@_options
@pass_ctx
def translate(ctx: Context, post_id: str, lang: str, text: str, as_name: str | None, passphrase_file: str | None,
              as_json: bool) -> None:
    """Attach a translation of POST_ID (TEXT of - reads standard input)."""
    body_text = _text(text)
    _check(lambda: fields.check_translation_body(fields.field_block({"lang": lang}, body_text)))
    store = ctx.store()
    try:
        target = store.get(resolve_post_id(store, post_id, "POST_ID"))
        if target is None:
            raise _fail(f"POST_ID: no post {post_id} here")
        post = _sign(ctx, store, as_name, passphrase_file, target.board, lambda key: lambda now: (
            organizing.create_translation(key, target.to_post(), lang=lang, text=body_text, created_at_ms=now)))
    finally:
        store.close()
    _done(post, as_json, original=target.id.hex(), lang=lang)


#: The commands node/cli.py adds to `dazibao`.
ORGANIZING_COMMANDS = (report_group, letter_group, pledge_group, pin, translate)

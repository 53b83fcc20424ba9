"""The member UI's pages and forms.

GET handlers only read.  POST handlers run after :func:`.app.guard` checked the request, and
validate every field before they write anything: bad input gets the page back with a
translated message and status 400, and nothing is stored.  Keys come from the session
(:mod:`.sessions`); they never appear in a page.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from dazibao.protocol import identity, limits, posts
from dazibao.protocol.errors import BoardError, BodyError, KeyFileError, WrongPassphraseError
from dazibao.protocol.posts import KIND_POST, KIND_PROFILE, KIND_REPLY, KIND_RETRACT

from ..keys import KeyStoreError, Pseudonym
from ..store import BoardInfo, PeerRow, PostRow, StorageFullError, Store
from .app import LANG_COOKIE, UI, WebUI, board_url, iso, redirect, state, when
from .authors import AuthorView
from .i18n import Msg, N_, parse_language
from .render import highlight, title_of
from .security import safe_next
from .sessions import Session

__all__ = ["add_routes"]

PAGE_SIZE = 25
REPLIES_PAGE_SIZE = limits.UI_THREAD_PAGE_REPLIES
BOARDS_PAGE_SIZE = limits.UI_BOARDS_PAGE_BOARDS
HIDDEN_PAGE_SIZE = limits.UI_HIDDEN_PAGE_AUTHORS
AUTHOR_NAMES_SHOWN = limits.UI_AUTHOR_NAMES_SHOWN
SEARCH_PAGE_SIZE = 25
MAX_SEARCH_RESULTS = 500
MAX_QUERY_CHARS = 200
MAX_PAGE = 10_000
AUTHOR_SCAN_ROWS = 5_000
AUTHOR_POSTS_SHOWN = 30
MIN_PASSPHRASE_CHARS = 8
MAX_PASSPHRASE_CHARS = 1_024
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
_REPLY_CURSOR = re.compile(r"^([0-9]{1,19})-([0-9a-f]{64})$")
_MS = re.compile(r"^[0-9]{1,19}$")


class FormError(Exception):
    """A field of a form is not acceptable; ``msg`` says why, in the member's language."""

    def __init__(self, msg: Msg) -> None:
        super().__init__(msg.text)
        self.msg = msg


# --- what the templates get -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostView:
    row: PostRow
    author: AuthorView
    mine: bool  # signed by a pseudonym unlocked in this session

    @property
    def hex(self) -> str:
        return self.row.id.hex()

    @property
    def title(self) -> str:
        return title_of(self.row.body)


@dataclass(frozen=True, slots=True)
class ThreadView:
    post: PostView
    replies: int
    last_at_ms: int


class Authors:
    """How a request shows authors: names, fingerprints, this machine's pseudonyms, hidden ones."""

    def __init__(self, ui: WebUI, local: list[Pseudonym], session: Session) -> None:
        self.ui = ui
        self.local = local
        self.session = session
        self.names: dict[str, set[bytes]] = {}
        for p in local:
            self.names.setdefault(p.name, set()).add(p.public_key)

    def view(self, author: bytes) -> AuthorView:
        return self.ui.authors.view(author, self.names)

    def post(self, row: PostRow) -> PostView:
        return PostView(row, self.view(row.author), self.session.key_of(row.author) is not None)

    def hidden(self, author: bytes) -> bool:
        return author in self.ui.authors.hidden


async def _authors(request: web.Request) -> Authors:
    ui = request.app[UI]
    await ui.authors.refresh()
    # The public view never reads the key folder: which pseudonyms this machine holds is private.
    local = await asyncio.to_thread(ui.keys.list) if ui.keys is not None and not ui.public else []
    return Authors(ui, local, state(request).session)


# --- small parsers ----------------------------------------------------------------------------


def _post_id(text: str) -> bytes:
    text = text.strip().lower()
    if not _HEX_ID.match(text):
        raise FormError(Msg(N_("That is not a post id (64 hexadecimal characters).")))
    return bytes.fromhex(text)


def _author_key(text: str) -> bytes:
    text = text.strip().lower()
    if not _HEX_ID.match(text):
        raise FormError(Msg(N_("That is not an author's public key (64 hexadecimal characters).")))
    return bytes.fromhex(text)


def _board(text: str) -> str:
    try:
        return posts.check_board(text.strip())
    except BoardError:
        raise FormError(Msg(N_(
            "That board name is not allowed. Use 1 to %(max)s visible characters, without spaces at "
            "the beginning or the end."), {"max": limits.MAX_BOARD_CHARS})) from None


def _body(text: str) -> str:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.strip():
        raise FormError(Msg(N_("Write something first: the text is empty.")))
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_BODY_BYTES:
        raise FormError(Msg(N_("The text is %(size)s bytes long; the limit is %(limit)s bytes. Shorten it."),
                            {"size": size, "limit": limits.MAX_BODY_BYTES}))
    try:
        return posts.check_text_body(body)
    except BodyError:
        raise FormError(Msg(N_("The text contains an invisible control character that cannot be posted. "
                               "Remove it and try again."))) from None


def _display_name(text: str) -> str:
    name = text.strip()
    try:
        return identity.check_display_name(name)
    except BodyError:
        raise FormError(Msg(N_(
            "That name is not allowed. Use 1 to %(max)s visible characters, without spaces at the "
            "beginning or the end and without invisible or direction-changing characters."),
            {"max": limits.MAX_DISPLAY_NAME_CHARS})) from None


def _page_number(request: web.Request) -> int:
    text = request.query.get("page", "1")
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise FormError(Msg(N_("That page number is not valid.")))
    return int(text)


def _bad_position() -> FormError:
    return FormError(Msg(N_("That page number is not valid.")))


def _reply_cursor(text: str | None) -> tuple[int, bytes] | None:
    """A thread page's position: ``<created_at_ms>-<reply id in hex>``, or None when absent.

    Raises FormError when it is given but malformed.
    """
    if text is None:
        return None
    match = _REPLY_CURSOR.match(text)
    if match is None:
        raise _bad_position()
    return int(match.group(1)), bytes.fromhex(match.group(2))


def reply_cursor(row: PostRow) -> str:
    return f"{row.created_at_ms}-{row.id.hex()}"


def _field(request: web.Request, name: str) -> str:
    value = state(request).form.get(name, "")
    return value if isinstance(value, str) else ""


def _invalid(request: web.Request, exc: FormError, status: int = 400) -> web.Response:
    return request.app[UI].error_page(request, status, exc.msg, Msg(N_("This cannot be done")))


def _next(request: web.Request, default: str = "/") -> str:
    return safe_next(_field(request, "next"), default)


# --- boards -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardsQuery:
    """Which page of the boards list a request asks for (see :func:`_boards_query`)."""

    by_name: bool = False
    contains: str = ""
    after: str | None = None  # the last board of the previous page
    at_ms: int | None = None  # its last activity (activity order only)

    def link(self, **changes: Any) -> str:
        fields = {"order": "name" if self.by_name else "", "filter": self.contains, "after": self.after,
                  "at": self.at_ms}
        fields.update(changes)
        kept = {k: v for k, v in fields.items() if v not in (None, "")}
        return "/?" + urlencode(kept) if kept else "/"


def _boards_query(request: web.Request) -> BoardsQuery:
    """The boards list's order, name filter and position, from the query string.

    Raises FormError for a position that no page of this list links to.
    """
    q = request.query
    by_name = q.get("order", "") == "name"
    contains = q.get("filter", "").strip()[: limits.MAX_BOARD_CHARS]
    after_text, at_text = q.get("after"), q.get("at")
    if after_text is None:
        if at_text is not None:
            raise _bad_position()
        return BoardsQuery(by_name, contains)
    try:
        after = posts.check_board(after_text)
    except BoardError:
        raise _bad_position() from None
    if by_name:
        if at_text is not None:
            raise _bad_position()
        return BoardsQuery(True, contains, after)
    if at_text is None or not _MS.match(at_text):
        raise _bad_position()
    return BoardsQuery(False, contains, after, int(at_text))


def _boards_window(store: Store, query: BoardsQuery, followed: frozenset[str] | set[str],
                   limit: int) -> tuple[list[BoardInfo], bool]:
    """One page of the boards list and whether there is a next one.

    The boards this node follows but holds no post of yet are listed too (as boards with no
    post, last in activity order).  Only ``limit + 1`` rows are read, however many boards the
    node has heard of.
    """
    after: Any = query.after
    if after is not None and not query.by_name:
        after = (query.at_ms, query.after)
    rows = store.board_page(limit + 1, by_name=query.by_name, after=after, contains=query.contains)
    wanted = [b for b in followed if not query.contains or query.contains.lower() in b.lower()]
    if query.by_name:
        def key(info: BoardInfo) -> Any:
            return info.board.encode("utf-8", "surrogatepass")
    else:
        def key(info: BoardInfo) -> Any:
            return (-info.last_at_ms, info.board.encode("utf-8", "surrogatepass"))
    if wanted:
        present = store.boards_with_posts(wanted)
        empty = [BoardInfo(b, 0, 0) for b in wanted if b not in present]
        if query.after is not None:
            cursor = key(BoardInfo(query.after, 0, query.at_ms or 0))
            empty = [info for info in empty if key(info) > cursor]
        rows = sorted(rows + empty, key=key)[: limit + 1]
    return rows[:limit], len(rows) > limit


async def boards_page(request: web.Request, errors: list[Msg] | None = None, status: int = 200) -> web.Response:
    ui = request.app[UI]
    try:
        query = _boards_query(request)
    except FormError as exc:
        query, errors, status = BoardsQuery(), [exc.msg], 400
    infos, more = await ui.core.db.call(_boards_window, query, ui.core.boards, BOARDS_PAGE_SIZE)
    boards = [
        {"name": info.board, "posts": info.posts, "last_at_ms": info.last_at_ms, "carried": ui.core.carries(info.board)}
        for info in infos
    ]
    next_url = ""
    if more and infos:
        last = infos[-1]
        next_url = query.link(after=last.board, at=None if query.by_name else last.last_at_ms)
    return ui.page(request, "boards.html", status=status, nav="boards", boards=boards,
                   carry_all=not ui.core.boards, errors=errors or [], query=query,
                   next_url=next_url, first_url=query.link(after=None, at=None) if query.after is not None else "",
                   by_name_url=query.link(order="name", after=None, at=None),
                   by_activity_url=query.link(order="", after=None, at=None))


async def open_board(request: web.Request) -> web.Response:
    try:
        board = _board(request.query.get("name", ""))
    except FormError as exc:
        return await boards_page(request, [exc.msg], 400)
    return redirect(board_url(board))


async def _set_boards(ui: WebUI, boards: set[str]) -> None:
    await ui.core.set_boards(sorted(boards))


async def follow(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = _board(_field(request, "board"))
    except FormError as exc:
        return await boards_page(request, [exc.msg], 400)
    session: Session = state(request).session
    if ui.core.boards and board not in ui.core.boards:
        await _set_boards(ui, set(ui.core.boards) | {board})
        session.notify(Msg(N_("You now follow %(board)s."), {"board": board}))
    else:
        session.notify(Msg(N_("This node already carries %(board)s."), {"board": board}))
    return redirect(_next(request, board_url(board)))


async def unfollow(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = _board(_field(request, "board"))
    except FormError as exc:
        return await boards_page(request, [exc.msg], 400)
    session: Session = state(request).session
    if ui.core.boards:
        chosen = set(ui.core.boards) - {board}
    else:
        chosen = {info.board for info in await ui.core.db.call(Store.boards)} - {board}
    if not chosen:
        return await boards_page(request, [Msg(N_(
            "This is the only board this node carries. Follow another board first, or choose "
            "“Carry every board”."))], 400)
    if ui.core.boards and board not in ui.core.boards:
        return redirect(_next(request, "/"))
    was_all = not ui.core.boards
    await _set_boards(ui, chosen)
    session.notify(Msg(N_("You no longer follow %(board)s. Its posts stay here but are no longer synced."),
                       {"board": board}))
    if was_all:
        session.notify(Msg(N_("This node now carries only the boards you follow.")))
    return redirect(_next(request, "/"))


async def carry_all(request: web.Request) -> web.Response:
    ui = request.app[UI]
    await _set_boards(ui, set())
    state(request).session.notify(Msg(N_("This node now carries every board.")))
    return redirect("/")


async def board_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = _board(request.match_info["board"])
    except FormError as exc:
        return _invalid(request, exc, 404)
    try:
        page = _page_number(request)
    except FormError as exc:
        return _invalid(request, exc)
    rows = await ui.core.db.call(Store.threads, board, PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    more = len(rows) > PAGE_SIZE
    authors = await _authors(request)
    threads = [ThreadView(authors.post(t.post), t.replies, t.last_at_ms)
               for t in rows[:PAGE_SIZE] if not authors.hidden(t.post.author)]
    hidden = min(len(rows), PAGE_SIZE) - len(threads)
    live = "/api/updates?" + urlencode({"board": board}) if page == 1 else ""
    return ui.page(request, "board.html", nav="boards", title=board, board=board, threads=threads,
                   page=page, more=more, hidden=hidden, carried=ui.core.carries(board),
                   form=_compose_form(board=board), live_url=live)


# --- threads, compose, retract ----------------------------------------------------------------


def _compose_form(board: str = "", parent: str = "", body: str = "", as_fp: str = "") -> dict[str, str]:
    return {"board": board, "parent": parent, "body": body, "as": as_fp}


async def _get(ui: WebUI, post_id: bytes) -> PostRow | None:
    return await ui.core.db.call(Store.get, post_id)


def _not_here(request: web.Request) -> web.Response:
    return request.app[UI].error_page(request, 404, Msg(N_(
        "This post is not on this node. It may have been retracted, or not have reached this node yet.")),
        Msg(N_("Post not found")))


async def thread_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        post_id = _post_id(request.match_info["post_id"])
    except FormError:
        return _not_here(request)
    row = await _get(ui, post_id)
    if row is None:
        return _not_here(request)
    authors = await _authors(request)
    parent = await _get(ui, row.parent) if row.parent and row.kind == KIND_REPLY else None
    if parent is not None and authors.hidden(parent.author):
        parent = None  # not even the title of a hidden author's post
    try:
        after = _reply_cursor(request.query.get("after"))
        before = _reply_cursor(request.query.get("before"))
        newest = request.query.get("newest") == "1"
        if sum((after is not None, before is not None, newest)) > 1:
            raise _bad_position()
    except FormError as exc:
        return _invalid(request, exc)
    window = await ui.core.db.call(_reply_window, post_id, REPLIES_PAGE_SIZE, after, before, newest)
    replies_rows = window.rows
    replies = [authors.post(r) for r in replies_rows if not authors.hidden(r.author)]
    is_text = row.kind in (KIND_POST, KIND_REPLY)
    base = f"/p/{row.id.hex()}"
    pager = {
        "oldest": base if window.older else "",
        "older": f"{base}?before={reply_cursor(replies_rows[0])}" if window.older and replies_rows else "",
        "newer": f"{base}?after={reply_cursor(replies_rows[-1])}" if window.newer and replies_rows else "",
        "newest": f"{base}?newest=1" if window.newer else "",
    }
    # New replies are added at the end of the list as they arrive, which is only where they
    # belong on the last page.
    live = "/api/updates?" + urlencode({"thread": row.id.hex()}) if is_text and not window.newer else ""
    return ui.page(
        request, "thread.html", nav="boards", title=title_of(row.body) if is_text and not authors.hidden(row.author)
        else "",
        post=authors.post(row), parent=authors.post(parent) if parent else None,
        root_hidden=authors.hidden(row.author), replies=replies, hidden=len(replies_rows) - len(replies),
        total_replies=window.total, pager=pager,
        form=_compose_form(board=row.board, parent=row.id.hex()), live_url=live, is_text=is_text,
    )


@dataclass(frozen=True, slots=True)
class ReplyWindow:
    rows: list[PostRow]
    older: bool  # there are replies before ``rows``
    newer: bool  # there are replies after ``rows``
    total: int


def _reply_window(store: Store, post_id: bytes, limit: int, after: tuple[int, bytes] | None,
                  before: tuple[int, bytes] | None, newest: bool) -> ReplyWindow:
    """One page of a thread's replies: at most ``limit + 1`` rows are read, however long the thread.

    One row more than a page is read in the direction the member goes, to know whether
    there is a next page that way; the way back is open whenever the page was reached from a
    position (the reply at that position was there).
    """
    if newest or before is not None:
        rows = store.newest_replies(post_id, limit + 1) if newest else store.reply_page(post_id, limit + 1,
                                                                                          before=before)
        older, newer = len(rows) > limit, not newest
        rows = rows[-limit:] if limit else []
    else:
        rows = store.reply_page(post_id, limit + 1, after=after)
        older, newer = after is not None, len(rows) > limit
        rows = rows[:limit]
    total = store.reply_count(post_id)
    if not rows:
        # Past either end (the rows were retracted meanwhile): the pager offers both ends.
        older = newer = total > 0 and (after is not None or before is not None)
    return ReplyWindow(rows, older, newer, total)


async def compose_page(request: web.Request) -> web.Response:
    board = request.query.get("board", "")
    parent = request.query.get("parent", "")
    return await _compose_response(request, _compose_form(board=board, parent=parent))


async def _compose_response(request: web.Request, form: dict[str, str], *, errors: list[Msg] | None = None,
                            preview: str | None = None, status: int = 200) -> web.Response:
    ui = request.app[UI]
    parent_view = None
    if form["parent"] and _HEX_ID.match(form["parent"]):
        row = await _get(ui, bytes.fromhex(form["parent"]))
        if row is not None:
            parent_view = (await _authors(request)).post(row)
    return ui.page(request, "compose.html", status=status, nav="boards", title=Msg(N_("Write")),
                   form=form, errors=errors or [], preview=preview, parent=parent_view)


async def compose(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    form = _compose_form(board=_field(request, "board").strip(), parent=_field(request, "parent").strip().lower(),
                         body=_field(request, "body"), as_fp=_field(request, "as"))
    publish = _field(request, "action") != "preview"
    errors: list[Msg] = []
    parent_row = None
    if form["parent"]:
        try:
            parent_row = await _get(ui, _post_id(form["parent"]))
            if parent_row is None:
                errors.append(Msg(N_("The post you are replying to is not on this node (any more).")))
            elif parent_row.kind not in (KIND_POST, KIND_REPLY):
                errors.append(Msg(N_("You can only reply to posts and replies.")))
                parent_row = None
            else:
                form["board"] = parent_row.board
        except FormError as exc:
            errors.append(exc.msg)
    board = body = None
    try:
        board = _board(form["board"])
    except FormError as exc:
        errors.append(exc.msg)
    try:
        body = _body(form["body"])
    except FormError as exc:
        errors.append(exc.msg)
    signer = session.unlocked.get(form["as"]) if form["as"] else session.active_key()
    if publish and signer is None:
        errors.append(Msg(N_("Unlock a pseudonym first, on the Pseudonyms page: posts are signed with it.")))
    if errors or not publish:
        preview = body if not errors else None
        return await _compose_response(request, form, errors=errors, preview=preview, status=400 if errors else 200)
    assert board is not None and body is not None and signer is not None
    new = await _publish(request, signer, board, body, parent_row)
    if parent_row is not None:
        root = parent_row.id.hex()
        # A long thread opens at its first page: go to the last one, where the reply is.
        count = await ui.core.db.call(Store.reply_count, parent_row.id)
        newest = "?newest=1" if count > REPLIES_PAGE_SIZE else ""
        return redirect(f"/p/{root}{newest}#p-{new.id.hex()}")
    return redirect(f"/p/{new.id.hex()}")


async def _ensure_carried(request: web.Request, board: str) -> None:
    ui = request.app[UI]
    if not ui.core.carries(board):
        await _set_boards(ui, set(ui.core.boards) | {board})
        state(request).session.notify(Msg(N_("You now follow %(board)s."), {"board": board}))


async def _publish(request: web.Request, signer, board: str, body: str, parent: PostRow | None) -> posts.Post:
    """Sign and store a post (and, on a board where this pseudonym has none yet, its profile)."""
    ui = request.app[UI]
    await _ensure_carried(request, board)
    now = ui.core.now_ms()
    batch = []
    if not ui.authors.has_profile_on(signer.pseudonym.public_key, board):
        batch.append(posts.create_post(signer.key, kind=KIND_PROFILE, board=board, body=signer.pseudonym.name,
                                       created_at_ms=now))
    kind = KIND_REPLY if parent is not None else KIND_POST
    new = posts.create_post(signer.key, kind=kind, board=board, body=body, created_at_ms=now,
                            parent=parent.id if parent is not None else None)
    batch.append(new)
    try:
        report = await ui.core.ingest_checked(batch, "local")
    except StorageFullError:
        # Nothing was stored; an error page (507) instead of a crash, without a traceback.
        raise web.HTTPInsufficientStorage(reason="storage full: the post was not stored") from None
    if all(p.id != new.id for p in report.accepted):
        code = next((c for i, c in report.rejected if i == new.id), "?")
        raise web.HTTPInternalServerError(reason=f"not stored: {code}")
    return new


async def retract_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        row = await _get(ui, _post_id(request.match_info["post_id"]))
    except FormError:
        return _not_here(request)
    if row is None:
        return _not_here(request)
    authors = await _authors(request)
    return ui.page(request, "retract.html", nav="boards", title=Msg(N_("Retract")), post=authors.post(row))


async def retract(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    try:
        row = await _get(ui, _post_id(request.match_info["post_id"]))
    except FormError:
        return _not_here(request)
    if row is None:
        return _not_here(request)
    if row.kind not in (KIND_POST, KIND_REPLY, KIND_PROFILE):
        return _invalid(request, FormError(Msg(N_("Only posts, replies and profiles can be retracted."))))
    signer = session.key_of(row.author)
    if signer is None:
        local = await asyncio.to_thread(ui.keys.list)
        if any(p.public_key == row.author for p in local):
            message = Msg(N_("Unlock the pseudonym that wrote this post first, on the Pseudonyms page."))
        else:
            message = Msg(N_("You can only retract posts written by your own pseudonyms."))
        return _invalid(request, FormError(message), 403)
    now = ui.core.now_ms()
    retraction = posts.create_post(signer.key, kind=KIND_RETRACT, board=row.board, body="",
                                   created_at_ms=max(now, row.created_at_ms), parent=row.id)
    report = await ui.core.ingest_checked([retraction], "local")
    if all(p.id != retraction.id for p in report.accepted):
        code = next((c for i, c in report.rejected if i == retraction.id), "?")
        raise web.HTTPInternalServerError(reason=f"not stored: {code}")
    session.notify(Msg(N_("The post was retracted: it is removed here, and other nodes remove it when "
                          "they receive the retraction.")))
    if row.kind == KIND_REPLY and row.parent:
        return redirect(f"/p/{row.parent.hex()}")
    return redirect(board_url(row.board))


# --- search -------------------------------------------------------------------------------------


async def search_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    query = request.query.get("q", "")
    board_text = request.query.get("board", "").strip()
    errors: list[Msg] = []
    results = []
    more = False
    page = 1
    hidden = 0
    try:
        page = _page_number(request)
        board = _board(board_text) if board_text else None
        if len(query) > MAX_QUERY_CHARS:
            raise FormError(Msg(N_("The search text is too long: at most %(max)s characters."),
                                {"max": MAX_QUERY_CHARS}))
    except FormError as exc:
        errors.append(exc.msg)
    else:
        offset = (page - 1) * SEARCH_PAGE_SIZE
        if query.strip() and offset < MAX_SEARCH_RESULTS:
            # Only this page's hits (and one more, to know whether there is a next page) are read.
            hits = await ui.core.db.call(Store.search, query, board, SEARCH_PAGE_SIZE + 1, offset=offset)
            more = len(hits) > SEARCH_PAGE_SIZE and page * SEARCH_PAGE_SIZE < MAX_SEARCH_RESULTS
            hits = hits[:SEARCH_PAGE_SIZE]
            authors = await _authors(request)
            for hit in hits:
                if authors.hidden(hit.post.author):
                    hidden += 1
                    continue
                results.append({"post": authors.post(hit.post), "snippet": highlight(hit.snippet, hit.spans)})
    return ui.page(request, "search.html", status=400 if errors else 200, nav="search", title=Msg(N_("Search")),
                   query=query, board=board_text, results=results, page=page, more=more,
                   hidden=hidden, errors=errors, searched=bool(query.strip()) and not errors)


# --- pseudonyms --------------------------------------------------------------------------------


async def ids_page(request: web.Request, errors: list[Msg] | None = None, status: int = 200,
                   values: dict[str, str] | None = None) -> web.Response:
    ui = request.app[UI]
    local = await asyncio.to_thread(ui.keys.list)
    damaged = await asyncio.to_thread(ui.keys.damaged)
    authors = await _authors(request)
    session: Session = state(request).session
    pseudonyms = [{"p": p, "author": authors.view(p.public_key), "unlocked": p.fingerprint in session.unlocked,
                   "active": p.fingerprint == session.active} for p in local]
    return ui.page(request, "ids.html", status=status, nav="ids", title=Msg(N_("Pseudonyms")),
                   pseudonyms=pseudonyms, damaged=[path.name for path, _ in damaged], errors=errors or [],
                   values=values or {"name": "", "board": ""},
                   idle_minutes=max(1, round(ui.config.ui_idle_lock_s / 60)))


def _find_local(local: list[Pseudonym], fp: str) -> Pseudonym:
    for p in local:
        if p.fingerprint == fp:
            return p
    raise FormError(Msg(N_("There is no such pseudonym on this machine.")))


async def id_new(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    values = {"name": _field(request, "name"), "board": _field(request, "board")}
    passphrase, repeat = _field(request, "passphrase"), _field(request, "passphrase2")
    errors: list[Msg] = []
    name = board = None
    try:
        name = _display_name(values["name"])
    except FormError as exc:
        errors.append(exc.msg)
    if values["board"].strip():
        try:
            board = _board(values["board"])
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
            pseudonym = await asyncio.to_thread(ui.keys.create, name, passphrase, seed)
    except KeyStoreError:
        return await ids_page(request, [Msg(N_("A pseudonym called %(name)s already exists on this machine."),
                                            {"name": name})], 400, values)
    key = identity.SigningKey(seed)
    session.unlock(pseudonym, key)
    session.active = pseudonym.fingerprint
    session.notify(Msg(N_("Pseudonym %(name)s created and unlocked. Its fingerprint is %(fp)s."),
                       {"name": name, "fp": pseudonym.fingerprint}))
    if board is not None:
        await _ensure_carried(request, board)
        profile = posts.create_post(key, kind=KIND_PROFILE, board=board, body=name, created_at_ms=ui.core.now_ms())
        await ui.core.ingest_checked([profile], "local")
        session.notify(Msg(N_("Its name was published on %(board)s."), {"board": board}))
    return redirect("/ids")


async def id_unlock(request: web.Request) -> web.Response:
    ui = request.app[UI]
    session: Session = state(request).session
    passphrase = _field(request, "passphrase")
    try:
        pseudonym = _find_local(await asyncio.to_thread(ui.keys.list), _field(request, "fp"))
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
    return redirect(_next(request, "/ids"))


async def id_lock(request: web.Request) -> web.Response:
    session: Session = state(request).session
    fp = _field(request, "fp")
    session.lock(None if fp == "all" else fp)
    session.notify(Msg(N_("Locked.")))
    return redirect(_next(request, "/ids"))


async def id_use(request: web.Request) -> web.Response:
    session: Session = state(request).session
    fp = _field(request, "fp")
    if fp not in session.unlocked:
        return await ids_page(request, [Msg(N_("Unlock this pseudonym first."))], 400)
    session.active = fp
    session.notify(Msg(N_("New posts will be signed by %(name)s."), {"name": session.unlocked[fp].pseudonym.name}))
    return redirect(_next(request, "/ids"))


async def id_export(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        pseudonym = _find_local(await asyncio.to_thread(ui.keys.list), _field(request, "fp"))
    except FormError as exc:
        return await ids_page(request, [exc.msg], 400)
    data = await asyncio.to_thread(pseudonym.path.read_bytes)
    # The file is still encrypted under the passphrase; the name is the fingerprint, which
    # holds only [a-z2-7-].
    return web.Response(body=data, content_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{pseudonym.fingerprint}.dzbkey"',
        "Cache-Control": "no-store",
    })


# --- authors ----------------------------------------------------------------------------------


def _recent_by_author(store: Store, author: bytes, scan: int, limit: int) -> tuple[list[PostRow], bool]:
    # The store has no index by author (node/store.py explains why), so the newest rows are
    # scanned, a bounded number of them.
    found: list[PostRow] = []
    before = None
    scanned = 0
    while scanned < scan and len(found) < limit:
        page = store.list_posts(None, 500, before, kinds=[KIND_POST, KIND_REPLY])
        scanned += len(page)
        found.extend(r for r in page if r.author == author)
        if len(page) < 500:
            return found[:limit], True
        before = (page[-1].created_at_ms, page[-1].id)
    return found[:limit], False


async def author_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        key = _author_key(request.match_info["author"])
    except FormError as exc:
        return _invalid(request, exc, 404)
    authors = await _authors(request)
    view = authors.view(key)
    rows, complete = ([], True) if view.hidden else await ui.core.db.call(
        _recent_by_author, key, AUTHOR_SCAN_ROWS, AUTHOR_POSTS_SHOWN)
    history = ui.authors.history(key)
    return ui.page(request, "author.html", nav="", title=view.name or view.fingerprint, author=view,
                   history=history[:AUTHOR_NAMES_SHOWN], older_names=max(0, len(history) - AUTHOR_NAMES_SHOWN),
                   posts=[authors.post(r) for r in rows], complete=complete)


async def hide_author(request: web.Request) -> web.Response:
    return await _set_hidden(request, True)


async def unhide_author(request: web.Request) -> web.Response:
    return await _set_hidden(request, False)


async def _set_hidden(request: web.Request, hidden: bool) -> web.Response:
    ui = request.app[UI]
    try:
        key = _author_key(_field(request, "author"))
    except FormError as exc:
        return _invalid(request, exc)
    await ui.authors.set_hidden(key, hidden)
    name = ui.authors.name(key) or identity.fingerprint(key)
    if hidden:
        state(request).session.notify(Msg(N_("Posts by %(name)s are now hidden on this node."), {"name": name}))
    else:
        state(request).session.notify(Msg(N_("Posts by %(name)s are shown again."), {"name": name}))
    return redirect(_next(request, f"/a/{key.hex()}"))


async def hidden_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    authors = await _authors(request)
    try:
        page = _page_number(request)
    except FormError as exc:
        return _invalid(request, exc)
    # The list is the member's own (one form per author), kept in memory; only a page of it
    # is rendered.
    hidden = sorted((authors.view(k) for k in ui.authors.hidden), key=lambda a: (a.name or "", a.fingerprint))
    shown = hidden[(page - 1) * HIDDEN_PAGE_SIZE : page * HIDDEN_PAGE_SIZE]
    return ui.page(request, "hidden.html", nav="hidden", title=Msg(N_("Hidden authors")), authors=shown,
                   page=page, more=len(hidden) > page * HIDDEN_PAGE_SIZE)


# --- status -------------------------------------------------------------------------------------


def _peer_view(row: PeerRow, now_ms: int) -> dict[str, Any]:
    if row.failures:
        state = "failing"
    elif row.last_ok_at_ms:
        state = "ok"
    else:
        state = "new"
    return {"row": row, "state": state, "waiting": row.next_try_at_ms > now_ms}


async def status_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    core = ui.core
    peers: list[PeerRow] = await core.db.call(Store.list_peers)
    now = core.now_ms()
    stored = await core.db.call(Store.count)
    boards = await core.db.call(Store.board_count)
    last_sync = max((p.last_ok_at_ms or 0 for p in peers), default=0)
    return ui.page(
        request, "status.html", nav="status", title=Msg(N_("Node status")),
        gossip_url=ui.node.gossip_url if ui.node else "", ui_url=ui.node.ui_url if ui.node else "",
        stored=stored, carried=len(core.index), boards=boards, chosen=sorted(core.boards),
        received=core.counters.received, rejected=sorted(core.counters.rejected.items()),
        rejected_total=sum(core.counters.rejected.values()), peers=[_peer_view(p, now) for p in peers],
        last_sync=last_sync, hidden=len(ui.authors.hidden),
    )


# --- language ------------------------------------------------------------------------------------


async def set_language(request: web.Request) -> web.Response:
    response = redirect(_next(request, "/"))
    language = parse_language(_field(request, "lang"))
    if language is None:
        response.del_cookie(LANG_COOKIE, path="/")
    else:
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 24 * 3600, httponly=True, samesite="Strict",
                            path="/")
    return response


# --- live updates (JSON for static/live.js) -----------------------------------------------------------


async def updates(request: web.Request) -> web.Response:
    ui = request.app[UI]
    cursor = request.query.get("after", "")[:64]
    board = request.query.get("board")
    thread = request.query.get("thread", "").lower()
    since = ui.feed.since(cursor)
    items = []
    wanted = [p for p in since.posts if p.kind in (KIND_POST, KIND_REPLY) and p.author not in ui.authors.hidden
              and (board is None or (p.board == board and p.kind == KIND_POST))
              and (not thread or (p.parent is not None and p.parent.hex() == thread and p.kind == KIND_REPLY))]
    if wanted:
        stored = await ui.core.db.call(Store.has, [p.id for p in wanted])
        authors = await _authors(request)
        for p in wanted:
            if p.id not in stored:
                continue  # retracted since
            view = authors.view(p.author)
            items.append({
                "id": p.id.hex(), "kind": p.kind, "board": p.board, "title": title_of(p.body),
                "text": p.body if thread else "", "url": f"/p/{p.id.hex()}",
                "time": when(p.created_at_ms), "iso": iso(p.created_at_ms),
                "author": {"name": view.name or "", "fingerprint": view.fingerprint, "url": f"/a/{view.hex}",
                           "shared": view.shared_name},
            })
    return web.json_response({"cursor": since.cursor, "reload": not since.complete, "items": items},
                             headers={"Cache-Control": "no-store"})


# --- routing ----------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    return await boards_page(request)


async def ids_index(request: web.Request) -> web.Response:
    return await ids_page(request)


def add_routes(router: web.UrlDispatcher) -> None:
    get, post = router.add_get, router.add_post
    get("/", index)
    get("/b", open_board)
    get("/b/{board:[^/]+}", board_page)  # braces too: aiohttp's default pattern refuses them
    post("/boards/follow", follow)
    post("/boards/unfollow", unfollow)
    post("/boards/all", carry_all)
    get("/p/{post_id}", thread_page)
    get("/p/{post_id}/retract", retract_page)
    post("/p/{post_id}/retract", retract)
    get("/compose", compose_page)
    post("/compose", compose)
    get("/search", search_page)
    get("/ids", ids_index)
    post("/ids/new", id_new)
    post("/ids/unlock", id_unlock)
    post("/ids/lock", id_lock)
    post("/ids/use", id_use)
    post("/ids/export", id_export)
    get("/a/{author}", author_page)
    post("/authors/hide", hide_author)
    post("/authors/unhide", unhide_author)
    get("/hidden", hidden_page)
    get("/status", status_page)
    post("/lang", set_language)
    get("/api/updates", updates)

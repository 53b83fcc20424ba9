"""The boards list (``/``), a board's page (``/b/<board>``), and following boards."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from dazibao.protocol import limits, posts
from dazibao.protocol.errors import BoardError

from ...store import BoardInfo, Store, ThreadRow
from ..base import UI, WebUI, board_url, redirect, state
from ..i18n import N_, Msg
from ..sessions import Session
from . import organizing_reads, unread, welcome
from .common import (
    HEX_ID,
    FormError,
    ThreadView,
    authors_of,
    bad_position,
    compose_form,
    field,
    invalid,
    moderation_of,
    next_location,
    page_number,
    parse_board,
)
from .moderation import charter_view
from .writing import answered_by_others, fill_form

__all__ = ["PAGE_SIZE", "BOARDS_PAGE_SIZE", "BoardsQuery", "boards_page", "index", "open_board", "ensure_carried",
           "follow", "unfollow", "carry_all", "board_page", "ThreadsQuery", "threads_query", "threads_window"]

#: Threads on one page of a board.
PAGE_SIZE = 25
BOARDS_PAGE_SIZE = limits.UI_BOARDS_PAGE_BOARDS
_MS = re.compile(r"^[0-9]{1,19}$")


@dataclass(frozen=True, slots=True)
class BoardsQuery:
    """Which page of the boards list a request asks for (see :func:`boards_query`)."""

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


def boards_query(request: web.Request) -> BoardsQuery:
    """The boards list's order, name filter and position, from the query string.

    Raises FormError for a position that no page of this list links to.
    """
    q = request.query
    by_name = q.get("order", "") == "name"
    contains = q.get("filter", "").strip()[: limits.MAX_BOARD_CHARS]
    after_text, at_text = q.get("after"), q.get("at")
    if after_text is None:
        if at_text is not None:
            raise bad_position()
        return BoardsQuery(by_name, contains)
    try:
        after = posts.check_board(after_text)
    except BoardError:
        raise bad_position() from None
    if by_name:
        if at_text is not None:
            raise bad_position()
        return BoardsQuery(True, contains, after)
    if at_text is None or not _MS.match(at_text):
        raise bad_position()
    return BoardsQuery(False, contains, after, int(at_text))


def boards_window(store: Store, query: BoardsQuery, followed: frozenset[str] | set[str],
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
        query = boards_query(request)
    except FormError as exc:
        query, errors, status = BoardsQuery(), [exc.msg], 400
    infos, more = await ui.core.reads.call(boards_window, query, ui.core.boards, BOARDS_PAGE_SIZE)
    boards = [
        {"name": info.board, "posts": info.posts, "last_at_ms": info.last_at_ms, "carried": ui.core.carries(info.board)}
        for info in infos
    ]
    next_url = ""
    if more and infos:
        last = infos[-1]
        next_url = query.link(after=last.board, at=None if query.by_name else last.last_at_ms)
    new_posts = await unread.new_on_boards(request, [info.board for info in infos])
    first = await welcome.first_steps(request)
    met = await organizing_reads.boards_met(request, [info.board for info in infos])
    return ui.page(request, "boards.html", status=status, nav="boards", boards=boards, met=met,
                   new_posts=new_posts, unread_cap=unread.SCAN, first_steps=first,
                   carry_all=not ui.core.boards, errors=errors or [], query=query,
                   next_url=next_url, first_url=query.link(after=None, at=None) if query.after is not None else "",
                   by_name_url=query.link(order="name", after=None, at=None),
                   by_activity_url=query.link(order="", after=None, at=None))


async def index(request: web.Request) -> web.Response:
    """The boards list, the UI's first page."""
    return await boards_page(request)


async def open_board(request: web.Request) -> web.Response:
    try:
        board = parse_board(request.query.get("name", ""))
    except FormError as exc:
        return await boards_page(request, [exc.msg], 400)
    return redirect(board_url(board))


async def _set_boards(ui: WebUI, boards: set[str]) -> None:
    await ui.core.set_boards(sorted(boards))


async def ensure_carried(request: web.Request, board: str) -> None:
    """Follow ``board`` if this node does not carry it yet (and tell the member so)."""
    ui = request.app[UI]
    if not ui.core.carries(board):
        await _set_boards(ui, set(ui.core.boards) | {board})
        state(request).session.notify(Msg(N_("You now follow %(board)s."), {"board": board}))


async def follow(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(field(request, "board"))
    except FormError as exc:
        return await boards_page(request, [exc.msg], 400)
    session: Session = state(request).session
    if ui.core.boards and board not in ui.core.boards:
        await _set_boards(ui, set(ui.core.boards) | {board})
        session.notify(Msg(N_("You now follow %(board)s."), {"board": board}))
    else:
        session.notify(Msg(N_("This node already carries %(board)s."), {"board": board}))
    return redirect(next_location(request, board_url(board)))


async def unfollow(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(field(request, "board"))
    except FormError as exc:
        return await boards_page(request, [exc.msg], 400)
    session: Session = state(request).session
    if ui.core.boards:
        chosen = set(ui.core.boards) - {board}
    else:
        chosen = {info.board for info in await ui.core.reads.call(Store.boards)} - {board}
    if not chosen:
        return await boards_page(request, [Msg(N_(
            "This is the only board this node carries. Follow another board first, or choose "
            "“Carry every board”."))], 400)
    if ui.core.boards and board not in ui.core.boards:
        return redirect(next_location(request, "/"))
    was_all = not ui.core.boards
    await _set_boards(ui, chosen)
    session.notify(Msg(N_("You no longer follow %(board)s. Its posts stay here but are no longer synced."),
                       {"board": board}))
    if was_all:
        session.notify(Msg(N_("This node now carries only the boards you follow.")))
    return redirect(next_location(request, "/"))


async def carry_all(request: web.Request) -> web.Response:
    ui = request.app[UI]
    await _set_boards(ui, set())
    state(request).session.notify(Msg(N_("This node now carries every board.")))
    return redirect("/")


@dataclass(frozen=True, slots=True)
class ThreadsQuery:
    """Which page of a board's threads a request asks for (see :func:`threads_query`)."""

    page: int = 1  # shown, and how deep a link without a cursor goes
    before: tuple[int, bytes] | None = None  # (last_at_ms, id) of the previous page's last thread


def threads_query(request: web.Request) -> ThreadsQuery:
    """The page number and cursor (``at``: last activity in ms, ``after``: the thread's id in
    hex) of a board page, from the query string.  Without a cursor, ``page=N`` still works.

    Raises FormError for a position that no page of the board links to.
    """
    page = page_number(request)
    at_text, after_text = request.query.get("at"), request.query.get("after")
    if at_text is None and after_text is None:
        return ThreadsQuery(page)
    if (page < 2 or at_text is None or after_text is None or not _MS.match(at_text)
            or not HEX_ID.match(after_text)):
        raise bad_position()
    return ThreadsQuery(page, (int(at_text), bytes.fromhex(after_text)))


def threads_window(store: Store, board: str, query: ThreadsQuery,
                   limit: int) -> tuple[list[ThreadRow], tuple[int, bytes] | None]:
    """One page of the board's threads (``limit + 1`` rows, to know whether there is an older
    page) and the cursor of the page before it (None: that is the first page).

    Every read is one page of the maintained thread index, however deep the page, except a
    ``page=N`` without a cursor, which walks that index (not the posts) to find where page N
    starts.
    """
    before = query.before
    if before is None and query.page > 1:
        before = store.thread_cursor(board, (query.page - 1) * limit - 1)
        if before is None:
            return [], None
    rows = store.threads(board, limit + 1, before=before)
    newer = None if before is None or query.page <= 2 else store.newer_thread_cursor(board, before, limit)
    return rows, newer


def _threads_link(board: str, page: int, cursor: ThreadRow | tuple[int, bytes] | None) -> str:
    """The address of page ``page`` of ``board``, continuing after ``cursor``."""
    if isinstance(cursor, ThreadRow):
        cursor = (cursor.last_at_ms, cursor.post.id)
    if page <= 1:
        return board_url(board)
    if cursor is None:
        return board_url(board) + "?" + urlencode({"page": page})
    return board_url(board) + "?" + urlencode({"page": page, "at": cursor[0], "after": cursor[1].hex()})


async def board_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        board = parse_board(request.match_info["board"])
    except FormError as exc:
        return invalid(request, exc, 404)
    try:
        query = threads_query(request)
    except FormError as exc:
        return invalid(request, exc)
    page = query.page
    rows, newer = await ui.core.reads.call(threads_window, board, query, PAGE_SIZE)
    more = len(rows) > PAGE_SIZE
    authors = await authors_of(request)
    mod = await moderation_of(request, authors, [board])
    # A hidden author's thread stays listed (without its title) when others replied to it:
    # hiding an author hides their posts, not the replies of others.
    hidden_roots = [t.post.id for t in rows[:PAGE_SIZE] if authors.hidden(t.post.author) and t.replies]
    answered = await ui.core.reads.call(answered_by_others, hidden_roots, ui.authors.hidden) if hidden_roots else set()
    threads = [ThreadView(mod.post(t.post), t.replies, t.last_at_ms, author_hidden=authors.hidden(t.post.author))
               for t in rows[:PAGE_SIZE] if not authors.hidden(t.post.author) or t.post.id in answered]
    hidden = min(len(rows), PAGE_SIZE) - len(threads)
    form = compose_form(board=board)
    fill_form(state(request).session, form)
    live = "/api/updates?" + urlencode({"board": board}) if page == 1 else ""
    # The charter is a suggestion to the member; the public view shows only who moderates.
    charter = None if ui.public else charter_view(mod, await ui.core.reads.call(Store.charter, board))
    visit = await unread.visit_board(request, board, [t.post.row.id for t in threads])
    return ui.page(request, "board.html", nav="boards", title=board, board=board, threads=threads,
                   visit=visit, unread_cap=unread.SCAN,
                   page=page, more=more, hidden=hidden, carried=ui.core.carries(board),
                   newer_url=_threads_link(board, page - 1, newer) if page > 1 else "",
                   older_url=_threads_link(board, page + 1, rows[PAGE_SIZE - 1]) if more else "",
                   form=form, live_url=live, moderators=mod.moderators(board),
                   charter=charter, **await organizing_reads.board_extras(request, board, first_page=page == 1))

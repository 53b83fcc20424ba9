"""What is new since the member's last visit, on the boards list, a board and a thread.

Marks are kept per node, in the store (node/store/marks.py, migration 5), not per browser
session: they survive a restart and the idle lock, and nothing of them leaves the machine.
The public view (node/web/public.py) neither reads nor writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from dazibao.protocol import limits

from ...store import Store, StoreError
from ..base import UI, state

__all__ = ["tracked", "new_on_boards", "BoardVisit", "visit_board", "visit_thread", "SCAN"]

#: A count that reaches this is shown as a lower bound ("5000+").
SCAN = limits.MAX_UNREAD_SCAN


def tracked(request: web.Request) -> bool:
    """Whether this request reads and keeps marks: the member's own UI, in a stored session."""
    return not request.app[UI].public and state(request).persistent


def _start(store: Store) -> int:
    # Marks are a convenience: a store that cannot be written (a full disk) still shows pages.
    try:
        return store.start_marks()
    except StoreError:
        return store.newest_seq()


def _record(store: Store, scope: str, key: str, seq: int, now_ms: int) -> None:
    try:
        store.record_visit(scope, key, seq, now_ms)
    except StoreError:
        pass


def _boards_new(store: Store, boards: list[str]) -> dict[str, int]:
    base = _start(store)
    found = store.visit_marks("board", boards)
    return store.new_by_board({b: found.get(b, base) for b in boards})


async def new_on_boards(request: web.Request, boards: list[str]) -> dict[str, int]:
    """How many posts of each of ``boards`` arrived since the member last opened it."""
    if not tracked(request) or not boards:
        return {}
    return await request.app[UI].core.db.call(_boards_new, boards)


@dataclass(frozen=True, slots=True)
class BoardVisit:
    since: int  # the board's mark before this visit: a thread stored after it is new
    replies: dict[bytes, int]  # new replies per thread shown


def _visit_board(store: Store, board: str, threads: list[bytes], now_ms: int) -> BoardVisit:
    newest = store.newest_seq()
    base = _start(store)
    since = store.visit_marks("board", [board]).get(board, base)
    found = store.visit_marks("thread", [t.hex() for t in threads])
    counts = store.new_replies_by_thread({t: found.get(t.hex(), since) for t in threads})
    _record(store, "board", board, newest, now_ms)
    return BoardVisit(since, counts)


async def visit_board(request: web.Request, board: str, threads: list[bytes]) -> BoardVisit | None:
    """Read what is new on one page of ``board`` and mark the board visited (None: not tracked)."""
    if not tracked(request):
        return None
    ui = request.app[UI]
    return await ui.core.db.call(_visit_board, board, threads, ui.core.now_ms())


def _visit_thread(store: Store, board: str, thread: bytes, now_ms: int) -> int:
    newest = store.newest_seq()
    since = store.visit_marks("thread", [thread.hex()]).get(thread.hex())
    if since is None:
        since = store.visit_marks("board", [board]).get(board, _start(store))
    _record(store, "thread", thread.hex(), newest, now_ms)
    return since


async def visit_thread(request: web.Request, board: str, thread: bytes) -> int | None:
    """The thread's mark before this visit (a reply stored after it is new), and mark it
    visited (None: not tracked)."""
    if not tracked(request):
        return None
    ui = request.app[UI]
    return await ui.core.db.call(_visit_thread, board, thread, ui.core.now_ms())

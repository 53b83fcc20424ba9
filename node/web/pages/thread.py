"""A thread's page (``/p/<id>``): the post, its parent, and one page of its replies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from dazibao.protocol import limits
from dazibao.protocol.posts import KIND_POST, KIND_REPLY

from ...store import PostRow, Store
from ..base import UI, state
from ..render import title_of
from . import organizing_reads, unread
from .common import (
    FormError,
    authors_of,
    bad_position,
    compose_form,
    get_post,
    invalid,
    moderation_of,
    not_here,
    parse_post_id,
)
from .writing import fill_form, last_local_author, pseudonym_of

__all__ = ["REPLIES_PAGE_SIZE", "thread_page", "ReplyWindow", "reply_window", "reply_cursor", "reply_location"]

REPLIES_PAGE_SIZE = limits.UI_THREAD_PAGE_REPLIES
_REPLY_CURSOR = re.compile(r"^([0-9]{1,19})-([0-9a-f]{64})$")


async def thread_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        post_id = parse_post_id(request.match_info["post_id"])
    except FormError:
        return not_here(request)
    row = await get_post(ui, post_id)
    if row is None:
        return not_here(request)
    authors = await authors_of(request)
    parent = await get_post(ui, row.parent) if row.parent and row.kind == KIND_REPLY else None
    if parent is not None and authors.hidden(parent.author):
        parent = None  # not even the title of a hidden author's post
    try:
        after = _reply_cursor(request.query.get("after"))
        before = _reply_cursor(request.query.get("before"))
        newest = request.query.get("newest") == "1"
        if sum((after is not None, before is not None, newest)) > 1:
            raise bad_position()
    except FormError as exc:
        return invalid(request, exc)
    window = await ui.core.reads.call(reply_window, post_id, REPLIES_PAGE_SIZE, after, before, newest)
    replies_rows = window.rows
    mod = await moderation_of(request, authors, [row.board])
    replies = [mod.post(r) for r in replies_rows if not authors.hidden(r.author)]
    post = mod.post(row)
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
    # The title of a post hidden by a moderator stays out of the window title: it is revealed
    # only by the member's click.
    shown_title = is_text and not authors.hidden(row.author) and not post.hides
    form = compose_form(board=row.board, parent=row.id.hex())
    thread_signer = None
    if not ui.public:
        session = state(request).session
        fill_form(session, form)
        keys = frozenset(p.public_key for p in authors.local)
        if keys:
            thread_signer = pseudonym_of(authors.local, await ui.core.db.call(last_local_author, row.id, keys))
        # The reply form defaults to the pseudonym the member last used in this thread.
        if not form["as"] and thread_signer is not None and thread_signer.fingerprint in session.unlocked:
            form["as"] = thread_signer.fingerprint
    # The marker goes above the first reply on this page that arrived since the last visit
    # (the member's own replies are never new).
    since = await unread.visit_thread(request, row.board, row.id)
    local_keys = {p.public_key for p in authors.local}
    first_new = next((r.hex for r in replies if since is not None and r.row.seq > since
                      and r.row.author not in local_keys), "")
    return ui.page(
        request, "thread.html", nav="boards", title=title_of(row.body) if shown_title else "",
        first_new=first_new,
        post=post, parent=mod.post(parent) if parent else None,
        can_moderate=bool(state(request).session.unlocked) and not ui.public,
        root_hidden=authors.hidden(row.author), replies=replies, hidden=len(replies_rows) - len(replies),
        total_replies=window.total, pager=pager,
        form=form, thread_signer=thread_signer, live_url=live, is_text=is_text,
        **await organizing_reads.thread_extras(
            request, row.id, first_page=after is None and before is None and not newest,
            reply_ids=[r.row.id for r in replies]),
    )


@dataclass(frozen=True, slots=True)
class ReplyWindow:
    rows: list[PostRow]
    older: bool  # there are replies before ``rows``
    newer: bool  # there are replies after ``rows``
    total: int


def reply_window(store: Store, post_id: bytes, limit: int, after: tuple[int, bytes] | None,
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


def _reply_cursor(text: str | None) -> tuple[int, bytes] | None:
    """A thread page's position: ``<created_at_ms>-<reply id in hex>``, or None when absent.

    Raises FormError when it is given but malformed.
    """
    if text is None:
        return None
    match = _REPLY_CURSOR.match(text)
    if match is None:
        raise bad_position()
    return int(match.group(1)), bytes.fromhex(match.group(2))


def reply_cursor(row: PostRow) -> str:
    return f"{row.created_at_ms}-{row.id.hex()}"


def reply_location(root: PostRow, replies: int, reply_id: bytes) -> str:
    """Where a new reply to ``root`` is shown, ``root`` having ``replies`` replies with it.

    A long thread opens at its first page, so the address is that of the last one.
    """
    newest = "?newest=1" if replies > REPLIES_PAGE_SIZE else ""
    return f"/p/{root.id.hex()}{newest}#p-{reply_id.hex()}"

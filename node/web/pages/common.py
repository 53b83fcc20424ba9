"""What the member UI's pages share: how they show posts and authors, and how they read
and check what a request sends.

GET handlers only read.  POST handlers run after the guard (node/web/app.py) checked the
request, and validate every field before they write anything: bad input gets the page back
with a translated message and status 400, and nothing is stored.  Keys come from the session
(node/web/sessions.py); they never appear in a page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from dazibao.protocol import identity, limits, posts
from dazibao.protocol.errors import BoardError, BodyError
from dazibao.protocol.moderation import Statement
from dazibao.protocol.trust import TrustView

from ...keys import Pseudonym
from ...store import ModeratorRow, PostRow, Store
from ..authors import AuthorView
from ..base import UI, WebUI, state
from ..bodycache import BODIES, RenderedBody
from ..i18n import N_, Msg
from ..moderation import ModeratorView, StatementView, read_boards
from ..render import title_of
from ..security import safe_next
from ..sessions import Session, Unlocked

__all__ = [
    "MAX_PAGE", "HEX_ID", "FormError", "own_signer", "PostView", "ThreadView", "Authors", "authors_of", "Moderation",
    "moderation_of", "parse_post_id", "characters_over",
    "parse_author_key", "parse_board", "parse_body", "parse_display_name", "page_number", "bad_position", "field",
    "invalid", "next_location", "compose_form", "get_post", "not_here",
]

MAX_PAGE = 10_000
HEX_ID = re.compile(r"^[0-9a-f]{64}$")


class FormError(Exception):
    """A field of a form is not acceptable; ``msg`` says why, in the member's language."""

    def __init__(self, msg: Msg) -> None:
        super().__init__(msg.text)
        self.msg = msg


@dataclass(frozen=True, slots=True)
class PostView:
    row: PostRow
    author: AuthorView
    mine: bool  # signed by a pseudonym unlocked in this session
    #: The statements of moderators the node follows that hide this post: shown collapsed,
    #: with who hid it and why (empty: shown as usual).
    hides: tuple[StatementView, ...] = ()

    @property
    def hex(self) -> str:
        return self.row.id.hex()

    @property
    def title(self) -> str:
        return title_of(self.row.body)

    @property
    def body(self) -> RenderedBody:
        """The body's HTML and ``lang`` attribute, rendered once per post (node/web/bodycache.py)."""
        return BODIES.get(self.row.id, self.row.body)


@dataclass(frozen=True, slots=True)
class ThreadView:
    post: PostView
    replies: int
    last_at_ms: int
    #: The thread's author is hidden on this node: it is listed for the others' replies only.
    author_hidden: bool = False


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


async def authors_of(request: web.Request) -> Authors:
    """How ``request`` shows authors (the author book brought up to date first)."""
    ui = request.app[UI]
    await ui.authors.refresh()
    # The public view never reads the key folder: which pseudonyms this machine holds is private.
    local = await asyncio.to_thread(ui.keys.list) if ui.keys is not None and not ui.public else []
    return Authors(ui, local, state(request).session)


class Moderation:
    """What one request knows of moderation on the boards its page shows (node/web/moderation.py)."""

    def __init__(self, authors: Authors, boards: dict[str, tuple[TrustView, list[ModeratorRow]]]) -> None:
        self.authors = authors
        self._boards = boards

    def moderators(self, board: str) -> list[ModeratorView]:
        """The moderators followed on ``board`` through its list (local pseudonyms are not in it)."""
        _, rows = self._boards.get(board, (None, []))
        return [ModeratorView(r.board, self.authors.view(r.key), r.source, r.added_at_ms) for r in rows]

    def follows(self, board: str, key: bytes) -> bool:
        """Whether ``key`` is in the moderators list of ``board`` (so the member can leave it)."""
        _, rows = self._boards.get(board, (None, []))
        return any(r.key == key for r in rows)

    def statement(self, st: Statement) -> StatementView:
        return StatementView(st, self.authors.view(st.moderator), self.follows(st.board, st.moderator))

    def hides(self, row: PostRow) -> tuple[StatementView, ...]:
        """The statements of followed moderators that hide ``row`` (none: it is shown as usual)."""
        view, _ = self._boards.get(row.board, (None, []))
        if view is None:
            return ()
        return tuple(self.statement(st) for st in view.hides(row.id, row.author))

    def hidden(self, board: str, post_id: bytes, author: bytes) -> bool:
        """Whether a followed moderator hides this post."""
        view, _ = self._boards.get(board, (None, []))
        return view is not None and bool(view.hides(post_id, author))

    def post(self, row: PostRow) -> PostView:
        """How the request shows ``row``: its :class:`PostView`, with the hides that apply."""
        # Built in one go rather than with dataclasses.replace: a thread page makes 101 of them.
        a = self.authors
        return PostView(row, a.view(row.author), a.session.key_of(row.author) is not None, self.hides(row))


async def moderation_of(request: web.Request, authors: Authors, boards: Iterable[str]) -> Moderation:
    """What ``request`` knows of moderation on ``boards``: one call on the store's thread."""
    ui = request.app[UI]
    wanted = sorted(set(boards))
    found = await ui.core.reads.call(read_boards, wanted, ui.core.now_ms()) if wanted else {}
    return Moderation(authors, found)


def parse_post_id(text: str) -> bytes:
    """A post id from its hex form; raises FormError for anything else."""
    text = text.strip().lower()
    if not HEX_ID.match(text):
        raise FormError(Msg(N_("That is not a post id (64 hexadecimal characters).")))
    return bytes.fromhex(text)


def parse_author_key(text: str) -> bytes:
    """An author's public key from its hex form; raises FormError for anything else."""
    text = text.strip().lower()
    if not HEX_ID.match(text):
        raise FormError(Msg(N_("That is not an author's public key (64 hexadecimal characters).")))
    return bytes.fromhex(text)


def parse_board(text: str) -> str:
    """A board name as typed (spaces around it dropped); raises FormError for one no node accepts."""
    try:
        return posts.check_board(text.strip())
    except BoardError:
        raise FormError(Msg(N_(
            "That board name is not allowed. Use 1 to %(max)s visible characters, without spaces at "
            "the beginning or the end."), {"max": limits.MAX_BOARD_CHARS})) from None


def characters_over(text: str, max_bytes: int) -> int:
    """How many characters must go from the end of ``text`` for its UTF-8 to fit ``max_bytes``."""
    size = len(text.encode("utf-8", "surrogatepass"))
    over = 0
    for ch in reversed(text):
        if size <= max_bytes:
            break
        size -= len(ch.encode("utf-8", "surrogatepass"))
        over += 1
    return over


def parse_body(text: str) -> str:
    """A post's text with its line ends made ``\\n``; raises FormError if empty, too long or not postable."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.strip():
        raise FormError(Msg(N_("Write something first: the text is empty.")))
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > limits.MAX_BODY_BYTES:
        # Members count characters, not bytes: say how many characters to remove (a Chinese
        # character takes three bytes, a Latin letter one), as the counter in live.js does.
        over = characters_over(body, limits.MAX_BODY_BYTES)
        if over == 1:
            raise FormError(Msg(N_("The text is 1 character too long. Shorten it.")))
        raise FormError(Msg(N_("The text is %(over)s characters too long. Shorten it."), {"over": f"{over:,}"}))
    try:
        return posts.check_text_body(body)
    except BodyError:
        raise FormError(Msg(N_("The text contains an invisible control character that cannot be posted. "
                               "Remove it and try again."))) from None


def parse_display_name(text: str) -> str:
    """A pseudonym's name as typed; raises FormError for one no node accepts."""
    name = text.strip()
    try:
        return identity.check_display_name(name)
    except BodyError:
        raise FormError(Msg(N_(
            "That name is not allowed. Use 1 to %(max)s visible characters, without spaces at the "
            "beginning or the end and without invisible or direction-changing characters."),
            {"max": limits.MAX_DISPLAY_NAME_CHARS})) from None


def page_number(request: web.Request) -> int:
    """The ``page`` of the query string (1 when absent); raises FormError for an invalid one."""
    text = request.query.get("page", "1")
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise FormError(Msg(N_("That page number is not valid.")))
    return int(text)


def bad_position() -> FormError:
    return FormError(Msg(N_("That page number is not valid.")))


def field(request: web.Request, name: str) -> str:
    """A text field of the checked form of a POST ("" when absent or not text)."""
    value = state(request).form.get(name, "")
    return value if isinstance(value, str) else ""


def invalid(request: web.Request, exc: FormError, status: int = 400) -> web.Response:
    return request.app[UI].error_page(request, status, exc.msg, Msg(N_("This cannot be done")))


def next_location(request: web.Request, default: str = "/") -> str:
    """Where to go after a form: its ``next`` field if it is a path of this UI, else ``default``."""
    return safe_next(field(request, "next"), default)


def compose_form(board: str = "", parent: str = "", body: str = "", as_fp: str = "") -> dict[str, str]:
    return {"board": board, "parent": parent, "body": body, "as": as_fp}


async def get_post(ui: WebUI, post_id: bytes) -> PostRow | None:
    return await ui.core.reads.call(Store.get, post_id)


async def own_signer(ui: WebUI, session: Session, author: bytes, *, locked: Msg, foreign: Msg) -> Unlocked:
    """The unlocked pseudonym of this session that is ``author``, for signing what undoes that
    author's own post or statement.  Raises FormError: ``locked`` when ``author`` is one of this
    machine's pseudonyms but not unlocked, ``foreign`` when it is nobody's here."""
    signer = session.key_of(author)
    if signer is not None:
        return signer
    local = await asyncio.to_thread(ui.member_keys().list)
    raise FormError(locked if any(p.public_key == author for p in local) else foreign)


def not_here(request: web.Request) -> web.Response:
    return request.app[UI].error_page(request, 404, Msg(N_(
        "This post is not on this node. It may have been retracted, or not have reached this node yet.")),
        Msg(N_("Post not found")))

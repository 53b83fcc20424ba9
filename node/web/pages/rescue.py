"""A writing form sent to a node that no longer knows its session: after a restart of the
node (sessions, unlocked keys and drafts live in memory only), or once the session expired.

The guard (node/web/app.py) refuses any other such POST.  A post or reply form is different:
the member's text is in it, and refusing it would lose that text.  So its text becomes a
draft of a session of this process (the browser's new one if it has none), nothing is
published, and the member is sent to unlock a pseudonym and brought back to the form with the
text filled in, to press *Publish* again.  The text stays in memory, as every draft does.

Only a form the browser says it sent from this UI's own page is kept (``Sec-Fetch-Site:
same-origin``, or this UI's own ``Origin``): another site cannot even leave a draft.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from dazibao.protocol import posts
from dazibao.protocol.errors import BoardError

from ..base import WebUI, redirect
from ..i18n import N_, Msg
from ..sessions import Session
from .common import HEX_ID, compose_form
from .writing import draft_key, form_location, keep_draft

__all__ = ["RESCUED_PATHS", "rescuable", "rescue_submission"]

#: The forms whose text is kept when their session is unknown.
RESCUED_PATHS = frozenset({"/compose"})


def rescuable(request: web.Request) -> bool:
    """Whether a POST whose session or CSRF token this process does not know is a writing form
    sent from this UI's own page (the guard has checked the Host already)."""
    if request.method != "POST" or request.path not in RESCUED_PATHS:
        return False
    site = (request.headers.get("Sec-Fetch-Site") or "").strip().lower()
    origin = (request.headers.get("Origin") or "").strip().lower()
    return site == "same-origin" or origin == "http://" + request.headers.get("Host", "").strip().lower()


def _text(form: object, name: str) -> str:
    value = form.get(name, "") if hasattr(form, "get") else ""
    return value if isinstance(value, str) else ""


def rescue_submission(ui: WebUI, session: Session, form: object) -> web.Response:
    """Keep the text of ``form`` as a draft of ``session``; publish nothing.  The answer sends
    the member to unlock a pseudonym (or straight back to the form when one is unlocked)."""
    board, parent = _text(form, "board").strip(), _text(form, "parent").strip().lower()
    if parent and not HEX_ID.match(parent):
        parent = ""
    try:
        board = posts.check_board(board) if board else ""
    except BoardError:
        board = ""
    fields = compose_form(board=board, parent=parent, body=_text(form, "body"), as_fp=_text(form, "as"))
    keep_draft(session, fields)
    back = form_location(board, parent)
    if session.draft(draft_key(board, parent)) is None and fields["body"].strip():
        # Longer than a post may be: not kept (a draft is at most one post body).
        session.notify(Msg(N_("The node was restarted (or your session ended) before this form was sent. Nothing "
                              "was published, and the text was too long to keep: go back in your browser to "
                              "copy it.")))
    else:
        session.notify(Msg(N_("The node was restarted (or your session ended) before this form was sent. "
                              "Nothing was published: your text is kept. Unlock a pseudonym, check the text and "
                              "publish it again.")))
    if session.unlocked:
        return redirect(back)
    return redirect("/ids?" + urlencode({"next": back}))

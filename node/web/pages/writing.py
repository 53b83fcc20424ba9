"""What the writing forms share: drafts kept in the session, and which pseudonym a member
already used in a thread (the reply form defaults to it, and publishing under another one
asks to confirm first: it links the two pseudonyms publicly).
"""

from __future__ import annotations

from dazibao.protocol import limits

from ...keys import Pseudonym
from ...store import Store
from ..base import board_url
from ..sessions import Draft, Session

__all__ = ["THREAD_SIGNER_SCAN", "draft_key", "form_location", "keep_draft", "fill_form", "last_local_author",
           "pseudonym_of", "ANSWERED_SCAN", "answered_by_others"]

#: Replies of a thread looked at (the newest ones) to find the member's latest post there.
THREAD_SIGNER_SCAN = 2_000


def draft_key(board: str, parent: str) -> str:
    """The form a draft belongs to: a reply to one post, or a new post on one board."""
    return f"reply:{parent}" if parent else f"board:{board}"


def form_location(board: str, parent: str) -> str:
    """The page whose form a draft is shown in again (after unlocking, say)."""
    if parent:
        return f"/p/{parent}#reply"
    return board_url(board) + "#new-post" if board else "/compose"


def keep_draft(session: Session, form: dict[str, str]) -> None:
    """Keep the text of ``form`` as the draft of its form (a text too long to post is not kept)."""
    if not session.id or len(form["body"].encode("utf-8", "surrogatepass")) > limits.MAX_BODY_BYTES:
        return
    session.save_draft(draft_key(form["board"], form["parent"]), Draft(form["body"], form["as"]))


def fill_form(session: Session, form: dict[str, str]) -> bool:
    """Fill an empty ``form`` from its draft, if there is one; True if it was."""
    draft = session.draft(draft_key(form["board"], form["parent"]))
    if draft is None or form["body"]:
        return False
    form["body"] = draft.body
    if draft.as_fp in session.unlocked:
        form["as"] = draft.as_fp
    return True


def last_local_author(store: Store, post_id: bytes, keys: frozenset[bytes]) -> bytes | None:
    """Which of ``keys`` wrote the latest post of the thread of ``post_id`` (the post and its
    newest :data:`THREAD_SIGNER_SCAN` replies), or None."""
    if not keys:
        return None
    latest = None
    for row in store.newest_replies(post_id, THREAD_SIGNER_SCAN):  # oldest first
        if row.author in keys:
            latest = row.author
    if latest is not None:
        return latest
    root = store.get(post_id)
    return root.author if root is not None and root.author in keys else None


#: Replies of a hidden author's thread looked at (the newest ones) for one by someone else.
ANSWERED_SCAN = 200


def answered_by_others(store: Store, post_ids: list[bytes], hidden: frozenset[bytes]) -> set[bytes]:
    """Which of ``post_ids`` have a reply (among their newest :data:`ANSWERED_SCAN`) by an author
    not in ``hidden``."""
    return {pid for pid in post_ids
            if any(r.author not in hidden for r in store.newest_replies(pid, ANSWERED_SCAN))}


def pseudonym_of(local: list[Pseudonym], key: bytes | None) -> Pseudonym | None:
    return next((p for p in local if p.public_key == key), None) if key is not None else None

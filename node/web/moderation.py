"""What the member UI and the public view show of moderation (docs/moderation.md): who hid a
post and why, which moderators the node follows on a board and where each came from, and the
translated labels of actions, reason codes and sources.

A post hidden by a moderator the node follows is never left out silently: pages show it
collapsed, with "hidden by NAME · fingerprint (reason)" and a reveal that needs no script
(``<details>``).  Blocked posts are not stored, so there is nothing to show of them.

:func:`read_boards` reads, in one call on the store's thread, the node's trust view and followed
moderators of each board a page shows; ``pages.common.Moderation`` turns them into what the
templates show.  A reason code the UI does not know is shown as the code itself (escaped by
the templates, like any text).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from dazibao.protocol.moderation import REASONS, Statement
from dazibao.protocol.trust import TrustView

from ..store import ModeratorRow, Store
from .authors import AuthorView
from .i18n import N_, Msg

__all__ = [
    "REASON_LABELS", "ACTION_LABELS", "SOURCE_LABELS", "reason_label", "action_label", "source_label",
    "expiry_text", "ModeratorView", "StatementView", "read_boards",
]

#: Every known reason code with its label (docs/moderation.md, "The pieces").
REASON_LABELS: dict[str, str] = {
    "spam": N_("spam"),
    "flood": N_("flooding"),
    "abuse": N_("abuse"),
    "impersonation": N_("impersonation"),
    "provocation": N_("provocation"),
    "doxxing": N_("doxxing (private information)"),
    "off_topic": N_("off topic"),
    "trusted": N_("trusted"),
    "other": N_("other reason"),
}
assert set(REASON_LABELS) == set(REASONS), "a reason code without a label"

ACTION_LABELS: dict[str, str] = {
    "hide": N_("hide"),
    "block": N_("block"),
    "vouch": N_("vouch"),
}

#: Where a followed moderator came from (the ``source`` of the store's moderators table).
SOURCE_LABELS: dict[str, str] = {
    "ui": N_("added in this web page"),
    "config": N_("set in config.toml"),
    "cli": N_("added with the command line"),
    "charter": N_("from the board's charter"),
}


def reason_label(code: str) -> Msg | str:
    """A reason code as a member reads it: translated when known, else the code as it is."""
    label = REASON_LABELS.get(code)
    return Msg(label) if label is not None else code


def action_label(action: str) -> Msg | str:
    label = ACTION_LABELS.get(action)
    return Msg(label) if label is not None else action


def source_label(source: str) -> Msg | str:
    label = SOURCE_LABELS.get(source)
    return Msg(label) if label is not None else source


def expiry_text(ms: int | None) -> str:
    """The expiry of a statement as a date (UTC), or "" when it has none."""
    if ms is None:
        return ""
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "?"


@dataclass(frozen=True, slots=True)
class StatementView:
    """One moderation statement as a page shows it."""

    statement: Statement
    moderator: AuthorView
    #: The node follows this moderator on the statement's board through its moderators list
    #: (not only as a local pseudonym), so the member can leave it.
    leavable: bool

    @property
    def hex(self) -> str:
        return self.statement.id.hex()

    @property
    def reason(self) -> Msg | str:
        return reason_label(self.statement.reason)

    @property
    def action(self) -> Msg | str:
        return action_label(self.statement.action)

    @property
    def board(self) -> str:
        return self.statement.board

    @property
    def expires(self) -> str:
        return expiry_text(self.statement.expires_at_ms)


@dataclass(frozen=True, slots=True)
class ModeratorView:
    """A moderator the node follows on a board."""

    board: str
    author: AuthorView
    source: str
    added_at_ms: int

    @property
    def source_label(self) -> Msg | str:
        return source_label(self.source)


def read_boards(store: Store, boards: list[str], now_ms: int) -> dict[str, tuple[TrustView, list[ModeratorRow]]]:
    """The trust view and the followed moderators of each board of ``boards`` (on the store's thread)."""
    return {board: (store.trust_view(board, now_ms=now_ms), store.moderators(board)) for board in boards}

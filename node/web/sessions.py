"""Browser sessions of the member UI, and the pseudonym keys unlocked in them.

An unlocked key lives only here, in the node process's memory, in the session of the browser
that unlocked it: it is never written anywhere and never sent to the browser, and another
browser (or another user of the machine) that opens the UI starts with nothing unlocked.
A session that is not used for ``idle_lock_s`` seconds forgets its keys; the UI's own
background task sweeps every session so that keys do not linger in memory after that time
even when no request comes.  Time is read from ``clock`` (monotonic seconds).

A session also keeps the member's drafts (the text of a post or reply not yet published, by
form) in memory only, and what it needs to tell a browser's resubmission of a form from a new
submission: every writing form carries a form token (:meth:`Session.form_token`) naming the
session's lock epoch, which the idle lock advances, and a token that published once is
remembered (:meth:`Session.spend_form`).  Drafts are never written to disk: a restart of the
node forgets them, and a post form still open in the browser brings its text back as a draft
of the new process when it is sent (node/web/pages/rescue.py; docs/web-ui.md, "Drafts").
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dazibao.protocol import limits
from dazibao.protocol.identity import SigningKey

from ..keys import Pseudonym
from .i18n import N_, Msg

__all__ = ["Unlocked", "Draft", "Session", "SessionStore", "MAX_DRAFTS"]

MAX_SESSIONS = 256
MAX_SESSION_AGE_S = 12 * 3600  # a session unused this long is forgotten
MAX_NOTICES = 8
#: Drafts kept per session (the least recently saved is dropped first); each is at most one
#: post body (max_body_bytes).
MAX_DRAFTS = limits.MAX_DRAFTS_PER_SESSION
#: Form tokens remembered as spent (published) per session.
MAX_SPENT_FORMS = limits.MAX_SPENT_FORMS_PER_SESSION


@dataclass(frozen=True, slots=True)
class Draft:
    """What a member wrote in a form and did not publish (yet)."""

    body: str
    as_fp: str = ""


@dataclass(slots=True)
class Unlocked:
    pseudonym: Pseudonym
    key: SigningKey


@dataclass(slots=True, eq=False)
class Session:
    id: str
    csrf: str
    last_active_s: float
    #: Unlocked pseudonyms by fingerprint.
    unlocked: dict[str, Unlocked] = field(default_factory=dict)
    #: Fingerprint of the pseudonym that new posts are signed with.
    active: str | None = None
    #: Messages to show once, on the next page (after a form's redirect).
    notices: list[Msg] = field(default_factory=list)
    #: Drafts by form (``board:<name>`` or ``reply:<parent id hex>``), oldest first.
    drafts: dict[str, Draft] = field(default_factory=dict)
    #: Advanced by each idle lock: a form shown before it is never published at once.
    lock_epoch: int = 0
    #: Form tokens that already published (a browser's resubmission sends one again).
    spent_forms: list[str] = field(default_factory=list)

    def save_draft(self, form_key: str, draft: Draft) -> None:
        self.drafts.pop(form_key, None)
        if not draft.body.strip():
            return
        self.drafts[form_key] = draft
        while len(self.drafts) > MAX_DRAFTS:
            del self.drafts[next(iter(self.drafts))]

    def draft(self, form_key: str) -> Draft | None:
        return self.drafts.get(form_key)

    def drop_draft(self, form_key: str) -> None:
        self.drafts.pop(form_key, None)

    def form_token(self) -> str:
        """A new token for a writing form shown now: ``<lock epoch>-<random>``."""
        return f"{self.lock_epoch}-{secrets.token_urlsafe(12)}"

    def form_is_stale(self, token: str) -> bool:
        """Whether a form with ``token`` must not publish at once: it already published (a
        resubmission), or it was shown before the last idle lock.  A form without a token (a
        client other than the UI's own pages) is not stale."""
        if not token:
            return False
        if token in self.spent_forms:
            return True
        epoch, _, _ = token.partition("-")
        return not epoch.isdigit() or int(epoch) < self.lock_epoch

    def spend_form(self, token: str) -> None:
        if token:
            self.spent_forms = (self.spent_forms + [token])[-MAX_SPENT_FORMS:]

    def notify(self, msg: Msg) -> None:
        self.notices = (self.notices + [msg])[-MAX_NOTICES:]

    def take_notices(self) -> list[Msg]:
        notices, self.notices = self.notices, []
        return notices

    def unlock(self, pseudonym: Pseudonym, key: SigningKey) -> None:
        self.unlocked[pseudonym.fingerprint] = Unlocked(pseudonym, key)
        if self.active not in self.unlocked:
            self.active = pseudonym.fingerprint

    def lock(self, fingerprint: str | None = None) -> None:
        """Forget one unlocked key, or all of them."""
        if fingerprint is None:
            self.unlocked.clear()
        else:
            self.unlocked.pop(fingerprint, None)
        if self.active not in self.unlocked:
            self.active = next(iter(self.unlocked), None)

    def active_key(self) -> Unlocked | None:
        return self.unlocked.get(self.active) if self.active else None

    def key_of(self, public_key: bytes) -> Unlocked | None:
        """The unlocked key whose public key is ``public_key``, if any."""
        for unlocked in self.unlocked.values():
            if unlocked.pseudonym.public_key == public_key:
                return unlocked
        return None


class SessionStore:
    """Every session of one UI listener, bounded in number and age."""

    def __init__(self, idle_lock_s: float, *, clock: Callable[[], float] = time.monotonic,
                 max_sessions: int = MAX_SESSIONS, max_age_s: float = MAX_SESSION_AGE_S) -> None:
        self.idle_lock_s = idle_lock_s
        self.clock = clock
        self.max_sessions = max_sessions
        self.max_age_s = max_age_s
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, or None (unknown, or too old: then forgotten)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self.clock() - session.last_active_s >= self.max_age_s:
            self._forget(session)
            return None
        return session

    def create(self) -> Session:
        """A new session with a fresh CSRF token.  Makes room by forgetting the least
        recently used session, preferring one that holds no unlocked key."""
        while len(self._sessions) >= self.max_sessions:
            by_age = sorted(self._sessions.values(), key=lambda s: s.last_active_s)
            victim = next((s for s in by_age if not s.unlocked), by_age[0])
            self._forget(victim)
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock())
        self._sessions[session.id] = session
        return session

    def touch(self, session: Session) -> None:
        """Note the member's activity; first lock the keys if the session was idle too long."""
        now = self.clock()
        self._lock_if_idle(session, now)
        session.last_active_s = now

    def sweep(self) -> None:
        """Lock idle sessions' keys and forget old sessions (run periodically)."""
        now = self.clock()
        for session in list(self._sessions.values()):
            if now - session.last_active_s >= self.max_age_s:
                self._forget(session)
            else:
                self._lock_if_idle(session, now)

    def lock_everywhere(self, fingerprint: str) -> None:
        """Forget one pseudonym's key in every session (its key file is being removed)."""
        for session in self._sessions.values():
            session.lock(fingerprint)

    def lock_all(self) -> None:
        for session in self._sessions.values():
            session.lock()

    def _lock_if_idle(self, session: Session, now: float) -> None:
        if session.unlocked and now - session.last_active_s >= self.idle_lock_s:
            session.lock()
            session.lock_epoch += 1
            session.notify(Msg(N_("Your pseudonyms were locked after a time without activity. "
                                  "Unlock one to post again.")))

    def _forget(self, session: Session) -> None:
        session.lock()
        self._sessions.pop(session.id, None)

"""The store's room for collective action: reports, letters, pledges, pins and translations as
a reader's node counts them (docs/protocol.md, "Collective action"; docs/organizing.md).

The counting rules are pure and live in protocol/organizing.py; this room reads the objects of
one board or one parent and hands them to those rules with what this node believes on that
board: whom its followed moderators vouch for and block (protocol/trust.py).  A retracted
object is not stored any more (the store keeps only its tombstone), so it is simply not read.

Every read is bounded: at most ``max_tally_objects`` objects of one kind on one board, or
children of one parent, are counted; a tally that reached the bound says so (``complete``
False), and the pages say "at least".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from dazibao.protocol import limits, organizing, posts
from dazibao.protocol.errors import RemoteProtocolError
from dazibao.protocol.organizing import (
    CompanyTally,
    Corroboration,
    Letter,
    Pin,
    Pledge,
    PledgeTally,
    Report,
    Signature,
    SignatureTally,
    Translation,
)
from dazibao.protocol.trust import TrustView

from .connection import guarded, marks
from .moderation import ModerationRoom
from .rows import PostRow
from .schema import BOARD_INDEXED_KINDS, PARENT_INDEXED_KINDS, POST_COLUMNS

__all__ = ["OrganizingRoom", "Tallied", "Companies", "LetterView", "PledgeView"]


@dataclass(frozen=True, slots=True)
class Tallied:
    """A tally and whether every object was counted (False: the read stopped at
    ``max_tally_objects`` and the figures are lower bounds)."""

    complete: bool


@dataclass(frozen=True, slots=True)
class Companies(Tallied):
    companies: tuple[CompanyTally, ...]
    reports: tuple[Report, ...]


@dataclass(frozen=True, slots=True)
class LetterView(Tallied):
    letter: Letter
    signatures: SignatureTally


@dataclass(frozen=True, slots=True)
class PledgeView(Tallied):
    pledge: Pledge
    progress: PledgeTally


def _objects(rows: Sequence[PostRow]) -> list[organizing.Object]:
    found = []
    for row in rows:
        try:
            found.append(organizing.parse_object(row.to_post()))
        except RemoteProtocolError:
            # Stored by a node of an earlier revision, where the kind was unknown and its body
            # was not read: kept and passed on, but it means nothing here.
            continue
    return found


class OrganizingRoom(ModerationRoom):
    """Reads and counts the collective-action objects (a room of :class:`~.Store`)."""

    def _kind_rows(self, board: str, kind: str, limit: int) -> list[PostRow]:
        # The kind is written into the SQL as a literal (it is one of a fixed list): only then
        # can SQLite use the kind's partial index (schema.py, migration 6).
        if kind not in BOARD_INDEXED_KINDS:
            raise ValueError(f"not a kind read by board: {kind!r}")
        sql = (f"SELECT {POST_COLUMNS} FROM posts WHERE board = ? AND kind = '{kind}'"
               " ORDER BY created_at_ms, id LIMIT ?")
        return [PostRow(*row) for row in self._conn.execute(sql, [board, limit])]

    def _child_rows(self, parents: Sequence[bytes], kind: str, limit: int) -> list[PostRow]:
        if kind not in PARENT_INDEXED_KINDS:
            raise ValueError(f"not a kind read by parent: {kind!r}")
        rows: list[PostRow] = []
        for start in range(0, len(parents), 500):
            part = parents[start:start + 500]
            sql = (f"SELECT {POST_COLUMNS} FROM posts WHERE parent IN ({marks(len(part))}) AND kind = '{kind}'"
                   " ORDER BY created_at_ms, id LIMIT ?")
            rows += [PostRow(*row) for row in self._conn.execute(sql, [*part, limit - len(rows)])]
            if len(rows) >= limit:
                break
        return rows

    def _vouched(self, view: TrustView, authors: Collection[bytes]) -> set[bytes]:
        return {a for a in authors if view.vouched(a)}

    def _blocked(self, view: TrustView, authors: Collection[bytes]) -> set[bytes]:
        return {a for a in authors if view.author_block(a) is not None}

    @guarded
    def object(self, post_id: bytes) -> organizing.Object | None:
        """The collective-action object stored under ``post_id``, or None (not stored, another
        kind, or a body this revision refuses)."""
        row = self._conn.execute(f"SELECT {POST_COLUMNS} FROM posts WHERE id = ?", (post_id,)).fetchone()
        if row is None or row[2] not in posts.ACTION_KINDS:
            return None
        found = _objects([PostRow(*row)])
        return found[0] if found else None

    @guarded
    def companies(self, board: str, *, now_ms: int, limit: int = limits.MAX_TALLY_OBJECTS) -> Companies:
        """The companies reported on ``board``, ranked (docs/protocol.md, "What the objects mean")."""
        with self._reading():
            report_rows = self._kind_rows(board, posts.KIND_REPORT, limit)
            reports = [o for o in _objects(report_rows) if isinstance(o, Report)]
            corroboration_rows = self._child_rows([r.id for r in reports], posts.KIND_CORROBORATION, limit)
            corroborations = [o for o in _objects(corroboration_rows) if isinstance(o, Corroboration)]
            view = self.trust_view(board, now_ms=now_ms)
        authors = {r.author for r in reports} | {c.author for c in corroborations}
        tallies = organizing.tally_companies(reports, corroborations, blocked=self._blocked(view, authors),
                                             vouched=self._vouched(view, authors))
        complete = len(report_rows) < limit and len(corroboration_rows) < limit
        return Companies(complete, tuple(tallies), tuple(reports))

    def _signatures(self, target: Letter | Pledge, limit: int) -> tuple[list[Signature], bool]:
        rows = self._child_rows([target.id], posts.KIND_SIGNATURE, limit)
        return [o for o in _objects(rows) if isinstance(o, Signature)], len(rows) < limit

    @guarded
    def letter(self, letter_id: bytes, *, now_ms: int, limit: int = limits.MAX_TALLY_OBJECTS) -> LetterView | None:
        """The letter ``letter_id`` and its signatures as this node counts them, or None."""
        with self._reading():
            letter = self.object(letter_id)
            if not isinstance(letter, Letter):
                return None
            signatures, complete = self._signatures(letter, limit)
            view = self.trust_view(letter.board, now_ms=now_ms)
        authors = {s.author for s in signatures}
        tally = organizing.tally_signatures(letter, signatures, blocked=self._blocked(view, authors),
                                            vouched=self._vouched(view, authors))
        return LetterView(complete, letter, tally)

    @guarded
    def pledge(self, pledge_id: bytes, *, now_ms: int, limit: int = limits.MAX_TALLY_OBJECTS) -> PledgeView | None:
        """The pledge ``pledge_id`` and its progress as this node counts it, or None."""
        with self._reading():
            pledge = self.object(pledge_id)
            if not isinstance(pledge, Pledge):
                return None
            signatures, complete = self._signatures(pledge, limit)
            view = self.trust_view(pledge.board, now_ms=now_ms)
        authors = {s.author for s in signatures} | {pledge.author}
        progress = organizing.tally_pledge(pledge, signatures, blocked=self._blocked(view, authors),
                                           vouched=self._vouched(view, authors))
        return PledgeView(complete, pledge, progress)

    @guarded
    def objects_of(self, board: str, kind: str, *, limit: int = limits.MAX_TALLY_OBJECTS) -> list[organizing.Object]:
        """The objects of ``kind`` on ``board``, oldest first (at most ``limit``)."""
        return _objects(self._kind_rows(board, kind, limit))

    @guarded
    def pinned(self, board: str, *, now_ms: int) -> list[bytes]:
        """The ids pinned on ``board`` by the moderators this node follows there, newest pin first."""
        with self._reading():
            pins = [o for o in _objects(self._kind_rows(board, posts.KIND_PIN, limits.MAX_TALLY_OBJECTS))
                    if isinstance(o, Pin)]
            view = self.trust_view(board, now_ms=now_ms)
        return organizing.pinned(board, pins, view.followed)

    @guarded
    def translations(self, post_id: bytes, *, languages: Sequence[str] = ()) -> list[Translation]:
        """The translations of ``post_id``, in the reader's ``languages`` first."""
        with self._reading():
            row = self._conn.execute(f"SELECT {POST_COLUMNS} FROM posts WHERE id = ?", (post_id,)).fetchone()
            if row is None:
                return []
            original = PostRow(*row).to_post()
            found = [o for o in _objects(self._child_rows([post_id], posts.KIND_TRANSLATION,
                                                          limits.MAX_TALLY_OBJECTS))
                     if isinstance(o, Translation)]
        return organizing.translations_for(original, found, languages=languages)

    @guarded
    def names_on(self, board: str, authors: Collection[bytes], *,
                 scan: int = limits.MAX_TALLY_OBJECTS) -> dict[bytes, tuple[str, bytes]]:
        """``author -> (display name, profile post raw)`` from the newest profile each of
        ``authors`` published on ``board`` (among the ``scan`` newest profiles there)."""
        wanted = set(authors)
        found: dict[bytes, tuple[str, bytes]] = {}
        sql = ("SELECT author, body, raw FROM posts WHERE board = ? AND kind = 'profile'"
               " ORDER BY created_at_ms DESC, id DESC LIMIT ?")
        for author, body, raw in self._conn.execute(sql, (board, scan)):
            if author in wanted and author not in found:
                found[author] = (body, raw)
                if len(found) == len(wanted):
                    break
        return found

    @guarded
    def vouches_for(self, board: str, authors: Collection[bytes], *, now_ms: int) -> list[bytes]:
        """The raw statements by which moderators this node follows on ``board`` vouch for any of
        ``authors`` (what a recipient needs to see the vouched count for themselves)."""
        with self._reading():
            view = self.trust_view(board, now_ms=now_ms)
            ids = [s.id for s in view.statements if s.action == "vouch" and s.target in set(authors)]
            rows: list[bytes] = []
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                rows += [r[0] for r in self._conn.execute(
                    f"SELECT raw FROM posts WHERE id IN ({marks(len(part))})", part)]
        return rows

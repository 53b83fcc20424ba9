"""Collective action as signed objects: company reports, sign-on letters, threshold pledges,
pinned guides and translations (docs/protocol.md, "Collective action").

Every object is an ordinary signed post of its own kind, so it is gossiped, reconciled,
bundled and retracted like any post, and a node that does not know a kind keeps and forwards
it unchanged ("Objects of unknown kind"):

==================  ========  ===================================================================
kind                parent    body (protocol/fields.py)
==================  ========  ===================================================================
``report``          none      fields ``company``, ``practice``, [``city``], [``period``]; [text]
``corroboration``   report    empty or a free text: "this happened to me too"
``letter``          none      field ``title``; the letter's text
``signature``       letter    empty or one public line ("engineer, Seattle")
                    or pledge
``pledge``          none      fields ``action``, ``date``, ``threshold``; [text]
``pin``             post      empty: a moderator pins a post at the top of its board
``translation``     post      field ``lang``; the translated text
==================  ========  ===================================================================

Withdrawing anything is a retraction by its author.  This module turns such posts into plain
values and counts them.  **Counting is the point and the danger**: anyone can make a thousand
pseudonyms, so every count here says how many distinct pseudonyms there are *and* how many of
them are vouched for by the moderators the reader follows (protocol/trust.py); a pledge's
threshold is met "by all" and, separately, "by vouched pseudonyms".  Nothing here reads a clock.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from . import fields, posts
from .errors import LocalProtocolError
from .identity import SigningKey
from .posts import Post

__all__ = [
    "Report",
    "Corroboration",
    "Letter",
    "Signature",
    "Pledge",
    "Pin",
    "Translation",
    "parse_object",
    "company_key",
    "create_report",
    "create_corroboration",
    "create_letter",
    "create_signature",
    "create_pledge",
    "create_pin",
    "create_translation",
    "CompanyTally",
    "tally_companies",
    "SignatureTally",
    "tally_signatures",
    "PledgeTally",
    "tally_pledge",
    "pinned",
    "translations_for",
]


@dataclass(frozen=True, slots=True)
class Report:
    """A company report: one pseudonym's account of one practice at one company."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    company: str
    practice: str
    city: str | None
    period: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Corroboration:
    """Another pseudonym saying a report matches what they saw (``report`` is its id)."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    report: bytes
    text: str


@dataclass(frozen=True, slots=True)
class Letter:
    """A sign-on letter."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Signature:
    """A pseudonym signing a letter or joining a pledge (``target`` is its id)."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    target: bytes
    line: str


@dataclass(frozen=True, slots=True)
class Pledge:
    """"I will do ``action`` on ``date`` if at least ``threshold`` others pledge too."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    action: str
    date: str
    threshold: int
    text: str


@dataclass(frozen=True, slots=True)
class Pin:
    """A moderator's pin of a post (``target``) at the top of its board."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    target: bytes


@dataclass(frozen=True, slots=True)
class Translation:
    """A translation of a post (``original``) into ``lang``."""

    id: bytes
    board: str
    author: bytes
    created_at_ms: int
    original: bytes
    lang: str
    text: str


Object = Report | Corroboration | Letter | Signature | Pledge | Pin | Translation


def _parent(post: Post) -> bytes:
    if type(post.parent) is not bytes or len(post.parent) != posts.ID_BYTES:
        raise LocalProtocolError(f"a {post.kind} names a 32-byte parent")
    return post.parent


def parse_object(post: Post) -> Object:
    """The plain value a collective-action post makes.

    The body is checked again (a post read from a store is not trusted to have passed
    :func:`posts.decode_post`): BodyError outside the kind's grammar.  LocalProtocolError for a
    post of another kind, or one without the parent its kind needs.
    """
    head = (post.id, post.board, post.author, post.created_at_ms)
    kind = post.kind
    if kind == posts.KIND_REPORT:
        f, text = fields.check_report_body(post.body)
        return Report(*head, f["company"], f["practice"], f.get("city"), f.get("period"), text)
    if kind == posts.KIND_CORROBORATION:
        return Corroboration(*head, _parent(post), fields.check_corroboration_body(post.body))
    if kind == posts.KIND_LETTER:
        f, text = fields.check_letter_body(post.body)
        return Letter(*head, f["title"], text)
    if kind == posts.KIND_SIGNATURE:
        return Signature(*head, _parent(post), fields.check_signature_body(post.body))
    if kind == posts.KIND_PLEDGE:
        f, text = fields.check_pledge_body(post.body)
        return Pledge(*head, f["action"], f["date"], int(f["threshold"]), text)
    if kind == posts.KIND_PIN:
        fields.check_pin_body(post.body)
        return Pin(*head, _parent(post))
    if kind == posts.KIND_TRANSLATION:
        f, text = fields.check_translation_body(post.body)
        return Translation(*head, _parent(post), f["lang"], text)
    raise LocalProtocolError(f"parse_object needs a collective-action post, not a {kind!r}")


def company_key(name: str) -> str:
    """The key under which reports about one company are counted together.

    NFKC (full-width letters and digits become ASCII), case folded, runs of white space made one
    space, ends trimmed: "Example  Tech", "example tech" and "ＥＸＡＭＰＬＥ Tech" are one company.
    Different names of one company (an English and a Chinese one) stay apart: joining them is a
    reader's judgement, not a rule.
    """
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


# --- making new objects -------------------------------------------------------------------


def create_report(key: SigningKey, *, board: str, company: str, practice: str, created_at_ms: int,
                  city: str | None = None, period: str | None = None, text: str = "") -> Post:
    """Sign a company report; raises BodyError/BoardError when a field is outside the grammar."""
    values = {"company": company, "practice": practice}
    if city is not None:
        values["city"] = city
    if period is not None:
        values["period"] = period
    return posts.create_post(key, kind=posts.KIND_REPORT, board=board, body=fields.field_block(values, text),
                             created_at_ms=created_at_ms)


def create_corroboration(key: SigningKey, report: Post | Report, *, created_at_ms: int, text: str = "") -> Post:
    """Sign a corroboration of ``report`` (on the report's board)."""
    return posts.create_post(key, kind=posts.KIND_CORROBORATION, board=report.board, body=text,
                             parent=report.id, created_at_ms=created_at_ms)


def create_letter(key: SigningKey, *, board: str, title: str, text: str, created_at_ms: int) -> Post:
    """Sign a sign-on letter."""
    return posts.create_post(key, kind=posts.KIND_LETTER, board=board,
                             body=fields.field_block({"title": title}, text), created_at_ms=created_at_ms)


def create_signature(key: SigningKey, target: Post | Letter | Pledge, *, created_at_ms: int, line: str = "") -> Post:
    """Sign ``target`` (a letter, or a pledge to join it), with an optional public line."""
    return posts.create_post(key, kind=posts.KIND_SIGNATURE, board=target.board, body=line, parent=target.id,
                             created_at_ms=created_at_ms)


def create_pledge(key: SigningKey, *, board: str, action: str, date: str, threshold: int, created_at_ms: int,
                  text: str = "") -> Post:
    """Sign a threshold pledge: "I will do ``action`` on ``date`` if ``threshold`` others pledge"."""
    body = fields.field_block({"action": action, "date": date, "threshold": str(threshold)}, text)
    return posts.create_post(key, kind=posts.KIND_PLEDGE, board=board, body=body, created_at_ms=created_at_ms)


def create_pin(key: SigningKey, target: Post, *, created_at_ms: int) -> Post:
    """Sign a pin of ``target`` on its board (it counts for readers who follow ``key`` as a moderator)."""
    return posts.create_post(key, kind=posts.KIND_PIN, board=target.board, body="", parent=target.id,
                             created_at_ms=created_at_ms)


def create_translation(key: SigningKey, original: Post, *, lang: str, text: str, created_at_ms: int) -> Post:
    """Sign a translation of ``original`` into ``lang``."""
    return posts.create_post(key, kind=posts.KIND_TRANSLATION, board=original.board,
                             body=fields.field_block({"lang": lang}, text), parent=original.id,
                             created_at_ms=created_at_ms)


# --- counting -------------------------------------------------------------------------------


def _live(objects: Iterable[Object], retracted: Collection[bytes], blocked: Collection[bytes]) -> list[Object]:
    return [o for o in objects if o.id not in retracted and o.author not in blocked]


@dataclass(frozen=True, slots=True)
class CompanyTally:
    """What the reports about one company add up to on one board.

    ``pseudonyms`` counts distinct authors of reports and corroborations; ``vouched`` those of
    them in the reader's vouched set.  ``timeline`` is ``(created_at_ms, id, kind)``, oldest first.
    """

    key: str
    name: str
    board: str
    reports: int
    corroborations: int
    pseudonyms: int
    vouched: int
    practices: tuple[tuple[str, int], ...]
    cities: tuple[str, ...]
    timeline: tuple[tuple[int, bytes, str], ...]

    @property
    def rank(self) -> tuple[int, int, int]:
        """Sort key, larger first: vouched pseudonyms, then all pseudonyms, then reports."""
        return self.vouched, self.pseudonyms, self.reports


def tally_companies(reports: Iterable[Report], corroborations: Iterable[Corroboration], *,
                    retracted: Collection[bytes] = frozenset(), blocked: Collection[bytes] = frozenset(),
                    vouched: Collection[bytes] = frozenset()) -> list[CompanyTally]:
    """One :class:`CompanyTally` per (board, company), ranked (most vouched pseudonyms first).

    A retracted report or corroboration, and anything by a blocked author, does not count; a
    corroboration counts only when its report counts and is on the same board.  An author counts
    once per company however many reports and corroborations they signed.
    """
    live_reports = [r for r in _live(reports, retracted, blocked) if isinstance(r, Report)]
    by_id = {r.id: r for r in live_reports}
    groups: dict[tuple[str, str], tuple[list[Report], list[Corroboration]]] = {}
    for r in live_reports:
        groups.setdefault((r.board, company_key(r.company)), ([], []))[0].append(r)
    for c in _live(corroborations, retracted, blocked):
        assert isinstance(c, Corroboration)
        target = by_id.get(c.report)
        if target is not None and target.board == c.board:
            groups[(target.board, company_key(target.company))][1].append(c)
    tallies = []
    for (board, key), (rs, cs) in groups.items():
        authors = {r.author for r in rs} | {c.author for c in cs}
        # The name shown is the spelling most reports use (ties: the oldest report's).
        names = Counter(r.company for r in rs)
        first = min(rs, key=lambda r: (r.created_at_ms, r.id))
        name = max(names, key=lambda n: (names[n], n == first.company))
        practices = Counter(r.practice for r in rs)
        timeline = sorted([(r.created_at_ms, r.id, posts.KIND_REPORT) for r in rs]
                          + [(c.created_at_ms, c.id, posts.KIND_CORROBORATION) for c in cs])
        tallies.append(CompanyTally(
            key, name, board, len(rs), len(cs), len(authors), len(authors & set(vouched)),
            tuple(sorted(practices.items(), key=lambda kv: (-kv[1], kv[0]))),
            tuple(sorted({r.city for r in rs if r.city})), tuple(timeline)))
    tallies.sort(key=lambda t: (-t.rank[0], -t.rank[1], -t.rank[2], t.key, t.board))
    return tallies


@dataclass(frozen=True, slots=True)
class SignatureTally:
    """The signatures of one letter or pledge: each signer once, with their newest public line.

    ``signers`` is ``(author, line, created_at_ms, signature id)``, oldest signature first.
    """

    target: bytes
    total: int
    vouched: int
    signers: tuple[tuple[bytes, str, int, bytes], ...]


def tally_signatures(target: Letter | Pledge, signatures: Iterable[Signature], *,
                     retracted: Collection[bytes] = frozenset(), blocked: Collection[bytes] = frozenset(),
                     vouched: Collection[bytes] = frozenset()) -> SignatureTally:
    """Count the signatures of ``target``.

    A signature counts when it names ``target``, is on its board, is not retracted and its
    author is not blocked.  A signer who signed twice counts once, with the newest line; one
    who withdrew their only signature (retracted it) does not count.
    """
    newest: dict[bytes, Signature] = {}
    first_at: dict[bytes, int] = {}
    for s in _live(signatures, retracted, blocked):
        assert isinstance(s, Signature)
        if s.target != target.id or s.board != target.board:
            continue
        held = newest.get(s.author)
        if held is None or (s.created_at_ms, s.id) > (held.created_at_ms, held.id):
            newest[s.author] = s
        first_at[s.author] = min(first_at.get(s.author, s.created_at_ms), s.created_at_ms)
    signers = sorted(((a, s.line, first_at[a], s.id) for a, s in newest.items()), key=lambda row: (row[2], row[3]))
    vouched_set = set(vouched)
    return SignatureTally(target.id, len(signers), sum(1 for a in newest if a in vouched_set), tuple(signers))


@dataclass(frozen=True, slots=True)
class PledgeTally:
    """A pledge's progress: ``others`` pledgers besides its author, how many are vouched, and
    whether the threshold is met by all of them and by the vouched ones alone."""

    pledge: bytes
    threshold: int
    others: int
    vouched: int
    met: bool
    met_by_vouched: bool
    pledgers: frozenset[bytes]


def tally_pledge(pledge: Pledge, signatures: Iterable[Signature], *, retracted: Collection[bytes] = frozenset(),
                 blocked: Collection[bytes] = frozenset(), vouched: Collection[bytes] = frozenset()) -> PledgeTally:
    """The progress of ``pledge``.  Its author is a pledger without signing; a retracted pledge
    is never met (the caller passes the pledge's own retraction in ``retracted``)."""
    tally = tally_signatures(pledge, signatures, retracted=retracted, blocked=blocked, vouched=vouched)
    others = {row[0] for row in tally.signers} - {pledge.author}
    vouched_others = others & set(vouched)
    live = pledge.id not in retracted and pledge.author not in blocked
    return PledgeTally(pledge.id, pledge.threshold, len(others), len(vouched_others),
                       live and len(others) >= pledge.threshold, live and len(vouched_others) >= pledge.threshold,
                       frozenset(others | {pledge.author}) if live else frozenset())


def pinned(board: str, pins: Iterable[Pin], moderators: Collection[bytes], *,
           retracted: Collection[bytes] = frozenset()) -> list[bytes]:
    """The ids pinned on ``board`` by the moderators a reader follows there, newest pin first,
    each once.  A pin by anyone else, or retracted, does not count."""
    seen: dict[bytes, tuple[int, bytes]] = {}
    for pin in pins:
        if pin.board != board or pin.author not in moderators or pin.id in retracted:
            continue
        order = (pin.created_at_ms, pin.id)
        if pin.target not in seen or order > seen[pin.target]:
            seen[pin.target] = order
    return [target for target, _ in sorted(seen.items(), key=lambda kv: kv[1], reverse=True)]


def translations_for(original: Post, translations: Iterable[Translation], *, languages: Iterable[str] = (),
                     retracted: Collection[bytes] = frozenset(),
                     blocked: Collection[bytes] = frozenset()) -> list[Translation]:
    """The translations of ``original`` (same board, not retracted, author not blocked), those in
    the reader's ``languages`` first (in that order, matched on the primary subtag: ``zh`` matches
    ``zh-Hans``), then the rest; within a language, the oldest first."""
    prefs = [lang.split("-")[0].lower() for lang in languages]

    def rank(t: Translation) -> tuple[int, int, bytes]:
        primary = t.lang.split("-")[0].lower()
        return (prefs.index(primary) if primary in prefs else len(prefs), t.created_at_ms, t.id)

    live = [t for t in _live(translations, retracted, blocked)
            if isinstance(t, Translation) and t.original == original.id and t.board == original.board]
    return sorted(live, key=rank)

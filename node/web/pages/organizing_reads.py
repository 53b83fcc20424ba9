"""What the board, boards-list and thread pages show of collective action (pinned guides, met
pledges, translations, the pin buttons), and the reads the collective-action pages share
(node/web/pages/organizing.py).  Kept apart from those pages so that the board and thread
pages can import it without importing the pages that link back to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dazibao.protocol import limits, organizing, posts
from dazibao.protocol.organizing import Pin, Pledge, Report, Signature

from ...store import Store
from ..base import UI, WebUI, state

__all__ = [
    "LANGUAGES", "Company", "board_extras", "boards_met", "thread_extras", "met_pledges", "now_ms_of", "read_company",
    "vouched_of", "read_list", "read_letter", "own_signatures", "read_pins", "local_keys", "translations_of",
    "pins_of",
]

#: The languages offered by the translate form (any BCP 47 tag is accepted from other nodes).
LANGUAGES = (("zh-Hans", "中文（简体）"), ("zh-Hant", "中文（繁體）"), ("en", "English"), ("es", "Español"),
             ("fr", "Français"), ("ar", "العربية"), ("ru", "Русский"), ("ja", "日本語"), ("ko", "한국어"),
             ("vi", "Tiếng Việt"))


# --- reading ----------------------------------------------------------------------------------


def now_ms_of(ui: WebUI) -> int:
    return ui.core.now_ms()


@dataclass(frozen=True, slots=True)
class Company:
    """One company of a board as the companies and company pages show it."""

    tally: organizing.CompanyTally
    reports: tuple[Report, ...]
    #: Report id -> its corroborations (author, created_at_ms), oldest first.
    corroborations: dict[bytes, list[tuple[bytes, int]]]


def read_company(store: Store, board: str, key: str, now_ms: int) -> tuple[Company | None, set[bytes], bool]:
    """The company ``key`` of ``board``, the vouched authors among its pseudonyms, and
    whether every object was counted."""
    found = store.companies(board, now_ms=now_ms)
    tally = next((c for c in found.companies if c.key == key), None)
    if tally is None:
        return None, set(), found.complete
    ids = {pid for _, pid, _ in tally.timeline}
    reports = tuple(r for r in found.reports if r.id in ids)
    corroborations: dict[bytes, list[tuple[bytes, int]]] = {r.id: [] for r in reports}
    for _, pid, kind in tally.timeline:
        if kind != posts.KIND_CORROBORATION:
            continue
        obj = store.object(pid)
        if isinstance(obj, organizing.Corroboration) and obj.report in corroborations:
            corroborations[obj.report].append((obj.author, obj.created_at_ms))
    authors = {r.author for r in reports} | {a for cs in corroborations.values() for a, _ in cs}
    view = store.trust_view(board, now_ms=now_ms)
    return Company(tally, reports, corroborations), {a for a in authors if view.vouched(a)}, found.complete


def vouched_of(store: Store, board: str, authors: Collection[bytes], now_ms: int) -> set[bytes]:
    view = store.trust_view(board, now_ms=now_ms)
    return {a for a in authors if view.vouched(a)}


def read_list(store: Store, board: str, kind: str, now_ms: int) -> list[object]:
    """The newest ``ui_organizing_items`` letters or pledges of ``board`` with their counts."""
    objects = store.objects_of(board, kind)[-limits.UI_ORGANIZING_ITEMS:]
    read = store.letter if kind == posts.KIND_LETTER else store.pledge
    views = [read(o.id, now_ms=now_ms) for o in reversed(objects)]
    return [v for v in views if v is not None]


def read_letter(store: Store, letter_id: bytes, now_ms: int) -> tuple[object, set[bytes]] | None:
    view = store.letter(letter_id, now_ms=now_ms)
    if view is None:
        return None
    return view, vouched_of(store, view.letter.board, [row[0] for row in view.signatures.signers], now_ms)


def own_signatures(store: Store, target: bytes, keys: Collection[bytes]) -> dict[bytes, list[bytes]]:
    """author -> ids of the signatures of ``target`` by ``keys`` (what "withdraw" retracts)."""
    mine: dict[bytes, list[bytes]] = {}
    if not keys:
        return mine
    obj = store.object(target)
    if obj is None:
        return mine
    for s in store.objects_of(obj.board, posts.KIND_SIGNATURE):
        if isinstance(s, Signature) and s.target == target and s.author in keys:
            mine.setdefault(s.author, []).append(s.id)
    return mine


def met_pledges(store: Store, boards: Sequence[str], keys: Collection[bytes], now_ms: int) -> list[Pledge]:
    """The pledges on ``boards`` that one of ``keys`` wrote or joined and that are met (by all
    pledgers), newest first; at most ``ui_organizing_items`` pledges checked per board."""
    if not keys:
        return []
    met: list[Pledge] = []
    for board in boards:
        joined = {s.target for s in store.objects_of(board, posts.KIND_SIGNATURE)
                  if isinstance(s, Signature) and s.author in keys}
        pledges = [p for p in store.objects_of(board, posts.KIND_PLEDGE)
                   if isinstance(p, Pledge) and (p.author in keys or p.id in joined)]
        for p in pledges[-limits.UI_ORGANIZING_ITEMS:]:
            view = store.pledge(p.id, now_ms=now_ms)
            if view is not None and view.progress.met:
                met.append(view.pledge)
    return sorted(met, key=lambda p: (p.created_at_ms, p.id), reverse=True)


def read_pins(store: Store, board: str, now_ms: int) -> list[tuple[bytes, str]]:
    """``(post id, its first line)`` of the posts pinned on ``board`` for this node's reader."""
    shown = []
    for pid in store.pinned(board, now_ms=now_ms)[:limits.UI_ORGANIZING_ITEMS]:
        row = store.get(pid)
        if row is not None:
            shown.append((pid, row.body.split("\n", 1)[0][:200]))
    return shown


async def local_keys(ui: WebUI) -> frozenset[bytes]:
    local = await asyncio.to_thread(ui.member_keys().list)
    return frozenset(p.public_key for p in local)


async def board_extras(request: web.Request, board: str, *, first_page: bool = True) -> dict[str, Any]:
    """What a board page shows of collective action: its pinned guides and, in the member UI, the
    met pledges of this node's pseudonyms on it; on the board's first page only (each reads the
    board's objects of one kind)."""
    ui = request.app[UI]
    if not first_page:
        return {"pins": [], "met": []}
    now = now_ms_of(ui)
    # Pins are public (signed posts by the moderators the node follows): the public view shows
    # them too; met pledges are about this node's own pseudonyms, shown to its member only.
    pins = await ui.core.reads.call(read_pins, board, now)
    if ui.public:
        return {"pins": pins, "met": []}
    met = await ui.core.reads.call(met_pledges, [board], await local_keys(ui), now)
    return {"pins": pins, "met": met}


async def boards_met(request: web.Request, boards: Sequence[str]) -> list[Pledge]:
    """The met pledges of this node's pseudonyms on the first ``ui_organizing_items`` of ``boards``."""
    ui = request.app[UI]
    if ui.public:
        return []
    keys = await local_keys(ui)
    return await ui.core.reads.call(met_pledges, list(boards)[:limits.UI_ORGANIZING_ITEMS], keys, now_ms_of(ui))


async def thread_extras(request: web.Request, post_id: bytes, *, first_page: bool = True,
                        reply_ids: Sequence[bytes] = ()) -> dict[str, Any]:
    """What a thread page shows of collective action: the post's translations (in the UI
    language first) and, for a moderator of the board, whether their pseudonym pinned it.

    Only the thread's first page looks them up: finding a post's translations reads every
    child of the post, which on a thread of many thousands of replies is too much to do for
    each of its pages.  The replies shown (``reply_ids``) have their translations on every page:
    a reply has few children."""
    ui = request.app[UI]
    lang = state(request).lang
    of_replies = await ui.core.reads.call(translations_of, reply_ids, [lang]) if reply_ids else {}
    if not first_page:
        return {"translations": [], "pinned_by": [], "languages": LANGUAGES, "author_view": ui.authors.view,
                "organizing_shown": False, "reply_translations": of_replies}
    found = await ui.core.reads.call(Store.translations, post_id, languages=[lang])
    pinned_by: list[bytes] = []
    if not ui.public:
        keys = await local_keys(ui)
        pinned_by = await ui.core.reads.call(pins_of, post_id, keys)
    return {"translations": found, "pinned_by": pinned_by, "languages": LANGUAGES, "author_view": ui.authors.view,
            "organizing_shown": True, "reply_translations": of_replies}


def translations_of(store: Store, post_ids: Sequence[bytes], languages: Sequence[str]) -> dict[bytes, list[Any]]:
    """``post id -> its translations`` for those of ``post_ids`` that have any.

    Which posts have a translation at all is asked once for the whole page; only those are
    read one by one (three reads each, where a thread page of a hundred replies without any
    translation used to make three hundred)."""
    having = store.parents_with_children(post_ids, posts.KIND_TRANSLATION)
    found = {pid: store.translations(pid, languages=languages) for pid in post_ids if pid in having}
    return {pid: ts for pid, ts in found.items() if ts}


def pins_of(store: Store, post_id: bytes, keys: Collection[bytes]) -> list[bytes]:
    """Which of ``keys`` pinned ``post_id`` (ids of their pins)."""
    row = store.get(post_id)
    if row is None or not keys:
        return []
    return [p.id for p in store.objects_of(row.board, posts.KIND_PIN)
            if isinstance(p, Pin) and p.target == post_id and p.author in keys]


# --- writing ----------------------------------------------------------------------------------

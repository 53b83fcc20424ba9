"""The collective-action pages of the static copy (`dazibao publish`, node/publish.py).

For each published board, beside its thread pages::

    companies-<slug>.html          the companies reported on the board, ranked
    companies-<slug>.csv, .json    one row per report, for journalists (node/organizing_export.py)
    company-<slug>-<hash>.html     one company: its counts, reports and corroborations
    letters-<slug>.html            the board's sign-on letters and threshold pledges
    letter-<id>.html               one letter: its text, its counts and its signers
    pledge-<id>.html               one pledge: its action, date, threshold and progress

Every count is two figures, all pseudonyms and those vouched for by the moderators this node
follows on the board (the operator's choice, and the pages say so); every row shows the id of
the signed post it comes from, which the bundle beside the pages lets anyone check.  The pinned
posts of a board and the translations of a post are read here too, for the board and thread
pages.  Every read is one bounded read of the store (``max_tally_objects``), and at most
``publish_organizing_pages`` companies (the highest-ranked), letters and pledges (the newest)
of a board get pages; the lists say how many are left out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jinja2

from dazibao.protocol import limits, organizing, posts
from dazibao.protocol.organizing import Letter, Pledge, Report, Translation

from .organizing_export import companies_csv, company_rows
from .store import Store
from .web.authors import AuthorView

__all__ = ["NAME_PATTERNS", "Organizing", "read_organizing", "write_organizing"]

#: The file names this module makes (for the manifest's check in node/publish.py).
NAME_PATTERNS = (
    r"companies-[a-z0-9-]{1,80}\.(?:html|csv|json)",
    r"company-[a-z0-9-]{1,80}-[0-9a-f]{10}\.html",
    r"letters-[a-z0-9-]{1,80}\.html",
    r"(?:letter|pledge)-[0-9a-f]{64}\.html",
)


def companies_page(slug: str) -> str:
    return f"companies-{slug}.html"


def letters_page(slug: str) -> str:
    return f"letters-{slug}.html"


def company_page(slug: str, key: str) -> str:
    # The company key is free text: the file name carries a digest of it, never the text.
    return f"company-{slug}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]}.html"


def letter_page(letter_id: bytes) -> str:
    return f"letter-{letter_id.hex()}.html"


def pledge_page(pledge_id: bytes) -> str:
    return f"pledge-{pledge_id.hex()}.html"


@dataclass
class Organizing:
    """What one board holds of collective action, read in the copy's one snapshot."""

    companies: list[dict[str, Any]]
    complete: bool  # every report and corroboration was counted
    lists_complete: bool  # every letter and pledge was read, and each one's signatures counted
    letters: list[Any]  # LetterView, the newest publish_organizing_pages, oldest first
    pledges: list[Any]  # PledgeView, likewise
    letters_left_out: int
    pledges_left_out: int
    pinned: list[bytes]
    translations: dict[bytes, list[Translation]]

    @property
    def paged_companies(self) -> list[dict[str, Any]]:
        """The companies that get a page: the highest-ranked ``publish_organizing_pages``."""
        return self.companies[:limits.PUBLISH_ORGANIZING_PAGES]

    def files(self, slug: str) -> set[str]:
        names = {companies_page(slug), f"companies-{slug}.csv", f"companies-{slug}.json", letters_page(slug)}
        names.update(company_page(slug, c["key"]) for c in self.paged_companies)
        names.update(letter_page(v.letter.id) for v in self.letters)
        names.update(pledge_page(v.pledge.id) for v in self.pledges)
        return names


def read_organizing(store: Store, board: str, *, now_ms: int, lang: str) -> Organizing:
    """Read ``board``'s companies, letters, pledges, pins and translations (inside the caller's
    ``store.snapshot()``).  Raises StoreError for the database."""
    rows, complete = company_rows(store, board, now_ms=now_ms)
    letter_objects = store.objects_of(board, posts.KIND_LETTER)
    pledge_objects = store.objects_of(board, posts.KIND_PLEDGE)
    lists_complete = max(len(letter_objects), len(pledge_objects)) < limits.MAX_TALLY_OBJECTS
    shown = limits.PUBLISH_ORGANIZING_PAGES
    letters = []
    for obj in letter_objects[-shown:]:
        view = store.letter(obj.id, now_ms=now_ms) if isinstance(obj, Letter) else None
        if view is not None:
            letters.append(view)
            lists_complete = lists_complete and view.complete
    pledges = []
    for obj in pledge_objects[-shown:]:
        pview = store.pledge(obj.id, now_ms=now_ms) if isinstance(obj, Pledge) else None
        if pview is not None:
            pledges.append(pview)
            lists_complete = lists_complete and pview.complete
    # One read for every translation on the board, grouped by original, the copy's language first.
    found = [t for t in store.objects_of(board, posts.KIND_TRANSLATION) if isinstance(t, Translation)]
    prefs = [lang.split("-")[0]]
    grouped: dict[bytes, list[Translation]] = {}
    for t in found:
        grouped.setdefault(t.original, []).append(t)
    for original, items in grouped.items():
        stub = _Original(original, board)
        grouped[original] = organizing.translations_for(stub, items, languages=prefs)  # type: ignore[arg-type]
    return Organizing(rows, complete, lists_complete, letters, pledges, max(0, len(letter_objects) - shown),
                      max(0, len(pledge_objects) - shown), store.pinned(board, now_ms=now_ms), grouped)


@dataclass(frozen=True)
class _Original:
    # translations_for reads only the original's id and board.
    id: bytes
    board: str


def translation_views(items: list[Translation], authors: Callable[[bytes], AuthorView],
                      when: Callable[[int], Any]) -> list[dict[str, Any]]:
    return [{"id": t.id.hex(), "lang": t.lang, "text": t.text, "author": authors(t.author),
             "when": when(t.created_at_ms)} for t in items]


def write_organizing(store: Store, write: Callable[[str, bytes], None], env: jinja2.Environment,
                     common: dict[str, Any], board_view: dict[str, Any], slug: str, org: Organizing,
                     authors: Callable[[bytes], AuthorView], when: Callable[[int], Any]) -> None:
    """Write the collective-action files of one board (see the module docstring)."""
    base = dict(common, board=board_view, complete=org.complete,
                companies_href=companies_page(slug), letters_href=letters_page(slug))
    reports_by_id: dict[str, dict[str, Any]] = {}
    companies = []
    for c in org.paged_companies:
        companies.append(dict(c, href=company_page(slug, c["key"])))
        for r in c["report_rows"]:
            reports_by_id[r["id"]] = r
    write(companies_page(slug), env.get_template("companies.html").render(
        base, companies=companies, left_out=len(org.companies) - len(companies)).encode("utf-8"))
    write(f"companies-{slug}.csv", companies_csv(org.companies).encode("utf-8"))
    doc = {"board": board_view["name"], "complete": org.complete, "companies": org.companies}
    write(f"companies-{slug}.json", (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    company_template = env.get_template("company.html")
    for c in companies:
        items = []
        # The newest items when a company has more than a page shows (oldest first on the page).
        shown = c["items"][-limits.PUBLISH_ORGANIZING_PAGES:]
        for item in shown:
            obj = store.object(bytes.fromhex(item["id"]))
            author = authors(obj.author) if obj is not None else None
            row = reports_by_id.get(item["id"])
            items.append({
                "id": item["id"], "kind": item["kind"], "when": when(item["created_at_ms"]), "author": author,
                "report": row, "text": obj.text if isinstance(obj, (Report, organizing.Corroboration)) else "",
                "parent": obj.report.hex() if isinstance(obj, organizing.Corroboration) else None,
                "translations": translation_views(org.translations.get(bytes.fromhex(item["id"]), []),
                                                  authors, when),
            })
        html = company_template.render(base, company=c, items=items, left_out=len(c["items"]) - len(shown))
        write(c["href"], html.encode("utf-8"))
    letters = [_letter_view(v, authors, when, org) for v in org.letters]
    pledges = [_pledge_view(v, authors, when) for v in org.pledges]
    lists = dict(base, complete=org.lists_complete)
    write(letters_page(slug), env.get_template("letters.html").render(
        lists, letters=letters, pledges=pledges, letters_left_out=org.letters_left_out,
        pledges_left_out=org.pledges_left_out).encode("utf-8"))
    for view in letters:
        write(view["href"], env.get_template("letter.html").render(base, letter=view).encode("utf-8"))
    for pview in pledges:
        write(pview["href"], env.get_template("pledge.html").render(base, pledge=pview).encode("utf-8"))


def _letter_view(v: Any, authors: Callable[[bytes], AuthorView], when: Callable[[int], Any],
                 org: Organizing) -> dict[str, Any]:
    letter: Letter = v.letter
    return {
        "id": letter.id.hex(), "href": letter_page(letter.id), "title": letter.title, "text": letter.text,
        "author": authors(letter.author), "when": when(letter.created_at_ms), "complete": v.complete,
        "total": v.signatures.total, "vouched": v.signatures.vouched,
        "signers": [{"author": authors(a), "line": line, "when": when(at), "id": sid.hex()}
                    for a, line, at, sid in v.signatures.signers],
        "translations": translation_views(org.translations.get(letter.id, []), authors, when),
    }


def _pledge_view(v: Any, authors: Callable[[bytes], AuthorView], when: Callable[[int], Any]) -> dict[str, Any]:
    pledge: Pledge = v.pledge
    progress: organizing.PledgeTally = v.progress
    return {
        "id": pledge.id.hex(), "href": pledge_page(pledge.id), "action": pledge.action, "date": pledge.date,
        "threshold": pledge.threshold, "text": pledge.text, "author": authors(pledge.author),
        "when": when(pledge.created_at_ms), "complete": v.complete, "others": progress.others,
        "vouched": progress.vouched, "met": progress.met, "met_by_vouched": progress.met_by_vouched,
    }

"""The company reports of one board as rows for journalists: the static copy's
``companies-*.csv`` and ``companies-*.json`` (node/publish_organizing.py), the same rows and
columns as `dazibao report companies --csv`/``--json`` (tests/mirror/test_publish_organizing.py
compares them).

Every row carries the id of the signed post it comes from, so a reader can check it on any
node; ``vouched`` is this node's view (the moderators it follows on the board), not a fact about
the report.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from dazibao.protocol import organizing
from dazibao.protocol.identity import fingerprint

from .store import Store

__all__ = ["CSV_HEADER", "company_rows", "companies_csv", "utc"]

#: The columns of the CSV, one row per report.
CSV_HEADER = ("company", "practice", "city", "period", "created_at_utc", "vouched", "fingerprint", "post_id")


def utc(ms: int) -> str:
    """A time in milliseconds as a UTC date and time, to the second."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def company_rows(store: Store, board: str, *, now_ms: int) -> tuple[list[dict[str, Any]], bool]:
    """The companies reported on ``board``, ranked, each with its counts, its items and its
    report rows; and whether every report was counted (False: the figures are lower bounds).

    Raises StoreError for the database.
    """
    found = store.companies(board, now_ms=now_ms)
    trust = store.trust_view(board, now_ms=now_ms)
    by_key: dict[str, list[organizing.Report]] = {}
    for r in found.reports:
        by_key.setdefault(organizing.company_key(r.company), []).append(r)
    rows = []
    for c in found.companies:
        rows.append({
            "company": c.name, "key": c.key, "board": c.board, "reports": c.reports,
            "corroborations": c.corroborations, "pseudonyms": c.pseudonyms, "vouched": c.vouched,
            "practices": dict(c.practices), "cities": list(c.cities),
            "items": [{"id": pid.hex(), "kind": kind, "created_at_ms": at} for at, pid, kind in c.timeline],
            "report_rows": [{"id": r.id.hex(), "company": r.company, "practice": r.practice, "city": r.city or "",
                             "period": r.period or "", "author": r.author.hex(), "fingerprint": fingerprint(r.author),
                             "vouched": trust.vouched(r.author), "created_at_ms": r.created_at_ms, "text": r.text}
                            for r in by_key.get(c.key, [])],
        })
    return rows, found.complete


def companies_csv(rows: list[dict[str, Any]]) -> str:
    """``rows`` (from :func:`company_rows`) as CSV text: :data:`CSV_HEADER`, then one line per report.

    A cell that a spreadsheet would run as a formula (one starting with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return) gets a leading ``'``, so that it is shown as text: a
    report's author chooses the company name, and a formula could fetch an address and tell its
    owner who opened the file.  The JSON carries every value unchanged.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for c in rows:
        for r in c["report_rows"]:
            writer.writerow([_cell(r["company"]), _cell(r["practice"]), _cell(r["city"]), _cell(r["period"]),
                             utc(r["created_at_ms"]), "yes" if r["vouched"] else "no", r["fingerprint"], r["id"]])
    return out.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value

"""Retention for mirrors: forget the posts of chosen boards once they are older than N days.

A mirror that carries a busy board for a long time may not want to keep it forever (disk, or
what a seized disk would reveal).  ``retention_days`` (docs/running.md) maps boards to a number
of days; 0, or a board not named, keeps everything.  Purged posts are tombstoned
(``Store.purge_older_than``), so gossip and bundles can never bring them back here.

Age is the post's ``created_at_ms``, the time its author signed: a mirror cannot know when a
post first appeared anywhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from .service import NodeCore
from .store import Store, StoreError

__all__ = ["DAY_MS", "RETENTION_INTERVAL_S", "RetentionReport", "apply_retention", "retention_loop"]

log = logging.getLogger("dazibao.node")

DAY_MS = 86_400_000
#: How often a running node applies retention (and once when it starts).
RETENTION_INTERVAL_S = 3600.0
# Tombstones read back per call when collecting the keys a purge removed.
_CHANGES_PAGE = 10_000


@dataclass
class RetentionReport:
    """How many posts were purged per board, and the reconciliation keys that are gone."""

    purged: dict[str, int] = field(default_factory=dict)
    removed_keys: list[bytes] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.purged.values())


def apply_retention(store: Store, retention: Mapping[str, int], now_ms: int) -> RetentionReport:
    """Purge, on each board of ``retention`` with a positive number of days, the posts created
    more than that many days before ``now_ms``.

    Returns the keys removed from the store since the call began -- by the purge, and by any
    retraction another process stored meanwhile -- so that a caller holding an in-memory index
    of keys can drop them (removing a key twice is harmless).  Raises StoreError.
    """
    report = RetentionReport()
    _, tomb_seq = store.watermark()
    for board, days in sorted(retention.items()):
        if days <= 0:
            continue
        cutoff_ms = now_ms - days * DAY_MS
        count = store.purge_older_than(board, cutoff_ms, now_ms=now_ms)
        if count:
            report.purged[board] = count
    if report.purged:
        # A purge tombstones what it deletes; reading the tombstones back gives their keys.
        # post_seq far ahead: only removals are wanted here, not posts.
        while True:
            changes = store.changes_since(2**62, tomb_seq, limit=_CHANGES_PAGE)
            report.removed_keys.extend(changes.removed_keys)
            tomb_seq = changes.tomb_seq
            if changes.complete:
                break
    return report


async def retention_loop(core: NodeCore, retention: Mapping[str, int], *,
                         interval_s: float = RETENTION_INTERVAL_S) -> None:
    """Apply retention at once, then every ``interval_s``, for a running node (``NodeCore``).

    Returns at once when no board has a retention period.
    """
    if not any(days > 0 for days in retention.values()):
        return
    while True:
        try:
            report = await core.db.call(apply_retention, dict(retention), core.now_ms())
        except StoreError as exc:  # a locked or full disk: try again at the next round
            log.warning("retention: %s", exc)
        else:
            await core.forget_keys(report.removed_keys)
            if report.purged:
                log.info("retention: purged %s",
                         ", ".join(f"{n} from {b!r}" for b, n in sorted(report.purged.items())))
        await asyncio.sleep(interval_s)

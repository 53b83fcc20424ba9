"""The store's peers room: the peers a node syncs with, its local pseudonyms, and a small
key/value table (``meta``)."""

from __future__ import annotations

import sqlite3
from typing import Any

from .connection import StoreBase, guarded
from .rows import IdentityExistsError, IdentityRow, PeerRow

__all__ = ["PeersRoom", "PEER_SOURCES"]

PEER_SOURCES = ("config", "cli", "pex")
# A peer added again from a more deliberate source is upgraded (config > cli > pex), so a
# peer the member typed in is never treated as one merely learned by peer exchange.
_PEER_SOURCE_RANK = {"pex": 0, "cli": 1, "config": 2}
_MAX_ERROR_CHARS = 500


class PeersRoom(StoreBase):
    """Peers, identities and meta."""

    @guarded
    def add_peer(self, url: str, source: str, now_ms: int) -> bool:
        """Remember a peer; True if it was new.  Adding a known peer only upgrades its source."""
        if source not in PEER_SOURCES:
            raise ValueError(f"peer source must be one of {PEER_SOURCES}, not {source!r}")
        with self._write() as conn:
            row = conn.execute("SELECT source FROM peers WHERE url = ?", (url,)).fetchone()
            if row is None:
                conn.execute("INSERT INTO peers (url, source, added_at_ms) VALUES (?, ?, ?)", (url, source, now_ms))
                return True
            if _PEER_SOURCE_RANK[source] > _PEER_SOURCE_RANK.get(row[0], -1):
                conn.execute("UPDATE peers SET source = ? WHERE url = ?", (source, url))
            return False

    @guarded
    def list_peers(self) -> list[PeerRow]:
        """Every known peer, by URL."""
        sql = (
            "SELECT url, source, added_at_ms, last_ok_at_ms, last_error, last_error_at_ms, failures,"
            " next_try_at_ms, posts_received, posts_rejected FROM peers ORDER BY url"
        )
        return [PeerRow(*row) for row in self._conn.execute(sql)]

    @guarded
    def record_peer_success(
        self, url: str, now_ms: int, received: int, rejected: int, *, next_try_at_ms: int = 0
    ) -> bool:
        """Note a successful exchange: clears the failure count, adds the post counts.  False if unknown."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE peers SET last_ok_at_ms = ?, failures = 0, last_error = NULL, next_try_at_ms = ?,"
                " posts_received = posts_received + ?, posts_rejected = posts_rejected + ? WHERE url = ?",
                (now_ms, next_try_at_ms, received, rejected, url),
            )
            return cur.rowcount > 0

    @guarded
    def record_peer_failure(self, url: str, now_ms: int, error: str, next_try_at_ms: int) -> bool:
        """Note a failed exchange and when to try again.  False if the peer is unknown."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE peers SET failures = failures + 1, last_error = ?, last_error_at_ms = ?,"
                " next_try_at_ms = ? WHERE url = ?",
                (error[:_MAX_ERROR_CHARS], now_ms, next_try_at_ms, url),
            )
            return cur.rowcount > 0

    @guarded
    def remove_peer(self, url: str) -> bool:
        """Forget a peer; True if it was known."""
        with self._write() as conn:
            return conn.execute("DELETE FROM peers WHERE url = ?", (url,)).rowcount > 0

    # --- identities and meta ---------------------------------------------------------------

    @guarded
    def add_identity(self, name: str, public_key: bytes, now_ms: int) -> None:
        """Record a local pseudonym.  Raises IdentityExistsError if the name or key is taken."""
        try:
            with self._write(durable=True) as conn:
                conn.execute(
                    "INSERT INTO identities (name, public_key, created_at_ms) VALUES (?, ?, ?)",
                    (name, public_key, now_ms),
                )
                # Local pseudonyms are followed on every board: the trust views change.
                conn.execute("INSERT INTO meta (key, value) VALUES ('trust_epoch', 1)"
                             " ON CONFLICT (key) DO UPDATE SET value = coalesce(value, 0) + 1")
                self._forget_caches()
        except sqlite3.IntegrityError as err:
            if "UNIQUE" not in str(err):
                raise
            raise IdentityExistsError(f"a pseudonym with the name {name!r} or the same key already exists") from err

    @guarded
    def list_identities(self) -> list[IdentityRow]:
        """The local pseudonyms, by name."""
        sql = "SELECT name, public_key, created_at_ms FROM identities ORDER BY name"
        return [IdentityRow(*row) for row in self._conn.execute(sql)]

    @guarded
    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @guarded
    def set_meta(self, key: str, value: str | int | bytes | None) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        with self._write() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


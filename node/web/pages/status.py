"""The node status page (``/status``): listeners, counts, rejected posts, peers and their health."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...store import ModeratorRow, PeerRow, Store
from ..base import UI
from ..i18n import N_, Msg
from ..moderation import ModeratorView
from .common import authors_of

__all__ = ["status_page"]


def _peer_view(row: PeerRow, now_ms: int) -> dict[str, Any]:
    if row.failures:
        state = "failing"
    elif row.last_ok_at_ms:
        state = "ok"
    else:
        state = "new"
    return {"row": row, "state": state, "waiting": row.next_try_at_ms > now_ms}


async def status_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    core = ui.core
    peers: list[PeerRow] = await core.db.call(Store.list_peers)
    now = core.now_ms()
    stored = await core.reads.call(Store.post_count)
    boards = await core.reads.call(Store.board_count)
    last_sync = max((p.last_ok_at_ms or 0 for p in peers), default=0)
    rows: list[ModeratorRow] = await core.db.call(Store.moderators)
    refusals = await core.db.call(Store.refusal_counts)
    authors = await authors_of(request)
    moderators: dict[str, list[ModeratorView]] = {}
    for r in sorted(rows, key=lambda r: (r.board.encode("utf-8", "surrogatepass"), r.added_at_ms)):
        moderators.setdefault(r.board, []).append(ModeratorView(r.board, authors.view(r.key), r.source, r.added_at_ms))
    return ui.page(
        request, "status.html", nav="status", title=Msg(N_("Node status")),
        gossip_url=ui.node.gossip_url if ui.node else "", ui_url=ui.node.ui_url if ui.node else "",
        stored=stored, carried=len(core.index), boards=boards, chosen=sorted(core.boards),
        received=core.counters.received, rejected=sorted(core.counters.rejected.items()),
        rejected_total=sum(core.counters.rejected.values()), peers=[_peer_view(p, now) for p in peers],
        last_sync=last_sync, hidden=len(ui.authors.hidden),
        moderators=sorted(moderators.items(), key=lambda i: i[0].encode("utf-8", "surrogatepass")),
        refusals=sorted(dict(refusals).items()),
    )

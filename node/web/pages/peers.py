"""The peers page (``/peers``): add and remove peers, and *Sync now* with its progress.

Addresses are checked by the rule every peer address meets (protocol/peers.py, through
``config.normalize_peer_url``, as ``dazibao peers add`` does).  A peer added here is stored as
one the member chose (source ``cli``, as with the command line): the running node picks it up
within seconds and syncs with it by itself; *Sync now* does not wait for that.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...config import ConfigError, normalize_peer_url
from ...store import PeerRow, Store, StoreError
from ..base import UI, redirect, state
from ..i18n import N_, Msg
from ..peersync import SYNC_NOW, PeerProgress
from .common import FormError, field

__all__ = ["peers_page", "peers_index", "peer_add", "peer_remove", "peers_sync", "sync_status", "state_text",
           "parse_peer_url"]

#: How the Peers page reloads itself while a sync runs (without JavaScript too): to its own
#: address without a fragment, which a browser would take for a move within the page.
REFRESH = "2; url=/peers"
MAX_URL_CHARS = 2_000


def parse_peer_url(text: str) -> str:
    """A peer address as ``scheme://host:port``; raises FormError saying what is wrong."""
    text = text.strip()
    if not text:
        raise FormError(Msg(N_("Type the peer's address, for example http://192.0.2.7:7470.")))
    if len(text) > MAX_URL_CHARS:
        raise FormError(Msg(N_("That address is too long to be a peer's address.")))
    try:
        return normalize_peer_url(text)
    except ConfigError as exc:
        raise FormError(Msg(N_("That is not a peer address this node can use: %(reason)s"),
                            {"reason": str(exc)})) from None


def state_text(p: PeerProgress) -> Msg:
    """What one peer's line of *Sync now* says."""
    if p.phase == "connecting":
        return Msg(N_("connecting…"))
    if p.phase == "receiving":
        return Msg(N_("receiving posts: %(done)s of %(total)s"), {"done": p.done, "total": p.total})
    if p.phase == "sending":
        return Msg(N_("sending posts: %(done)s of %(total)s"), {"done": p.done, "total": p.total})
    if p.phase == "done":
        return Msg(N_("done. Boards in common: %(boards)s; posts received: %(received)s, sent: %(sent)s, "
                      "rejected: %(rejected)s."),
                   {"boards": ", ".join(p.boards) or "–", "received": p.received, "sent": p.sent,
                    "rejected": p.rejected})
    if p.phase == "failed":
        return Msg(N_("failed: %(error)s"), {"error": p.error})
    return Msg(N_("waiting"))


async def peers_page(request: web.Request, errors: list[Msg] | None = None, status: int = 200,
                     typed: str = "") -> web.Response:
    ui = request.app[UI]
    rows: list[PeerRow] = await ui.core.db.call(Store.list_peers)
    sync = request.app[SYNC_NOW]
    peers: list[dict[str, Any]] = [{"row": r, "from_config": r.url in ui.config.peers} for r in rows]
    return ui.page(request, "peers.html", status=status, nav="peers", title=Msg(N_("Peers")), peers=peers,
                   errors=errors or [], typed=typed, sync=[(p, state_text(p)) for p in sync.progress],
                   running=sync.running, refresh=REFRESH if sync.running else "")


async def sync_status(request: web.Request) -> web.Response:
    """``/api/sync``: each peer's line of *Sync now*, for static/live.js (the page reloads
    itself instead where scripts do not run)."""
    ui = request.app[UI]
    sync = request.app[SYNC_NOW]
    tr = ui.templates.translations[state(request).lang]
    return web.json_response({
        "running": sync.running,
        "peers": [{"url": p.url, "phase": p.phase, "text": state_text(p).translate(tr)} for p in sync.progress],
    }, headers={"Cache-Control": "no-store"})


async def peers_index(request: web.Request) -> web.Response:
    return await peers_page(request)


async def peer_add(request: web.Request) -> web.Response:
    ui = request.app[UI]
    typed = field(request, "url")
    try:
        url = parse_peer_url(typed)
    except FormError as exc:
        return await peers_page(request, [exc.msg], 400, typed)
    try:
        added = await ui.core.db.call(Store.add_peer, url, "cli", ui.core.now_ms())
    except StoreError:
        return await peers_page(request, [Msg(N_("The peer could not be saved: this node's storage is full or "
                                                 "cannot be written."))], 507, typed)
    session = state(request).session
    if added:
        session.notify(Msg(N_("Peer %(url)s added. This node syncs with it by itself; Sync now does it at once."),
                           {"url": url}))
    else:
        session.notify(Msg(N_("%(url)s was already a peer."), {"url": url}))
    return redirect("/peers")


async def peer_remove(request: web.Request) -> web.Response:
    ui = request.app[UI]
    try:
        url = parse_peer_url(field(request, "url"))
    except FormError as exc:
        return await peers_page(request, [exc.msg], 400)
    if url in ui.config.peers:
        return await peers_page(request, [Msg(N_(
            "%(url)s is set in the peers setting of config.toml (or --peer): remove it there, or it comes back "
            "when the node restarts."), {"url": url})], 400)
    try:
        removed = await ui.core.db.call(Store.remove_peer, url)
    except StoreError:
        return await peers_page(request, [Msg(N_("The peer could not be removed: this node's storage cannot be "
                                                 "written."))], 507)
    if not removed:
        return await peers_page(request, [Msg(N_("%(url)s is not a peer of this node."), {"url": url})], 400)
    state(request).session.notify(Msg(N_("Peer %(url)s removed: no more syncs with it."), {"url": url}))
    return redirect("/peers")


async def peers_sync(request: web.Request) -> web.Response:
    ui = request.app[UI]
    rows: list[PeerRow] = await ui.core.db.call(Store.list_peers)
    session = state(request).session
    if not rows:
        return await peers_page(request, [Msg(N_("Add a peer first: there is nobody to sync with yet."))], 400)
    if not request.app[SYNC_NOW].start([r.url for r in rows]):
        session.notify(Msg(N_("A sync is already running.")))
    return redirect("/peers")

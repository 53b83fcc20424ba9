"""The first-steps page (``/welcome``): what to do first, and what others can see.

The boards list shows a short "First steps" box, linking here, while the node has no peer or
this machine no pseudonym (:func:`first_steps`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from ...store import Store
from ..base import UI
from ..i18n import N_, Msg

__all__ = ["FirstSteps", "first_steps", "welcome_page"]


@dataclass(frozen=True, slots=True)
class FirstSteps:
    peers: int
    pseudonyms: int


async def first_steps(request: web.Request) -> FirstSteps | None:
    """What the member has not done yet (None: nothing left, or the public view)."""
    ui = request.app[UI]
    if ui.public or ui.keys is None:
        return None
    peers = len(await ui.core.db.call(Store.list_peers))
    pseudonyms = len(await asyncio.to_thread(ui.keys.list))
    if peers and pseudonyms:
        return None
    return FirstSteps(peers, pseudonyms)


async def welcome_page(request: web.Request) -> web.Response:
    ui = request.app[UI]
    steps = await first_steps(request) or FirstSteps(1, 1)
    # What a peer can tell of where a post was written depends on the origin privacy setting
    # (docs/privacy.md): the page says what is true of this node.
    return ui.page(request, "welcome.html", nav="welcome", title=Msg(N_("First steps")), steps=steps,
                   stem=bool(getattr(ui.config, "stem", False)))

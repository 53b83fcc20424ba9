"""The push path: the posts of concurrent ``POST /v1/posts`` requests checked and stored together.

Each push is one job of a :class:`~dazibao.node.coalesce.Coalescer`.  A batch of pushes is
checked and stored with :meth:`NodeCore.check_and_ingest`: each push screened on its own, then
stored as its own batch, in the order they came, in one write transaction (a small batch in one
hop of the store thread, screen, verification and write together), so every push gets the
answer it would get if it were handled alone right after the ones before it: accepted,
duplicate, or its typed refusal.  A request is answered only once the transaction holding its
posts has committed.
"""

from __future__ import annotations

from collections.abc import Sequence

from dazibao.protocol import limits, posts

from .coalesce import Coalescer
from .service import Decoded, IngestReport, NodeCore

__all__ = ["PushBatcher", "Checked"]

#: What one push came to: its valid posts, the refusals of verification (id or None, code),
#: both in its order, and what storing the valid ones did.
Checked = tuple[list[posts.Post], list[tuple[bytes | None, str]], IngestReport]


#: One push: its raw posts, what each decoded to (``posts.decode_each``, done by the caller),
#: and where it came from.
Push = tuple[Sequence[bytes], Sequence[Decoded], str | None]


class PushBatcher:
    """Coalesces the pushes one node receives (limits: push_batch_delay_ms,
    max_push_batch_posts, push_batches_in_flight)."""

    def __init__(self, core: NodeCore, *, max_delay_s: float = limits.PUSH_BATCH_DELAY_MS / 1000,
                 max_posts: int = limits.MAX_PUSH_BATCH_POSTS,
                 max_running: int = limits.PUSH_BATCHES_IN_FLIGHT) -> None:
        self.core = core
        self.coalescer: Coalescer[Push, Checked] = Coalescer(
            self._handle, size=lambda job: max(1, len(job[0])), max_items=max_posts,
            max_delay_s=max_delay_s, max_running=max_running)

    async def push(self, raws: Sequence[bytes], decoded: Sequence[Decoded], source: str | None) -> Checked:
        """Check and store the posts of one push, ``decoded`` being ``posts.decode_each(raws)``
        (each post is decoded once, by the caller); raises what storing them raised
        (StorageFullError when the node has no room)."""
        if len(decoded) != len(raws):
            raise ValueError("a push needs what each of its posts decoded to")
        return await self.coalescer.submit((raws, decoded, source))

    async def _handle(self, jobs: list[Push]) -> list[Checked | BaseException]:
        # A push is never remembered unverified (NodeCore.verify).
        done = await self.core.check_and_ingest([(decoded, source) for _, decoded, source in jobs])
        return [report if isinstance(report, BaseException) else (good, bad, report)
                for (good, bad), report in done]

    async def drain(self) -> None:
        """Finish every push received so far (before the store closes)."""
        await self.coalescer.drain()

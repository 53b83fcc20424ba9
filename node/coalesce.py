"""Coalescing concurrent requests into batches: the group commit of the push path.

Members push one post per request, many at once.  Handled one by one, each request pays the
whole fixed cost of a batch: a hop to the verify threads, a read of the store for the screen
before verification, a hop back, one write transaction with its commit and search indexing,
and a hop to the index thread.  A :class:`Coalescer` gathers the jobs submitted while a short
wait runs, or while earlier batches are still being handled, and hands them to one call as one
batch; every submitter then gets its own job's result.  At a trickle a job waits at most
``max_delay_s``; under load batches grow by themselves, because jobs gather while the slots
are busy.

Nothing here knows what a job is: :class:`dazibao.node.service.NodeCore` decides how a batch
of pushes is checked and stored so that each push is answered as if it had been handled alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

J = TypeVar("J")
R = TypeVar("R")


class Coalescer(Generic[J, R]):
    """Hands jobs submitted concurrently to ``handle`` in batches, in the order submitted.

    ``handle(jobs)`` returns one result per job, in order; a result that is an exception is
    raised to that job's submitter only.  If ``handle`` itself raises, every job of the batch
    gets that exception.  A batch holds at most ``max_items`` items (``size(job)`` each) unless
    one job alone is larger; at most ``max_running`` batches are handled at once.
    """

    def __init__(self, handle: Callable[[list[J]], Awaitable[Sequence[R | BaseException]]], *,
                 size: Callable[[J], int], max_items: int, max_delay_s: float, max_running: int) -> None:
        if max_items < 1 or max_running < 1 or max_delay_s < 0:
            raise ValueError("max_items and max_running must be positive and max_delay_s not negative")
        self._handle = handle
        self._size = size
        self.max_items, self.max_delay_s, self.max_running = max_items, max_delay_s, max_running
        self._waiting: list[tuple[J, asyncio.Future[R]]] = []
        self._waiting_items = 0
        self._timer: asyncio.TimerHandle | None = None
        self._due = False  # the oldest waiting job has waited max_delay_s
        self._running: set[asyncio.Task[None]] = set()
        #: Batches handled so far, and the jobs in them (for tests and benchmarks).
        self.batches = 0
        self.jobs = 0

    async def submit(self, job: J) -> R:
        """Queue ``job``, wait for its batch to be handled, and return its result (or raise).

        Cancelling the wait does not take the job back: once queued it is handled with its batch.
        """
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, future))
        self._waiting_items += self._size(job)
        if self._waiting_items >= self.max_items:
            self._due = True
        elif self._timer is None and not self._due:
            if self.max_delay_s == 0:
                self._due = True
            else:
                self._timer = asyncio.get_running_loop().call_later(self.max_delay_s, self._on_timer)
        self._start()
        return await future

    def _on_timer(self) -> None:
        self._timer = None
        self._due = True
        self._start()

    def _start(self) -> None:
        """Start batches while some are due and a slot is free."""
        while self._due and self._waiting and len(self._running) < self.max_running:
            batch: list[tuple[J, asyncio.Future[R]]] = []
            items = 0
            while self._waiting:
                n = self._size(self._waiting[0][0])
                if batch and items + n > self.max_items:
                    break
                batch.append(self._waiting.pop(0))
                items += n
            self._waiting_items -= items
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)
            # What is left waits again, from now: it was queued behind a full batch.
            self._due = self._waiting_items >= self.max_items
            if self._waiting and not self._due and self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self.max_delay_s, self._on_timer)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._waiting and self._timer is None:
            # The jobs that gathered while the slots were busy have waited long enough.
            self._due = True
        self._start()

    async def _run(self, batch: list[tuple[J, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.jobs += len(batch)
        try:
            results = await self._handle([job for job, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError("a coalesced batch was answered with the wrong number of results")
        except BaseException as exc:  # every submitter of the batch learns of it
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # the submitter stopped waiting (its request was cut off)
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def drain(self) -> None:
        """Handle every job queued so far and wait for all running batches (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiting or self._running:
            self._due = True
            self._start()
            if self._running:
                await asyncio.gather(*self._running, return_exceptions=True)

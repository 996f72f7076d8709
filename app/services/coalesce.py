"""Coalescing: what concurrent callers ask for at the same moment runs as one operation.

A worker runs a hundred turns at once, and each turn starts, records its replies and ends
with a statement of its own. Run one by one, every statement pays a round trip, a parse,
and in PostgreSQL a commit with its WAL flush; run together, a hundred turns pay once.

    starts = Coalescer(start_many, name="turn-start")
    context = await starts.submit((conversation_id, run_id))

`start_many` receives a list of submitted items and returns one result per item, in
order. The first caller is not delayed: its item runs at once, and the items that arrive
while it is in flight form the next batch (group commit). When a batch fails, each of its
items runs again alone, so one bad item fails only its own caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


class Coalescer(Generic[T, R]):
    """Batches concurrent `submit` calls into calls of `run(items) -> results`."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        name: str,
        lanes: int = 2,
        max_batch: int = 128,
    ) -> None:
        self._run = run
        self.name = name
        self.lanes = lanes  # batches in flight at once
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    async def submit(self, item: T) -> R:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._lane(), name=f"sb-{self.name}-{i}") for i in range(self.lanes)
            ]
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, done))
        return await done

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _lane(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(item, done) for item, done in batch if not done.done()]  # callers that gave up
            try:
                await self._settle(batch)
            except asyncio.CancelledError:
                for _, done in batch:
                    done.cancel()
                raise

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            log.warning(
                "batch failed; its items run one by one",
                extra={"coalescer": self.name, "count": len(batch), "error": repr(exc)},
            )
            for single in batch:
                await self._settle([single])
            return
        for (_, done), result in zip(batch, results):
            if not done.done():
                done.set_result(result)

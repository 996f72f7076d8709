"""A stopping worker's loops end even when a library swallows their cancellation."""

from __future__ import annotations

import asyncio

from app.pipeline.schedule import Scheduler


class _SwallowingBuffer:
    """pop_due as redis-py behaved on Python 3.11: a cancel while waiting for a connection was lost."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()

    async def pop_due(self, **_: object) -> list[str]:
        self.calls += 1
        self.called.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if self.calls > 1:
                raise  # once is enough to show it; later cancels (test teardown) get through
            return []
        return []


class _Flusher:
    active_turns = 0


class _Queue:
    def namespace(self, key: str) -> str:
        return f"saq:test:{key}"


async def test_scheduler_loop_ends_when_its_cancel_was_swallowed() -> None:
    buffer = _SwallowingBuffer()
    state = Scheduler(
        queue=_Queue(),
        buffer=buffer,
        flusher=_Flusher(),
        recovery=None,
        poll_s=0.01,
        recovery_interval_s=3600,
    )
    state.tasks.append(asyncio.create_task(state._schedule_loop(), name="sb-scheduler"))
    await buffer.called.wait()

    stopping = asyncio.create_task(state.stop_loops())
    done, _ = await asyncio.wait({stopping}, timeout=10)  # a guard against hanging, not a time measure

    assert stopping in done, "the scheduler loop kept running after its cancel was swallowed"
    assert state.tasks == [] and buffer.calls == 1

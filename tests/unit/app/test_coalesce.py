"""Coalescer: concurrent submissions share calls, results go back in order, failures stay alone."""

from __future__ import annotations

import asyncio

import pytest

from app.services.coalesce import Coalescer


class Recorder:
    """A batch function that remembers its calls and can be held open or made to fail."""

    def __init__(self, *, bad: set[int] = frozenset()) -> None:
        self.calls: list[list[int]] = []
        self.bad = bad
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        await self.gate.wait()
        if self.bad & set(items):
            raise ValueError(f"bad item in {items}")
        return [i * 10 for i in items]


async def test_concurrent_submissions_share_calls_and_get_their_own_results() -> None:
    run = Recorder()
    coalescer = Coalescer(run, name="t", lanes=1)
    run.gate.clear()
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0)  # the lane takes item 0 alone and waits on the gate
    rest = [asyncio.create_task(coalescer.submit(i)) for i in range(1, 50)]
    await asyncio.sleep(0)
    run.gate.set()
    results = await asyncio.gather(first, *rest)
    await coalescer.aclose()
    assert results == [i * 10 for i in range(50)]
    assert run.calls == [[0], list(range(1, 50))]  # the first was not held back; the others went together


async def test_batches_never_exceed_max_batch() -> None:
    run = Recorder()
    coalescer = Coalescer(run, name="t", lanes=1, max_batch=8)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(30)))
    await coalescer.aclose()
    assert results == [i * 10 for i in range(30)]
    assert max(len(c) for c in run.calls) <= 8
    assert sorted(i for c in run.calls for i in c) == list(range(30))


async def test_a_failing_item_fails_alone_and_the_others_succeed() -> None:
    run = Recorder(bad={7})
    coalescer = Coalescer(run, name="t", lanes=1)
    outcomes = await asyncio.gather(*(coalescer.submit(i) for i in range(12)), return_exceptions=True)
    await coalescer.aclose()
    assert isinstance(outcomes[7], ValueError)
    assert [o for i, o in enumerate(outcomes) if i != 7] == [i * 10 for i in range(12) if i != 7]
    assert [7] in run.calls  # retried alone after its batch failed


async def test_wrong_result_count_is_an_error_not_a_silent_mismatch() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1] if len(items) > 1 else []

    coalescer = Coalescer(short, name="t", lanes=1)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        await coalescer.submit(1)
    await coalescer.aclose()


async def test_a_caller_that_gave_up_is_skipped() -> None:
    run = Recorder()
    coalescer = Coalescer(run, name="t", lanes=1)
    run.gate.clear()
    blocker = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0)
    abandoned = asyncio.create_task(coalescer.submit(1))
    kept = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    abandoned.cancel()
    await asyncio.sleep(0)
    run.gate.set()
    assert await kept == 20 and await blocker == 0
    await coalescer.aclose()
    assert run.calls == [[0], [2]]

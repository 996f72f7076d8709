"""Every message answered exactly once, whatever fails (issue 13): real processes, real faults.

Web and workers run against a PostgreSQL and a Redis of this module's own (never the shared
ones: FLUSHALL and a stopped PostgreSQL would hit every other test session), a real HTTP
server plays the WhatsApp Graph API with a 0.3 s answer time, and customers write through the
inbound webhook. Each scenario prints its figures as one JSON line (also written under
artifacts/chaos/) before asserting the guarantees: no stored message stranded, no reply row
left in flight, no message answered again in a second batch, every accepted message
answered, and replies sent twice for one batch no more than the outbox's stated residual.
tests/bench/bench_faults.py runs the same scenarios at a larger scale.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.chaos import PrivateServices, failed_guarantees
from tests.support.chaos_scenarios import (
    SUITE,
    burst,
    frozen_worker,
    postgres_outages,
    redis_flushes,
    worker_kills,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services() -> Iterator[PrivateServices]:
    started = PrivateServices().start()
    try:
        yield started
    finally:
        started.close()


def _assert_guarantees(figures: dict) -> None:
    broken = failed_guarantees(figures)
    assert not broken, f"{figures['scenario']}: " + "; ".join(broken)


async def test_worker_killed_again_and_again_mid_send(services: PrivateServices) -> None:
    figures = await worker_kills(services, SUITE)
    assert figures["sent"] >= SUITE.kills * SUITE.sends_per_life, "the workers sent too few replies"
    assert figures["runs"].get("abandoned", 0) >= 1, "the kills hit no turn"
    _assert_guarantees(figures)


async def test_frozen_worker_is_swept_and_cannot_act_when_it_wakes(services: PrivateServices) -> None:
    figures = await frozen_worker(services, SUITE)
    assert figures["swept_while_frozen"], "SAQ never swept the frozen worker's jobs"
    _assert_guarantees(figures)


async def test_redis_flushed_twice_mid_buffer_changes_nothing_a_customer_sees(
    services: PrivateServices,
) -> None:
    figures = await redis_flushes(services, SUITE)
    assert figures["bot_answered_handed_off"] == 0, "the bot answered a conversation handed to a person"
    _assert_guarantees(figures)


async def test_postgres_stopped_twice(services: PrivateServices) -> None:
    figures = await postgres_outages(services, SUITE)
    _assert_guarantees(figures)


async def test_burst_of_single_message_conversations_all_answered_once(services: PrivateServices) -> None:
    figures = await burst(services, SUITE)
    assert figures["sent"] == SUITE.burst
    _assert_guarantees(figures)

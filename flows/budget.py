"""CPU budgets: how long one template render, and one turn's templates and matching, may run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

RENDER_BUDGET_S = 0.05
"""Wall time one template render may take (checked at every loop iteration and checked operation)."""
TURN_BUDGET_S = 0.5
"""Time one turn may spend in its templates and regexes together; past it the turn's remaining nodes are
skipped. Each render is also bounded by RENDER_BUDGET_S, and the interpreter lets other turns run
between nodes, so no conversation holds a worker's event loop for more than one render at a time."""


class TurnClock:
    """The time a turn has spent in its own computations (renders, matches), against its budget."""

    __slots__ = ("limit_s", "spent_s")

    def __init__(self, limit_s: float = TURN_BUDGET_S) -> None:
        self.limit_s = limit_s
        self.spent_s = 0.0

    @property
    def exhausted(self) -> bool:
        return self.spent_s >= self.limit_s

    def remaining_s(self) -> float:
        return max(self.limit_s - self.spent_s, 0.0)


_TURN: ContextVar[TurnClock | None] = ContextVar("sb_turn_clock", default=None)


def current_clock() -> TurnClock | None:
    """The clock of the turn running in this task, if any (renders outside a turn have none)."""
    return _TURN.get()


@contextlib.contextmanager
def turn_clock(limit_s: float = TURN_BUDGET_S) -> Iterator[TurnClock]:
    """Charge the renders and matches of this task to one TurnClock until the block ends."""
    clock = TurnClock(limit_s)
    token = _TURN.set(clock)
    try:
        yield clock
    finally:
        _TURN.reset(token)


@contextlib.contextmanager
def charged(clock: TurnClock | None) -> Iterator[None]:
    """Add the block's duration to `clock` (when there is one)."""
    if clock is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        clock.spent_s += time.perf_counter() - started

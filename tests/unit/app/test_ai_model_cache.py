"""The offline engine keeps trained models within a budget of training examples, least recently used first."""

from __future__ import annotations

from app.services.ai.understanding import LocalEngine
from flows.runtime import IntentCandidate, TrainingExample


def action(flow: str, *texts: str) -> IntentCandidate:
    return IntentCandidate(
        flow_id=flow,
        node_id="intent",
        display_name=f"Action {flow}",
        training_examples=[TrainingExample(text=t) for t in texts],
    )


ORDER = action("orders", "I want to order a pizza", "two pizzas please", "can I order food")
REFUND = action("refunds", "I want my money back", "refund my order", "I was charged twice")
HOURS = action("hours", "when do you open", "opening hours", "are you open on sunday")


def test_models_beyond_the_example_budget_are_dropped_least_recently_used_first() -> None:
    engine = LocalEngine(max_examples=7)  # room for two workspaces of three examples, not three
    first, second, third = [ORDER], [REFUND], [HOURS]
    engine.model_for(first)
    engine.model_for(second)
    engine.model_for(first)  # used again: the second is now the least recently used
    engine.model_for(third)
    assert engine.cached(first) and engine.cached(third) and not engine.cached(second)
    assert engine.cached_examples == 6


def test_a_model_larger_than_the_budget_is_still_kept_while_it_is_the_newest() -> None:
    engine = LocalEngine(max_examples=2)
    model = engine.model_for([ORDER, REFUND])
    assert engine.cached([ORDER, REFUND]) and engine.model_for([ORDER, REFUND]) is model
    engine.model_for([HOURS])
    assert not engine.cached([ORDER, REFUND]) and engine.cached([HOURS])

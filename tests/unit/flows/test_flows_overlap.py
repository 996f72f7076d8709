"""Trigger overlap: two flows whose message triggers fire on the same message are found, with the reason."""

from __future__ import annotations

import pytest

from flows.overlap import find_overlaps, message_triggers


def flow(flow_id: str, name: str, *matches: dict) -> list:
    document = {
        "nodes": [
            {"id": f"t{i}", "type": "when.message_received", "config": {"match": m}}
            for i, m in enumerate(matches)
        ]
        + [{"id": "s", "type": "action.send_message", "config": {"text": "hi"}}]
    }
    return message_triggers(flow_id, name, document)


ORDERS = flow("a", "Orders", {"kind": "keywords", "keywords": ["order", "buy now"]})


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"kind": "keywords", "keywords": ["Order", "human"]}, "'order' also fires Human hand-off"),
        (
            {"kind": "keywords", "keywords": ["I want to BUY now"]},
            "'i want to buy now' also fires Human hand-off",
        ),
        (
            {"kind": "keywords", "keywords": ["order", "cancel"], "mode": "all"},
            "'order cancel' also fires Human hand-off",
        ),
        ({"kind": "keywords", "keywords": ["cancel", "refund"], "mode": "all"}, None),
        ({"kind": "keywords", "keywords": ["buy   NOW!"]}, "'buy now' also fires Human hand-off"),
        ({"kind": "regex", "pattern": r"\border(s)?\b"}, "'order' also fires Human hand-off"),
        ({"kind": "regex", "pattern": r"refund|money back"}, None),
        ({"kind": "any"}, "Every message also fires Human hand-off"),
        (
            {"kind": "intent", "display_name": "Order", "training_examples": [{"text": "order"}]},
            None,
        ),
    ],
)
def test_keyword_trigger_against_each_kind(other, message):
    found = find_overlaps(ORDERS, flow("b", "Human hand-off", other))
    assert [o.message for o in found] == ([message] if message else [])
    for o in found:
        assert (o.flow_id, o.node_id, o.other_flow_id, o.other_node_id) == ("a", "t0", "b", "t0")


def test_regex_against_regex_uses_texts_the_pattern_matches():
    mine = flow("a", "Order numbers", {"kind": "regex", "pattern": r"(?i)order\s+#?\d{3,}"})
    other = flow("b", "Numbers", {"kind": "regex", "pattern": r"#\d+"})
    (found,) = find_overlaps(mine, other)
    assert found.example == "order #000" and found.message == "'order #000' also fires Numbers"
    assert find_overlaps(mine, flow("c", "Refunds", {"kind": "regex", "pattern": "refund"})) == []


def test_any_trigger_overlaps_everything_and_a_flow_never_overlaps_itself():
    catch_all = flow("z", "Catch-all", {"kind": "any"}, {"kind": "keywords", "keywords": ["x"]})
    assert [o.message for o in find_overlaps(catch_all, ORDERS)] == ["Any message also fires Orders"]
    assert find_overlaps(catch_all, catch_all) == []


def test_drafts_with_broken_triggers_are_read_without_error():
    document = {
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "regex", "pattern": "(?=a)"}},
            },
            {"id": "u", "type": "when.message_received", "config": {"match": "keywords"}},
            {
                "id": "v",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["!!"]}},
            },
            "not a node",
        ]
    }
    assert message_triggers("a", "Broken", document) == []

"""Property tests: valid documents round-trip through export/import; garbage only ever yields errors."""

from __future__ import annotations

import asyncio
import copy
import json
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from memory_runtime import MemoryRuntime, make_turn

from flows.graph import compile_flow
from flows.interpreter import run_turn
from flows.schema import document_to_dict, encode_document
from flows.validate import FlowError, validate_document

EXAMPLES = pathlib.Path(__file__).resolve().parents[3] / "flows" / "examples"

plain_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24).filter(
    lambda s: "{" not in s and "}" not in s and s.strip()
)
word = st.text(st.sampled_from("abcxyzéñأبتسمةى"), min_size=1, max_size=8)
template = st.sampled_from(
    ["Hi {{ contact.first_name }}", "{{ vars.q }}", "{{ message_text | upper }}", "#{{ timestamp }}"]
)
leaf_text = st.one_of(plain_text, template)
json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | leaf_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(word, inner, max_size=3),
    max_leaves=8,
)
tag_name = st.text(st.sampled_from("abcdefgh-_"), min_size=1, max_size=10)

match_config = st.one_of(
    st.just({"kind": "any"}),
    st.builds(
        lambda ks, mode: {"kind": "keywords", "keywords": ks, "mode": mode},
        st.lists(word, min_size=1, max_size=4),
        st.sampled_from(["any", "all"]),
    ),
    st.sampled_from([r"order\s*(\d+)", r"^hi\b", r"[a-z]{2,5}@x"]).map(
        lambda p: {"kind": "regex", "pattern": p}
    ),
    st.builds(
        lambda name, examples, threshold: {
            "kind": "intent",
            "display_name": name,
            "training_examples": [{"text": e, "language": "en"} for e in examples],
            "confidence_threshold": threshold,
            "variables": [{"name": "q", "prompt": "How many?", "required": True, "default": None}],
        },
        plain_text,
        st.lists(plain_text, min_size=1, max_size=3),
        st.floats(0, 1),
    ),
)
trigger = st.one_of(
    match_config.map(lambda m: ("when.message_received", {"match": m})),
    st.sampled_from(["when.conversation_created", "when.contact_created"]).map(lambda t: (t, {})),
    st.tuples(st.sampled_from(["when.tag_added", "when.tag_removed"]), tag_name.map(lambda t: {"tag": t})),
)
action = st.one_of(
    st.builds(
        lambda text, kind: ("action.send_message", {"text": text, "message_type": kind}),
        leaf_text,
        st.sampled_from(["marketing", "support", "ai"]),
    ),
    st.sampled_from(["enable", "disable", "reset_context"]).map(
        lambda a: ("action.control_ai_response", {"action": a})
    ),
    leaf_text.map(lambda p: ("action.control_ai_response", {"action": "custom_prompt", "custom_prompt": p})),
    st.dictionaries(word, json_value, min_size=1, max_size=3).map(
        lambda d: ("action.update_ai_context", {"context_data": d})
    ),
    st.builds(
        lambda payload, method, retries: (
            "action.call_webhook",
            {
                "url": "https://hooks.example.com/x",
                "method": method,
                "payload_template": payload,
                "max_retries": retries,
                "headers": {"X-Id": "{{ conversation.id }}"},
                "success_message": "ok {{ response }}",
            },
        ),
        json_value,
        st.sampled_from(["GET", "POST", "PUT"]),
        st.integers(0, 10),
    ),
    st.sampled_from(["open", "pending", "resolved"]).map(
        lambda s: ("action.set_conversation_status", {"status": s})
    ),
    tag_name.map(lambda t: ("action.add_tag", {"tag": t})),
    tag_name.map(lambda t: ("action.remove_tag", {"tag": t})),
    st.builds(
        lambda left, op, right: ("logic.condition", {"left": left, "op": op, "right": right}),
        json_value,
        st.sampled_from(["equals", "not_equals", "contains", "not_contains", "exists", "is_empty"]),
        leaf_text,
    ),
)
FREE_FORM = {"context_data", "payload_template", "headers", "left", "right", "default"}
PORTS = {"logic.condition": ["true", "false"], "action.call_webhook": ["success", "failure"]}


@st.composite
def valid_documents(draw) -> dict:
    triggers = draw(st.lists(trigger, min_size=1, max_size=2))
    actions = draw(st.lists(action, max_size=8))
    nodes, edges = [], []
    for i, (node_type, config) in enumerate(triggers):
        nodes.append({"id": f"t{i}", "type": node_type, "config": config})
    for i, (node_type, config) in enumerate(actions):
        node = {"id": f"a{i}", "type": node_type, "config": config}
        if draw(st.booleans()):
            node["position"] = {"x": draw(st.integers(-2000, 2000)), "y": draw(st.floats(-1e4, 1e4))}
        parent = nodes[draw(st.integers(0, len(nodes) - 1))]
        port = draw(st.sampled_from(PORTS[parent["type"]])) if parent["type"] in PORTS else None
        edge = {"from": parent["id"], "to": node["id"]}
        if port is not None:
            edge["port"] = port
        nodes.append(node)
        edges.append(edge)
    return {
        "schema": "switchboard.flow/v1",
        "name": draw(plain_text),
        "description": draw(st.text(max_size=20)),
        "status": draw(st.sampled_from(["draft", "active", "paused"])),
        "priority": draw(st.integers(-100, 100)),
        "nodes": nodes,
        "edges": edges,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents())
def test_valid_documents_round_trip_unchanged(raw):
    doc, errors = validate_document(json.dumps(raw))
    assert errors == [] and doc is not None
    exported = encode_document(doc)
    again, errors = validate_document(exported)
    assert errors == [] and again == doc
    assert encode_document(again) == exported
    assert validate_document(document_to_dict(doc))[0] == doc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents(), st.text(max_size=30))
def test_valid_documents_run_without_raising(raw, text):
    doc, _ = validate_document(raw)
    plan = compile_flow(doc, flow_id="p", version=1)
    result = asyncio.run(run_turn([plan], make_turn(text or None), MemoryRuntime(), max_steps=50))
    assert result.steps <= 50


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated_documents(draw) -> tuple[dict, bool]:
    """A valid document with one random change; the flag says the change is certainly invalid."""
    doc = copy.deepcopy(draw(valid_documents()))
    paths = [p for p in _paths(doc) if p]
    path = draw(st.sampled_from(paths))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["delete", "replace", "unknown", "dangle"]))
    if how == "unknown" and isinstance(parent, dict):
        parent["zz_unknown"] = 1
        # Structural objects forbid unknown fields; free-form JSON values accept any key.
        return doc, not any(k in FREE_FORM for k in path[:-1])
    if how == "dangle":
        doc["edges"].append({"from": "t0", "to": "nowhere"})
        return doc, True
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_value)
    return doc, False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_return_errors_and_never_raise(case):
    raw, certainly_invalid = case
    doc, errors = validate_document(json.dumps(raw))
    assert all(isinstance(e, FlowError) and e.message for e in errors)
    assert (doc is None) == bool(errors)
    if certainly_invalid:
        assert doc is None
    if doc is not None:
        assert validate_document(encode_document(doc))[0] == doc


garbage_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["name", "nodes", "edges", "id", "type", "config", "from", "to", "port", "match", "kind", "x"]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(garbage_json, garbage_json.map(json.dumps), st.binary(max_size=200), st.text(max_size=200)))
def test_garbage_only_ever_returns_errors(raw):
    if isinstance(raw, (list, int, float, bool)) or raw is None:
        raw = json.dumps(raw)
    doc, errors = validate_document(raw)
    assert doc is None and errors and all(isinstance(e, FlowError) for e in errors)


def test_the_seed_examples_are_found():
    # The test below is parametrized over them: with none found it would skip, not fail.
    assert len(list(EXAMPLES.glob("*.flow.json"))) >= 4, EXAMPLES


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.flow.json")), ids=lambda p: p.name)
def test_examples_are_valid_and_canonical(path):
    data = path.read_bytes()
    doc, errors = validate_document(data)
    assert errors == []
    assert encode_document(doc) == data

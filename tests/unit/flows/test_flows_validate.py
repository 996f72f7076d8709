"""Validation of flow documents: every error kind names the node id and the field."""

from __future__ import annotations

import copy
import json

import pytest

from flows.schema import FlowDocument
from flows.validate import MAX_DOCUMENT_BYTES, FlowValidationError, decode_document, validate_document

BASE = {
    "schema": "switchboard.flow/v1",
    "name": "Base",
    "status": "active",
    "nodes": [
        {
            "id": "t",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": ["help"]}},
        },
        {
            "id": "c",
            "type": "logic.condition",
            "config": {"left": "{{ contact.first_name }}", "op": "equals", "right": "Ana"},
        },
        {"id": "s", "type": "action.send_message", "config": {"text": "Hi {{ contact.first_name }}"}},
        {"id": "w", "type": "action.call_webhook", "config": {"url": "https://example.com/hook"}},
    ],
    "edges": [
        {"from": "t", "to": "c"},
        {"from": "c", "to": "s", "port": "true"},
        {"from": "c", "to": "w", "port": "false"},
    ],
}


def mutated(change) -> dict:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


def node(doc: dict, node_id: str) -> dict:
    return next(n for n in doc["nodes"] if n["id"] == node_id)


def test_base_document_is_valid():
    doc, errors = validate_document(json.dumps(BASE))
    assert errors == []
    assert isinstance(doc, FlowDocument)
    assert [n.id for n in doc.nodes] == ["t", "c", "s", "w"]


@pytest.mark.parametrize(
    ("change", "code", "node_id", "field"),
    [
        (lambda d: d.update(extra=1), "unknown_field", None, "extra"),
        (lambda d: d.update(schema="switchboard.flow/v9"), "bad_schema", None, "schema"),
        (lambda d: d.pop("name"), "missing_field", None, "name"),
        (lambda d: d.update(status="live"), "bad_value", None, "status"),
        (lambda d: d.update(priority="high"), "bad_value", None, "priority"),
        (lambda d: node(d, "s").update(type="action.teleport"), "unknown_type", "s", "type"),
        (lambda d: node(d, "s").update(colour="red"), "unknown_field", "s", "colour"),
        (lambda d: node(d, "s")["config"].update(font="bold"), "unknown_field", "s", "config.font"),
        (
            lambda d: node(d, "t")["config"]["match"].update(case=True),
            "unknown_field",
            "t",
            "config.match.case",
        ),
        (lambda d: node(d, "s").update(config={}), "missing_field", "s", "config.text"),
        (lambda d: node(d, "s").pop("config"), "missing_field", "s", "config"),
        (
            lambda d: node(d, "w")["config"].update(timeout_seconds=600),
            "bad_value",
            "w",
            "config.timeout_seconds",
        ),
        (lambda d: node(d, "w")["config"].update(method="FETCH"), "bad_value", "w", "config.method"),
        (lambda d: node(d, "w")["config"].update(url="ftp://example.com"), "bad_value", "w", "config.url"),
        (
            lambda d: node(d, "w")["config"].update(auth={"type": "bearer"}),
            "missing_value",
            "w",
            "config.auth.secret",
        ),
        (
            lambda d: node(d, "w")["config"].update(requires_confirmation=True),
            "confirmation_without_intent",
            "w",
            "config.requires_confirmation",
        ),
        (lambda d: node(d, "s").update(id="c"), "duplicate_node_id", "c", "id"),
        (lambda d: d["edges"].append({"from": "s", "to": "ghost"}), "dangling_edge", "s", "edges[3].to"),
        (
            lambda d: d["edges"].append({"from": "ghost", "to": "s"}),
            "dangling_edge",
            "ghost",
            "edges[3].from",
        ),
        (lambda d: d["edges"].append({"from": "s", "to": "c"}), "cycle", "c", "edges"),
        (lambda d: d["edges"].append({"from": "s", "to": "t"}), "trigger_incoming_edge", "t", "edges[3].to"),
        (
            lambda d: d["edges"].append({"from": "c", "to": "s", "port": "maybe"}),
            "wrong_port",
            "c",
            "edges[3].port",
        ),
        (lambda d: d["edges"].append({"from": "w", "to": "s"}), "wrong_port", "w", "edges[3].port"),
        (
            lambda d: d["edges"].append({"from": "t", "to": "s", "port": "success"}),
            "wrong_port",
            "t",
            "edges[3].port",
        ),
        (lambda d: d["edges"].append({"from": "t", "to": "c"}), "duplicate_edge", "t", "edges[3]"),
        (lambda d: d["edges"][0].update(weight=2), "unknown_field", "t", "edges[0].weight"),
        (
            lambda d: node(d, "t").update(type="action.add_tag", config={"tag": "x"}),
            "missing_trigger",
            None,
            "nodes",
        ),
        (
            lambda d: node(d, "s")["config"].update(text="Hi {{ contact.first_name"),
            "template_syntax",
            "s",
            "config.text",
        ),
        (
            lambda d: node(d, "s")["config"].update(text="{{ x | attr('y') }}"),
            "template_syntax",
            "s",
            "config.text",
        ),
        (
            lambda d: node(d, "w")["config"].update(payload_template={"a": ["{% if %}"]}),
            "template_syntax",
            "w",
            "config.payload_template",
        ),
        (lambda d: node(d, "c")["config"].update(left="{{ }}"), "template_syntax", "c", "config.left"),
        (lambda d: node(d, "c")["config"].update(op="between"), "bad_value", "c", "config.op"),
        (lambda d: node(d, "c")["config"].pop("right"), "missing_value", "c", "config.right"),
        (
            lambda d: node(d, "c")["config"].update(op="matches", right="(?<=x)y"),
            "regex_unsupported",
            "c",
            "config.right",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "regex", "pattern": "a" * 501}),
            "regex_too_long",
            "t",
            "config.match.pattern",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "regex", "pattern": "(unclosed"}),
            "regex_invalid",
            "t",
            "config.match.pattern",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "regex", "pattern": "(\\w+)\\1@"}),
            "regex_unsupported",
            "t",
            "config.match.pattern",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "keywords", "keywords": []}),
            "missing_value",
            "t",
            "config.match.keywords",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "keywords", "keywords": ["ok", "!!"]}),
            "bad_value",
            "t",
            "config.match.keywords[1]",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "sometimes"}),
            "bad_value",
            "t",
            "config.match.kind",
        ),
        (
            lambda d: node(d, "t")["config"].update(match={"kind": "intent", "display_name": "Buy"}),
            "missing_value",
            "t",
            "config.match.training_examples",
        ),
        (
            lambda d: node(d, "t")["config"].update(
                match={
                    "kind": "intent",
                    "display_name": "Buy",
                    "confidence_threshold": 1.5,
                    "training_examples": [{"text": "buy"}],
                }
            ),
            "bad_value",
            "t",
            "config.match.confidence_threshold",
        ),
        (
            lambda d: node(d, "t")["config"].update(
                match={
                    "kind": "intent",
                    "display_name": "Buy",
                    "training_examples": [{"text": "buy"}],
                    "variables": [{"name": "q"}, {"name": "q"}],
                }
            ),
            "duplicate_variable",
            "t",
            "config.match.variables[1].name",
        ),
        (lambda d: node(d, "s").update(position={"x": "left", "y": 0}), "bad_value", "s", "position.x"),
        (
            lambda d: d["nodes"].append(
                {"id": "ai", "type": "action.control_ai_response", "config": {"action": "custom_prompt"}}
            ),
            "missing_value",
            "ai",
            "config.custom_prompt",
        ),
        (
            lambda d: d["nodes"].append(
                {"id": "ctx", "type": "action.update_ai_context", "config": {"context_data": {}}}
            ),
            "missing_value",
            "ctx",
            "config.context_data",
        ),
        (
            lambda d: d["nodes"].append(
                {"id": "st", "type": "action.set_conversation_status", "config": {"status": "Closed!"}}
            ),
            "bad_value",
            "st",
            "config.status",
        ),
        (
            lambda d: d["nodes"].append({"id": "tg", "type": "when.tag_added", "config": {"tag": ""}}),
            "bad_value",
            "tg",
            "config.tag",
        ),
    ],
)
def test_each_error_names_node_and_field(change, code, node_id, field):
    doc, errors = validate_document(json.dumps(mutated(change)))
    assert doc is None
    matching = [e for e in errors if e.code == code]
    assert matching, errors
    assert any(e.node_id == node_id and e.field == field for e in matching), matching
    assert all(e.message.endswith(".") for e in errors)
    # Plain words for a person: no msgspec wording, no JSON paths (the field says where).
    assert not [e.message for e in errors if "Expected `" in e.message or "$." in e.message]


def test_all_errors_are_reported_at_once():
    def breaks(d):
        node(d, "s")["config"]["text"] = "{{ oops"
        node(d, "w")["config"]["method"] = "FETCH"
        d["edges"].append({"from": "s", "to": "ghost"})
        d["nodes"].append({"id": "x", "type": "nope", "config": {}})

    _, errors = validate_document(mutated(breaks))
    assert {e.code for e in errors} >= {"template_syntax", "bad_value", "dangling_edge", "unknown_type"}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        ('"text"', "not_an_object"),
        (b"\xff\xfe", "invalid_json"),
        (12, "invalid_json"),
    ],
)
def test_unreadable_input_is_an_error(raw, code):
    doc, errors = validate_document(raw)
    assert doc is None
    assert [e.code for e in errors] == [code]


def test_document_over_one_megabyte_is_rejected_before_parsing():
    big = b'{"name": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}'
    doc, errors = validate_document(big)
    assert doc is None
    assert errors[0].code == "too_large"


def test_more_than_500_nodes_is_rejected():
    doc = copy.deepcopy(BASE)
    doc["nodes"] += [{"id": f"n{i}", "type": "action.add_tag", "config": {"tag": "t"}} for i in range(500)]
    _, errors = validate_document(doc)
    assert [e.code for e in errors] == ["too_many_nodes"]
    assert errors[0].field == "nodes"


def test_decode_document_raises_with_every_error():
    with pytest.raises(FlowValidationError) as info:
        decode_document({"name": "", "nodes": []})
    codes = {e.code for e in info.value.errors}
    assert {"bad_value", "missing_trigger"} <= codes


def test_dict_input_and_defaults():
    doc = decode_document(
        {"name": "Min", "nodes": [{"id": "t", "type": "when.conversation_created", "config": {}}]}
    )
    assert doc.status == "draft" and doc.priority == 0 and doc.edges == [] and doc.description == ""

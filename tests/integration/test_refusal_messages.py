"""Every validation error code, triggered through a form a person submits, shows its reason in plain words.

Node-level codes come from the editor's node form; document- and graph-level codes from the
import form (the editor's draft save answers the same messages as JSON, tested elsewhere).
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest

from flows.validate import MAX_NODES, ErrorCode
from tests.integration.test_editor_refusals import logged_in, post_form
from tests.support.stack import Tenant

# Codes no form can produce, and why.
UNREACHABLE = {
    ErrorCode.TOO_LARGE: "the HTTP body limit (1 MB) answers 413 before a document that large is read",
    ErrorCode.INTERNAL: "raised only when validation itself crashes",
}

TRIGGER = {"id": "t", "type": "when.message_received", "config": {"match": {"kind": "any"}}}
SEND = {"id": "s", "type": "action.send_message", "config": {"text": "Hello"}}


def node_form(type_: str, *fields: tuple[str, str]) -> list[tuple[str, str]]:
    return [("_node_id", "n7"), ("_type", type_), ("_variables", "[]"), *fields]


def regex(pattern: str) -> list[tuple[str, str]]:
    return node_form("when.message_received", ("match.kind", "regex"), ("match.pattern", pattern))


def document(nodes: list[dict], edges: list[dict] | None = None, **top: Any) -> bytes:
    body = {"schema": "switchboard.flow/v1", "name": "Imported", "nodes": nodes, "edges": edges or []}
    body.update(top)
    return json.dumps(body).encode()


NODE_FORM_CASES = {
    ErrorCode.MISSING_FIELD: (node_form("action.send_message"), "Write the message to send"),
    ErrorCode.BAD_VALUE: (
        node_form("action.call_webhook", ("url", "ftp://shop.example")),
        "The URL must start with http:// or https://",
    ),
    ErrorCode.UNKNOWN_FIELD: (
        node_form("action.add_tag", ("tag", "vip"), ("colour", "red")),
        "Unknown field 'colour'; remove it",
    ),
    ErrorCode.TEMPLATE_SYNTAX: (
        node_form("action.send_message", ("text", "Hi {{ contact.first_name")),
        "template",
    ),
    ErrorCode.REGEX_TOO_LONG: (regex("a" * 501), "keep it to 500 or fewer"),
    ErrorCode.REGEX_INVALID: (regex("(unclosed"), "not a valid regular expression"),
    ErrorCode.REGEX_UNSUPPORTED: (
        regex("(?<=no )refund"),
        "lookbehind (?<=...), which the regex engine cannot run",
    ),
    ErrorCode.MISSING_VALUE: (
        node_form("action.update_ai_context"),
        "Add at least one key and value to merge into the AI context",
    ),
    ErrorCode.DUPLICATE_VARIABLE: (
        node_form(
            "when.message_received",
            ("match.kind", "intent"),
            ("match.display_name", "Order"),
            ("match.training_examples[].text", "I want to order"),
            ("match.variables[].name", "qty"),
            ("match.variables[].name", "qty"),
        ),
        "Variable 'qty' is defined twice; rename one",
    ),
}

IMPORT_CASES = {
    ErrorCode.INVALID_JSON: (b"{not json", "Not JSON"),
    ErrorCode.NOT_AN_OBJECT: (b"[[1, 2]]", "must be a JSON object with name, nodes and edges"),
    ErrorCode.BAD_SCHEMA: (document([TRIGGER], schema="switchboard.flow/v9"), "this version reads no other"),
    ErrorCode.TOO_MANY_NODES: (
        document([TRIGGER] + [{**SEND, "id": f"s{i}"} for i in range(MAX_NODES)]),
        "split it into several flows",
    ),
    ErrorCode.UNKNOWN_TYPE: (document([TRIGGER, {**SEND, "type": "action.teleport"}]), "Unknown node type"),
    ErrorCode.DUPLICATE_NODE_ID: (document([TRIGGER, {**SEND, "id": "t"}]), "give each node its own id"),
    ErrorCode.DANGLING_EDGE: (document([TRIGGER], [{"from": "t", "to": "ghost"}]), "which does not exist"),
    ErrorCode.DUPLICATE_EDGE: (
        document([TRIGGER, SEND], [{"from": "t", "to": "s"}, {"from": "t", "to": "s"}]),
        "appears twice; delete one",
    ),
    ErrorCode.TRIGGER_INCOMING_EDGE: (
        document([TRIGGER, SEND], [{"from": "s", "to": "t"}]),
        "cannot have an incoming edge",
    ),
    ErrorCode.WRONG_PORT: (
        document([TRIGGER, SEND], [{"from": "t", "to": "s", "port": "success"}]),
        "leave port out",
    ),
    ErrorCode.MISSING_TRIGGER: (document([SEND]), "Add a trigger"),
    ErrorCode.CYCLE: (
        document(
            [TRIGGER, SEND, {**SEND, "id": "s2"}],
            [{"from": "t", "to": "s"}, {"from": "s", "to": "s2"}, {"from": "s2", "to": "s"}],
        ),
        "remove one edge so the flow always ends",
    ),
    ErrorCode.CONFIRMATION_WITHOUT_INTENT: (
        document(
            [
                TRIGGER,
                {
                    "id": "w",
                    "type": "action.call_webhook",
                    "config": {"url": "https://shop.example", "requires_confirmation": True},
                },
            ],
            [{"from": "t", "to": "w", "port": None}],
        ),
        "Confirmation needs an intent trigger before this webhook",
    ),
}


def test_every_error_code_is_covered_or_said_to_be_unreachable():
    covered = set(NODE_FORM_CASES) | set(IMPORT_CASES) | set(UNREACHABLE)
    assert covered == set(ErrorCode)


@pytest.mark.parametrize("code", list(NODE_FORM_CASES), ids=lambda c: c.value)
async def test_node_form_refusal_says_why(tenant: Tenant, code: ErrorCode) -> None:
    items, expected = NODE_FORM_CASES[code]
    client, csrf = await logged_in(tenant)
    try:
        refused = await post_form(client, "/editor/node-form/save", items, csrf)
        assert refused.status_code == 422
        shown = html.unescape(refused.text)
        assert 'id="node-form-errors"' in shown and expected in shown
        assert "Expected `" not in shown
    finally:
        await client.aclose()


@pytest.mark.parametrize("code", list(IMPORT_CASES), ids=lambda c: c.value)
async def test_import_form_refusal_says_why(tenant: Tenant, code: ErrorCode) -> None:
    body, expected = IMPORT_CASES[code]
    client, csrf = await logged_in(tenant)
    try:
        refused = await client.post(
            "/flows/import",
            headers={"X-CSRF-Token": csrf},
            files={"files": ("case.flow.json", body, "application/json")},
        )
        assert refused.status_code == 422
        shown = html.unescape(refused.text)
        assert 'id="import-result"' in shown and expected in shown
    finally:
        await client.aclose()


async def test_an_import_names_every_file_to_fix_at_once(tenant: Tenant) -> None:
    """One unreadable file and one invalid file: both are listed, not the first kind only (the invalid
    one was reported only after the unreadable one had been fixed and the import tried again)."""
    invalid = json.dumps(
        {"schema": "switchboard.flow/v1", "name": "Bad", "nodes": [{"id": "a", "type": "nope"}], "edges": []}
    ).encode()
    client, csrf = await logged_in(tenant)
    try:
        refused = await client.post(
            "/flows/import",
            headers={"X-CSRF-Token": csrf},
            files=[
                ("files", ("broken.flow.json", b"not json", "application/json")),
                ("files", ("invalid.flow.json", invalid, "application/json")),
            ],
        )
        assert refused.status_code == 422
        shown = html.unescape(refused.text)
        assert 'data-file="broken.flow.json"' in shown and 'data-file="invalid.flow.json"' in shown
        assert "nope" in shown
    finally:
        await client.aclose()

"""editor.js against a static page: load, drag from the palette, connect, delete, and export the DESIGN document."""

from __future__ import annotations

import copy

import pytest
from conftest import screenshot
from editor_harness import harness_page

pytestmark = pytest.mark.browser

PREMIUM = {
    "schema": "switchboard.flow/v1",
    "name": "Premium support",
    "description": "",
    "status": "active",
    "priority": 0,
    "nodes": [
        {
            "id": "n1",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": ["help", "support"]}},
            "position": {"x": 80, "y": 120},
        },
        {
            "id": "n2",
            "type": "action.control_ai_response",
            "config": {
                "action": "custom_prompt",
                "custom_prompt": "You are a premium assistant for {{ contact.first_name }}.",
            },
            "position": {"x": 380, "y": 120},
        },
        {
            "id": "n3",
            "type": "action.call_webhook",
            "config": {"url": "https://shop.example/orders", "method": "POST"},
            "position": {"x": 680, "y": 120},
        },
        {
            "id": "n4",
            "type": "action.send_message",
            "config": {"text": "Done <b>{{ vars.order_id }}</b>", "message_type": "support"},
            "position": {"x": 980, "y": 60},
        },
        {
            "id": "n5",
            "type": "action.send_message",
            "config": {"text": "Sorry", "message_type": "support"},
            "position": {"x": 980, "y": 260},
        },
    ],
    "edges": [
        {"from": "n1", "to": "n2"},
        {"from": "n2", "to": "n3"},
        {"from": "n3", "to": "n4", "port": "success"},
        {"from": "n3", "to": "n5", "port": "failure"},
    ],
}


def open_editor(page, harness, doc, path="/harness/editor"):
    page.goto(harness.add_page(path, harness_page(doc)))
    page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    return page


def export(page) -> dict:
    return page.evaluate("window.sbEditor.exportDocument()")


def test_loaded_document_exports_unchanged(page, harness):
    open_editor(page, harness, PREMIUM)
    assert export(page) == PREMIUM
    assert page.js_errors == []
    screenshot(page, "editor-harness-loaded")


def test_ports_are_named_and_triggers_have_no_input(page, harness):
    open_editor(page, harness, PREMIUM)
    webhook = page.locator(".drawflow-node", has_text="Call webhook")
    assert webhook.locator(".output").evaluate_all("els => els.map(e => e.dataset.port)") == [
        "success",
        "failure",
    ]
    assert page.locator(".drawflow-node.group-trigger .input").count() == 0
    # Template text is shown as text, never as markup.
    assert page.locator(".drawflow-node b").count() == 0
    assert "<b>" in page.locator(".drawflow-node", has_text="n4").inner_text()


def test_missing_positions_get_a_layout_and_are_exported(page, harness):
    doc = copy.deepcopy(PREMIUM)
    for node in doc["nodes"][1:]:
        del node["position"]
    open_editor(page, harness, doc, path="/harness/nopos")
    out = export(page)
    xs = [n["position"]["x"] for n in out["nodes"]]
    assert xs[0] < xs[1] < xs[2] < xs[3]
    assert out["edges"] == doc["edges"]


def test_drag_from_palette_connect_and_export(page, harness):
    doc = {
        "schema": "switchboard.flow/v1",
        "name": "Built",
        "description": "",
        "status": "draft",
        "priority": 0,
        "nodes": [],
        "edges": [],
    }
    open_editor(page, harness, doc, path="/harness/empty")
    canvas = page.locator("#canvas")
    page.locator('[data-node-type="when.message_received"]').drag_to(
        canvas, target_position={"x": 60, "y": 80}
    )
    page.locator('[data-node-type="logic.condition"]').drag_to(canvas, target_position={"x": 340, "y": 80})
    page.locator('[data-node-type="action.send_message"]').drag_to(
        canvas, target_position={"x": 640, "y": 20}
    )
    page.locator('[data-node-type="action.add_tag"]').drag_to(canvas, target_position={"x": 640, "y": 260})
    nodes = page.locator(".drawflow-node")
    assert nodes.count() == 4

    def connect(src: int, port_index: int, dst: int) -> None:
        nodes.nth(src).locator(".output").nth(port_index).drag_to(nodes.nth(dst).locator(".input"))

    connect(0, 0, 1)
    connect(1, 0, 2)
    connect(1, 1, 3)
    page.fill("#flow-name", "Built by dragging")
    out = export(page)
    assert [n["type"] for n in out["nodes"]] == [
        "when.message_received",
        "logic.condition",
        "action.send_message",
        "action.add_tag",
    ]
    assert [n["id"] for n in out["nodes"]] == ["n1", "n2", "n3", "n4"]
    assert out["edges"] == [
        {"from": "n1", "to": "n2"},
        {"from": "n2", "to": "n3", "port": "true"},
        {"from": "n2", "to": "n4", "port": "false"},
    ]
    assert out["name"] == "Built by dragging"
    assert out["nodes"][0]["config"] == {"match": {"kind": "any"}}
    assert out["nodes"][0]["position"]["x"] == pytest.approx(60, abs=2)
    assert page.evaluate("window.sbEditor.dirty") is True
    screenshot(page, "editor-harness-built")


def test_delete_removes_node_and_its_edges(page, harness):
    open_editor(page, harness, PREMIUM, path="/harness/delete")
    page.locator(".drawflow-node", has_text="n5").click()
    page.click('[data-editor-action="delete"]')
    out = export(page)
    assert [n["id"] for n in out["nodes"]] == ["n1", "n2", "n3", "n4"]
    assert {"from": "n3", "to": "n5", "port": "failure"} not in out["edges"]
    assert len(out["edges"]) == 3


def test_errors_are_shown_on_their_nodes(page, harness):
    open_editor(page, harness, PREMIUM, path="/harness/errors")
    page.evaluate("""window.sbEditor.showErrors([
        {node_id: 'n3', field: 'url', message: 'Enter an http(s) URL.'},
        {node_id: null, field: null, message: 'The flow has a cycle.'}])""")
    bad = page.locator(".drawflow-node.has-error")
    assert bad.count() == 1
    assert "n3" in bad.inner_text() and "Enter an http(s) URL." in bad.inner_text()
    assert page.locator("#flow-errors li").count() == 2
    screenshot(page, "editor-harness-errors")


def test_unsaved_changes_warn_on_leave(page, harness):
    open_editor(page, harness, PREMIUM, path="/harness/leave")
    page.evaluate("window.sbEditor.addNode('action.add_tag', 100, 400)")
    page.locator(".drawflow-node").first.click()  # beforeunload needs a user gesture on the page
    with page.expect_event("dialog") as dialog:
        page.evaluate("setTimeout(() => { window.location.href = 'about:blank'; }, 0)")
    assert dialog.value.type == "beforeunload"
    dialog.value.dismiss()

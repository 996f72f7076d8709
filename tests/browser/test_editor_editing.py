"""editor.js in real Chromium: undo/redo of add, connect, move, delete; selection, copy/paste, fit to view."""

from __future__ import annotations

import copy

import pytest
from conftest import screenshot
from editor_harness import harness_page
from test_editor_harness import PREMIUM

pytestmark = pytest.mark.browser

MOD = "Control"


def open_editor(page, harness, doc, path):
    page.goto(harness.add_page(path, harness_page(doc)))
    page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    return page


def export(page) -> dict:
    return page.evaluate("window.sbEditor.exportDocument()")


def node(page, flow_id: str):
    return page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text=flow_id)).first


def press(page, keys: str) -> None:
    page.locator("#canvas").focus()
    page.keyboard.press(keys)


def empty_doc() -> dict:
    return {
        "schema": "switchboard.flow/v1",
        "name": "Scratch",
        "description": "",
        "status": "draft",
        "priority": 0,
        "nodes": [],
        "edges": [],
    }


def test_undo_and_redo_of_add_connect_move_and_delete(page, harness):
    open_editor(page, harness, empty_doc(), "/harness/undo")
    canvas = page.locator("#canvas")
    page.locator('[data-node-type="when.message_received"]').drag_to(
        canvas, target_position={"x": 60, "y": 80}
    )
    page.locator('[data-node-type="action.send_message"]').drag_to(
        canvas, target_position={"x": 400, "y": 80}
    )
    first, second = node(page, "n1"), node(page, "n2")
    first.locator(".output").first.drag_to(second.locator(".input"))
    assert export(page)["edges"] == [{"from": "n1", "to": "n2"}]

    before_move = export(page)["nodes"][1]["position"]
    box = second.locator(".sb-node-head").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 8)
    page.mouse.down()
    page.mouse.move(box["x"] + 120, box["y"] + 158, steps=8)
    page.mouse.up()
    moved = export(page)["nodes"][1]["position"]
    assert moved["x"] == pytest.approx(before_move["x"] + 100, abs=3)
    assert moved["y"] == pytest.approx(before_move["y"] + 150, abs=3)

    second.click()
    press(page, "Delete")
    after_delete = export(page)
    assert [n["id"] for n in after_delete["nodes"]] == ["n1"] and after_delete["edges"] == []

    press(page, f"{MOD}+z")  # delete undone: the node and its edge come back
    restored = export(page)
    assert [n["id"] for n in restored["nodes"]] == ["n1", "n2"]
    assert restored["edges"] == [{"from": "n1", "to": "n2"}]
    assert restored["nodes"][1]["position"] == moved
    press(page, f"{MOD}+z")  # move undone
    assert export(page)["nodes"][1]["position"] == before_move
    press(page, f"{MOD}+z")  # connect undone
    assert export(page)["edges"] == []
    press(page, f"{MOD}+z")  # second add undone
    assert [n["id"] for n in export(page)["nodes"]] == ["n1"]
    press(page, f"{MOD}+z")  # first add undone: back to the empty document, which is saved
    assert export(page)["nodes"] == []
    assert page.evaluate("window.sbEditor.dirty") is False

    for _ in range(4):
        press(page, f"{MOD}+Shift+z")
    redone = export(page)
    assert [n["id"] for n in redone["nodes"]] == ["n1", "n2"]
    assert redone["edges"] == [{"from": "n1", "to": "n2"}]
    assert redone["nodes"][1]["position"] == moved
    press(page, f"{MOD}+y")  # the delete again
    assert [n["id"] for n in export(page)["nodes"]] == ["n1"]
    assert page.evaluate("window.sbEditor.dirty") is True
    assert page.js_errors == []


def test_copy_paste_keeps_configs_and_edges_with_new_ids(page, harness):
    open_editor(page, harness, copy.deepcopy(PREMIUM), "/harness/paste")
    node(page, "n3").click()
    node(page, "n4").click(modifiers=["Shift"])
    node(page, "n5").click(modifiers=["Shift"])
    assert page.evaluate("window.sbEditor.selection") == ["n3", "n4", "n5"]
    assert page.locator(".drawflow-node.selected").count() == 3
    press(page, f"{MOD}+c")
    press(page, f"{MOD}+v")
    out = export(page)
    assert [n["id"] for n in out["nodes"]] == ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"]
    by_id = {n["id"]: n for n in out["nodes"]}
    for old, new in (("n3", "n6"), ("n4", "n7"), ("n5", "n8")):
        assert by_id[new]["type"] == by_id[old]["type"]
        assert by_id[new]["config"] == by_id[old]["config"]
        assert by_id[new]["position"] == {
            "x": by_id[old]["position"]["x"] + 40,
            "y": by_id[old]["position"]["y"] + 40,
        }
    # Edges inside the selection come along; the edge into it (n2 -> n3) does not.
    assert {"from": "n6", "to": "n7", "port": "success"} in out["edges"]
    assert {"from": "n6", "to": "n8", "port": "failure"} in out["edges"]
    assert len(out["edges"]) == len(PREMIUM["edges"]) + 2
    assert page.evaluate("window.sbEditor.selection") == ["n6", "n7", "n8"]
    # The pasted copy is independent: editing it leaves the original alone.
    page.evaluate("window.sbEditor.applyConfig('n7', {text: 'changed', message_type: 'support'}, [])")
    assert {n["id"]: n for n in export(page)["nodes"]}["n4"]["config"] == PREMIUM["nodes"][3]["config"]
    # One undo removes the whole paste.
    press(page, f"{MOD}+z")
    press(page, f"{MOD}+z")
    assert export(page) == PREMIUM
    screenshot(page, "editor-harness-multiselect")


def test_duplicate_and_paste_into_another_flow(page, harness):
    open_editor(page, harness, copy.deepcopy(PREMIUM), "/harness/dup")
    node(page, "n2").click()
    press(page, f"{MOD}+d")
    out = export(page)
    assert out["nodes"][-1]["id"] == "n6" and out["nodes"][-1]["config"] == PREMIUM["nodes"][1]["config"]
    press(page, f"{MOD}+c")  # copies n6, the duplicate, which is now selected
    # The clipboard outlives the page: another flow's editor pastes it.
    open_editor(page, harness, empty_doc(), "/harness/other")
    press(page, f"{MOD}+v")
    other = export(page)
    assert [(n["id"], n["type"], n["config"]) for n in other["nodes"]] == [
        ("n1", "action.control_ai_response", PREMIUM["nodes"][1]["config"])
    ]


def test_box_select_and_move_together(page, harness):
    open_editor(page, harness, copy.deepcopy(PREMIUM), "/harness/box")
    a, b = node(page, "n4").bounding_box(), node(page, "n5").bounding_box()
    page.keyboard.down("Shift")
    page.mouse.move(a["x"] - 20, a["y"] - 20)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] + 20, b["y"] + b["height"] + 20, steps=5)
    page.mouse.up()
    page.keyboard.up("Shift")
    assert sorted(page.evaluate("window.sbEditor.selection")) == ["n4", "n5"]
    before = {n["id"]: n["position"] for n in export(page)["nodes"]}
    head = node(page, "n4").locator(".sb-node-head").bounding_box()
    page.mouse.move(head["x"] + 10, head["y"] + 6)
    page.mouse.down()
    page.mouse.move(head["x"] - 50, head["y"] + 46, steps=6)
    page.mouse.up()
    after = {n["id"]: n["position"] for n in export(page)["nodes"]}
    zoom = page.evaluate("window.sbEditor.df.zoom")
    for nid in ("n4", "n5"):
        assert after[nid]["x"] == pytest.approx(before[nid]["x"] - 60 / zoom, abs=3)
        assert after[nid]["y"] == pytest.approx(before[nid]["y"] + 40 / zoom, abs=3)
    assert after["n3"] == before["n3"]
    press(page, f"{MOD}+z")  # one step for the group move
    assert {n["id"]: n["position"] for n in export(page)["nodes"]} == before


def test_a_flow_off_screen_opens_fitted_to_the_view(page, harness):
    doc = copy.deepcopy(PREMIUM)
    for i, n in enumerate(doc["nodes"]):
        n["position"] = {"x": 1500 + i * 400, "y": 900 + (i % 2) * 300}
    open_editor(page, harness, doc, "/harness/far")
    canvas = page.locator("#canvas").bounding_box()
    for i in range(len(doc["nodes"])):
        box = page.locator(".drawflow-node").nth(i).bounding_box()
        assert canvas["x"] <= box["x"] and box["x"] + box["width"] <= canvas["x"] + canvas["width"]
        assert canvas["y"] <= box["y"] and box["y"] + box["height"] <= canvas["y"] + canvas["height"]
    assert export(page) == doc  # fitting the view moves the camera, not the nodes
    screenshot(page, "editor-harness-fitted")


def test_a_connection_is_deleted_with_the_delete_key_and_undo_brings_it_back(page, harness):
    open_editor(page, harness, copy.deepcopy(PREMIUM), "/harness/disconnect")
    path = page.locator(".connection.node_out_node-3.output_2 .main-path")  # n3's failure port -> n5
    path.click(force=True)
    press(page, "Delete")
    assert {"from": "n3", "to": "n5", "port": "failure"} not in export(page)["edges"]
    assert [n["id"] for n in export(page)["nodes"]] == ["n1", "n2", "n3", "n4", "n5"]
    press(page, f"{MOD}+z")
    assert export(page) == PREMIUM

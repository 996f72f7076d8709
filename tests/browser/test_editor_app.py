"""The editor against the running app: forms apply as you type, undo, Try it over several turns, versions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from conftest import logged_in, shot

from tests.support.flows import intent_hook_flow
from tests.support.http_peer import HttpPeer, PeerResponse
from tests.support.stack import wait_until

pytestmark = pytest.mark.browser


def order_flow(url: str) -> dict[str, Any]:
    """intent "Order pizza" (needs `qty`) -> webhook reading the response; its failure port -> an apology."""
    doc = intent_hook_flow(
        url,
        name="Pizza orders",
        display_name="Order pizza",
        examples=[
            "I want to order a pizza",
            "can I get pizzas delivered",
            "pizza order please",
            "order pizzas for tonight",
        ],
        variable="qty",
        prompt="How many pizzas?",
        ids=("n1", "n2"),
        success_message="Order {{ response.order_id }} for {{ vars.qty }} pizzas!",
        failure_message="Sorry, the oven is off.",
    )
    doc["status"] = "draft"
    doc["nodes"].append(
        {
            "id": "n3",
            "type": "action.send_message",
            "config": {"text": "Sorry, try again later.", "message_type": "support"},
        }
    )
    doc["edges"].append({"from": "n2", "to": "n3", "port": "failure"})
    for node, x, y in zip(doc["nodes"], (60, 340, 640), (140, 140, 260), strict=True):
        node["position"] = {"x": x, "y": y}
    return doc


@pytest_asyncio.fixture
async def app(chromium, tenant) -> AsyncIterator[object]:
    pg = await logged_in(chromium, tenant)
    yield pg
    await pg.context.close()


async def open_editor(pg, flow_id: str) -> None:
    await pg.goto(f"/flows/{flow_id}/edit")
    await pg.wait_for_selector("#flow-editor[data-ready]", state="attached")


def node(pg, flow_id: str):
    return pg.locator(".drawflow-node", has=pg.locator(".sb-node-id", has_text=flow_id)).first


async def config_of(pg, flow_id: str) -> dict[str, Any]:
    return await pg.evaluate(f"window.sbEditor.configs[{flow_id!r}]")


async def test_a_node_form_applies_as_you_type_and_undo_restores_the_form(app, tenant, http_peer: HttpPeer):
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    await open_editor(app, flow["id"])
    await node(app, "n3").click()
    text = app.locator("#node-form #f-text")
    await text.fill("We are closed today.")
    # No Apply button: the node takes the text after a short pause, and its card shows it.
    await wait_until(lambda: _text_is(app, "n3", "We are closed today."), what="the typed text on n3")
    assert await node(app, "n3").locator(".sb-node-summary").inner_text() == "We are closed today."
    assert await text.evaluate("el => el === document.activeElement")  # the field kept focus
    assert await app.evaluate("window.sbEditor.dirty") is True

    # Clicking another node right after typing keeps the edit (the pending apply is flushed first).
    await text.fill("Closed on Sundays.")
    await node(app, "n1").click()
    await app.locator("#node-form #match-kind").wait_for()
    assert (await config_of(app, "n3"))["text"] == "Closed on Sundays."

    # An invalid value is applied too, with its message next to the field and on the node.
    await node(app, "n3").click()
    await app.locator("#node-form #f-text").fill("")
    await app.locator("#node-form .field.has-error #err-text").wait_for()
    await app.locator(".drawflow-node.has-error .sb-node-badge").wait_for()
    assert (await config_of(app, "n3"))["text"] == ""

    # Undo walks back through the form edits; the open form shows the restored value.
    await app.locator("#canvas").focus()
    await app.keyboard.press("Control+z")
    await wait_until(lambda: _text_is(app, "n3", "Closed on Sundays."), what="undo of the emptied text")
    await wait_until(
        lambda: _field_is(app, "#node-form #f-text", "Closed on Sundays."),
        what="the form to show the undone text",
    )
    await app.click('[data-editor-action="undo"]')
    await wait_until(lambda: _text_is(app, "n3", "Sorry, try again later."), what="undo of the first edit")
    await wait_until(lambda: _field_is(app, "#node-form #f-text", "Sorry, try again later."), what="the form")
    assert await app.evaluate("window.sbEditor.dirty") is False
    await app.click('[data-editor-action="redo"]')
    await wait_until(lambda: _text_is(app, "n3", "Closed on Sundays."), what="redo")
    assert app.js_errors == []


async def _text_is(pg, flow_id: str, text: str) -> bool:
    return (await config_of(pg, flow_id)).get("text") == text


async def _field_is(pg, selector: str, value: str) -> bool:
    field = pg.locator(selector)
    return await field.count() == 1 and await field.input_value() == value


async def test_try_it_answers_a_follow_up_question_and_marks_the_nodes_that_ran(
    app, tenant, http_peer: HttpPeer
):
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    await open_editor(app, flow["id"])
    # An unsaved edit on the canvas is what Try it runs.
    await node(app, "n2").click()
    await app.locator("#node-form #f-success_message").fill(
        "Order {{ response.order_id }} x{{ vars.qty }}, thanks!"
    )
    await wait_until(
        lambda: _config_field_is(
            app, "n2", "success_message", "Order {{ response.order_id }} x{{ vars.qty }}, thanks!"
        ),
        what="the edited success message",
    )
    await app.click("#tab-try")
    message = app.locator("#tester-message")
    await message.fill("pizza order please")
    await message.press("Enter")
    first = app.locator(".turn").nth(0)
    await first.locator(".bubble.bot", has_text="How many pizzas?").wait_for()
    assert "Waiting for the customer: qty" in await first.locator(".turn-pending").inner_text()
    await message.fill("3")
    await message.press("Enter")
    second = app.locator(".turn").nth(1)
    await second.locator(".bubble.bot", has_text="Order [order_id] x3, thanks!").wait_for()
    assert "not sent" in await second.locator("h3", has_text="Webhook").text_content()
    payload = await second.locator(".turn-payload").text_content()
    assert '"qty": 3' in payload and '"phone": "+10000000000"' in payload
    assert http_peer.requests == []  # a dry run sends nothing
    # The canvas marks what ran in the last turn: trigger, webhook (success port), not the failure branch.
    await app.locator(".drawflow-node.ran").first.wait_for()
    assert await node(app, "n2").get_attribute("data-run-step") is not None
    assert "ran" in await node(app, "n2").get_attribute("class")
    assert "ran" not in (await node(app, "n3").get_attribute("class")).split()
    success_port = node(app, "n2").locator('.output[data-port="success"]')
    assert "ran" in (await success_port.get_attribute("class")).split()
    # The sample the dry run answered with is offered for editing; an edited one is used next time.
    assert '"order_id": "[order_id]"' in await app.locator("#tester-sample").input_value()
    await app.locator("#tester-sample-box summary").click()
    await app.locator("#tester-sample").fill('{"order_id": "P-77"}')
    await message.fill("I want to order a pizza, 2 please")
    await message.press("Enter")
    await app.locator(".turn").nth(2).locator(".bubble.bot", has_text="Order P-77 x2, thanks!").wait_for()
    await shot(app, "editor-try-it")
    # Restart begins a new conversation and clears the marks.
    await app.click("#tester-restart")
    await app.locator("#tester-transcript .transcript-empty").wait_for()
    assert await app.locator(".turn").count() == 0
    assert await app.locator(".drawflow-node.ran").count() == 0
    # For real (asked once): the webhook is called; it answers 404, so the failure branch runs and is marked.
    app.once("dialog", lambda dialog: dialog.accept())
    await app.locator("label", has=app.locator("#tester-mode-execute")).click()
    await message.fill("I want to order a pizza, 2 please")
    await message.press("Enter")
    real = app.locator(".turn").nth(0)
    await real.locator(".bubble.bot", has_text="Sorry, the oven is off.").wait_for()
    await real.locator(".bubble.bot", has_text="Sorry, try again later.").wait_for()
    [called] = http_peer.requests
    assert called.path == "/orders" and called.json() == {"qty": 2, "phone": "+10000000000"}
    assert "404" in await real.locator("h3", has_text="Webhook").text_content()
    failure_port = node(app, "n2").locator('.output[data-port="failure"]')
    assert "ran" in (await failure_port.get_attribute("class")).split()
    assert "ran" in (await node(app, "n3").get_attribute("class")).split()
    assert app.js_errors == []


async def _config_field_is(pg, flow_id: str, field: str, value: str) -> bool:
    return (await config_of(pg, flow_id)).get(field) == value


async def test_try_it_shows_why_a_broken_draft_cannot_run(app, tenant, http_peer: HttpPeer):
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    await open_editor(app, flow["id"])
    await app.evaluate("window.sbEditor.applyConfig('n3', {text: '', message_type: 'support'}, [])")
    await app.click("#tab-try")
    await app.locator("#tester-message").fill("hello")
    await app.locator("#tester-message").press("Enter")
    await app.locator(".turn.has-error .turn-errors", has_text="Fix the flow first").wait_for()
    await app.locator(".drawflow-node.has-error").first.wait_for()
    assert "n3" in await app.locator(".drawflow-node.has-error").first.inner_text()


async def test_rollback_reloads_the_graph_and_the_open_form(app, tenant, http_peer: HttpPeer):
    doc = order_flow(http_peer.url("/orders"))
    flow = await tenant.create_flow(doc)
    assert (await tenant.http.post(f"/api/flows/{flow['id']}/publish")).status_code == 200
    changed = dict(doc, nodes=[*doc["nodes"][:2], {**doc["nodes"][2], "config": {"text": "Version two"}}])
    saved = await tenant.http.put(f"/api/flows/{flow['id']}", json=changed)
    assert saved.status_code == 200, saved.text
    assert (await tenant.http.post(f"/api/flows/{flow['id']}/publish")).status_code == 200

    await open_editor(app, flow["id"])
    await node(app, "n3").click()
    assert await app.locator("#node-form #f-text").input_value() == "Version two"
    # An unsaved edit, then roll back to version 1: asked first, then graph and form show version 1.
    await app.locator("#node-form #f-text").fill("Never saved")
    await wait_until(lambda: _text_is(app, "n3", "Never saved"), what="the unsaved edit")
    await app.click("#tab-versions")
    rollback = app.locator("#versions-list li[data-version='1'] button[data-rollback]")
    await rollback.wait_for()
    await shot(app, "editor-versions")
    box = await app.locator("#panel-versions").bounding_box()
    button = await rollback.bounding_box()
    assert button["x"] + button["width"] <= box["x"] + box["width"]  # Roll back fits in the panel
    app.once("dialog", lambda dialog: dialog.accept())
    await rollback.click()
    await app.locator("#versions-list li[data-version='1'] .badge.status-active").wait_for()
    await wait_until(lambda: _text_is(app, "n3", "Sorry, try again later."), what="the rolled-back graph")
    assert await app.evaluate("window.sbEditor.dirty") is False
    await app.click("#tab-node")
    await wait_until(
        lambda: _field_is(app, "#node-form #f-text", "Sorry, try again later."),
        what="the open form to show the rolled-back value",
    )
    assert "Rolled back to version 1" in await app.locator("#editor-status").inner_text()
    assert app.js_errors == []


async def test_the_toolbar_stays_on_one_row_with_unsaved_changes(app, tenant, http_peer: HttpPeer):
    doc = order_flow(http_peer.url("/orders"))
    doc["name"] = "A flow with a rather long name for the shop's weekend pizza orders"
    doc["description"] = "Takes pizza orders from WhatsApp and sends them to the kitchen's order system"
    flow = await tenant.create_flow(doc)
    await open_editor(app, flow["id"])
    await app.evaluate("window.sbEditor.addNode('action.add_tag', 100, 400)")
    await app.locator("#editor-status", has_text="Unsaved changes").wait_for()
    bar = await app.locator(".editor-bar").bounding_box()
    publish = await app.locator('[data-editor-action="publish"]').bounding_box()
    back = await app.locator(".editor-bar a").first.bounding_box()
    assert abs(publish["y"] - back["y"]) < 8 and bar["height"] < 60
    assert publish["x"] + publish["width"] <= bar["x"] + bar["width"]
    await shot(app, "editor-unsaved")


# --- the shop owner's whole afternoon: build from empty, try over turns, publish, watch it answer ----------

GRID = {  # where each node is dropped (canvas pixels at zoom 1), by the id it gets
    "n2": (330, 40),
    "n3": (600, 40),
    "n4": (870, 20),
    "n5": (870, 170),
    "n6": (600, 220),
    "n7": (870, 320),
    "n8": (60, 420),
    "n9": (330, 420),
    "n10": (60, 600),
    "n11": (330, 600),
    "n12": (600, 600),
    "n13": (60, 780),
    "n14": (330, 780),
}
DROPS = [  # node id, type, what to type into its form
    (
        "n2",
        "action.call_webhook",
        {
            "#f-url": "URL",
            "#f-payload": '{"qty": "{{ vars.qty }}", "phone": "{{ phone_number }}"}',
            "#f-success_message": "Order {{ response.order_id }} for {{ vars.qty }}!",
        },
    ),
    ("n3", "logic.condition", {"#f-left": "{{ vars.qty }}", "#cond-op": "greater_than", "#f-right": "2"}),
    ("n4", "action.add_tag", {"#f-tag": "big-order"}),
    ("n5", "action.send_message", {"#f-text": "Enjoy your pizza!"}),
    ("n6", "action.control_ai_response", {"#ai-action": "disable"}),
    ("n7", "action.update_ai_context", {"pairs": ("tier", "gold")}),
    ("n8", "when.tag_added", {"#f-tag": "big-order"}),
    ("n9", "action.set_conversation_status", {"#f-status": "pending"}),
    ("n10", "when.conversation_created", {}),
    ("n11", "action.send_message", {"#f-text": "Welcome to Pizza Corner!"}),
    ("n12", "when.contact_created", {}),
    ("n13", "when.tag_removed", {"#f-tag": "vip"}),
    ("n14", "action.remove_tag", {"#f-tag": "vip-pending"}),
]
WIRES = [  # from, output index (port), to
    ("n1", 0, "n2"),
    ("n2", 0, "n3"),  # success
    ("n2", 1, "n6"),  # failure
    ("n3", 0, "n4"),  # true
    ("n3", 1, "n5"),  # false
    ("n4", 0, "n7"),
    ("n8", 0, "n9"),
    ("n10", 0, "n11"),
    ("n13", 0, "n14"),
]


async def _applied(pg, flow_id: str, before: dict[str, Any]) -> bool:
    return await config_of(pg, flow_id) != before


async def _fill_form(pg, flow_id: str, fields: dict[str, Any], url: str) -> None:
    await node(pg, flow_id).click()
    form = pg.locator(f"#node-form[data-node-id='{flow_id}']")
    await form.wait_for()
    if not fields:
        return
    before = await config_of(pg, flow_id)
    for selector, value in fields.items():
        if selector == "pairs":
            await form.locator("[data-list-add='list-context_data']").click()
            await form.locator("[name='context_data{}.key']").last.fill(value[0])
            await form.locator("[name='context_data{}.value']").last.fill(value[1])
        elif await form.locator(selector).evaluate("el => el.tagName") == "SELECT":
            await form.locator(selector).select_option(value)
        else:
            await form.locator(selector).fill(url if value == "URL" else value)
    await wait_until(lambda: _applied(pg, flow_id, before), what=f"{flow_id}'s form applied")


async def test_a_shop_owner_builds_every_node_type_tries_it_publishes_and_watches_it_answer(
    chromium, tenant, http_peer: HttpPeer
):
    http_peer.reply("POST", "/orders", PeerResponse.json({"order_id": "P-7"}))
    pg = await logged_in(chromium, tenant, viewport={"width": 1920, "height": 1200})
    try:
        await _build_from_empty(pg, http_peer.url("/orders"))
        await _try_over_two_turns(pg)
        assert http_peer.requests == []  # the dry run sent nothing
        # Publish, then a real customer writes twice: the webhook is called once, with the answer given.
        await pg.click('[data-editor-action="publish"]')
        await pg.locator("#flow-status.status-active").wait_for()
        channel = await tenant.generic_channel()
        await tenant.send_generic(channel, text="pizza order please", sender="+15557777")
        convo = await _conversation(tenant, "+15557777")
        await pg.goto(f"/conversations/{convo}")
        log = pg.locator("#message-log")
        await log.locator(".msg.out", has_text="How many pizzas?").wait_for(timeout=20000)
        assert await log.locator(".msg.out", has_text="Welcome to Pizza Corner!").count() == 1
        await tenant.send_generic(channel, text="3", sender="+15557777")
        await log.locator(".msg.out", has_text="Order P-7 for 3!").wait_for(timeout=20000)
        [request] = http_peer.requests
        assert request.json() == {"qty": 3, "phone": "+15557777"}
        await pg.locator("#conversation-tags", has_text="big-order").wait_for(timeout=20000)
        await shot(pg, "conversation-every-node-type")
        assert pg.js_errors == []
    finally:
        await pg.context.close()


async def _build_from_empty(pg, url: str) -> None:
    """A new flow; every node type dropped from the palette, wired, and set up through its form; saved."""
    await pg.fill("#create-flow-form input[name=name]", "Pizza Corner")
    await pg.click("#create-flow-form button")
    await pg.wait_for_selector("#flow-editor[data-ready]", state="attached")
    canvas = pg.locator("#canvas")
    for flow_id, type_, _ in DROPS:  # the new flow starts with n1, a message trigger
        x, y = GRID[flow_id]
        await pg.locator(f'[data-node-type="{type_}"]').drag_to(canvas, target_position={"x": x, "y": y})
        await node(pg, flow_id).wait_for()
    assert {n["type"] for n in (await export_doc(pg))["nodes"]} == set(NODE_TYPE_NAMES)
    for src, port, dst in WIRES:
        await node(pg, src).locator(".output").nth(port).drag_to(node(pg, dst).locator(".input"))
    assert len((await export_doc(pg))["edges"]) == len(WIRES)
    # The trigger becomes an intent that needs a quantity; every other node gets its settings.
    await node(pg, "n1").click()
    form = pg.locator("#node-form[data-node-id='n1']")
    await form.locator("#match-kind").select_option("intent")
    await form.locator("[name='match.display_name']").fill("Order pizza")
    for text in ("I want to order a pizza", "can I get pizzas delivered", "pizza order please"):
        await form.locator("[data-list-add='list-match-training_examples']").click()
        await form.locator("[name='match.training_examples[].text']").last.fill(text)
    await form.locator("[data-list-add='list-match-variables']").click()
    await form.locator("[name='match.variables[].name']").last.fill("qty")
    await form.locator("[name='match.variables[].prompt']").last.fill("How many pizzas?")
    await form.locator("[name='match.variables[].required:bool']").last.select_option("true")
    await wait_until(
        lambda: _variable_applied(pg), what="the intent with its required variable applied to n1"
    )
    for flow_id, _, fields in DROPS:
        await _fill_form(pg, flow_id, fields, url)
    await pg.click('[data-editor-action="save"]')
    await pg.locator("#editor-status", has_text="Draft saved").wait_for()
    assert await pg.locator(".drawflow-node.has-error").count() == 0


async def _try_over_two_turns(pg) -> None:
    """Try it: the quantity is asked for, then the order goes through (dry run), marked on the canvas."""
    await pg.click("#tab-try")
    message = pg.locator("#tester-message")
    await message.fill("pizza order please")  # no quantity in it ("a pizza" would read as 1)
    await message.press("Enter")
    await pg.locator(".turn").nth(0).locator(".bubble.bot", has_text="How many pizzas?").wait_for()
    await message.fill("3")
    await message.press("Enter")
    second = pg.locator(".turn").nth(1)
    await second.locator(".bubble.bot", has_text="Order [order_id] for 3!").wait_for()
    steps = await second.locator(".turn-steps").text_content()
    assert "n3" in steps and "true" in steps and "n4" in steps and "n7" in steps
    assert "ran" in (await node(pg, "n7").get_attribute("class")).split()
    assert "ran" not in (await node(pg, "n5").get_attribute("class")).split()
    await shot(pg, "editor-every-node-type-tried")


NODE_TYPE_NAMES = [
    "when.message_received",
    "when.conversation_created",
    "when.contact_created",
    "when.tag_added",
    "when.tag_removed",
    "logic.condition",
    "action.send_message",
    "action.control_ai_response",
    "action.update_ai_context",
    "action.call_webhook",
    "action.set_conversation_status",
    "action.add_tag",
    "action.remove_tag",
]


async def export_doc(pg) -> dict[str, Any]:
    return await pg.evaluate("window.sbEditor.exportDocument()")


async def _variable_applied(pg) -> bool:
    match = (await config_of(pg, "n1")).get("match") or {}
    variables = match.get("variables") or []
    return (
        bool(variables)
        and variables[0].get("required") is True
        and len(match.get("training_examples", [])) == 3
    )


async def _conversation(tenant, phone: str) -> str:
    async def find() -> str | None:
        for item in (await tenant.http.get("/api/conversations")).json():
            if item["contact_phone"] == phone:
                return item["id"]
        return None

    return await wait_until(find, timeout_s=20, what=f"the conversation of {phone}")

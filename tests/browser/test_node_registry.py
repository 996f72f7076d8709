"""Every node type of the registry, in real Chromium: drop it from the palette, open its form, fill, save, reload.

The cases are generated from flows.nodes.registry, so a new node type is tested here as soon
as it is registered (and fails until FILL says how to fill its required fields).
"""

from __future__ import annotations

import msgspec
import pytest
from conftest import shot
from test_app_pages import page  # noqa: F401  (the logged-in app page fixture)

from flows.nodes.registry import NODE_TYPES
from flows.validate import check_config
from tests.integration.test_trigger_overlap import keyword_flow

pytestmark = pytest.mark.browser

# How a person fills each required config field in its form: (selector inside #node-form, value).
FILL: dict[str, list[tuple[str, str]]] = {
    "text": [("#f-text", "Hello {{ contact.first_name }}")],
    "tag": [("#f-tag", "vip")],
    "status": [("#f-status", "on_hold")],
    "url": [("#f-url", "https://shop.example/hooks/order")],
    "left": [("#f-left", "{{ message_text }}")],
    "context_data": [
        ("[data-list-add='list-context_data']", "click"),
        ("[name='context_data{}.key']", "tier"),
        ("[name='context_data{}.value']", "gold"),
    ],
    # Fields whose form control starts on a valid choice (a select) need no typing.
    "match": [],
    "action": [],
    "op": [],
}


def required_fields(type_: str) -> list[str]:
    return [f.encode_name for f in msgspec.structs.fields(NODE_TYPES[type_].config) if f.required]


def starts_invalid(type_: str) -> bool:
    spec = NODE_TYPES[type_]
    return check_config(spec, dict(spec.starting_config), node_id="n")[0] is None


def test_every_required_field_has_a_way_to_fill_it():
    missing = {(t, f) for t in NODE_TYPES for f in required_fields(t) if f not in FILL}
    assert missing == set(), "add the form control of these fields to FILL"


async def _open_editor(page, tenant, name: str) -> list[int]:
    flow = await tenant.create_flow(
        {
            "schema": "switchboard.flow/v1",
            "name": name,
            "nodes": [
                {
                    "id": "n1",
                    "type": "when.message_received",
                    "config": {"match": {"kind": "any"}},
                    "position": {"x": 40, "y": 40},
                }
            ],
            "edges": [],
        }
    )
    server_errors: list[int] = []
    page.on("response", lambda r: server_errors.append(r.status) if r.status >= 500 else None)
    await page.goto(f"/flows/{flow['id']}/edit")
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    return server_errors


async def _drop(page, type_: str) -> object:
    await page.locator(f'[data-node-type="{type_}"]').drag_to(
        page.locator("#canvas"), target_position={"x": 360, "y": 220}
    )
    node = page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text="n2"))
    await node.wait_for()
    return node


@pytest.mark.parametrize("type_", list(NODE_TYPES))
async def test_drop_open_fill_save_reload(page, tenant, type_):
    server_errors = await _open_editor(page, tenant, f"Palette {type_}")
    node = await _drop(page, type_)
    await node.click()
    form = page.locator("#node-form[data-node-id='n2']")
    await form.wait_for()
    typed = False
    for field in required_fields(type_):
        for selector, value in FILL[field]:
            if value == "click":
                await form.locator(selector).click()
            else:
                await form.locator(selector).last.fill(value)
                typed = True
    if typed:
        await page.locator("#node-form .saved").wait_for()  # forms apply as you type
    await page.click('[data-editor-action="save"]')
    await page.locator("#editor-status", has_text="Draft saved").wait_for()
    # What the editor holds once saved (normalised by the server) is what a reload shows.
    applied = await page.evaluate("window.sbEditor.configs['n2']")
    await page.reload()
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    saved = await page.evaluate("window.sbEditor.exportDocument()")
    (again,) = [n for n in saved["nodes"] if n["id"] == "n2"]
    assert again["type"] == type_ and again["config"] == applied
    assert server_errors == []
    assert page.js_errors == []


@pytest.mark.parametrize("type_", [t for t in NODE_TYPES if starts_invalid(t)])
async def test_an_incomplete_node_saves_as_a_draft_with_its_error_on_the_node(page, tenant, type_):
    server_errors = await _open_editor(page, tenant, f"Incomplete {type_}")
    node = await _drop(page, type_)
    await node.click()
    await page.locator("#node-form[data-node-id='n2']").wait_for()
    await page.click('[data-editor-action="save"]')
    await page.locator("#editor-status", has_text="to fix before publishing").wait_for()
    badge = node.locator(".sb-node-badge")
    await badge.wait_for()
    assert await badge.inner_text()
    assert "Expected `" not in await badge.inner_text()
    await page.reload()
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    saved = await page.evaluate("window.sbEditor.exportDocument()")
    (again,) = [n for n in saved["nodes"] if n["id"] == "n2"]
    assert again["config"] == NODE_TYPES[type_].starting_config
    # Publish needs a valid flow: refused, and the reason is on the node.
    await page.click('[data-editor-action="publish"]')
    await page.locator("#editor-status", has_text="Not published").wait_for()
    await node.locator(".sb-node-badge").wait_for()
    if type_ == "action.call_webhook":
        await shot(page, "editor-incomplete-webhook")
    assert server_errors == []
    assert page.js_errors == []


async def test_decimals_round_trip_through_the_forms(page, tenant):
    await _open_editor(page, tenant, "Decimals")
    node = await _drop(page, "action.call_webhook")
    await node.click()
    form = page.locator("#node-form[data-node-id='n2']")
    await form.locator("#f-url").fill("https://shop.example/hook")
    await form.locator("[name='timeout_seconds:float']").fill("2.5")
    await form.locator("[name='retry_delay_seconds:float']").fill("0.5")
    await page.locator("#node-form .saved").wait_for()  # forms apply as you type
    trigger = page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text="n1"))
    await trigger.click()
    form = page.locator("#node-form[data-node-id='n1']")
    await form.wait_for()
    await form.locator("#match-kind").select_option("intent")
    await form.locator("[name='match.display_name']").fill("Order")
    await form.locator("[data-list-add='list-match-training_examples']").click()
    await form.locator("[name='match.training_examples[].text']").last.fill("I want to order")
    await form.locator("[name='match.confidence_threshold:float']").fill("0.65")
    await page.locator("#node-form .saved").wait_for()  # forms apply as you type
    await page.click('[data-editor-action="save"]')
    await page.locator("#editor-status", has_text="Draft saved").wait_for()
    await page.reload()
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    configs = await page.evaluate("window.sbEditor.configs")
    assert configs["n2"]["timeout_seconds"] == 2.5 and configs["n2"]["retry_delay_seconds"] == 0.5
    assert configs["n1"]["match"]["confidence_threshold"] == 0.65
    # The values the browser shows again are the decimals, accepted by the inputs' step.
    await page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text="n2")).click()
    timeout = page.locator("#node-form[data-node-id='n2'] [name='timeout_seconds:float']")
    await timeout.wait_for()
    assert await timeout.input_value() == "2.5"
    assert await timeout.evaluate("el => el.checkValidity()")
    await shot(page, "editor-webhook-decimals")


async def test_negative_examples_round_trip_through_the_intent_form(page, tenant):
    """A negative example added by a correction shows in the form, survives an edit, and one can be added."""
    flow = await tenant.create_flow(
        {
            "schema": "switchboard.flow/v1",
            "name": "Negatives",
            "nodes": [
                {
                    "id": "n1",
                    "type": "when.message_received",
                    "config": {
                        "match": {
                            "kind": "intent",
                            "display_name": "Create order",
                            "training_examples": [{"text": "I want to order a pizza", "language": "en"}],
                            "negative_examples": [{"text": "where is my order", "language": "en"}],
                        }
                    },
                    "position": {"x": 40, "y": 40},
                }
            ],
            "edges": [],
        }
    )
    await page.goto(f"/flows/{flow['id']}/edit")
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    await page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text="n1")).click()
    form = page.locator("#node-form[data-node-id='n1']")
    await form.wait_for()
    negatives = form.locator("[name='match.negative_examples[].text']")
    assert await negatives.first.input_value() == "where is my order"
    assert await form.locator(".hint", has_text="must not run this action").is_visible()
    await form.locator("[data-list-add='list-match-negative_examples']").click()
    await negatives.last.fill("cancel my order")
    await form.locator("[name='match.negative_examples[].language']").last.fill("en")
    await page.locator("#node-form .saved").wait_for()  # forms apply as you type
    await page.click('[data-editor-action="save"]')
    await page.locator("#editor-status", has_text="Draft saved").wait_for()
    await page.reload()
    await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
    saved = await page.evaluate("window.sbEditor.configs['n1']")
    assert saved["match"]["negative_examples"] == [
        {"text": "where is my order", "language": "en"},
        {"text": "cancel my order", "language": "en"},
    ]
    await page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text="n1")).click()
    await form.wait_for()
    assert [await e.input_value() for e in await negatives.all()] == ["where is my order", "cancel my order"]
    await shot(page, "editor-intent-negative-examples")
    assert page.js_errors == []


VIEWPORTS = {"desktop": {"width": 1440, "height": 900}, "phone": {"width": 390, "height": 844}}


async def test_pages_with_overlaps_refusals_and_advice_at_desktop_and_phone_sizes(page, tenant):
    orders = await tenant.create_flow(keyword_flow("Orders", ["order"], "Orders here"))
    await tenant.create_flow(keyword_flow("Human hand-off", ["order"], "Human hand-off here"))
    for size, viewport in VIEWPORTS.items():
        await page.set_viewport_size(viewport)
        await page.goto("/flows")
        await page.locator(".overlap", has_text="'order' also fires Human hand-off").wait_for()
        await shot(page, f"nodes-flows-overlap-{size}")
        await page.goto(f"/flows/{orders['id']}/edit")
        await page.wait_for_selector("#flow-editor[data-ready]", state="attached")
        await page.locator("#trigger-overlaps", has_text="also fires Human hand-off").wait_for()
        if size == "phone":  # the editor's phone layout is the editor helper's; the canvas is covered here
            await shot(page, f"nodes-editor-overlap-{size}")
        else:
            trigger = page.locator(".drawflow-node", has=page.locator(".sb-node-id", has_text="t"))
            await trigger.click()
            form = page.locator("#node-form[data-node-id='t']")
            await form.wait_for()
            await form.locator("#match-kind").select_option("intent")
            await form.locator("[name='match.display_name']").fill("Order")
            for text in ("I want to order a pizza", "can I order two pizzas", "order pizza for tonight"):
                await form.locator("[data-list-add='list-match-training_examples']").click()
                await form.locator("[name='match.training_examples[].text']").last.fill(text)
            await page.locator("#threshold-advice", has_text="Held-out examples score").wait_for()
            await shot(page, f"nodes-editor-threshold-{size}")
        await page.goto("/actions/new")
        await page.fill("#f-trigger\\.match\\.display_name", "Order")
        await page.fill("#f-webhook\\.url", "ftp://nowhere")
        await page.click("#create-action")
        await page.locator("#form-errors", has_text="http://").wait_for()
        await shot(page, f"nodes-builder-refused-{size}")
        await page.goto("/no/such/page")
        await page.locator("#error").wait_for()
        await shot(page, f"nodes-not-found-{size}")
        await page.goto("/tester")
        await page.fill("#tester-message", "I want to order")
        await page.click("#tester-send")
        await page.locator("text=answered 2 times").wait_for()
        await shot(page, f"nodes-tester-twice-{size}")
    assert page.js_errors == []

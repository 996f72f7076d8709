"""The tester over HTTP: dry runs with a sample webhook response, and conversations over several turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.flows import intent_hook_flow
from tests.support.http_peer import HttpPeer, PeerResponse
from tests.support.stack import Tenant

ROOT = Path(__file__).resolve().parents[2]


def booking_flow(url: str, **hook: Any) -> dict[str, Any]:
    """intent "Book a table" (needs `people`) -> webhook whose messages read the response -> thanks."""
    doc = intent_hook_flow(
        url,
        name="Bookings",
        display_name="Book a table",
        examples=[
            "I want to book a table",
            "can I reserve a table for dinner",
            "book a table please",
            "table reservation tonight",
        ],
        variable="people",
        prompt="For how many people?",
        ids=("intent", "book"),
        **{
            "success_message": "Booked for {{ vars.people }}: reference {{ response.booking.ref }}.",
            "failure_message": "Sorry, no table.",
            **hook,
        },
    )
    doc["nodes"].append(
        {"id": "thanks", "type": "action.send_message", "config": {"text": "Thanks {{ response.name }}"}}
    )
    doc["edges"].append({"from": "book", "to": "thanks", "port": "success"})
    return doc


async def run(tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await tenant.http.post("/api/tester/run", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def ran(result: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(t["node_id"], t["port"]) for t in result["trace"] if t["type"].startswith(("action.", "when."))]


async def test_a_dry_run_answers_the_webhook_with_a_sample_of_the_fields_its_messages_read(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    document = json.loads((ROOT / "flows/examples/create-order-webhook.flow.json").read_text())
    document["nodes"][1]["config"]["url"] = http_peer.url("/api/orders")
    await tenant.create_flow(document)
    result = await run(tenant, message="I want to buy 3 iPhones")
    assert result["layer"] == "external_action", result
    assert ran(result) == [("intent", None), ("create", "success")]
    assert result["webhook"]["executed"] is False and result["webhook"]["sample"] is True
    assert result["webhook"]["response"] == {"order_id": "[order_id]"}
    assert [m["text"] for m in result["messages"]] == ["Order [order_id] created!"]
    assert http_peer.requests == []


async def test_the_sample_response_can_be_edited_and_reaches_the_nodes_after_the_webhook(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    flow = await tenant.create_flow(booking_flow(http_peer.url("/book")))
    sample = {"booking": {"ref": "T-7"}, "name": "Ada"}
    result = await run(tenant, message="I want to book a table for 4 people", sample_response=sample)
    assert ran(result) == [("intent", None), ("book", "success"), ("thanks", None)], result["trace"]
    assert [m["text"] for m in result["messages"]] == ["Booked for 4: reference T-7.", "Thanks Ada"]
    assert result["webhook"]["response"] == sample and result["webhook"]["flow_id"] == flow["id"]
    assert http_peer.requests == []


async def test_a_missing_variable_is_asked_for_and_answered_in_the_next_turn(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    await tenant.create_flow(booking_flow(http_peer.url("/book")))
    first = await run(tenant, message="table reservation tonight")
    assert first["layer"] == "external_action"
    assert [m["text"] for m in first["messages"]] == ["For how many people?"]
    assert first["state"]["pending"]["kind"] == "missing_variables"
    assert first["state"]["pending"]["missing"] == ["people"]
    assert first["webhook"] is None

    second = await run(tenant, message="4", state=first["state"])
    assert second["layer"] in ("pending", "external_action"), second
    assert second["webhook"]["payload"] == {"people": 4, "phone": "+10000000000"}
    assert second["vars"] == {"people": 4}
    assert second["state"]["pending"] is None
    assert [h["role"] for h in second["state"]["history"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "assistant",
    ]
    assert http_peer.requests == []


async def test_a_confirmation_is_asked_then_approved_and_the_webhook_really_runs(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    http_peer.reply("POST", "/book", PeerResponse.json({"booking": {"ref": "R-1"}, "name": "Ada"}))
    await tenant.create_flow(
        booking_flow(
            http_peer.url("/book"),
            requires_confirmation=True,
            confirmation_message="Book for {{ vars.people }}?",
        )
    )
    first = await run(tenant, message="I want to book a table for 2 people", execute=True)
    assert [m["text"] for m in first["messages"]] == ["Book for 2?"]
    assert first["state"]["pending"]["kind"] == "confirmation"
    assert http_peer.requests == []
    second = await run(tenant, message="yes please", state=first["state"], execute=True)
    assert second["webhook"]["executed"] is True and second["webhook"]["status_code"] == 200
    assert [m["text"] for m in second["messages"]] == ["Booked for 2: reference R-1.", "Thanks Ada"]
    [request] = http_peer.requests
    assert request.json() == {"people": 2, "phone": "+10000000000"}
    assert second["state"]["pending"] is None


async def test_the_editor_draft_is_tested_as_sent_not_as_saved(tenant: Tenant, http_peer: HttpPeer) -> None:
    saved = booking_flow(http_peer.url("/book"))
    flow = await tenant.create_flow(saved)
    draft = json.loads(json.dumps(saved))
    draft["nodes"][2]["config"]["text"] = "Unsaved thanks"
    result = await run(
        tenant,
        message="book a table for 3 people",
        flow_id=flow["id"],
        document=draft,
        sample_response={"booking": {"ref": "X"}},
    )
    assert [m["text"] for m in result["messages"]][-1] == "Unsaved thanks"


async def test_an_invalid_draft_is_refused_with_its_errors_per_node(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    flow = await tenant.create_flow(booking_flow(http_peer.url("/book")))
    draft = booking_flow(http_peer.url("/book"))
    draft["nodes"][2]["config"]["text"] = ""
    response = await tenant.http.post(
        "/api/tester/run", json={"message": "hello", "flow_id": flow["id"], "document": draft}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert any(e["node_id"] == "thanks" and e["field"] == "config.text" for e in body["errors"]), body


async def test_ai_state_and_tags_carry_over_between_turns(tenant: Tenant) -> None:
    await tenant.create_flow(
        {
            "schema": "switchboard.flow/v1",
            "name": "VIP",
            "status": "active",
            "nodes": [
                {
                    "id": "t",
                    "type": "when.message_received",
                    "config": {"match": {"kind": "keywords", "keywords": ["vip"]}},
                },
                {"id": "tag", "type": "action.add_tag", "config": {"tag": "vip"}},
                {
                    "id": "ctx",
                    "type": "action.update_ai_context",
                    "config": {"context_data": {"tier": "gold"}},
                },
                {"id": "off", "type": "action.control_ai_response", "config": {"action": "disable"}},
            ],
            "edges": [{"from": "t", "to": "tag"}, {"from": "tag", "to": "ctx"}, {"from": "ctx", "to": "off"}],
        }
    )
    first = await run(tenant, message="I am vip")
    assert first["state"]["tags"] == ["vip"]
    assert first["state"]["ai"] == {"ai_enabled": False, "custom_prompt": None, "context": {"tier": "gold"}}
    second = await run(tenant, message="what are your opening hours?", state=first["state"])
    # The AI stays off from the first turn: nobody answers.
    assert second["layer"] is None and second["messages"] == []
    assert second["state"]["ai"]["context"] == {"tier": "gold"} and second["state"]["tags"] == ["vip"]

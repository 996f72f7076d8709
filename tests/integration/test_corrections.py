"""Corrections become training data: the API edits the flow's draft, logs who and when, and the engine learns."""

from __future__ import annotations

import pytest

from tests.support.http_peer import HttpPeer, http_peer  # noqa: F401
from tests.support.stack import Tenant, wait_until

pytestmark = pytest.mark.slow

ORDER = [
    "I want to order a pizza",
    "place an order for two shirts",
    "I'd like to buy a lamp",
    "quiero hacer un pedido",
]


def order_flow(url: str) -> dict:
    return {
        "schema": "switchboard.flow/v1",
        "name": "Orders",
        "status": "active",
        "nodes": [
            {
                "id": "intent",
                "type": "when.message_received",
                "config": {
                    "match": {
                        "kind": "intent",
                        "display_name": "Create order",
                        "training_examples": [{"text": t} for t in ORDER],
                    }
                },
            },
            {"id": "hook", "type": "action.call_webhook", "config": {"url": url, "max_retries": 0}},
        ],
        "edges": [{"from": "intent", "to": "hook"}],
    }


async def try_message(tenant: Tenant, message: str) -> dict:
    response = await tenant.http.post("/api/tester/run", json={"message": message})
    assert response.status_code == 200, response.text
    return response.json()


async def draft_match(tenant: Tenant, flow_id: str) -> dict:
    flow = (await tenant.http.get(f"/api/flows/{flow_id}")).json()
    return flow["document"]["nodes"][0]["config"]["match"], flow


async def test_none_correction_adds_a_negative_in_the_draft_and_the_engine_learns_it(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    wrong = await try_message(tenant, "where is my order?")
    assert wrong["match"]["display_name"] == "Create order"  # the mistake a user sees

    response = await tenant.http.post(
        "/api/corrections",
        json={
            "message": "where is my order?",
            "flow_id": flow["id"],
            "node_id": "none",
            "matched_node_id": "intent",
        },
    )
    assert response.status_code == 201, response.text
    correction = response.json()
    assert (correction["kind"], correction["node_id"], correction["created_by"]) == (
        "negative",
        "intent",
        tenant.email,
    )
    match, saved = await draft_match(tenant, flow["id"])
    assert match["negative_examples"] == [{"text": "where is my order?", "language": ""}]
    assert saved["draft_revision"] == correction["draft_revision"] > flow["draft_revision"]
    assert saved["active_version"] == flow["active_version"]  # a new draft: the published version still runs

    published = await tenant.http.post(f"/api/flows/{flow['id']}/publish")
    assert published.status_code in (200, 201), published.text
    fixed = await try_message(tenant, "where is my order?")
    assert fixed["match"] is None and fixed["layer"] != "external_action"
    assert (await try_message(tenant, "I want to order 3 lamps"))["match"]["display_name"] == "Create order"

    log = (await tenant.http.get("/api/corrections", params={"flow_id": flow["id"]})).json()
    assert [(c["text"], c["kind"], c["created_by"]) for c in log] == [
        ("where is my order?", "negative", tenant.email)
    ]
    assert log[0]["created_at"]


async def test_example_correction_moves_the_text_out_of_the_negatives(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    for node_id, matched in (("none", "intent"), ("intent", None)):
        body = {"message": "gimme two of those", "flow_id": flow["id"], "node_id": node_id, "language": "en"}
        if matched:
            body["matched_node_id"] = matched
        response = await tenant.http.post("/api/corrections", json=body)
        assert response.status_code == 201, response.text
    match, _ = await draft_match(tenant, flow["id"])
    assert match["negative_examples"] == []
    assert match["training_examples"][-1] == {"text": "gimme two of those", "language": "en"}
    again = await tenant.http.post(
        "/api/corrections",
        json={"message": "GIMME two of those ", "flow_id": flow["id"], "node_id": "intent"},
    )
    assert again.status_code == 201
    match, _ = await draft_match(tenant, flow["id"])
    assert [e["text"] for e in match["training_examples"]].count("gimme two of those") == 1
    log = (await tenant.http.get("/api/corrections")).json()
    assert [c["kind"] for c in log] == ["example", "example", "negative"]


async def test_correction_from_a_logged_run(tenant: Tenant, http_peer: HttpPeer, db) -> None:
    """A run from the real message path: its text and its match come from the run."""
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    channel = await tenant.generic_channel()
    response = await tenant.send_generic(channel, text="where is my order?", sender="+15550107")
    assert response.status_code == 200
    run_id = await wait_until(
        lambda: db.fetchval(
            "SELECT r.id FROM runs r WHERE r.workspace = $1 AND r.finished_at IS NOT NULL "
            "AND r.result::text LIKE '%intent%' ORDER BY r.started_at DESC LIMIT 1",
            __import__("uuid").UUID(tenant.workspace_id),
        )
    )
    from tests.integration.test_ui_fragments import logged_in

    client, _ = await logged_in(tenant)
    try:
        page = await client.get(f"/logs/runs/{run_id}", headers={"HX-Request": "true"})
        assert 'id="correction-form"' in page.text and f'value="{run_id}"' in page.text, page.text[:300]
    finally:
        await client.aclose()
    response = await tenant.http.post(
        "/api/corrections", json={"run_id": str(run_id), "flow_id": flow["id"], "node_id": "none"}
    )
    assert response.status_code == 201, response.text
    correction = response.json()
    assert (correction["text"], correction["matched_node_id"], correction["run_id"]) == (
        "where is my order?",
        "intent",
        str(run_id),
    )
    match, _ = await draft_match(tenant, flow["id"])
    assert [e["text"] for e in match["negative_examples"]] == ["where is my order?"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"message": "hi", "node_id": "nope"}, 400, "no node 'nope'"),
        ({"message": "hi", "node_id": "hook"}, 400, "not an intent trigger"),
        ({"message": "hi", "node_id": "none"}, 400, "matched_node_id"),
        ({"message": "  ", "node_id": "intent"}, 400, "message"),
        ({"message": "hi", "node_id": "intent", "run_id": "not-a-run"}, 400, "not in this workspace"),
    ],
)
async def test_bad_corrections_say_why(
    tenant: Tenant, http_peer: HttpPeer, body: dict, status: int, says: str
) -> None:
    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    response = await tenant.http.post("/api/corrections", json={**body, "flow_id": flow["id"]})
    assert response.status_code == status and says in response.text, response.text
    missing = await tenant.http.post(
        "/api/corrections",
        json={"message": "hi", "node_id": "intent", "flow_id": "00000000-0000-0000-0000-000000000000"},
    )
    assert missing.status_code == 404


async def test_tester_page_shows_scores_and_its_correction_form_edits_the_draft(
    tenant: Tenant, http_peer: HttpPeer
) -> None:
    from tests.integration.test_ui_fragments import logged_in

    flow = await tenant.create_flow(order_flow(http_peer.url("/orders")))
    client, csrf = await logged_in(tenant)
    try:
        headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
        result = await client.post("/tester/run", headers=headers, data={"message": "where is my order?"})
        assert result.status_code == 200 and 'id="action-scores"' in result.text
        assert 'id="correction-form"' in result.text
        choice = f"none::{flow['id']}::intent"
        assert f'value="{choice}"' in result.text
        saved = await client.post(
            "/corrections", headers=headers, data={"choice": choice, "message": "where is my order?"}
        )
        assert saved.status_code == 200 and 'id="correction-result"' in saved.text
        assert "negative examples" in saved.text
        match, _ = await draft_match(tenant, flow["id"])
        assert [e["text"] for e in match["negative_examples"]] == ["where is my order?"]
        refused = await client.post("/corrections", headers=headers, data={"choice": "", "message": "x"})
        assert refused.status_code == 422 and "Choose the action" in refused.text
    finally:
        await client.aclose()

"""Two active flows whose message triggers overlap: flagged in the flows list, the editor, the API and the tester."""

from __future__ import annotations

from tests.integration.test_editor_refusals import logged_in
from tests.integration.test_webhook_actions import reply_flow
from tests.support.stack import Tenant


def keyword_flow(name: str, keywords: list[str], reply: str) -> dict:
    return {**reply_flow(keywords=keywords, text=reply), "name": name}


async def test_overlapping_keyword_triggers_are_reported_everywhere(tenant: Tenant) -> None:
    orders = await tenant.create_flow(keyword_flow("Orders", ["order", "buy"], "Which product?"))
    await tenant.create_flow(keyword_flow("Human hand-off", ["order", "human"], "A person will answer."))
    await tenant.create_flow(keyword_flow("Refunds", ["refund"], "Sorry to hear that."))

    listed = {f["name"]: f for f in (await tenant.http.get("/api/flows")).json()}
    assert [o["message"] for o in listed["Orders"]["overlaps"]] == ["'order' also fires Human hand-off"]
    assert [o["message"] for o in listed["Human hand-off"]["overlaps"]] == ["'order' also fires Orders"]
    assert listed["Refunds"]["overlaps"] == []

    client, csrf = await logged_in(tenant)
    try:
        page = (await client.get("/flows")).text
        assert (
            "&#39;order&#39; also fires Human hand-off" in page or "'order' also fires Human hand-off" in page
        )
        editor = (await client.get(f"/flows/{orders['id']}/edit")).text
        assert 'id="trigger-overlaps"' in editor and "also fires Human hand-off" in editor
        tried = await client.post(
            "/tester/run",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            data={"message": "I want to order a pizza", "mode": "dry"},
        )
        assert tried.status_code == 200
        assert "answered 2 times" in tried.text
    finally:
        await client.aclose()
    api = await tenant.http.post("/api/tester/run", json={"message": "I want to order a pizza"})
    assert sorted(api.json()["answered_by"]) == ["Human hand-off", "Orders"]
    single = await tenant.http.post("/api/tester/run", json={"message": "a refund please"})
    assert single.json()["answered_by"] == ["Refunds"]


async def test_batch_test_scores_a_csv_through_the_tester_service(tenant: Tenant) -> None:
    await tenant.create_flow(keyword_flow("Orders", ["order"], "Which product?"))
    client, csrf = await logged_in(tenant)
    try:
        csv_text = "message,expected\nI want to order,trigger\nplease order again,oos\n\n,trigger\n"
        scored = await client.post(
            "/tester/batch",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            files={"file": ("batch.csv", csv_text.encode(), "text/csv")},
        )
        assert scored.status_code == 200, scored.text
        assert 'id="batch-accuracy">50.0%' in scored.text
        assert 'id="confusion"' in scored.text and "(none)" in scored.text
        empty = await client.post(
            "/tester/batch",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            files={"file": ("empty.csv", b"message,expected\n", "text/csv")},
        )
        assert empty.status_code == 422 and "has no rows with a message" in empty.text
    finally:
        await client.aclose()

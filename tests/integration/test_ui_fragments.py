"""Server-side tests of the settings fragments: LLM settings are saved, the key is write-only, CSRF holds."""

from __future__ import annotations

import re
import uuid

import httpx

from tests.support.stack import Tenant

PASSWORD = "correct horse battery"


async def logged_in(tenant: Tenant) -> tuple[httpx.AsyncClient, str]:
    client = httpx.AsyncClient(base_url=tenant.stack.base_url)
    token = re.search(r'name="csrf-token" content="([^"]+)"', (await client.get("/login")).text).group(1)
    response = await client.post("/login", data={"email": tenant.email, "password": PASSWORD, "_csrf": token})
    assert response.status_code in (302, 303)
    settings = await client.get("/settings")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', settings.text).group(1)
    return client, csrf


async def test_llm_settings_are_saved_and_the_key_is_write_only(tenant: Tenant, db) -> None:
    client, csrf = await logged_in(tenant)
    try:
        page = await client.get("/settings")
        assert page.status_code == 200 and 'id="llm-settings"' in page.text and "not set" in page.text
        key = "sk-test-" + uuid.uuid4().hex
        saved = await client.post(
            "/settings/llm",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            data={
                "model": "my-model",
                "base_url": "http://127.0.0.1:9/v1",
                "api_key": key,
                "monthly_token_quota": "5000",
            },
        )
        assert saved.status_code == 200
        assert saved.text.lstrip().startswith('<section class="card" id="llm-settings">')
        assert key not in saved.text and "Saved" in saved.text and 'value="my-model"' in saved.text
        stored = await db.fetchrow(
            "SELECT llm_api_key_enc, llm_model, monthly_token_quota FROM workspaces WHERE id = $1",
            uuid.UUID(tenant.workspace_id),
        )
        assert stored["llm_model"] == "my-model" and stored["monthly_token_quota"] == 5000
        assert stored["llm_api_key_enc"] and key not in stored["llm_api_key_enc"]

        # An empty key field keeps the stored key; "remove" clears it.
        kept = await client.post("/settings/llm", headers={"X-CSRF-Token": csrf}, data={"model": "my-model"})
        assert kept.status_code == 200 and "leave empty to keep" in kept.text
        removed = await client.post(
            "/settings/llm", headers={"X-CSRF-Token": csrf}, data={"model": "my-model", "remove_key": "1"}
        )
        assert "not set" in removed.text

        bad = await client.post(
            "/settings/llm",
            headers={"X-CSRF-Token": csrf},
            data={"model": "m", "monthly_token_quota": "lots"},
        )
        assert bad.status_code == 422 and "whole number" in bad.text
        huge = await client.post(
            "/settings/llm",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            data={"model": "m", "monthly_token_quota": "99999999999999999999"},
        )
        # In the card, in words (it was a JSON body quoting PostgreSQL's "out of int64 range").
        assert huge.status_code == 422 and 'id="llm-settings"' in huge.text and "whole number" in huge.text
        refused = await client.post("/settings/llm", data={"model": "x"})
        assert refused.status_code == 403
    finally:
        await client.aclose()


async def test_ui_errors_are_pages_not_json(tenant: Tenant) -> None:
    client, _ = await logged_in(tenant)
    try:
        missing = await client.get(f"/conversations/{uuid.uuid4()}")
        assert missing.status_code == 404 and 'id="error"' in missing.text and "<html" in missing.text
        fragment = await client.get(f"/conversations/{uuid.uuid4()}", headers={"HX-Request": "true"})
        assert fragment.status_code == 404 and "<html" not in fragment.text
    finally:
        await client.aclose()


async def test_an_ai_context_that_is_not_key_value_pairs_is_refused_and_stores_nothing(
    tenant: Tenant,
) -> None:
    """A hand-made form (or a script) sending `context` as a list or text: a 422 that says why, and the
    conversation keeps its context (it became a JSON array, and the conversation answered 500 after)."""

    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hello")).status_code == 200

    cid = await tenant.newest_conversation()
    client, csrf = await logged_in(tenant)
    try:
        saved = await client.post(
            f"/conversations/{cid}/ai",
            headers={"HX-Request": "true", "X-CSRF-Token": csrf},
            data={"ai_enabled": "true", "context{}.key": "tier", "context{}.value": "vip"},
        )
        assert saved.status_code == 200 and "Saved" in saved.text
        for bad in ("[1, 2]", '"text"', "7"):
            refused = await client.post(
                f"/conversations/{cid}/ai",
                headers={"HX-Request": "true", "X-CSRF-Token": csrf},
                data={"ai_enabled": "true", "context:json": bad},
            )
            assert refused.status_code == 422, (bad, refused.status_code, refused.text[:300])
            assert 'id="ai-state"' in refused.text and "key and value" in refused.text
        detail = await tenant.http.get(f"/api/conversations/{cid}")
        assert detail.status_code == 200, detail.text
        assert detail.json()["ai"]["context"] == {"tier": "vip"}
    finally:
        await client.aclose()


async def test_a_personality_without_its_texts_is_refused(tenant: Tenant) -> None:
    """The form marks both texts required; a request without them (a script, an old page) is refused with
    the reason too: an empty fallback text made that core intent answer customers with silence."""
    client, csrf = await logged_in(tenant)
    try:
        headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
        refused = await client.post(
            "/settings/personalities/sales",
            headers=headers,
            data={"system_prompt": "Sell.", "fallback_text": " "},
        )
        assert refused.status_code == 422, refused.text[:300]
        assert 'id="personality-sales"' in refused.text and "fallback text" in refused.text.lower()
        page = await client.get("/settings")
        assert "Thanks for your interest!" in page.text  # the default is still what customers get
        saved = await client.post(
            "/settings/personalities/sales",
            headers=headers,
            data={"system_prompt": "Sell.", "fallback_text": "A seller will call you."},
        )
        assert saved.status_code == 200 and "Saved" in saved.text
    finally:
        await client.aclose()


async def test_a_conversation_whose_stored_context_is_not_an_object_still_opens(tenant: Tenant, db) -> None:
    """A context stored as a JSON array (what the AI state form let through before it refused it) made
    the conversation answer 500 in the API and on its page: it reads as an empty context instead."""

    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hello")).status_code == 200

    cid = await tenant.newest_conversation()
    await db.execute(
        """UPDATE conversations SET ai_context = '[{"tier": "vip"}, 1, 2]'::jsonb WHERE id = $1""",
        uuid.UUID(cid),
    )
    detail = await tenant.http.get(f"/api/conversations/{cid}")
    assert detail.status_code == 200, detail.text
    assert detail.json()["ai"]["context"] == {}
    client, _ = await logged_in(tenant)
    try:
        page = await client.get(f"/conversations/{cid}")
        assert page.status_code == 200 and 'id="ai-state"' in page.text
    finally:
        await client.aclose()


async def test_a_status_set_by_a_flow_shows_as_it_is(tenant: Tenant) -> None:
    """A flow may set any status ("escalated"); the conversation card showed "open" selected instead."""

    channel = await tenant.generic_channel()
    assert (await tenant.send_generic(channel, text="hello")).status_code == 200

    cid = await tenant.newest_conversation()
    patched = await tenant.http.patch(f"/api/conversations/{cid}", json={"status": "escalated"})
    assert patched.status_code == 200
    client, _ = await logged_in(tenant)
    try:
        page = await client.get(f"/conversations/{cid}")
        assert page.status_code == 200 and "<option selected>escalated</option>" in page.text
    finally:
        await client.aclose()

"""Importing a flow whose name exists never makes two active flows answer the same messages, unless asked."""

from __future__ import annotations

import json
import os
import pty
import re
from collections import Counter

import httpx

from tests.support.stack import ROOT, Stack, Tenant, create_tenant, run_cli

EXAMPLES = sorted((ROOT / "flows" / "examples").glob("*.flow.json"))
PASSWORD = "correct horse battery"


def _documents() -> list[dict]:
    return [json.loads(p.read_text()) for p in EXAMPLES]


async def _flows(tenant: Tenant) -> list[dict]:
    return (await tenant.http.get("/api/flows")).json()


def _active_per_name(flows: list[dict]) -> Counter:
    return Counter(f["name"] for f in flows if f["status"] == "active")


async def test_api_import_of_existing_names_needs_a_choice(tenant: Tenant) -> None:
    first = await tenant.http.post("/api/flows/import", json=_documents())
    assert first.status_code == 201, first.text
    before = await _flows(tenant)

    again = await tenant.http.post("/api/flows/import", json=_documents())
    assert again.status_code == 409, again.text
    body = again.json()
    assert "Premium support" in body["error"] and "on_existing" in body["error"]
    assert {c["name"] for c in body["conflicts"]} == {f["name"] for f in before}
    assert await _flows(tenant) == before  # nothing changed

    replaced = await tenant.http.post(
        "/api/flows/import", json={"flows": _documents(), "on_existing": "replace"}
    )
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["created"] == [] and len(replaced.json()["replaced"]) == 4
    after = await _flows(tenant)
    assert sorted(f["id"] for f in after) == sorted(f["id"] for f in before)
    assert set(_active_per_name(after).values()) == {1} and len(after) == 4
    assert all(f["latest_version"] == 2 for f in after)  # the replaced versions stay in the history

    copied = await tenant.http.post("/api/flows/import?on_existing=copy", json=_documents()[0])
    assert copied.status_code == 201, copied.text
    [copy_id] = copied.json()["created"]
    copy = (await tenant.http.get(f"/api/flows/{copy_id}")).json()
    assert copy["status"] == "paused" and copy["name"].endswith("(copy)")
    assert set(_active_per_name(await _flows(tenant)).values()) == {1}

    unknown = await tenant.http.post("/api/flows/import?on_existing=merge", json=_documents()[0])
    assert unknown.status_code == 400 and "replace" in unknown.json()["error"]


async def test_cli_reimport_of_the_examples_keeps_one_active_flow_per_name(stack: Stack) -> None:
    tenant = await create_tenant(stack)
    files = [str(p) for p in EXAMPLES]
    try:
        assert run_cli(stack, "flows", "import", *files, "--email", tenant.email).returncode == 0
        refused = run_cli(stack, "flows", "import", *files, "--email", tenant.email)
        assert refused.returncode == 2, refused.stderr
        assert "--replace" in refused.stderr and "--copy" in refused.stderr
        assert "Premium support" in refused.stderr
        flows = await _flows(tenant)
        assert len(flows) == 4 and set(_active_per_name(flows).values()) == {1}

        replaced = run_cli(stack, "flows", "import", *files, "--email", tenant.email, "--replace")
        assert replaced.returncode == 0, replaced.stderr
        assert "replaced" in replaced.stdout
        flows = await _flows(tenant)
        assert len(flows) == 4 and set(_active_per_name(flows).values()) == {1}

        copied = run_cli(stack, "flows", "import", files[0], "--email", tenant.email, "--copy")
        assert copied.returncode == 0, copied.stderr
        flows = await _flows(tenant)
        assert len(flows) == 5 and set(_active_per_name(flows).values()) == {1}
        assert [f["status"] for f in flows if f["name"].endswith("(copy)")] == ["paused"]
    finally:
        await tenant.aclose()


async def test_cli_asks_on_a_terminal(stack: Stack) -> None:
    tenant = await create_tenant(stack)
    try:
        assert run_cli(stack, "flows", "import", str(EXAMPLES[0]), "--email", tenant.email).returncode == 0
        controller, terminal = pty.openpty()
        try:
            os.write(controller, b"c\n")
            asked = run_cli(
                stack, "flows", "import", str(EXAMPLES[0]), "--email", tenant.email, stdin=terminal
            )
        finally:
            os.close(terminal)
            os.close(controller)
        assert asked.returncode == 0, asked.stderr
        assert "exists" in asked.stderr and "[r]eplace" in asked.stderr
        flows = await _flows(tenant)
        assert sorted(f["status"] for f in flows) == ["active", "paused"]
    finally:
        await tenant.aclose()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


async def test_ui_import_asks_then_keeps_both_with_the_copy_paused(tenant: Tenant) -> None:
    files = [("files", (p.name, p.read_bytes(), "application/json")) for p in EXAMPLES[:2]]
    async with httpx.AsyncClient(base_url=tenant.stack.base_url) as client:
        login = await client.get("/login")
        await client.post(
            "/login", data={"email": tenant.email, "password": PASSWORD, "_csrf": _csrf(login.text)}
        )
        csrf = _csrf((await client.get("/flows")).text)
        headers = {"HX-Request": "true", "X-CSRF-Token": csrf}
        first = await client.post("/flows/import", headers=headers, files=files)
        assert first.status_code == 200 and "Imported 2 flow(s)" in first.text

        again = await client.post("/flows/import", headers=headers, files=files)
        assert again.status_code == 200, again.text  # a question, which htmx swaps in
        assert 'id="import-choice"' in again.text and "already exist" in again.text
        documents = re.search(r'name="documents" value="([^"]+)"', again.text).group(1)
        assert len(await _flows(tenant)) == 2

        chosen = await client.post(
            "/flows/import",
            headers=headers,
            files={"documents": (None, _unescape(documents)), "on_existing": (None, "copy")},
        )
        assert chosen.status_code == 200, chosen.text
        flows = await _flows(tenant)
        assert len(flows) == 4 and set(_active_per_name(flows).values()) == {1}
        assert sorted(f["status"] for f in flows) == ["active", "active", "paused", "paused"]


def _unescape(value: str) -> str:
    import html

    return html.unescape(value)

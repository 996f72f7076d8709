"""Every page works under the content security policy: no inline script, no violation (issue 14)."""

from __future__ import annotations

import pytest
from conftest import logged_in

pytestmark = pytest.mark.browser

FLOW = {
    "schema": "switchboard.flow/v1",
    "name": "CSP",
    "nodes": [
        {"id": "t", "type": "when.message_received", "config": {"match": {"kind": "any"}}},
        {"id": "s", "type": "action.send_message", "config": {"text": "hi"}},
    ],
    "edges": [{"from": "t", "to": "s"}],
}


async def test_pages_run_without_a_single_policy_violation(chromium, tenant) -> None:
    flow = await tenant.create_flow(FLOW)
    pg = await logged_in(chromium, tenant)
    violations: list[str] = []
    pg.on(
        "console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    try:
        for path, ready in [
            ("/flows", "#flows-table"),
            (f"/flows/{flow['id']}/edit", ".drawflow-node"),
            ("/settings", "#account"),
            ("/tester", "body"),
            ("/logs", "body"),
            ("/conversations", "body"),
            ("/schema", ".opblock"),
        ]:
            answer = await pg.goto(path)
            assert answer is not None and answer.status == 200, path
            assert "script-src 'self'" in answer.headers["content-security-policy"]
            await pg.locator(ready).first.wait_for()
        # The editor's script ran (it is a file): its API is there.
        await pg.goto(f"/flows/{flow['id']}/edit")
        await pg.wait_for_selector("#flow-editor[data-ready]", state="attached")
    finally:
        await pg.context.close()
    assert violations == []
    assert pg.js_errors == []


async def test_a_page_cannot_be_framed(chromium, tenant) -> None:
    """issue 14: same-site pages could frame the app (clickjacking)."""
    context = await chromium.new_context(base_url=tenant.stack.base_url)
    pg = await context.new_page()
    try:
        await pg.goto("/login")
        framed = await pg.evaluate(
            """() => new Promise((resolve) => {
                 const frame = document.createElement('iframe');
                 frame.src = '/login';
                 frame.onload = () => {
                   let reachable;
                   try { reachable = !!frame.contentDocument && !!frame.contentDocument.querySelector('#login-form'); }
                   catch (e) { reachable = false; }
                   resolve(reachable);
                 };
                 document.body.appendChild(frame);
                 setTimeout(() => resolve('no load'), 5000);
               })"""
        )
    finally:
        await context.close()
    assert framed in (False, "no load")

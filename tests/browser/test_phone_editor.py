"""The editor on a phone (390 px): a flow opens whole, as on a desktop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PHONE, logged_in

pytestmark = pytest.mark.browser

EXAMPLES = Path(__file__).resolve().parents[2] / "flows" / "examples"

NODES_OUTSIDE_THE_CANVAS = """() => {
  const canvas = document.querySelector('#flow-editor .parent-drawflow').getBoundingClientRect();
  return [...document.querySelectorAll('#flow-editor .drawflow-node')]
    .map((n) => [n.querySelector('.sb-node-id').textContent, n.getBoundingClientRect()])
    .filter(([, r]) => r.left < canvas.left - 0.5 || r.right > canvas.right + 0.5
                       || r.top < canvas.top - 0.5 || r.bottom > canvas.bottom + 0.5)
    .map(([id, r]) => id + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
}"""


async def test_a_five_node_flow_opens_whole_on_a_phone(chromium, tenant):
    flow = await tenant.create_flow(json.loads((EXAMPLES / "human-handoff.flow.json").read_text()))
    pg = await logged_in(chromium, tenant, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        await pg.goto(f"/flows/{flow['id']}/edit")
        await pg.wait_for_selector("#flow-editor[data-ready]", state="attached")
        assert await pg.locator("#flow-editor .drawflow-node").count() == len(flow["document"]["nodes"])
        assert await pg.evaluate(NODES_OUTSIDE_THE_CANVAS) == []
        # Fit again (the button) keeps it whole too.
        await pg.click("[data-editor-action=fit]")
        assert await pg.evaluate(NODES_OUTSIDE_THE_CANVAS) == []
        assert pg.js_errors == []
    finally:
        await pg.context.close()

"""Benchmark: headless Chromium loads the editor with a 200-node flow, edits and exports it; prints one JSON object."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "browser"))

from editor_harness import HarnessServer, harness_page

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ACTIONS = [
    "action.send_message",
    "action.add_tag",
    "action.update_ai_context",
    "action.set_conversation_status",
]


def big_flow(node_count: int = 200) -> dict:
    """One trigger, then chains of actions with a condition every 10 nodes: a realistic, wide graph."""
    nodes = [
        {
            "id": "n1",
            "type": "when.message_received",
            "config": {"match": {"kind": "keywords", "keywords": ["order"]}},
            "position": {"x": 40, "y": 40},
        }
    ]
    edges = []
    for i in range(2, node_count + 1):
        kind = "logic.condition" if i % 10 == 0 else ACTIONS[i % len(ACTIONS)]
        config = (
            {"left": "{{ vars.total }}", "op": "gt", "right": "100"}
            if kind == "logic.condition"
            else {"text": f"Step {i} for {{{{ contact.first_name }}}}", "message_type": "support"}
        )
        nodes.append(
            {
                "id": f"n{i}",
                "type": kind,
                "config": config,
                "position": {"x": 40 + (i % 20) * 260, "y": 40 + (i // 20) * 140},
            }
        )
        prev = nodes[-2]
        edge = {"from": prev["id"], "to": f"n{i}"}
        if prev["type"] == "logic.condition":
            edge["port"] = "true"
        edges.append(edge)
    return {
        "schema": "switchboard.flow/v1",
        "name": "Big flow",
        "description": "",
        "status": "draft",
        "priority": 0,
        "nodes": nodes,
        "edges": edges,
    }


def main() -> None:
    from playwright.sync_api import sync_playwright

    doc = big_flow()
    with HarnessServer() as server, sync_playwright() as pw:
        url = server.add_page("/bench/editor", harness_page(doc))
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_function(
            "window.sbEditor !== undefined && document.querySelectorAll('.drawflow-node').length === 200"
        )
        load_s = time.perf_counter() - started
        render_ms, ready_ms = page.evaluate("[window.sbEditor.loadMs, performance.now()]")
        save_ms = page.evaluate("""() => {
            const t0 = performance.now();
            const body = JSON.stringify(window.sbEditor.exportDocument());
            return [performance.now() - t0, body.length];
        }""")
        # Editing a big graph: delete 20 nodes (with their edges), undo it, paste 20 copies.
        edit_ms = page.evaluate("""() => {
            const ed = window.sbEditor, ids = ed.order.slice(100, 120), t = [];
            ed.setSelection(ids);
            let t0 = performance.now(); ed.deleteSelection(); t.push(performance.now() - t0);
            t0 = performance.now(); ed.perform(ed.done[ed.done.length - 1].changes, false);
            ed.undone.push(ed.done.pop()); t.push(performance.now() - t0);
            ed.setSelection(ids);
            t0 = performance.now(); ed.paste(ed.selectionClip(), 1); t.push(performance.now() - t0);
            ed.perform(ed.done[ed.done.length - 1].changes, false); ed.done.pop();
            return t;
        }""")
        exported = page.evaluate("window.sbEditor.exportDocument()")
        sizes = page.evaluate("""() => {
            const out = {js: 0, css: 0};
            for (const e of performance.getEntriesByType('resource')) {
                if (e.name.endsWith('.js')) out.js += e.decodedBodySize;
                if (e.name.endsWith('.css')) out.css += e.decodedBodySize;
            }
            return out;
        }""")
        browser.close()
    print(
        json.dumps(
            {
                "nodes": len(doc["nodes"]),
                "edges": len(doc["edges"]),
                "editor_load_seconds": round(load_s, 3),
                "editor_render_seconds": round(render_ms / 1000, 3),
                "editor_ready_since_navigation_seconds": round(ready_ms / 1000, 3),
                "export_seconds": round(save_ms[0] / 1000, 4),
                "export_bytes": save_ms[1],
                "export_equals_input": exported == doc,
                "delete_20_seconds": round(edit_ms[0] / 1000, 4),
                "undo_delete_20_seconds": round(edit_ms[1] / 1000, 4),
                "paste_20_seconds": round(edit_ms[2] / 1000, 4),
                "js_bytes_first_load": sizes["js"],
                "css_bytes_first_load": sizes["css"],
                "goals": {"load_seconds": 1.0, "save_seconds": 1.0, "js_bytes": 200_000},
            }
        )
    )


if __name__ == "__main__":
    main()

"""A static 127.0.0.1 server for browser tests of editor.js without the app.

/static is served from the repo, /harness pages from memory.
"""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from flows.nodes.registry import summaries

ROOT = Path(__file__).resolve().parents[2]

# What the server's palette JSON looks like (ui builds it from flows.nodes.registry.NODE_TYPES).
NODE_TYPES: list[dict] = [
    {
        "type": "when.message_received",
        "group": "trigger",
        "label": "Message received",
        "out_ports": [None],
        "defaults": {"match": {"kind": "any"}},
    },
    {
        "type": "when.conversation_created",
        "group": "trigger",
        "label": "Conversation created",
        "out_ports": [None],
        "defaults": {},
    },
    {
        "type": "when.contact_created",
        "group": "trigger",
        "label": "Contact created",
        "out_ports": [None],
        "defaults": {},
    },
    {
        "type": "when.tag_added",
        "group": "trigger",
        "label": "Tag added",
        "out_ports": [None],
        "defaults": {"tag": ""},
    },
    {
        "type": "when.tag_removed",
        "group": "trigger",
        "label": "Tag removed",
        "out_ports": [None],
        "defaults": {"tag": ""},
    },
    {
        "type": "logic.condition",
        "group": "logic",
        "label": "Condition",
        "out_ports": ["true", "false"],
        "defaults": {"left": "", "op": "eq", "right": ""},
    },
    {
        "type": "action.send_message",
        "group": "action",
        "label": "Send message",
        "out_ports": [None],
        "defaults": {"text": "", "message_type": "support"},
    },
    {
        "type": "action.control_ai_response",
        "group": "action",
        "label": "Control AI",
        "out_ports": [None],
        "defaults": {"action": "enable", "custom_prompt": None},
    },
    {
        "type": "action.update_ai_context",
        "group": "action",
        "label": "Update AI context",
        "out_ports": [None],
        "defaults": {"context_data": {}},
    },
    {
        "type": "action.call_webhook",
        "group": "action",
        "label": "Call webhook",
        "out_ports": ["success", "failure"],
        "defaults": {"url": "", "method": "POST"},
    },
    {
        "type": "action.set_conversation_status",
        "group": "action",
        "label": "Set status",
        "out_ports": [None],
        "defaults": {"status": "open"},
    },
    {
        "type": "action.add_tag",
        "group": "action",
        "label": "Add tag",
        "out_ports": [None],
        "defaults": {"tag": ""},
    },
    {
        "type": "action.remove_tag",
        "group": "action",
        "label": "Remove tag",
        "out_ports": [None],
        "defaults": {"tag": ""},
    },
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>editor harness</title>
<link rel="stylesheet" href="/static/vendor/drawflow-0.0.60.min.css">
<link rel="stylesheet" href="/static/css/app.css">
<script src="/static/vendor/htmx-2.0.11.min.js" defer></script>
<script src="/static/js/app.js" defer></script>
<script src="/static/vendor/drawflow-0.0.60.min.js" defer></script>
<script src="/static/js/editor.js" defer></script>
</head><body class="bare"><main>
<div id="flow-editor" class="editor" data-api-base="/api/flows/f1" data-form-url="">
  <div class="editor-bar"><input id="flow-name" aria-label="Flow name">
  <input id="flow-description" aria-label="Description">
  <input id="flow-priority" type="number" aria-label="Priority">
  <span id="flow-status"></span><span id="editor-status"></span>
  <button type="button" data-editor-action="delete">Delete</button></div>
  <aside id="palette" class="palette"></aside>
  <div class="canvas-wrap"><div id="canvas"></div></div>
  <aside class="side"><div id="node-panel"></div><div id="flow-errors" hidden></div></aside>
</div></main>
<script type="application/json" id="node-types">__TYPES__</script>
<script type="application/json" id="flow-document">__DOC__</script>
<script type="application/json" id="node-summaries">__SUMMARIES__</script>
</body></html>"""


def harness_page(document: dict) -> str:
    """The editor harness page with `document` embedded; '</' is escaped so JSON cannot close the script block."""
    dump = lambda v: json.dumps(v).replace("</", "<\\/")  # noqa: E731
    # Card summaries come from the node types in flows/, as the app's editor page embeds them.
    return (
        PAGE.replace("__TYPES__", dump(NODE_TYPES))
        .replace("__DOC__", dump(document))
        .replace("__SUMMARIES__", dump(summaries(document)))
    )


class _Handler(SimpleHTTPRequestHandler):
    pages: dict[str, str] = {}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in self.pages:
            body = self.pages[path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not path.startswith("/static/"):
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        return


class HarnessServer:
    """Serves the repo's static/ and registered pages on 127.0.0.1 with a free port."""

    def __init__(self) -> None:
        handler = type("Handler", (_Handler,), {"pages": {}})
        self._handler = handler
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(ROOT)))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_page(self, path: str, html: str) -> str:
        self._handler.pages[path] = html
        return self.url + path

    def __enter__(self) -> HarnessServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

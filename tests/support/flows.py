"""Flow documents the tests build: an intent trigger (with one required variable) and the webhook it runs."""

from __future__ import annotations

from typing import Any


def intent_hook_flow(
    url: str,
    *,
    name: str,
    display_name: str,
    examples: list[str],
    variable: str,
    prompt: str,
    ids: tuple[str, str] = ("intent", "hook"),
    **hook: Any,
) -> dict[str, Any]:
    """intent (needs `variable`, asked with `prompt`) -> call_webhook to `url` with `hook` config on top."""
    trigger, webhook = ids
    return {
        "schema": "switchboard.flow/v1",
        "name": name,
        "status": "active",
        "nodes": [
            {
                "id": trigger,
                "type": "when.message_received",
                "config": {
                    "match": {
                        "kind": "intent",
                        "display_name": display_name,
                        "training_examples": [{"text": t, "language": "en"} for t in examples],
                        "confidence_threshold": 0.5,
                        "variables": [
                            {"name": variable, "prompt": prompt, "required": True, "type": "integer"}
                        ],
                    }
                },
            },
            {
                "id": webhook,
                "type": "action.call_webhook",
                "config": {
                    "url": url,
                    "payload_template": {
                        variable: f"{{{{ vars.{variable} }}}}",
                        "phone": "{{ phone_number }}",
                    },
                    "max_retries": 0,
                    **hook,
                },
            },
        ],
        "edges": [{"from": trigger, "to": webhook}],
    }

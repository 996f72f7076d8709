"""Server-side node forms: every node type renders its form, and what the form posts back is the same config."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, select_autoescape

from flows.nodes.registry import NODE_TYPES
from ui.forms import check_node_config, form_to_config
from ui.palette import node_types, template_names

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

CONFIGS = {
    "when.message_received": {
        "match": {
            "kind": "intent",
            "display_name": "Create <order>",
            "description": "",
            "training_examples": [
                {"text": "I want 2 pizzas", "language": "en"},
                {"text": "quiero 2 pizzas", "language": "es"},
            ],
            "confidence_threshold": 0.75,
            "variables": [
                {"name": "qty", "prompt": "How many?", "required": True, "default": 1, "type": None}
            ],
        }
    },
    "when.conversation_created": {},
    "when.contact_created": {},
    "when.tag_added": {"tag": "vip"},
    "when.tag_removed": {"tag": "vip"},
    "action.send_message": {
        "text": "Hi {{ contact.first_name }} <script>alert(1)</script>",
        "message_type": "support",
    },
    "action.control_ai_response": {"action": "custom_prompt", "custom_prompt": "You are premium."},
    "action.update_ai_context": {"context_data": {"support_tier": "premium"}},
    "action.call_webhook": {
        "url": "https://shop.example/orders",
        "method": "POST",
        "headers": {"X-Shop": "1"},
        "auth": {"type": "none", "secret": "", "header_name": "X-API-Key"},
        "payload_template": {"qty": "{{ vars.qty }}", "phone": "{{ phone_number }}"},
        "timeout_seconds": 5,
        "max_retries": 2,
        "retry_delay_seconds": 1,
        "success_message": "Order {{ response.id }} created",
        "failure_message": "Sorry",
        "requires_confirmation": False,
        "confirmation_message": "",
    },
    "action.set_conversation_status": {"status": "resolved"},
    "action.add_tag": {"tag": "vip"},
    "action.remove_tag": {"tag": "vip"},
    "logic.condition": {"left": "{{ vars.qty }}", "op": "greater_than", "right": "3"},
}


class _Inputs(HTMLParser):
    """What a browser without JS would submit: inputs, checked boxes, selected options, textareas; not templates."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[tuple[str, str]] = []
        self._template = 0
        self._select: str | None = None
        self._select_value: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "template":
            self._template += 1
        if self._template:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") == "checkbox" and "checked" not in a:
                return
            self.items.append((a["name"], a.get("value") or ""))
        elif tag == "select":
            self._select, self._select_value = a.get("name"), None
        elif tag == "option" and self._select is not None:
            if self._select_value is None or "selected" in a:
                self._select_value = a.get("value", "")
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_endtag(self, tag):
        if tag == "template":
            self._template -= 1
        elif tag == "select" and self._select is not None and not self._template:
            self.items.append((self._select, self._select_value or ""))
            self._select = None
        elif tag == "textarea" and self._textarea is not None and not self._template:
            self.items.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None

    def handle_data(self, data):
        if self._textarea is not None:
            self._text += data


def render(type_: str, cfg: dict) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    return env.get_template("partials/node_form.html").render(
        csrf="tok",
        node_id="n7",
        node_type=NODE_TYPES[type_],
        cfg=cfg,
        errors={},
        general_errors=[],
        names=template_names(["qty"]),
        variables_json="[]",
        applied=False,
    )


def test_every_registry_type_has_a_form_and_a_palette_entry():
    assert {p["type"] for p in node_types()} == set(NODE_TYPES)
    for type_ in NODE_TYPES:
        assert (TEMPLATES / "nodes" / f"{type_}.html").exists(), type_
    assert set(CONFIGS) == set(NODE_TYPES)


@pytest.mark.parametrize("type_", sorted(CONFIGS))
def test_form_round_trips_the_config(type_):
    expected, errors = check_node_config("n7", type_, CONFIGS[type_])
    assert errors == []
    parser = _Inputs()
    parser.feed(render(type_, expected))
    posted, parse_errors = form_to_config(parser.items)
    assert parse_errors == []
    again, errors = check_node_config("n7", type_, posted)
    assert errors == []
    assert again == expected


def test_form_escapes_user_content():
    html = render("action.send_message", CONFIGS["action.send_message"])
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html
    assert 'data-insert="vars.qty"' in html


def test_field_errors_come_back_per_field():
    cfg, errors = form_to_config(
        [("url", "ftp://nowhere"), ("max_retries:int", "many"), ("auth.type", "bearer")]
    )
    assert [e.field for e in errors] == ["max_retries"]
    normalised, errors = check_node_config("n2", "action.call_webhook", cfg)
    assert normalised is None
    assert {e.field for e in errors} == {"url", "auth.secret"}

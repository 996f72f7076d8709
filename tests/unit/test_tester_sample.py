"""The dry run's sample webhook answer: every `response.*` field the templates read, nothing else."""

from __future__ import annotations

from app.services.dry_run import sample_response


def test_nested_fields_indexes_and_method_calls() -> None:
    configs = [
        {"text": "Order {{ response.order.id }} for {{ response.order.total }}"},
        {"text": "({{ response.items[1].name }})"},
        {"left": "{{ response.get('status') }}", "right": "{{ response.order }}"},
        {"payload_template": {"id": "{{ vars.id }}", "when": "{{ timestamp }}"}},
    ]
    assert sample_response(configs) == {
        "order": {"id": "[order.id]", "total": "[order.total]"},
        "items": [None, {"name": "[items.1.name]"}],
    }


def test_a_dynamic_index_keeps_only_the_known_part_and_broken_templates_are_skipped() -> None:
    configs = [
        {"text": "{{ response.rows[vars.i].name }} {{ response.count|int }}"},
        {"text": "{{ response.x"},
    ]
    assert sample_response(configs) == {"rows": "[rows]", "count": "[count]"}


def test_no_response_fields_gives_an_empty_object() -> None:
    assert sample_response([{"text": "Hello {{ contact.first_name }}"}]) == {}

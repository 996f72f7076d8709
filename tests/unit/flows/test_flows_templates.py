"""Sandboxed templates: names, typed leaves, undefined names, escape attempts, output cap."""

from __future__ import annotations

import pytest
from memory_runtime import make_turn

from flows.templates import (
    MAX_OUTPUT_CHARS,
    TemplateError,
    check_template,
    render_text,
    render_value,
    template_names,
)

NAMES = template_names(
    make_turn("I want 3 phones"),
    vars={"quantity": 3, "product": "iPhone"},
    response={"order_id": "A-9", "items": [1, 2]},
    event={"tag": "vip"},
)


def test_design_names_are_available():
    out = render_text(
        "{{ contact.first_name }} {{ contact.last_name }}|{{ conversation.id }}|{{ message.text }}|{{ event.tag }}|"
        "{{ vars.product }}|{{ product }}|{{ response.order_id }}|{{ phone_number }}|"
        "{{ message_text }}|{{ timestamp }}",
        NAMES,
        strict=True,
    )
    assert (
        out.value
        == "Ana Diaz|c1|I want 3 phones|vip|iPhone|iPhone|A-9|+15550001111|I want 3 phones|1700000000.0"
    )
    assert out.warnings == []


def test_single_expression_leaf_keeps_its_type():
    out = render_value(
        {
            "q": "{{ vars.quantity }}",
            "text": "x{{ vars.quantity }}",
            "items": ["{{ response.items }}"],
            "n": 5,
        },
        NAMES,
        strict=True,
    )
    assert out.value == {"q": 3, "text": "x3", "items": [[1, 2]], "n": 5}


def test_fixed_names_win_over_variables():
    names = template_names(make_turn("hi"), vars={"contact": "spoof"}, response=None, event=None)
    assert render_text("{{ contact.first_name }}", names, strict=True).value == "Ana"


@pytest.mark.parametrize("template", ["Hello {{ nobody }}", "{{ nobody }}", "{{ response.missing.deeper }}"])
def test_undefined_name_raises_when_strict(template):
    with pytest.raises(TemplateError, match="undefined"):
        render_value(template, NAMES, strict=True)


@pytest.mark.parametrize(
    ("template", "expected"), [("Hello {{ nobody }}!", "Hello !"), ("{{ nobody }}", None)]
)
def test_undefined_name_renders_empty_with_a_warning_when_lenient(template, expected):
    out = render_value(template, NAMES, strict=False)
    assert out.value == expected
    assert len(out.warnings) == 1 and "nobody" in out.warnings[0]


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ contact.__dict__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ range(10) }}",
        "{{ 'x' * 100000 }}",
        "{{ 10 ** 100000 }}",
        "{{ ''.join }}{{ 'a'.format(1) }}",
        "{{ contact.tags.append(1) }}",
    ],
)
def test_sandbox_escape_attempts_fail_clearly_and_render_empty(template):
    with pytest.raises(TemplateError) as info:
        render_text(template, NAMES, strict=True)
    assert "template" in str(info.value)
    out = render_text(template, NAMES, strict=False)
    assert out.value == ""
    assert out.warnings


def test_allowed_filters_and_safe_methods_work():
    out = render_text(
        "{{ contact.first_name | upper }} {{ 'a,b'.split(',') | join('+') }} {{ vars | tojson }} "
        "{{ vars.get('product') }} {{ 3.14159 | round(2) }} {{ missing | default('none') }}",
        NAMES,
        strict=False,
    )
    assert out.value == 'ANA a+b {"quantity": 3, "product": "iPhone"} iPhone 3.14 none'


def test_output_is_capped():
    names = {"big": "y" * (MAX_OUTPUT_CHARS * 2)}
    out = render_text("{{ big }}{{ big }}", names, strict=True)
    assert len(out.value) == MAX_OUTPUT_CHARS
    assert "cut" in out.warnings[0]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("ok {{ name }}", None),
        ("no templates", None),
        ("{{ name", "syntax"),
        ("{% for %}", "syntax"),
        ("{{ x | attr('y') }}", "not available"),
        ("{{ x | map('upper') }}", "not available"),
    ],
)
def test_check_template(template, problem):
    result = check_template(template)
    if problem is None:
        assert result is None
    else:
        assert problem in result


@pytest.mark.parametrize(
    "template",
    [
        "Hi {{ contact.first_name }}!",
        "{{ vars.quantity }}",
        "{{ response.items }}",
        "{{ response }}",
        "{{ timestamp }}",
        "a {{ contact.tags }} b {{ conversation.id }}",
        "{{contact.attributes}}",
        "{{ missing_name }}",
        "x {{ contact.nope }} y",
    ],
)
@pytest.mark.parametrize("strict", [True, False])
def test_plain_path_fast_path_renders_like_jinja(template, strict):
    from flows.templates import TemplateCache, render_str

    fast, slow = TemplateCache(), TemplateCache()
    slow.fast = lambda text: False  # force Jinja
    outcomes = []
    for cache in (fast, slow):
        warnings: list[str] = []
        try:
            outcomes.append(
                (render_str(template, NAMES, strict=strict, warnings=warnings, cache=cache), warnings)
            )
        except TemplateError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]

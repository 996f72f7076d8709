"""Sandboxed templates: names, typed leaves, undefined names, escape attempts, output cap."""

from __future__ import annotations

import pytest
from memory_runtime import make_turn

from flows.budget import turn_clock
from flows.templates import (
    MAX_INT_BITS,
    MAX_OUTPUT_CHARS,
    TemplateBudgetError,
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


def test_output_over_the_budget_is_an_error_even_when_lenient():
    names = {"big": "y" * (MAX_OUTPUT_CHARS // 2 + 1)}
    for strict in (True, False):
        with pytest.raises(TemplateBudgetError, match=f"longer than {MAX_OUTPUT_CHARS}"):
            render_text("{{ big }}{{ big }}", names, strict=strict)


SLOW_BODY = "{% for i in 'x' * 9000 %}{{ (big | sort | first) }}{% endfor %}"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        # issue 14: 48 M iterations held a worker for seconds; three levels would run for days.
        (
            "{% for a in 'x' * 9000 %}{% for b in 'y' * 9000 %}.{% endfor %}{% endfor %}",
            "loops ran more than",
        ),
        ("{% for a in 'x' * 6000 %}{% endfor %}{% for b in 'y' * 6000 %}{% endfor %}", "loops ran more than"),
        # issue 14: 6 s of big-integer arithmetic.
        ("{{ ((((3**64)**64)**64)**64) % 7 }}", f"more than {MAX_INT_BITS} bits"),
        ("{{ 10 ** 100000 }}", f"more than {MAX_INT_BITS} bits"),
        ("{{ (2 ** 200) * (2 ** 200) }}", f"more than {MAX_INT_BITS} bits"),
        # issue 14: +121 MB in one tester call.
        ('{{ ("y"*8000)|replace("y","y"*16000) }}', "replace's result would be longer"),
        ("{{ ('y'*8000).replace('y', 'y'*16000) }}", "replace's result would be longer"),
        ("{{ 'x' * 100000 }}", "would be longer"),
        ("{% set a = 'x' * 40000 %}{{ a ~ a }}", "would be longer"),
        ("{% set a = 'x' * 40000 %}{{ a + a }}", "would be longer"),
        ("{% set a = ['x' * 1000] * 40 %}{{ [a, a] | length }}", "would be longer"),
        (
            "{% set a = [1] * 9 %}{% set b = [a, a, a, a, a, a, a, a] %}{% set c = [b, b, b, b, b, b, b, b] %}"
            "{% set d = [c, c, c, c, c, c, c, c] %}{% set e = [d, d, d, d, d, d, d, d] %}{{ e | length }}",
            "would be longer",
        ),
        ("{{ big | join('-' * 20) }}", "join's result would be longer"),
        ("{% set x %}{% for i in 'a' * 9000 %}{{ 'y' * 1000 }}{% endfor %}{% endset %}.", "what it prints"),
        ("{{ ['a' * 50000] | tojson(indent=2) }}{{ big | tojson(indent=2) }}", "would be longer"),
        (SLOW_BODY, "ran longer than"),
    ],
)
def test_template_budgets_stop_a_render_with_a_clear_error(template, reason):
    names = {**NAMES, "big": [str(i) for i in range(6000)]}
    for strict in (True, False):
        with pytest.raises(TemplateBudgetError, match="went over its budget") as info:
            render_text(template, names, strict=strict)
        assert reason in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        "{{ contact.items }}",
        "{{ contact.items | string }}",
        "{{ contact.items ~ '' }}",
        "{{ [contact.items] | join }}",
        "{{ contact.items | tojson }}",
        "{{ message.text.upper }}",
        "{% for x in [1] %}{{ loop.cycle }}{% endfor %}",
        "{{ [message.text.split] }}",
        "{{ contact.get }}",
    ],
)
def test_methods_are_refused_never_printed_with_their_address(template):
    out = render_text(template, NAMES, strict=False)
    assert out.value == ""
    assert "is a method, not a value" in out.warnings[0]
    assert "0x" not in out.warnings[0] and "built-in" not in out.warnings[0]
    single = render_value(template, NAMES, strict=False)
    assert single.value in ("", None)


def test_methods_can_still_be_called_and_their_results_used():
    out = render_text(
        "{% for k, v in event.items() %}{{ k }}={{ v }};{% endfor %}{{ contact.keys() | list | length }}",
        NAMES,
        strict=True,
    )
    assert out.value == "tag=vip;6"


def test_a_turn_that_used_up_its_time_renders_no_more_templates():
    with turn_clock(0.5) as clock:
        assert render_text("{% if 1 %}ok{% endif %}", NAMES, strict=True).value == "ok"
        assert 0 < clock.spent_s < 0.5
        clock.spent_s = clock.limit_s
        with pytest.raises(TemplateBudgetError, match="used up its 500 ms"):
            render_text("{% if 1 %}ok{% endif %}", NAMES, strict=False)


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

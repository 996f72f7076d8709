"""Sandboxed Jinja2 rendering of message and payload templates, budgeted, with typed single-expression leaves.

The budget of one render (issue 14: templates ran nested loops for seconds, built 128 MB
strings and printed heap addresses):
- loops: MAX_LOOP_ITERATIONS iterations in all, across every `{% for %}` of the render;
- size: the output, and every string, list or dict a template builds (literals, `~`, `+`, `*`,
  join, replace, filters), at most MAX_OUTPUT_CHARS characters as text; checked before the
  value is built, so a refused value never takes the memory;
- integers: MAX_INT_BITS bits (about 77 digits), checked before `*` and `**`;
- time: RENDER_BUDGET_S per render (flows.budget), checked at every loop iteration and checked
  operation, and never more than the turn has left of TURN_BUDGET_S.
Going over raises TemplateBudgetError (strict or not): the node fails with that reason in
its trace. Output is plain data only: a method (`{{ contact.items }}`) or another object
is refused, never printed with its address.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, ValuesView
from contextvars import ContextVar
from typing import Any

import msgspec
from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flows.budget import RENDER_BUDGET_S, TurnClock, current_clock
from flows.turn import Turn

MAX_OUTPUT_CHARS = 64 * 1024
MAX_LOOP_ITERATIONS = 10_000
MAX_INT_BITS = 256
MAX_JSON_INDENT = 8

ALLOWED_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "list",
        "lower",
        "max",
        "min",
        "replace",
        "round",
        "sort",
        "string",
        "sum",
        "title",
        "tojson",
        "trim",
        "truncate",
        "unique",
        "upper",
        "urlencode",
        "wordcount",
    }
)
_LOOP_FILTER = "sb_loop"  # wraps every `{% for %}` iterable (added by the sandbox, not for users)

# Methods a template may call; everything else that is callable is refused.
SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        {
            "upper",
            "lower",
            "title",
            "capitalize",
            "strip",
            "lstrip",
            "rstrip",
            "startswith",
            "endswith",
            "replace",
            "split",
        }
    ),
    dict: frozenset({"get", "keys", "values", "items"}),
}

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class TemplateError(Exception):
    """A template could not be rendered (strict mode): undefined name or sandbox violation."""


class TemplateBudgetError(TemplateError):
    """A render went over its budget (loops, size, integer size or time), strict or not."""


class RenderResult(msgspec.Struct, frozen=True):
    value: Any
    warnings: list[str] = []


# --- the budget of the render running now ---------------------------------------------------


class _Render:
    __slots__ = ("deadline", "iterations", "limit_s", "printed")

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.deadline = time.perf_counter() + limit_s
        self.iterations = 0
        self.printed = 0  # characters printed by {{ }}, captured blocks included


_ACTIVE: ContextVar[_Render | None] = ContextVar("sb_template_render", default=None)


def _check_time() -> None:
    render = _ACTIVE.get()
    if render is not None and time.perf_counter() > render.deadline:
        raise TemplateBudgetError(
            f"it ran longer than {render.limit_s * 1000:.0f} ms, the time a render may take; "
            "make its loops shorter"
        )


def _loop(iterable: Any) -> Iterator[Any]:
    """Every `{% for %}` iterates through this: it counts iterations and watches the clock."""
    render = _ACTIVE.get()
    for item in iterable:
        if render is not None:
            render.iterations += 1
            if render.iterations > MAX_LOOP_ITERATIONS:
                raise TemplateBudgetError(
                    f"its loops ran more than {MAX_LOOP_ITERATIONS} times, the limit of one render"
                )
        _check_time()
        yield item


# --- plain data only, and its size as text --------------------------------------------------


class _MethodRef:
    """A method read from a value (`contact.items`): callable when allowed, never printed."""

    __slots__ = ("method", "name")

    def __init__(self, method: Any, name: str) -> None:
        self.method = method
        self.name = name

    def _refuse(self, *_: Any) -> str:
        raise SecurityError(
            f"{self.name!r} is a method, not a value, so it cannot be printed; call it, like "
            f"{self.name}(), or use a key that holds a value"
        )

    __str__ = __repr__ = __format__ = _refuse


_SCALARS = (str, int, float, bool, type(None))


def _too_big(what: str) -> TemplateBudgetError:
    return TemplateBudgetError(
        f"{what} would be longer than {MAX_OUTPUT_CHARS} characters, the size a template may build"
    )


def _size(value: Any, budget: int = MAX_OUTPUT_CHARS) -> int:
    """The length of `value` as text (about its repr or JSON), walked no further than `budget`.

    Raises for values that are not plain data. A value over `budget` returns budget + 1
    without walking the rest, so a list that refers to itself a million times costs nothing.
    """
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, (list, tuple)):
        total = 2
        for item in value:
            total += _size(item, budget - total) + 2
            if total > budget:
                return budget + 1
        return total
    if isinstance(value, dict):
        total = 2
        for key, item in value.items():
            total += _size(key, budget - total) + _size(item, budget - total) + 4
            if total > budget:
                return budget + 1
        return total
    if isinstance(value, Undefined):
        return 2
    _refuse_object(value)
    return 0


def _refuse_object(value: Any) -> None:
    if isinstance(value, _MethodRef):
        value._refuse()
    raise SecurityError(f"a {type(value).__name__} object is not data; templates can only output data")


def _built(value: Any, what: str = "the value") -> Any:
    """Check a value a template built (a literal, a filter's result) against the size budget."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise _int_too_big()
    big_text = isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS
    if (big_text or not isinstance(value, _SCALARS)) and _size(value) > MAX_OUTPUT_CHARS:
        raise _too_big(what)
    return value


def _int_too_big() -> TemplateBudgetError:
    return TemplateBudgetError(
        f"a number would have more than {MAX_INT_BITS} bits (about 77 digits), the size a template may compute"
    )


def _plain(value: Any) -> Any:
    """Refuse anything but data (str, numbers, bool, None, lists, dicts) anywhere in `value`."""
    if isinstance(value, (*_SCALARS, Undefined)):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            _plain(item)
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(key)
            _plain(item)
        return value
    _refuse_object(value)
    return value


def _text(value: Any) -> str:
    """`value` as the text a template prints, refused before it is built when it is too long."""
    if isinstance(value, str):
        if len(value) > MAX_OUTPUT_CHARS:
            raise _too_big("the text")
        return value
    if isinstance(value, Undefined):
        return str(value)  # "" when lenient; StrictUndefined raises naming the missing name
    if _size(value) > MAX_OUTPUT_CHARS:
        raise _too_big("the text")
    return str(value)


def _finalize(value: Any) -> str:
    """What `{{ value }}` prints: data as text; methods and other objects are refused.

    Counted here, so output a block captures (`{% set x %}...{% endset %}`) is bounded too.
    """
    text = "None" if value is None else _text(value)
    render = _ACTIVE.get()
    if render is not None:
        render.printed += len(text)
        if render.printed > MAX_OUTPUT_CHARS:
            raise _too_big("what it prints")
    return text


def _checked_join(parts: Iterable[Any]) -> str:
    """Join printed pieces (a block's captured output), refused once it grows past the budget."""
    pieces: list[str] = []
    total = 0
    for part in parts:
        piece = part if isinstance(part, str) else _text(part)
        total += len(piece)
        if total > MAX_OUTPUT_CHARS:
            raise _too_big("the output")
        pieces.append(piece)
    return "".join(pieces)


# --- filters: the allowed ones, each checked for time and for the size of what it builds -----


def _replace(s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = _text(s), _text(old), _text(new)
    found = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new_text) - len(old_text)) > MAX_OUTPUT_CHARS:
        raise _too_big("replace's result")
    return text.replace(old_text, new_text, -1 if count is None else count)


def _join(value: Any, d: Any = "", attribute: Any = None) -> str:
    separator = _text(d)
    pieces: list[str] = []
    total = 0
    for item in _loop(value):
        piece = _text(_attribute(item, attribute))
        total += len(piece) + len(separator)
        if total > MAX_OUTPUT_CHARS + len(separator):
            raise _too_big("join's result")
        pieces.append(piece)
    return separator.join(pieces)


def _tojson(value: Any, indent: int | None = None) -> str:
    if indent is not None and not 0 <= indent <= MAX_JSON_INDENT:
        raise SecurityError(f"tojson's indent must be between 0 and {MAX_JSON_INDENT}")
    if _size(_plain(value)) > MAX_OUTPUT_CHARS:
        raise _too_big("the JSON")
    return _text(json.dumps(value, ensure_ascii=False, indent=indent, default=_refuse_object))


def _sum(iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise SecurityError("sum adds numbers: its start must be a number")
    total = start
    for item in _loop(iterable):
        total = _built(total + _attribute(item, attribute))
    return total


def _attribute(item: Any, attribute: Any) -> Any:
    """`join(attribute="name")`: the item's key (dicts are the only objects templates see)."""
    if attribute is None:
        return item
    return item.get(attribute) if isinstance(item, dict) else None


def _checked(filter_fn: Callable[..., Any]) -> Callable[..., Any]:
    """A Jinja filter that watches the clock and refuses results over the size budget."""

    @functools.wraps(filter_fn)  # keeps jinja_pass_arg, so Jinja passes what the filter expects
    def run(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        return _built(filter_fn(*args, **kwargs), "the filter's result")

    return run


_OWN_FILTERS: dict[str, Callable[..., Any]] = {
    "replace": _replace,
    "join": _join,
    "tojson": _tojson,
    "sum": _sum,
    "string": _text,
}


def _filters() -> dict[str, Callable[..., Any]]:
    chosen = {name: _OWN_FILTERS.get(name, FILTERS[name]) for name in ALLOWED_FILTERS}
    filters = {name: _checked(fn) for name, fn in chosen.items()}
    filters[_LOOP_FILTER] = _loop
    return filters


class _BudgetedCode(CodeGenerator):
    """Jinja's code generator, with the values a template builds checked against the budget."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.sb_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.sb_built(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.sb_built(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # a loop's or an assignment's target, not a value
            super().visit_Tuple(node, frame)
            return
        self.write("environment.sb_built(")
        super().visit_Tuple(node, frame)
        self.write(")")


_BINOPS = frozenset({"+", "-", "*", "/", "//", "%", "**"})
_DICT_VIEWS = (KeysView, ValuesView, ItemsView)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Sandbox with no globals, an allow-list of filters, no calls but a few pure methods, and a budget."""

    code_generator_class = _BudgetedCode
    intercepted_binops = _BINOPS
    concat = staticmethod(_checked_join)  # joins what a block captured ({% set %}...{% endset %})

    def __init__(self, *, undefined: type[Undefined]) -> None:
        super().__init__(
            undefined=undefined, autoescape=False, keep_trailing_newline=True, finalize=_finalize
        )
        self.globals.clear()
        self.filters = _filters()

    def sb_concat(self, parts: tuple[Any, ...]) -> str:
        _check_time()
        return _checked_join(parts)

    def sb_built(self, value: Any) -> Any:
        _check_time()
        return _built(value)

    def _generate(self, source: nodes.Template, *args: Any, **kwargs: Any) -> str:
        # Every loop iterates through the budget's counter (added here, after validation parsed
        # the template, so `check_template` never sees the filter).
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
        return super()._generate(source, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Data first: `response.items` must read the key "items", not the dict method.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return _as_value(super().getattr(obj, attribute), obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _as_value(super().getitem(obj, argument), obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        if isinstance(__obj, Undefined):
            __obj()  # raises UndefinedError naming the missing function
        if isinstance(__obj, _MethodRef):
            __obj = __obj.method
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if owner is None or name not in SAFE_METHODS.get(type(owner), frozenset()):
            raise SecurityError(f"calling {name or type(__obj).__name__!r} is not allowed in templates")
        if type(owner) is str and name == "replace":
            return _replace(owner, *args, **kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, _DICT_VIEWS):
            result = list(result)  # data, so it can be printed and looped over like a list
        return _built(result, f"{name}()'s result")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        for operand in (left, right):
            if _is_int(operand) and operand.bit_length() > MAX_INT_BITS:
                raise _int_too_big()
        if operator == "%" and isinstance(left, str):
            raise SecurityError("formatting text with % is not available in templates; join text with ~")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeats = isinstance(seq, (str, list, tuple)) and _is_int(times) and times > 0
                if repeats and _size(seq) * times > MAX_OUTPUT_CHARS:
                    raise _too_big("the repeated value")
            if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise _int_too_big()
        if (
            operator == "**"
            and _is_int(left)
            and _is_int(right)
            and right > 0
            and abs(left) > 1
            and left.bit_length() * right > MAX_INT_BITS
        ):
            raise _int_too_big()
        joins = operator == "+" and isinstance(left, (str, list, tuple))
        if joins and _size(left) + _size(right) > MAX_OUTPUT_CHARS:
            raise _too_big("the sum")
        return _built(super().call_binop(context, operator, left, right))


def _as_value(value: Any, obj: Any, key: Any) -> Any:
    """A method read off a value is kept behind _MethodRef: callable when allowed, never printed."""
    if callable(value) and not isinstance(value, Undefined):
        return _MethodRef(value, str(key))
    return value


_STRICT_ENV = _Sandbox(undefined=StrictUndefined)
_LENIENT_ENV = _Sandbox(undefined=ChainableUndefined)


def is_templated(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def _single_expression(text: str) -> str | None:
    m = _SINGLE_EXPR.match(text)
    if m is None:
        return None
    expr = m.group("expr")
    if "{{" in expr or "}}" in expr or "{%" in text or "{#" in text:
        return None
    return expr


_PATH_EXPR = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*)\s*\}\}")
_MISSING = object()


def _path_plan(text: str) -> tuple[bool, list[str | tuple[str, ...]]] | None:
    """Split a template made only of literals and `{{ a.b.c }}` into segments (the common case),
    rendered without Jinja; None when the template needs Jinja."""
    if "{%" in text or "{#" in text:
        return None
    segments: list[str | tuple[str, ...]] = []
    pos = 0
    for m in _PATH_EXPR.finditer(text):
        if m.start() > pos:
            segments.append(text[pos : m.start()])
        segments.append(tuple(m.group(1).split(".")))
        pos = m.end()
    if pos < len(text):
        segments.append(text[pos:])
    if any(isinstance(seg, str) and ("{{" in seg or "}}" in seg) for seg in segments):
        return None
    single = len(segments) == 1 and not isinstance(segments[0], str) and _single_expression(text) is not None
    return single, segments


def _resolve(path: tuple[str, ...], names: dict[str, Any]) -> Any:
    obj: Any = names
    for step in path:
        if type(obj) is not dict:
            return _MISSING
        obj = obj.get(step, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def _run_paths(plan: tuple[bool, list[str | tuple[str, ...]]], names: dict[str, Any]) -> Any:
    """Render a path template; _MISSING when a name is absent (Jinja then renders it, errors included)."""
    single, segments = plan
    if single:
        return _resolve(segments[0], names)  # type: ignore[arg-type]
    parts = []
    for seg in segments:
        if isinstance(seg, str):
            parts.append(seg)
            continue
        value = _resolve(seg, names)
        if value is _MISSING:
            return _MISSING
        parts.append(value if isinstance(value, str) else str(value))
    return "".join(parts)


class TemplateCache:
    """Compiled templates keyed by source. Compiling costs ~300 µs, rendering ~8 µs."""

    def __init__(self, *, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._compiled: dict[tuple[bool, str], Any] = {}
        self._fast: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._compiled)

    def fast(self, text: str) -> Any:
        """The segment plan of a path-only template, or False when it needs Jinja."""
        found = self._fast.get(text)
        if found is None:
            if len(self._fast) >= self.max_entries:
                self._fast.clear()
            found = self._fast[text] = _path_plan(text) or False
        return found

    def get(self, text: str, *, lenient: bool) -> Any:
        key = (lenient, text)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= self.max_entries:
                # Plans are rebuilt per version, so a full cache is rare; start over rather than track LRU.
                self._compiled.clear()
            env = _LENIENT_ENV if lenient else _STRICT_ENV
            expr = _single_expression(text)
            if expr is not None:
                found = ("expr", env.compile_expression(expr, undefined_to_none=False))
            else:
                found = ("text", env.from_string(text))
            self._compiled[key] = found
        return found


SHARED_CACHE = TemplateCache()


def _explain(exc: Exception) -> str:
    if isinstance(exc, SecurityError):
        return f"blocked by the template sandbox: {exc} (names starting with '_' and most calls are not available)"
    if isinstance(exc, UndefinedError):
        return f"undefined name: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _output(value: Any, text: str) -> Any:
    if isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS:
        raise TemplateBudgetError(
            f"template {text[:60]!r} went over its budget: its output is longer than {MAX_OUTPUT_CHARS} "
            "characters"
        )
    return value


def _run(compiled: Any, names: dict[str, Any]) -> Any:
    kind, obj = compiled
    if kind == "expr":
        value = obj(names)
        if isinstance(value, Undefined):
            str(value)  # raises UndefinedError with Jinja's message for StrictUndefined
            return None  # lenient: an undefined single expression is None
        return _plain(value)
    # Streamed and counted: a loop printing a long text is stopped at the budget, not after it.
    return _checked_join(obj.generate(names))


def render_str(
    text: str, names: dict[str, Any], *, strict: bool, warnings: list[str], cache: TemplateCache | None = None
) -> Any:
    """Render one string leaf; appends warnings in place (the interpreter's hot path).

    Raises TemplateError when strict and the template fails, and TemplateBudgetError (strict
    or not) when it goes over its budget.
    """
    if not is_templated(text):
        return text
    cache = cache or SHARED_CACHE
    fast = cache.fast(text)
    if fast:
        value = _run_paths(fast, names)
        if value is not _MISSING:
            return _output(value, text)
    clock = current_clock()
    if clock is not None and clock.exhausted:
        raise TemplateBudgetError(
            f"template {text[:60]!r} was not rendered: the turn used up its "
            f"{clock.limit_s * 1000:.0f} ms for templates and matching"
        )
    if clock is None:
        return _render_jinja(text, names, strict=strict, warnings=warnings, cache=cache, clock=None)
    started = time.perf_counter()
    try:
        return _render_jinja(text, names, strict=strict, warnings=warnings, cache=cache, clock=clock)
    finally:
        clock.spent_s += time.perf_counter() - started


def _render_jinja(
    text: str,
    names: dict[str, Any],
    *,
    strict: bool,
    warnings: list[str],
    cache: TemplateCache,
    clock: TurnClock | None,
) -> Any:
    limit_s = RENDER_BUDGET_S if clock is None else min(RENDER_BUDGET_S, clock.remaining_s())
    render = _Render(limit_s)
    token = _ACTIVE.set(render)
    try:
        try:
            value = _run(cache.get(text, lenient=False), names)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {text[:60]!r} has a syntax error: {exc.message}") from exc
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError) as exc:
            reason = _explain(exc)
            if strict:
                raise TemplateError(f"template {text[:60]!r}: {reason}") from exc
            warnings.append(f"template {text[:60]!r} rendered empty: {reason}")
            if isinstance(exc, SecurityError):
                # A sandbox violation renders empty in production, never partially.
                return "" if _single_expression(text) is None else None
            render.iterations = render.printed = 0  # the lenient pass starts over, within the same time
            try:
                value = _run(cache.get(text, lenient=True), names)
            except (JinjaTemplateError, ArithmeticError, TypeError, ValueError):
                return "" if _single_expression(text) is None else None
            if isinstance(value, Undefined):
                return None
    except TemplateBudgetError as exc:
        if str(exc).startswith("template "):
            raise
        raise TemplateBudgetError(f"template {text[:60]!r} went over its budget: {exc}") from None
    finally:
        _ACTIVE.reset(token)
    return _output(value, text)


def render_text(template: str, names: dict[str, Any], *, strict: bool) -> RenderResult:
    """Render a text template to a string (a single expression is converted with str())."""
    warnings: list[str] = []
    value = render_str(template, names, strict=strict, warnings=warnings)
    if value is None:
        value = ""
    elif not isinstance(value, str):
        value = str(value)
    return RenderResult(value, warnings)


def render_tree(
    value: Any,
    names: dict[str, Any],
    *,
    strict: bool,
    warnings: list[str],
    cache: TemplateCache | None = None,
) -> Any:
    if isinstance(value, str):
        return render_str(value, names, strict=strict, warnings=warnings, cache=cache)
    if isinstance(value, dict):
        return {
            k: render_tree(v, names, strict=strict, warnings=warnings, cache=cache) for k, v in value.items()
        }
    if isinstance(value, list):
        return [render_tree(v, names, strict=strict, warnings=warnings, cache=cache) for v in value]
    return value


def render_value(value: Any, names: dict[str, Any], *, strict: bool) -> RenderResult:
    """Render every string leaf of a JSON value; a leaf that is exactly `{{ expr }}` keeps its type."""
    warnings: list[str] = []
    return RenderResult(render_tree(value, names, strict=strict, warnings=warnings), warnings)


def check_template(text: str) -> str | None:
    """Syntax check for validation: a sentence describing the problem, or None when fine."""
    if not is_templated(text) or _path_plan(text):
        return None  # plain `{{ a.b }}` expressions cannot be malformed
    try:
        tree = _STRICT_ENV.parse(text)
    except TemplateSyntaxError as exc:
        reason = (exc.message or "").rstrip(".")
        return f"Template syntax error on line {exc.lineno}: {reason}. Fix the {{{{ ... }}}} expression."
    for flt in tree.find_all(nodes.Filter):
        if flt.name not in ALLOWED_FILTERS:
            allowed = ", ".join(sorted(ALLOWED_FILTERS))
            return f"Filter {flt.name!r} is not available in templates; use one of: {allowed}."
    return None


def template_strings(value: Any) -> list[str]:
    """Every templated string leaf of a JSON value (for validation and plan compilation)."""
    if isinstance(value, str):
        return [value] if is_templated(value) else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in template_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in template_strings(v)]
    return []


def template_names(
    turn: Turn, *, vars: dict[str, Any], response: Any, event: dict[str, Any] | None
) -> dict[str, Any]:
    """The names of DESIGN "Templates"; variables are also exposed at top level (fixed names win)."""
    contact = turn.contact
    last = turn.messages[-1] if turn.messages else None
    text = turn.text
    names = dict(vars)
    names.update(
        contact={
            "id": contact.id,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "phone": contact.phone,
            "tags": list(contact.tags),
            "attributes": dict(contact.attributes),
        },
        conversation={
            "id": turn.conversation.id,
            "status": turn.conversation.status,
            "tags": list(turn.conversation.tags),
        },
        message={"text": text, "type": last.type if last else "text", "id": last.id if last else ""},
        event=dict(event or {}),
        vars=dict(vars),
        response=response,
        phone_number=turn.phone_number or contact.phone,
        message_text=text,
        timestamp=turn.timestamp,
    )
    return names

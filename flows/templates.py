"""Sandboxed Jinja2 rendering of message and payload templates, with typed single-expression leaves."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flows.turn import Turn

MAX_OUTPUT_CHARS = 16 * 1024
MAX_POWER_EXPONENT = 64

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


class RenderResult(msgspec.Struct, frozen=True):
    value: Any
    warnings: list[str] = []


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, indent=indent)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Sandbox with no globals, an allow-list of filters, no calls but a few pure methods."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, undefined: type[Undefined]) -> None:
        super().__init__(undefined=undefined, autoescape=False, keep_trailing_newline=True)
        self.globals.clear()
        kept = {name: f for name, f in self.filters.items() if name in ALLOWED_FILTERS}
        kept["tojson"] = _tojson
        self.filters = kept

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Data first: `response.items` must read the key "items", not the dict method.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(__obj, Undefined):
            __obj()  # raises UndefinedError naming the missing function
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if owner is None or name not in SAFE_METHODS.get(type(owner), frozenset()):
            raise SecurityError(f"calling {name or type(__obj).__name__!r} is not allowed in templates")
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(times, int)
                    and len(seq) * times > MAX_OUTPUT_CHARS
                ):
                    raise SecurityError(f"repeating a sequence past {MAX_OUTPUT_CHARS} items is not allowed")
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_POWER_EXPONENT:
            raise SecurityError(f"exponents above {MAX_POWER_EXPONENT} are not allowed")
        return super().call_binop(context, operator, left, right)


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


def _cap(value: str, text: str, warnings: list[str]) -> str:
    if len(value) > MAX_OUTPUT_CHARS:
        warnings.append(f"template {text[:60]!r} output cut to {MAX_OUTPUT_CHARS} characters")
        return value[:MAX_OUTPUT_CHARS]
    return value


def _run(compiled: Any, names: dict[str, Any]) -> Any:
    kind, obj = compiled
    if kind == "expr":
        value = obj(names)
        if isinstance(value, Undefined):
            str(value)  # raises UndefinedError with Jinja's message for StrictUndefined
            return None  # lenient: an undefined single expression is None
        return value
    return obj.render(names)


def render_str(
    text: str, names: dict[str, Any], *, strict: bool, warnings: list[str], cache: TemplateCache | None = None
) -> Any:
    """Render one string leaf; appends warnings in place (the interpreter's hot path)."""
    if not is_templated(text):
        return text
    cache = cache or SHARED_CACHE
    fast = cache.fast(text)
    if fast:
        value = _run_paths(fast, names)
        if value is not _MISSING:
            return _cap(value, text, warnings) if isinstance(value, str) else value
    try:
        value = _run(cache.get(text, lenient=False), names)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template {text[:60]!r} has a syntax error: {exc.message}") from exc
    except (JinjaTemplateError, ArithmeticError, TypeError, ValueError) as exc:
        reason = _explain(exc)
        if strict:
            raise TemplateError(f"template {text[:60]!r}: {reason}") from exc
        warnings.append(f"template {text[:60]!r} rendered empty: {reason}")
        try:
            value = _run(cache.get(text, lenient=True), names)
        except (JinjaTemplateError, ArithmeticError, TypeError, ValueError):
            return "" if _single_expression(text) is None else None
        if isinstance(value, Undefined):
            return None
        if isinstance(exc, SecurityError):
            # A sandbox violation renders empty in production, never partially.
            return "" if _single_expression(text) is None else None
    if isinstance(value, str):
        return _cap(value, text, warnings)
    return value


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

"""Node forms -> config dicts: field names encode the shape.

`a.b`, `a[]`, `a[].b`, `a{}.key`, and the types `:int`/`:float`/`:bool`/`:json`/`:auto`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import zip_longest
from typing import Any

import msgspec

from flows.nodes.registry import NODE_TYPES
from flows.validate import check_config


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


def _cast(value: str, kind: str, field: str, errors: list[FieldError]) -> tuple[bool, Any]:
    """(keep, value): empty numeric/JSON inputs are left out so the config default applies."""
    if kind == "":
        return True, value
    if kind == "bool":
        return True, value == "true"
    if value.strip() == "":
        return False, None
    try:
        if kind == "int":
            return True, int(value)
        if kind == "float":
            number = float(value)
            return True, int(number) if number.is_integer() else number
        if kind == "json":
            return True, json.loads(value)
    except ValueError as exc:
        errors.append(
            FieldError(field, f"Not a valid {'number' if kind != 'json' else 'JSON value'}: {exc}.")
        )
        return False, None
    if kind == "auto":
        try:
            parsed = json.loads(value)
            return True, parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
        except ValueError:
            return True, value
    raise ValueError(f"unknown field kind {kind!r}")


def _set(target: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def form_to_config(items: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], list[FieldError]]:
    """Build a config dict from form items in order; keys starting with `_` are form metadata and skipped."""
    errors: list[FieldError] = []
    scalars: dict[str, tuple[str, str]] = {}  # later values win (checkbox after its hidden "false")
    lists: dict[str, list[str]] = {}
    rows: dict[str, dict[str, list[tuple[str, str]]]] = {}
    pairs: dict[str, dict[str, list[str]]] = {}
    order: list[tuple[str, str]] = []
    for raw_key, value in items:
        if raw_key.startswith("_"):
            continue
        key, _, kind = raw_key.partition(":")
        if "{}." in key:
            base, _, part = key.partition("{}.")
            pairs.setdefault(base, {}).setdefault(part, []).append(value)
            entry = ("pairs", base)
        elif "[]." in key:
            base, _, sub = key.partition("[].")
            rows.setdefault(base, {}).setdefault(sub, []).append((value, kind))
            entry = ("rows", base)
        elif key.endswith("[]"):
            lists.setdefault(key[:-2], []).append(value)
            entry = ("list", key[:-2])
        else:
            scalars[key] = (value, kind)
            entry = ("scalar", key)
        if entry not in order:
            order.append(entry)
    config: dict[str, Any] = {}
    for what, key in order:
        if what == "scalar":
            value, kind = scalars[key]
            keep, cast = _cast(value, kind, key, errors)
            if keep:
                _set(config, key, cast)
        elif what == "list":
            _set(config, key, [v.strip() for v in lists[key] if v.strip()])
        elif what == "pairs":
            keys, values = pairs[key].get("key", []), pairs[key].get("value", [])
            _set(config, key, {k.strip(): v for k, v in zip(keys, values) if k.strip()})
        else:
            columns = rows[key]
            names = list(columns)
            built = []
            for index, cells in enumerate(zip_longest(*(columns[n] for n in names), fillvalue=("", ""))):
                row: dict[str, Any] = {}
                for name, (value, kind) in zip(names, cells):
                    keep, cast = _cast(value, kind, f"{key}[{index}].{name}", errors)
                    if keep:
                        row[name] = cast
                # A row whose text fields are all empty is an unused blank row, not an error.
                if any(isinstance(v, str) and v.strip() for v in row.values()):
                    built.append(row)
            _set(config, key, built)
    return config, errors


_MATCH_FIELDS = {
    "any": (),
    "keywords": ("keywords", "mode"),
    "regex": ("pattern",),
    "intent": ("display_name", "description", "training_examples", "confidence_threshold", "variables"),
}


def prune_match(config: dict[str, Any]) -> dict[str, Any]:
    """Keep only the chosen match kind's fields: without JS the form also posts the hidden kinds' inputs."""
    match = config.get("match")
    if isinstance(match, dict) and match.get("kind") in _MATCH_FIELDS:
        keep = _MATCH_FIELDS[match["kind"]]
        config["match"] = {"kind": match["kind"], **{k: v for k, v in match.items() if k in keep}}
    return config


def check_node_config(
    node_id: str, type_: str, config: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Validate one node's config on its own; graph rules (what it is connected to) are the flow's to check.

    Returns the normalised config, or field errors in plain words.
    """
    spec = NODE_TYPES[type_]
    pruned = prune_match(dict(config))
    unknown = [FieldError(k, f"Unknown field {k!r}; remove it.") for k in pruned if k not in spec.fields]
    known = {k: v for k, v in pruned.items() if k in spec.fields}
    typed, flow_errors = check_config(spec, known, node_id=node_id)
    errors = unknown + [FieldError(_field(e.field), e.message) for e in flow_errors]
    if errors or typed is None:
        return None, errors
    return msgspec.to_builtins(typed, order="deterministic"), []


def _field(field: str | None) -> str:
    if not field:
        return ""
    return field[len("config.") :] if field.startswith("config.") else ("" if field == "config" else field)

"""Validation of a flow document: every error at once, each naming the node id and field."""

from __future__ import annotations

import logging
import re
from enum import Enum
from typing import Any

import msgspec

from flows.nodes.base import NodeType
from flows.nodes.registry import NODE_TYPES, TRIGGER_TYPES, TypedNode
from flows.schema import (
    SCHEMA_V1,
    Edge,
    FlowDocument,
    FlowStatus,
    MatchIntent,
    Node,
    NodeConfig,
    Position,
    document_to_dict,
)

logger = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_NODES = 500
MAX_ID_CHARS = 64

_TOP_FIELDS = ("schema", "name", "description", "status", "priority", "nodes", "edges")
# A flow's priority is stored in a 32-bit column.
MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1
_NODE_FIELDS = ("id", "type", "config", "position")
_EDGE_FIELDS = ("from", "to", "port")
_STATUSES = tuple(s.value for s in FlowStatus)
_CONFIG_FIELDS = {name: spec.fields for name, spec in NODE_TYPES.items()}


class ErrorCode(str, Enum):
    TOO_LARGE = "too_large"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_SCHEMA = "bad_schema"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    BAD_VALUE = "bad_value"
    TOO_MANY_NODES = "too_many_nodes"
    UNKNOWN_TYPE = "unknown_type"
    DUPLICATE_NODE_ID = "duplicate_node_id"
    DANGLING_EDGE = "dangling_edge"
    DUPLICATE_EDGE = "duplicate_edge"
    TRIGGER_INCOMING_EDGE = "trigger_incoming_edge"
    WRONG_PORT = "wrong_port"
    MISSING_TRIGGER = "missing_trigger"
    CYCLE = "cycle"
    CONFIRMATION_WITHOUT_INTENT = "confirmation_without_intent"
    INTERNAL = "internal"
    # Produced by node checks (flows.nodes.*.check):
    TEMPLATE_SYNTAX = "template_syntax"
    REGEX_TOO_LONG = "regex_too_long"
    REGEX_INVALID = "regex_invalid"
    REGEX_UNSUPPORTED = "regex_unsupported"
    MISSING_VALUE = "missing_value"
    DUPLICATE_VARIABLE = "duplicate_variable"


class FlowError(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str | None
    field: str | None
    message: str  # a sentence saying what to do
    code: str


class FlowValidationError(Exception):
    """Raised by decode_document; `.errors` holds every problem found."""

    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = errors
        shown = "; ".join(f"{e.node_id or '-'}/{e.field or '-'}: {e.message}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid flow document: {shown}{more}")


def _err(node_id: str | None, field: str | None, message: str, code: ErrorCode) -> FlowError:
    return FlowError(node_id=node_id, field=field, message=message, code=code.value)


def _parse(raw: bytes | str | dict | list, errors: list[FlowError]) -> Any:
    # Already decoded JSON (an importer's file): an array is then "not an object", below.
    if isinstance(raw, (dict, list)):
        try:
            size = len(msgspec.json.encode(raw))
        except (TypeError, msgspec.EncodeError, OverflowError, RecursionError) as exc:
            errors.append(
                _err(
                    None,
                    None,
                    f"The document holds values JSON cannot represent ({exc}); send plain JSON.",
                    ErrorCode.INVALID_JSON,
                )
            )
            return None
        if size > MAX_DOCUMENT_BYTES:
            errors.append(
                _err(
                    None,
                    None,
                    f"The document is {size} bytes; keep it under {MAX_DOCUMENT_BYTES} bytes (1 MB).",
                    ErrorCode.TOO_LARGE,
                )
            )
            return None
        return raw
    if isinstance(raw, str):
        size = len(raw) if len(raw) * 4 <= MAX_DOCUMENT_BYTES else len(raw.encode("utf-8", "surrogatepass"))
    elif isinstance(raw, (bytes, bytearray, memoryview)):
        size = len(raw)
    else:
        errors.append(
            _err(
                None,
                None,
                f"Expected JSON text or an object, got {type(raw).__name__}.",
                ErrorCode.INVALID_JSON,
            )
        )
        return None
    if size > MAX_DOCUMENT_BYTES:
        errors.append(
            _err(
                None,
                None,
                f"The document is {size} bytes; keep it under {MAX_DOCUMENT_BYTES} bytes (1 MB).",
                ErrorCode.TOO_LARGE,
            )
        )
        return None
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        errors.append(
            _err(
                None, None, f"The document is not valid JSON ({exc}); fix the syntax.", ErrorCode.INVALID_JSON
            )
        )
        return None


def _unknown_keys(
    obj: dict, allowed: tuple[str, ...], node_id: str | None, prefix: str, errors: list[FlowError]
) -> None:
    for key in obj:
        if key not in allowed:
            errors.append(
                _err(
                    node_id,
                    f"{prefix}{key}",
                    f"Unknown field {key!r}; remove it (allowed: {', '.join(allowed)}).",
                    ErrorCode.UNKNOWN_FIELD,
                )
            )


_KINDS = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "yes or no",
    "object": "a set of names and values",
    "array": "a list",
    "null": "empty",
}
_BOUNDS = {"<=": "at most", ">=": "at least", "<": "less than", ">": "more than"}
_INDEX = re.compile(r"\[[^\]]*\]")


def _label(field: str) -> str:
    last = _INDEX.sub("", field).rsplit(".", 1)[-1]
    return last.replace("_", " ") or "this value"


def _hint(hints: dict[str, str], field: str) -> str | None:
    """The node's own sentence for this field or the nearest field around it."""
    path = _INDEX.sub("", field)
    while path:
        if path in hints:
            return hints[path]
        path = path.rpartition(".")[0]
    return None


def _number(text: str) -> str:
    return text[:-2] if text.endswith(".0") else text


def _plain_words(problem: str, field: str, hints: dict[str, str]) -> str:
    """A msgspec complaint about `field` said as what to write (DESIGN: errors say what to do)."""
    hint = _hint(hints, field)
    if hint is not None:
        return hint
    label = _label(field)
    if m := re.match(r"Expected `(\w+)`, got `(\w+)`", problem):
        return f"{label.capitalize()} must be {_KINDS.get(m.group(1), m.group(1))}."
    if m := re.match(r"Expected `str` of length >= (\d+)", problem):
        return (
            f"Fill in {label}."
            if m.group(1) == "1"
            else f"Write at least {m.group(1)} characters in {label}."
        )
    if m := re.match(r"Expected `str` of length <= (\d+)", problem):
        return f"Shorten {label} to {m.group(1)} characters or fewer."
    if m := re.match(r"Expected `(?:int|float)` (<=|>=|<|>) (\S+)", problem):
        return f"{label.capitalize()} must be {_BOUNDS[m.group(1)]} {_number(m.group(2))}."
    if m := re.match(r"Expected `array` of length (<=|>=) (\d+)", problem):
        return f"{label.capitalize()} must have {_BOUNDS[m.group(1)]} {m.group(2)} entries."
    if m := re.match(r"Invalid enum value (.+)", problem):
        return f"{label.capitalize()} cannot be {m.group(1)}; pick one of the choices."
    if problem.startswith("Expected `str` matching regex"):
        return f"{label.capitalize()} has characters it cannot use: use letters, digits and underscores."
    return f"Check {label}: {problem.rstrip('.')}."


def _convert_error(
    exc: msgspec.ValidationError, node_id: str, prefix: str, hints: dict[str, str] | None = None
) -> FlowError:
    """A msgspec error at `prefix` + its path, as a FlowError with a plain-words message."""
    text = str(exc)
    path = ""
    if " - at `$" in text:
        text, _, path = text.partition(" - at `$")
        path = path.rstrip("`")
    field = prefix + path if prefix else path.lstrip(".")
    within = field.partition(".")[2] if field.startswith("config.") else ""  # relative to the config
    if text.startswith("Object missing required field `"):
        name = text.split("`")[1]
        where = f"{within}.{name}" if within else name
        message = _hint(hints or {}, where) if within or field == "config" else None
        return _err(
            node_id, f"{field}.{name}", message or f"Fill in {_label(name)}.", ErrorCode.MISSING_FIELD
        )
    if text.startswith("Object contains unknown field `"):
        name = text.split("`")[1]
        return _err(
            node_id, f"{field}.{name}", f"Unknown field {name!r}; remove it.", ErrorCode.UNKNOWN_FIELD
        )
    if field.endswith("match.kind"):
        return _err(node_id, field, "Set match kind to any, keywords, regex or intent.", ErrorCode.BAD_VALUE)
    return _err(node_id, field, _plain_words(text, within or field, hints or {}), ErrorCode.BAD_VALUE)


def _check_top(doc: dict, errors: list[FlowError]) -> None:
    _unknown_keys(doc, _TOP_FIELDS, None, "", errors)
    if "schema" in doc and doc["schema"] != SCHEMA_V1:
        errors.append(
            _err(
                None,
                "schema",
                f"Set schema to {SCHEMA_V1!r}; this version reads no other.",
                ErrorCode.BAD_SCHEMA,
            )
        )
    name = doc.get("name")
    if name is None:
        errors.append(_err(None, "name", "Give the flow a name.", ErrorCode.MISSING_FIELD))
    elif not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors.append(
            _err(None, "name", "The name must be text of 1 to 200 characters.", ErrorCode.BAD_VALUE)
        )
    if not isinstance(doc.get("description", ""), str):
        errors.append(_err(None, "description", "The description must be text.", ErrorCode.BAD_VALUE))
    if doc.get("status", "draft") not in _STATUSES:
        errors.append(
            _err(None, "status", f"Set status to one of: {', '.join(_STATUSES)}.", ErrorCode.BAD_VALUE)
        )
    priority = doc.get("priority", 0)
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        errors.append(
            _err(
                None,
                "priority",
                f"The priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} (higher runs first).",
                ErrorCode.BAD_VALUE,
            )
        )


def _check_node(i: int, raw: Any, seen: set[str], errors: list[FlowError]) -> Node | None:
    where = f"nodes[{i}]"
    if not isinstance(raw, dict):
        errors.append(
            _err(None, where, "Each node must be an object with id, type and config.", ErrorCode.BAD_VALUE)
        )
        return None
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not node_id or len(node_id) > MAX_ID_CHARS:
        errors.append(
            _err(
                None,
                f"{where}.id",
                f"Give the node an id: text of 1 to {MAX_ID_CHARS} characters.",
                ErrorCode.MISSING_FIELD if node_id is None else ErrorCode.BAD_VALUE,
            )
        )
        node_id = None
    label = node_id
    ok = node_id is not None
    if node_id is not None and node_id in seen:
        errors.append(
            _err(
                node_id,
                "id",
                f"Node id {node_id!r} is used twice; give each node its own id.",
                ErrorCode.DUPLICATE_NODE_ID,
            )
        )
        ok = False
    elif node_id is not None:
        seen.add(node_id)
    _unknown_keys(raw, _NODE_FIELDS, label, "", errors)
    ok = ok and all(k in _NODE_FIELDS for k in raw)
    node_type = raw.get("type")
    spec = NODE_TYPES.get(node_type) if isinstance(node_type, str) else None
    if spec is None:
        choices = ", ".join(NODE_TYPES)
        errors.append(
            _err(
                label,
                "type",
                f"Unknown node type {node_type!r}; use one of: {choices}.",
                ErrorCode.UNKNOWN_TYPE if node_type is not None else ErrorCode.MISSING_FIELD,
            )
        )
        ok = False
    position = raw.get("position")
    pos_struct = None
    if position is not None:
        try:
            pos_struct = msgspec.convert(position, Position, strict=True)
        except msgspec.ValidationError as exc:
            errors.append(_convert_error(exc, label or where, "position"))
            ok = False
    config = raw.get("config")
    if "config" not in raw:
        errors.append(
            _err(
                label,
                "config",
                "Add a config object (use {} when the node type has no settings).",
                ErrorCode.MISSING_FIELD,
            )
        )
        return None
    if not isinstance(config, dict):
        errors.append(_err(label, "config", "The config must be an object.", ErrorCode.BAD_VALUE))
        return None
    if spec is None:
        return None
    allowed = _CONFIG_FIELDS[spec.type]
    _unknown_keys(config, allowed, label, "config.", errors)
    cfg, found = check_config(spec, {k: v for k, v in config.items() if k in allowed}, node_id=label or where)
    errors.extend(found)
    if cfg is None or not ok or found or any(k not in allowed for k in config):
        return None
    # ok: node_id and node_type were checked to be text above.
    return Node(id=str(node_id), type=str(node_type), config=cfg, position=pos_struct)


def check_config(
    spec: NodeType, config: dict[str, Any], *, node_id: str
) -> tuple[NodeConfig | None, list[FlowError]]:
    """One node's config on its own (no graph rules): the typed config, or every error found in it."""
    try:
        typed = msgspec.convert({"type": spec.type, "id": "n", "config": config}, TypedNode, strict=True)
    except msgspec.ValidationError as exc:
        return None, [_convert_error(exc, node_id, "", spec.hints)]
    issues = spec.check(typed.config)
    found = [
        FlowError(node_id=node_id, field=f"config.{issue.field}", message=issue.message, code=issue.code)
        for issue in issues
    ]
    return (None, found) if found else (typed.config, [])


def _check_edges(raw_edges: list, types: dict[str, str], errors: list[FlowError]) -> list[Edge]:
    edges: list[Edge] = []
    seen: set[tuple[str, str, str | None]] = set()
    for j, raw in enumerate(raw_edges):
        where = f"edges[{j}]"
        if not isinstance(raw, dict):
            errors.append(
                _err(None, where, "Each edge must be an object {from, to, port?}.", ErrorCode.BAD_VALUE)
            )
            continue
        src, dst, port = raw.get("from"), raw.get("to"), raw.get("port")
        owner = src if isinstance(src, str) else None
        _unknown_keys(raw, _EDGE_FIELDS, owner, f"{where}.", errors)
        good = all(k in _EDGE_FIELDS for k in raw)
        for key, value in (("from", src), ("to", dst)):
            if not isinstance(value, str) or not value:
                errors.append(
                    _err(
                        owner,
                        f"{where}.{key}",
                        f"Set {key!r} to a node id.",
                        ErrorCode.MISSING_FIELD if value is None else ErrorCode.BAD_VALUE,
                    )
                )
                good = False
            elif value not in types:
                errors.append(
                    _err(
                        value if key == "from" else owner,
                        f"{where}.{key}",
                        f"The edge points to node {value!r}, which does not exist; "
                        "connect it to an existing node or delete it.",
                        ErrorCode.DANGLING_EDGE,
                    )
                )
                good = False
        if port is not None and not isinstance(port, str):
            errors.append(
                _err(owner, f"{where}.port", "The port must be text or left out.", ErrorCode.BAD_VALUE)
            )
            good = False
        if not good:
            continue
        src, dst = str(src), str(dst)  # checked above: both are node ids
        if types[dst] in TRIGGER_TYPES:
            errors.append(
                _err(
                    dst,
                    f"{where}.to",
                    f"Trigger {dst!r} cannot have an incoming edge; triggers start a flow, so connect it from nothing.",
                    ErrorCode.TRIGGER_INCOMING_EDGE,
                )
            )
            good = False
        spec = NODE_TYPES.get(types[src])
        if spec is not None and port not in spec.out_ports:
            named = [p for p in spec.out_ports if p is not None]
            hint = (
                f"set port to one of: {', '.join(named)}"
                if named
                else "leave port out (this node has one output)"
            )
            problem = (
                f"Port {port!r} does not exist on {spec.type}"
                if port is not None
                else f"An edge from {spec.type} needs a port"
            )
            errors.append(_err(src, f"{where}.port", f"{problem}; {hint}.", ErrorCode.WRONG_PORT))
            good = False
        edge_key = (src, dst, port)
        if edge_key in seen:
            errors.append(
                _err(
                    src,
                    where,
                    f"The edge {src} -> {dst} appears twice; delete one.",
                    ErrorCode.DUPLICATE_EDGE,
                )
            )
            good = False
        seen.add(edge_key)
        if good:
            edges.append(Edge(from_=src, to=dst, port=port))
    return edges


def _check_cycles(ids: list[str], pairs: list[tuple[str, str]], errors: list[FlowError]) -> None:
    succ: dict[str, list[str]] = {i: [] for i in ids}
    for src, dst in pairs:
        if src in succ and dst in succ:
            succ[src].append(dst)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    reported: set[str] = set()
    for root in ids:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        path = [root]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
                continue
            mark = state.get(nxt)
            if mark == 1:
                if nxt not in reported:
                    reported.add(nxt)
                    loop = " -> ".join([*path[path.index(nxt) :], nxt])
                    errors.append(
                        _err(
                            nxt,
                            "edges",
                            f"The edges form a cycle ({loop}); remove one edge so the flow always ends.",
                            ErrorCode.CYCLE,
                        )
                    )
            elif mark is None:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
                path.append(nxt)


def _check_confirmations(nodes: list[Node], edges: list[Edge], errors: list[FlowError]) -> None:
    succ: dict[str, list[str]] = {}
    for e in edges:
        succ.setdefault(e.from_, []).append(e.to)
    reachable: set[str] = set()
    todo = [n.id for n in nodes if isinstance(getattr(n.config, "match", None), MatchIntent)]
    while todo:
        for nxt in succ.get(todo.pop(), ()):
            if nxt not in reachable:
                reachable.add(nxt)
                todo.append(nxt)
    for n in nodes:
        confirms = getattr(n.config, "requires_confirmation", False)
        if NODE_TYPES[n.type].external_action and confirms and n.id not in reachable:
            errors.append(
                _err(
                    n.id,
                    "config.requires_confirmation",
                    "Confirmation needs an intent trigger before this webhook: connect it after a "
                    "Message received trigger that matches an intent, or untick "
                    "'Ask the customer to confirm first'.",
                    ErrorCode.CONFIRMATION_WITHOUT_INTENT,
                )
            )


def _validate(raw: bytes | str | dict) -> tuple[FlowDocument | None, list[FlowError]]:
    errors: list[FlowError] = []
    doc = _parse(raw, errors)
    if errors:
        return None, errors
    if not isinstance(doc, dict):
        return None, [
            _err(
                None,
                None,
                "The document must be a JSON object with name, nodes and edges.",
                ErrorCode.NOT_AN_OBJECT,
            )
        ]
    _check_top(doc, errors)
    raw_nodes = doc.get("nodes")
    raw_edges = doc.get("edges", [])
    if not isinstance(raw_nodes, list):
        errors.append(
            _err(
                None,
                "nodes",
                "Add a nodes list with at least one trigger.",
                ErrorCode.MISSING_FIELD if raw_nodes is None else ErrorCode.BAD_VALUE,
            )
        )
        raw_nodes = []
    if len(raw_nodes) > MAX_NODES:
        errors.append(
            _err(
                None,
                "nodes",
                f"The flow has {len(raw_nodes)} nodes; keep it to {MAX_NODES} or split it into several flows.",
                ErrorCode.TOO_MANY_NODES,
            )
        )
        return None, errors
    if not isinstance(raw_edges, list):
        errors.append(
            _err(None, "edges", "The edges must be a list of {from, to, port?}.", ErrorCode.BAD_VALUE)
        )
        raw_edges = []
    seen: set[str] = set()
    nodes: list[Node | None] = [_check_node(i, n, seen, errors) for i, n in enumerate(raw_nodes)]
    # Edges are checked against every node whose id and type are readable, even if its config is bad,
    # so one broken config does not hide edge problems.
    types: dict[str, str] = {}
    for raw_node in raw_nodes:
        if isinstance(raw_node, dict) and isinstance(raw_node.get("id"), str) and raw_node["id"] not in types:
            node_type = raw_node.get("type")
            types[raw_node["id"]] = node_type if isinstance(node_type, str) else ""
    edges = _check_edges(raw_edges, types, errors)
    if not any(t in TRIGGER_TYPES for t in types.values()):
        errors.append(
            _err(
                None,
                "nodes",
                "Add a trigger (a when.* node) so the flow can start.",
                ErrorCode.MISSING_TRIGGER,
            )
        )
    _check_cycles(list(types), [(e.from_, e.to) for e in edges], errors)
    good_nodes = [n for n in nodes if n is not None]
    _check_confirmations(good_nodes, edges, errors)
    if errors:
        return None, errors
    document = FlowDocument(
        schema=SCHEMA_V1,
        name=doc["name"],
        description=doc.get("description", ""),
        status=FlowStatus(doc.get("status", "draft")),
        priority=doc.get("priority", 0),
        nodes=good_nodes,
        edges=edges,
    )
    return document, []


def validate_document(raw: bytes | str | dict) -> tuple[FlowDocument | None, list[FlowError]]:
    """Check a document and return (document, []) or (None, every error found). Never raises."""
    try:
        return _validate(raw)
    except RecursionError:
        return None, [
            _err(None, None, "The document is nested too deeply; flatten it.", ErrorCode.INVALID_JSON)
        ]
    except Exception as exc:  # The API and importer must get an answer, not a 500; log it loudly.
        logger.exception("flow validation crashed", extra={"error": repr(exc)})
        return None, [
            _err(
                None,
                None,
                f"The document could not be checked ({type(exc).__name__}); please report this.",
                ErrorCode.INTERNAL,
            )
        ]


def decode_document(raw: bytes | str | dict) -> FlowDocument:
    """Like validate_document, but raises FlowValidationError carrying every error."""
    doc, errors = validate_document(raw)
    if doc is None:
        raise FlowValidationError(errors)
    return doc


_BLOCKING_CODES = frozenset(
    {
        ErrorCode.TOO_LARGE,
        ErrorCode.INVALID_JSON,
        ErrorCode.NOT_AN_OBJECT,
        ErrorCode.BAD_SCHEMA,
        ErrorCode.TOO_MANY_NODES,
        ErrorCode.DUPLICATE_NODE_ID,
        ErrorCode.INTERNAL,
    }
)
_BLOCKING_FIELDS = re.compile(r"^(name|description|status|priority|nodes|edges|(nodes|edges)\[\d+\](\.id)?)$")


class Draft(msgspec.Struct, frozen=True, kw_only=True):
    """What a draft save stores, and what is still wrong with it."""

    document: dict[str, Any] | None  # the canonical document when valid, else the JSON as sent
    valid: FlowDocument | None
    errors: list[FlowError]  # every problem; only Publish needs none
    blocking: list[FlowError]  # why it cannot be stored at all (not JSON, no name, nodes without ids...)


def _blocks(error: FlowError) -> bool:
    if error.code in _BLOCKING_CODES:
        return True
    if error.node_id is not None or error.code == ErrorCode.MISSING_TRIGGER:
        return False
    return bool(error.field and _BLOCKING_FIELDS.match(error.field))


def check_draft(raw: bytes | str | dict) -> Draft:
    """A draft keeps whatever state the graph is in, as long as the editor can load it back."""
    doc, errors = validate_document(raw)
    if doc is not None:
        return Draft(document=document_to_dict(doc), valid=doc, errors=[], blocking=[])
    blocking = [e for e in errors if _blocks(e)]
    if blocking:
        return Draft(document=None, valid=None, errors=errors, blocking=blocking)
    document = raw if isinstance(raw, dict) else msgspec.json.decode(raw)
    return Draft(document=document, valid=None, errors=errors, blocking=[])


def errors_by_node(errors: list[FlowError]) -> dict[str, list[str]]:
    """Node id -> its problems in plain words (what the editor shows on each node)."""
    found: dict[str, list[str]] = {}
    for e in errors:
        if e.node_id is not None:
            found.setdefault(e.node_id, []).append(e.message)
    return found

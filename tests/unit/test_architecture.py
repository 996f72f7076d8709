"""ARCHITECTURE.md matches the tree, and the import rules it states hold (read from the source, no imports)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")

# The steps of app/pipeline in the order a message meets them (ARCHITECTURE.md's map).
PIPELINE_ORDER = [
    "ingress",
    "buffer",
    "schedule",
    "flush",
    "ledger",
    "turn",
    "effects",
    "webhook_calls",
    "outbox",
    "statuses",
    "recovery",
]
PIPELINE_STORES = {"buffer", "ledger"}  # any step may use the stores a message waits in
FLOWS_THIRD_PARTY = {"msgspec", "jinja2", "markupsafe", "re2"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(package: str) -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    }


APP = _sources("app")
FLOWS = _sources("flows")
UI = _sources("ui")
OURS = {**APP, **FLOWS, **UI}


def _imports(module: str, path: Path) -> set[str]:
    """Every module `module` imports, anywhere in the file (lazy imports count too)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from app.services import flows_store` imports the submodule.
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in OURS)
    return found


def _ours(imported: set[str]) -> set[str]:
    return {name for name in imported if name in OURS}


GRAPH = {module: _ours(_imports(module, path)) for module, path in OURS.items()}


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


# --- the map ----------------------------------------------------------------------------------


def test_every_module_of_app_is_in_the_map() -> None:
    missing = [str(path.relative_to(ROOT)) for path in APP.values() if str(path.relative_to(ROOT)) not in DOC]
    assert missing == [], f"add a line for each to ARCHITECTURE.md's module map: {missing}"


def test_every_path_in_the_map_exists() -> None:
    named = set(re.findall(r"`((?:app|flows|ui|tests)/[\w/.]+\.py)`", DOC))
    assert named, "ARCHITECTURE.md names no files"
    gone = sorted(p for p in named if not (ROOT / p).exists())
    assert gone == [], f"ARCHITECTURE.md names files that do not exist: {gone}"


def test_the_pipeline_order_is_the_documented_one() -> None:
    steps = {m.rpartition(".")[2] for m in APP if _under(m, "app.pipeline") and m != "app.pipeline"}
    assert steps == set(PIPELINE_ORDER), "a new step goes into PIPELINE_ORDER and ARCHITECTURE.md"
    section = DOC.split("### `app/pipeline/`")[1].split("###")[0]
    listed = [m for m in re.findall(r"`app/pipeline/(\w+)\.py`", section) if m != "__init__"]
    assert listed == PIPELINE_ORDER


# --- the rules --------------------------------------------------------------------------------


def test_flows_imports_nothing_from_app_or_ui_and_only_its_two_dependencies() -> None:
    stdlib = set(sys.stdlib_module_names)
    for module, path in FLOWS.items():
        imported = _imports(module, path)
        assert not {m for m in imported if _under(m, "app", "ui")}, module
        third_party = {m.split(".")[0] for m in imported} - stdlib - {"flows", "__future__"}
        assert third_party <= FLOWS_THIRD_PARTY, f"{module} imports {third_party - FLOWS_THIRD_PARTY}"


def test_app_imports_nothing_from_ui_but_the_web_root() -> None:
    offenders = {m: sorted(i for i in GRAPH[m] if _under(i, "ui")) for m in APP if m != "app.asgi"}
    assert {m: i for m, i in offenders.items() if i} == {}


@pytest.mark.parametrize("layer", ["app.services", "app.http"])
def test_services_and_http_sit_below_the_message_path(layer: str) -> None:
    above = ("app.pipeline", "app.api", "app.roots", "app.asgi", "ui")
    if layer == "app.http":
        above = (*above, "app.services")
    offenders = {m: sorted(i for i in GRAPH[m] if _under(i, *above)) for m in APP if _under(m, layer)}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_pipeline_never_reaches_up() -> None:
    offenders = {
        m: sorted(i for i in GRAPH[m] if _under(i, "app.api", "app.roots", "app.asgi", "ui"))
        for m in APP
        if _under(m, "app.pipeline")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_pipeline_imports_point_forward_or_to_the_stores() -> None:
    position = {step: i for i, step in enumerate(PIPELINE_ORDER)}
    backwards = []
    for step in PIPELINE_ORDER:
        for imported in GRAPH[f"app.pipeline.{step}"]:
            if not _under(imported, "app.pipeline") or imported == "app.pipeline":
                continue
            target = imported.rpartition(".")[2]
            if position[target] < position[step] and target not in PIPELINE_STORES:
                backwards.append(f"{step} -> {target}")
    assert backwards == [], "the trail doubles back"


def test_controllers_use_the_pipeline_through_the_services_only() -> None:
    offenders = {
        m: sorted(i for i in GRAPH[m] if _under(i, "app.pipeline") and i != "app.pipeline.ingress")
        for m in [*APP, *UI]
        if _under(m, "app.api", "ui")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_import_cycles_in_app() -> None:
    graph = {m: {i for i in GRAPH[m] if i in APP and i != m} for m in APP}
    # A package's __init__ is imported on the way to its modules; only module-to-module edges count.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [module, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_rules_see_the_imports_they_check() -> None:
    """The checks above are only as good as the graph: spot-check edges known to exist."""
    assert "app.pipeline.buffer" in GRAPH["app.pipeline.ingress"]
    assert "app.services.flows_store" in GRAPH["app.pipeline.turn"]
    assert "app.http.pool" in GRAPH["app.services.channels.whatsapp"]
    assert "flows.templates" in GRAPH["app.http.request"]
    assert "ui.routes" in GRAPH["app.asgi"]  # a lazy import, inside create_app


def test_jsonb_is_decoded_once_by_the_pool_codec() -> None:
    """app.db.engine registers one JSONB codec: rows already hold Python values, so Piccolo's
    `.output(load_json=True)` would decode them a second time and fail on every call."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*APP.values(), *UI.values()]
        if "load_json=True" in path.read_text(encoding="utf-8")
    ]
    assert offenders == [], f"drop .output(load_json=True): the pool's codec decodes JSONB ({offenders})"

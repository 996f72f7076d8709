"""Workspace B cannot reach workspace A's objects, on every route of the app, generated from its route table.

`ROUTES` names every route the app mounts (static files aside) with what it does with ids:
- `foreign`: it takes an id or a name; B sends A's (with a session cookie and with a Bearer token)
  and must be refused with a reason that leaks nothing of A;
- `listing`: it lists; B's answer (also with A's ids as filters) names nothing of A's;
- `own`: it takes no id of another object, it acts on the caller's own workspace (B runs it anyway,
  with A's names where it takes names, and A's objects are checked untouched at the end);
- `public`: no principal at all (the reason is written beside it).
A route added to the app without a line here fails `test_every_route_has_a_scoping_case`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.stack import Stack, Tenant, create_tenant, wait_until

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
MARK = uuid.uuid4().hex[:10]
FLOW_NAME = f"A-flow-{MARK}"
CHANNEL_NAME = f"A-channel-{MARK}"
CONTACT_NAME = f"Acontact{MARK}"
MESSAGE_TEXT = f"order secret-{MARK}"
MARKERS = (MARK,)


@dataclass
class Probe:
    kind: str  # foreign | listing | own | public
    method: str = "GET"
    url: str = ""  # formatted with the world's ids
    json: Any = None
    data: dict[str, Any] | None = None
    files: dict[str, Any] | None = None
    why: str = ""  # for `public` and `own`: why the route needs no cross-workspace case


def foreign(method: str, url: str, **kw: Any) -> Probe:
    return Probe("foreign", method, url, **kw)


def listing(url: str) -> Probe:
    return Probe("listing", "GET", url)


def own(why: str, method: str = "", url: str = "", **kw: Any) -> Probe:
    return Probe("own", method, url, why=why, **kw)


def public(why: str) -> Probe:
    return Probe("public", why=why)


def flow_doc(name: str) -> dict[str, Any]:
    return {
        "schema": "switchboard.flow/v1",
        "name": name,
        "status": "active",
        "nodes": [
            {
                "id": "t",
                "type": "when.message_received",
                "config": {"match": {"kind": "keywords", "keywords": ["order"]}},
            },
            {
                "id": "hook",
                "type": "action.call_webhook",
                "config": {
                    "url": "http://127.0.0.1:9/hook",
                    "method": "POST",
                    "payload_template": {"text": "{{ message_text }}"},
                    "timeout_seconds": 1.0,
                    "max_retries": 0,
                    "retry_delay_seconds": 0.1,
                    "auth": {"type": "bearer", "secret": f"secret-{MARK}"},
                },
            },
        ],
        "edges": [{"from": "t", "to": "hook"}],
    }


# Every route of create_app(), "METHOD path" as Litestar names it, with its probes.
ROUTES: dict[str, list[Probe]] = {
    # -- outside any workspace
    "GET /health": [public("service health, no workspace data")],
    "GET /webhooks/whatsapp/{channel_id:str}": [
        public("Meta's verification; the channel's verify token decides")
    ],
    "POST /webhooks/whatsapp/{channel_id:str}": [
        public("provider ingress; the channel's app secret signs it")
    ],
    "POST /webhooks/generic/{channel_id:str}": [public("provider ingress; the channel's secret signs it")],
    "GET /schema": [public("the OpenAPI document")],
    "GET /schema/swagger": [public("the OpenAPI document")],
    "GET /schema/{path:str}": [public("the OpenAPI document")],
    "GET /schema/openapi.json": [public("the OpenAPI document")],
    "GET /schema/oauth2-redirect.html": [public("the OpenAPI document")],
    "GET /login": [public("the login form")],
    "POST /login": [public("logs in by email and password")],
    "POST /logout": [own("ends the caller's own session (run last, below)")],
    "GET /setup": [public("first run only; closed once a user exists")],
    "POST /setup": [public("first run only; refused once a user exists")],
    # -- JSON API: channels
    "GET /api/channels": [listing("/api/channels")],
    "POST /api/channels": [
        own(
            "creates in the caller's workspace",
            "POST",
            "/api/channels",
            json={"kind": "console", "name": CHANNEL_NAME},
        )
    ],
    "GET /api/channels/{channel_id:str}": [foreign("GET", "/api/channels/{channel}")],
    "DELETE /api/channels/{channel_id:str}": [foreign("DELETE", "/api/channels/{channel}")],
    # -- flows
    "GET /api/flows": [listing("/api/flows")],
    "POST /api/flows": [
        own(
            "creates in the caller's workspace (same name as A's)",
            "POST",
            "/api/flows",
            json=flow_doc(FLOW_NAME) | {"status": "paused"},
        )
    ],
    "POST /api/flows/validate": [
        own("checks a document, stores nothing", "POST", "/api/flows/validate", json=flow_doc(FLOW_NAME))
    ],
    "POST /api/flows/import": [
        own(
            "imports into the caller's workspace; A's name must not be replaced",
            "POST",
            "/api/flows/import",
            json={"flows": [flow_doc(FLOW_NAME)], "on_existing": "replace"},
        )
    ],
    "GET /api/flows/{flow_id:str}": [foreign("GET", "/api/flows/{flow}")],
    "PUT /api/flows/{flow_id:str}": [foreign("PUT", "/api/flows/{flow}", json=flow_doc("hijacked"))],
    "DELETE /api/flows/{flow_id:str}": [foreign("DELETE", "/api/flows/{flow}")],
    "POST /api/flows/{flow_id:str}/duplicate": [foreign("POST", "/api/flows/{flow}/duplicate")],
    "GET /api/flows/{flow_id:str}/export": [foreign("GET", "/api/flows/{flow}/export")],
    "POST /api/flows/{flow_id:str}/publish": [foreign("POST", "/api/flows/{flow}/publish")],
    "POST /api/flows/{flow_id:str}/rollback": [
        foreign("POST", "/api/flows/{flow}/rollback", json={"version": 1})
    ],
    "POST /api/flows/{flow_id:str}/status": [
        foreign("POST", "/api/flows/{flow}/status", json={"status": "paused"})
    ],
    "POST /api/flows/{flow_id:str}/validate": [foreign("POST", "/api/flows/{flow}/validate")],
    "GET /api/flows/{flow_id:str}/versions": [foreign("GET", "/api/flows/{flow}/versions")],
    # -- conversations and runs
    "GET /api/conversations": [listing("/api/conversations"), listing("/api/conversations?status=open")],
    "GET /api/conversations/{conversation_id:str}": [foreign("GET", "/api/conversations/{conversation}")],
    "PATCH /api/conversations/{conversation_id:str}": [
        foreign(
            "PATCH", "/api/conversations/{conversation}", json={"status": "closed", "add_tags": ["pwned"]}
        )
    ],
    "GET /api/conversations/{conversation_id:str}/messages": [
        foreign("GET", "/api/conversations/{conversation}/messages")
    ],
    "POST /api/conversations/{conversation_id:str}/messages": [
        foreign("POST", "/api/conversations/{conversation}/messages", json={"text": "pwned"})
    ],
    "PUT /api/conversations/{conversation_id:str}/ai": [
        foreign(
            "PUT",
            "/api/conversations/{conversation}/ai",
            json={"ai_enabled": False, "custom_prompt": "pwned"},
        )
    ],
    "GET /api/runs": [
        listing("/api/runs"),
        listing("/api/runs?conversation_id={conversation}"),
        listing("/api/runs?flow_id={flow}"),
    ],
    "GET /api/runs/{run_id:str}": [foreign("GET", "/api/runs/{run}")],
    "GET /api/actions/{flow_id:str}/{node_id:str}/logs": [foreign("GET", "/api/actions/{flow}/hook/logs")],
    "POST /api/actions/executions/{execution_id:str}/replay": [
        foreign("POST", "/api/actions/executions/{execution}/replay")
    ],
    "POST /api/tester/run": [
        foreign("POST", "/api/tester/run", json={"message": "order", "flow_id": "{flow}"}),
    ],
    "GET /api/corrections": [listing("/api/corrections"), listing("/api/corrections?flow_id={flow}")],
    "POST /api/corrections": [
        foreign("POST", "/api/corrections", json={"flow_id": "{flow}", "node_id": "t", "message": "pwned"}),
        foreign("POST", "/api/corrections", json={"flow_id": "{flow}", "node_id": "t", "run_id": "{run}"}),
    ],
    "GET /api/refused-deliveries": [listing("/api/refused-deliveries")],
    # -- pages and fragments
    "GET /": [listing("/")],
    "GET /welcome": [listing("/welcome")],
    "POST /welcome/try": [
        own("writes on the caller's own console channel", "POST", "/welcome/try", data={"text": ""})
    ],
    "GET /flows": [listing("/flows")],
    "POST /flows": [own("creates in the caller's workspace", "POST", "/flows", data={"name": FLOW_NAME})],
    "POST /flows/import": [
        own("imports into the caller's workspace", "POST", "/flows/import", data={"on_existing": "replace"})
    ],
    "POST /flows/{flow_id:str}/delete": [foreign("POST", "/flows/{flow}/delete")],
    "POST /flows/{flow_id:str}/duplicate": [foreign("POST", "/flows/{flow}/duplicate")],
    "GET /flows/{flow_id:str}/export": [foreign("GET", "/flows/{flow}/export")],
    "POST /flows/{flow_id:str}/toggle": [foreign("POST", "/flows/{flow}/toggle")],
    "GET /flows/{flow_id:str}/edit": [foreign("GET", "/flows/{flow}/edit")],
    "POST /flows/{flow_id:str}/rollback": [foreign("POST", "/flows/{flow}/rollback", data={"version": "1"})],
    "GET /flows/{flow_id:str}/versions": [foreign("GET", "/flows/{flow}/versions")],
    "POST /editor/node-form": [
        own(
            "renders a form from the posted config",
            "POST",
            "/editor/node-form",
            data={"type": "action.send_message", "node_id": "n1", "config": "{}"},
        )
    ],
    "POST /editor/node-form/save": [
        # A secret reference of A's, posted as the write-only field's kept value, is echoed, never resolved.
        own(
            "checks the posted config",
            "POST",
            "/editor/node-form/save",
            data={"_type": "action.send_message", "_node_id": "n1", "text": "hi"},
        )
    ],
    "GET /conversations": [listing("/conversations"), listing("/conversations?status=open")],
    "GET /conversations/{conversation_id:str}": [foreign("GET", "/conversations/{conversation}")],
    "GET /conversations/{conversation_id:str}/events": [
        foreign("GET", "/conversations/{conversation}/events")
    ],
    "POST /conversations/{conversation_id:str}/ai": [
        foreign("POST", "/conversations/{conversation}/ai", data={"custom_prompt": "pwned"})
    ],
    "POST /conversations/{conversation_id:str}/meta": [
        foreign("POST", "/conversations/{conversation}/meta", data={"status": "closed", "add_tag": "pwned"})
    ],
    "POST /conversations/{conversation_id:str}/messages": [
        foreign("POST", "/conversations/{conversation}/messages", data={"text": "pwned"})
    ],
    "GET /actions": [listing("/actions")],
    "GET /actions/new": [own("an empty builder form", "GET", "/actions/new")],
    "POST /actions/new": [own("creates in the caller's workspace", "POST", "/actions/new", data={})],
    "GET /logs": [
        listing("/logs"),
        listing("/logs?flow_id={flow}"),
        listing("/logs?action={flow}/hook"),
        listing("/logs?flow_id={flow}&node_id=hook&hours=720"),
    ],
    "GET /logs/runs/{run_id:str}": [foreign("GET", "/logs/runs/{run}")],
    "GET /tester": [listing("/tester"), listing("/tester?flow_id={flow}&node_id=hook")],
    "POST /tester/run": [foreign("POST", "/tester/run", data={"message": "order", "flow_id": "{flow}"})],
    "POST /tester/batch": [
        foreign(
            "POST",
            "/tester/batch",
            data={"flow_id": "{flow}"},
            files={"file": ("batch.csv", b"message,expected\norder please,\n", "text/csv")},
        )
    ],
    "POST /corrections": [
        foreign("POST", "/corrections", data={"choice": "{flow}::t", "message": "pwned"}),
        foreign("POST", "/corrections", data={"choice": "{flow}::t", "run_id": "{run}"}),
    ],
    "GET /settings": [listing("/settings")],
    "POST /settings/password": [
        own("the caller's own password", "POST", "/settings/password", data={"current": "wrong", "new": ""})
    ],
    "POST /settings/channels": [
        own(
            "creates in the caller's workspace",
            "POST",
            "/settings/channels",
            data={"kind": "console", "name": CHANNEL_NAME},
        )
    ],
    "POST /settings/tokens": [own("the caller's own tokens", "POST", "/settings/tokens", data={"name": "b"})],
    "POST /settings/sessions/revoke": [
        own("ends the caller's own sessions (not run: it would end the test's)")
    ],
    "POST /settings/llm": [
        own("the caller's workspace settings", "POST", "/settings/llm", data={"model": ""})
    ],
    "POST /settings/personalities/{intent:str}": [
        own(
            "one of the five fixed core intents, per workspace",
            "POST",
            "/settings/personalities/sales",
            data={"system_prompt": "", "fallback_text": ""},
        )
    ],
    "POST /settings/channels/{channel_id:str}/delete": [
        foreign("POST", "/settings/channels/{channel}/delete")
    ],
    "POST /settings/channels/{channel_id:str}/verify": [
        foreign("POST", "/settings/channels/{channel}/verify")
    ],
    "POST /settings/tokens/{token_id:str}/revoke": [foreign("POST", "/settings/tokens/{token}/revoke")],
}


def app_routes() -> set[str]:
    """Every "METHOD path" the app mounts, static files aside."""
    from app.asgi import create_app

    found: set[str] = set()
    for route in create_app().routes:
        if route.path.startswith("/static"):
            continue
        for method in getattr(route, "methods", ()):
            if method not in ("HEAD", "OPTIONS"):
                found.add(f"{method} {route.path}")
    return found


def test_every_route_has_a_scoping_case() -> None:
    mounted = app_routes()
    missing = sorted(mounted - set(ROUTES))
    assert not missing, (
        "routes without a cross-workspace case: add each to ROUTES in this file "
        f"(foreign, listing, own or public): {missing}"
    )
    assert not sorted(set(ROUTES) - mounted), "ROUTES names routes the app no longer has"
    for route, probes in ROUTES.items():
        assert probes, route
        for probe in probes:
            if probe.kind in ("own", "public"):
                assert probe.why, f"{route}: say why it takes no other workspace's id"
            if "{" in route.split(" ", 1)[1].replace("{path:str}", "") and probe.kind == "listing":
                pytest.fail(f"{route} takes an id: probe it as `foreign`")


# -- the two workspaces ------------------------------------------------------------------------


@dataclass
class Caller:
    """One way of being workspace B (or A): a Bearer token, or a browser session with its CSRF token."""

    name: str
    http: httpx.AsyncClient
    csrf: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, probe: Probe, world: dict[str, str], **extra: str) -> httpx.Response:
        url = fill(probe.url, world)
        headers = {**self.headers, **extra}
        if self.csrf and probe.method != "GET":
            headers["X-CSRF-Token"] = self.csrf
        kwargs: dict[str, Any] = {"headers": headers}
        if probe.json is not None:
            kwargs["json"] = fill(probe.json, world)
        if probe.data is not None:
            kwargs["data"] = fill(probe.data, world)
        if probe.files is not None:
            kwargs["files"] = probe.files
        if url.endswith("/events"):
            async with self.http.stream(probe.method, url, **kwargs) as streamed:
                # Refused at once, or an event stream that would leak: read only its status and first bytes.
                first = b""
                async for chunk in streamed.aiter_bytes():
                    first += chunk
                    if b"event:" in first or len(first) > 4096:
                        break
                headers = {k: v for k, v in streamed.headers.items() if k != "content-encoding"}
                return httpx.Response(streamed.status_code, headers=headers, content=first)
        return await self.http.request(probe.method, url, **kwargs)


def fill(value: Any, world: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, id_ in world.items():
            value = value.replace("{" + name + "}", id_)
        return value
    if isinstance(value, dict):
        return {k: fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


async def browser_session(tenant: Tenant) -> Caller:
    client = httpx.AsyncClient(base_url=tenant.stack.base_url, timeout=30.0)
    token = re.search(r'name="csrf-token" content="([^"]+)"', (await client.get("/login")).text).group(1)
    response = await client.post("/login", data={"email": tenant.email, "password": PASSWORD, "_csrf": token})
    assert response.status_code in (302, 303), response.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', (await client.get("/settings")).text).group(1)
    return Caller("session", client, csrf)


@pytest_asyncio.fixture(scope="module")
async def world(stack: Stack, service_urls: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    """Workspace A with one of everything; B, a stranger with a token and a browser session."""
    import asyncpg

    db = await asyncpg.connect(dsn=service_urls[0])
    a, b = await create_tenant(stack), await create_tenant(stack)
    channel = await a.create_channel(kind="generic", name=CHANNEL_NAME, secret="generic-secret")
    channel["secret"] = "generic-secret"
    flow = await a.create_flow(flow_doc(FLOW_NAME))
    await a.send_generic(channel, text=MESSAGE_TEXT, first_name=CONTACT_NAME)
    execution = await wait_until(
        lambda: db.fetchval(
            "SELECT id FROM action_executions WHERE flow_id = $1 AND status IN ('failed', 'completed')",
            uuid.UUID(flow["id"]),
        ),
        what="A's webhook execution",
    )
    conversation = await db.fetchval(
        "SELECT id FROM conversations WHERE workspace = $1", uuid.UUID(a.workspace_id)
    )
    run = await wait_until(
        lambda: db.fetchval(
            "SELECT id FROM runs WHERE conversation = $1 AND finished_at IS NOT NULL", conversation
        ),
        what="A's run",
    )
    token = await db.fetchval(
        "SELECT t.id FROM api_tokens t JOIN users u ON u.id = t.user WHERE u.email = $1", a.email
    )
    ids = {
        "flow": flow["id"],
        "channel": channel["id"],
        "conversation": str(conversation),
        "run": str(run),
        "execution": str(execution),
        "token": str(token),
    }
    b_session = await browser_session(b)
    b_bearer = Caller(
        "bearer",
        httpx.AsyncClient(base_url=stack.base_url, timeout=30.0),
        headers={"Authorization": f"Bearer {b.token}"},
    )
    a_session = await browser_session(a)
    before = await snapshot(a, db, ids)
    yield {
        "a": a,
        "b": b,
        "ids": ids,
        "before": before,
        "callers": [b_session, b_bearer],
        "db": db,
        "a_csrf": a_session.csrf,
    }
    for caller in (b_session, b_bearer, a_session):
        await caller.http.aclose()
    await a.aclose()
    await b.aclose()
    await db.close()


async def snapshot(a: Tenant, db, ids: dict[str, str]) -> dict[str, Any]:
    """What B must not change of A's: the flow, channel, conversation, AI state, execution, token."""
    flow = (await a.http.get(f"/api/flows/{ids['flow']}")).json()
    convo = (await a.http.get(f"/api/conversations/{ids['conversation']}")).json()
    return {
        "flows": sorted((f["id"], f["name"], f["status"]) for f in (await a.http.get("/api/flows")).json()),
        "flow": (flow["document"], flow["status"], flow.get("version")),
        "versions": len((await a.http.get(f"/api/flows/{ids['flow']}/versions")).json()),
        "channel": (await a.http.get(f"/api/channels/{ids['channel']}")).status_code,
        "conversation": (convo["status"], convo["tags"], convo.get("ai"), len(convo["messages"])),
        "execution": await db.fetchval(
            "SELECT attempts FROM action_executions WHERE id = $1", uuid.UUID(ids["execution"])
        ),
        "corrections": len((await a.http.get("/api/corrections")).json()),
        "token_works": (await a.http.get("/api/flows")).status_code,
    }


def probes_of(kind: str) -> list[Any]:
    return [
        pytest.param(route, probe, id=f"{route} #{i}")
        for route, probes in ROUTES.items()
        for i, probe in enumerate(probes)
        if probe.kind == kind
    ]


def is_ui(url: str) -> bool:
    return not url.startswith("/api/")


def reason_of(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/json"):
        return str(response.json().get("error") or "")
    text = re.sub(r"<[^>]+>", " ", response.text)
    return " ".join(text.split())


@pytest.mark.parametrize("route,probe", probes_of("foreign"))
async def test_b_cannot_reach_a_by_id(world: dict[str, Any], route: str, probe: Probe) -> None:
    for caller in world["callers"]:
        if caller.name == "bearer" and is_ui(probe.url):
            # Pages take sessions only: a token is no login there.
            response = await caller.send(probe, world["ids"], **{"HX-Request": "true"})
            said = f"{route} with B's Bearer token: {response.status_code} {response.text[:200]}"
            assert response.status_code in (401, 403), said
            assert MARK not in response.text, said
            continue
        response = await caller.send(probe, world["ids"])
        said = f"{route} as B ({caller.name}): {response.status_code} {response.text[:300]}"
        assert response.status_code in (400, 404, 422), said
        assert reason_of(response), f"{said}: refused without a reason"
        assert MARK not in response.text and FLOW_NAME not in response.text, f"{said}: leaks A's data"


@pytest.mark.parametrize("route,probe", probes_of("listing"))
async def test_b_lists_nothing_of_a(world: dict[str, Any], route: str, probe: Probe) -> None:
    for caller in world["callers"]:
        if caller.name == "bearer" and is_ui(probe.url):
            continue
        response = await caller.send(probe, world["ids"])
        if response.status_code in (302, 303):  # "/" sends a logged-in user on to a page
            response = await caller.http.get(response.headers["location"])
        said = f"{route} as B ({caller.name}): {response.status_code}"
        assert response.status_code == 200, f"{said} {response.text[:300]}"
        echoed = fill(probe.url, world["ids"])  # B's own query, shown back to B, is no leak
        for value in (MARK, *world["ids"].values()):
            if value not in echoed:
                assert value not in response.text, f"{said}: names A's {value}"


@pytest.mark.parametrize("route,probe", [p for p in probes_of("own") if p.values[1].url])
async def test_b_acting_on_its_own_workspace_leaves_a_alone(
    world: dict[str, Any], route: str, probe: Probe
) -> None:
    for caller in world["callers"]:
        if caller.name == "bearer" and is_ui(probe.url):
            continue
        response = await caller.send(probe, world["ids"])
        said = f"{route} as B ({caller.name}): {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, said
        if response.status_code >= 400:
            assert reason_of(response), f"{said}: refused without a reason"
        for value in world["ids"].values():
            assert value not in response.text, f"{said}: names A's {value}"


async def test_a_is_untouched_after_every_probe(world: dict[str, Any]) -> None:
    """Runs after the probes above (file order): nothing B sent changed A's objects."""
    assert await snapshot(world["a"], world["db"], world["ids"]) == world["before"]


async def test_ids_do_not_count_objects(world: dict[str, Any]) -> None:
    """Every id in a URL is a UUID that is random or a hash (v4, v5), never a counter or a clock (v1, v6,
    v7 show when and in which order objects were made): guessing the next one, or counting a workspace's
    objects, is out."""
    for name, value in world["ids"].items():
        assert uuid.UUID(value).version in (4, 5), f"{name} id {value} is not a random or hashed UUID"


def unsafe_routes() -> list[Any]:
    """Every state-changing route a session reaches: the foreign and own probes that are not GET."""
    return [
        pytest.param(route, probe, id=route)
        for route, probes in ROUTES.items()
        for probe in probes[:1]
        if probe.kind in ("foreign", "own") and probe.url and probe.method != "GET"
    ]


@pytest.mark.parametrize("route,probe", unsafe_routes())
async def test_a_session_without_its_csrf_token_changes_nothing(
    world: dict[str, Any], route: str, probe: Probe
) -> None:
    """A cookie alone (a form or fetch from another site) is refused with a reason, on pages and the API;
    so is another session's token (A's, sent with B's cookie)."""
    session = next(c for c in world["callers"] if c.name == "session")
    for token in ("", world["a_csrf"]):
        forged = Caller("forged", session.http, csrf=token)
        response = await forged.send(probe, world["ids"])
        said = (
            f"{route} with B's cookie and CSRF token {token!r}: {response.status_code} {response.text[:200]}"
        )
        assert response.status_code == 403, said
        assert "reload the page" in reason_of(response), said


def api_routes() -> list[str]:
    return sorted(r for r, probes in ROUTES.items() if r.split(" ", 1)[1].startswith("/api/"))


@pytest.mark.parametrize("route", api_routes())
async def test_the_api_answers_nobody_without_a_token_or_session(stack: Stack, route: str) -> None:
    method, path = route.split(" ", 1)
    url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
    async with httpx.AsyncClient(base_url=stack.base_url) as anonymous:
        response = await anonymous.request(method, url, json={})
    assert response.status_code == 401, (
        f"{route} without credentials: {response.status_code} {response.text[:200]}"
    )
    assert "Bearer" in response.json()["error"]


async def test_a_404_says_what_was_not_found(stack: Stack) -> None:
    """Not only "not found": which flow, which version (a rollback to a version that does not exist)."""
    tenant = await create_tenant(stack)
    try:
        flow = await tenant.create_flow(flow_doc(f"Versions {MARK}"))
        missing = str(uuid.uuid4())
        unknown = await tenant.http.get(f"/api/flows/{missing}")
        assert unknown.status_code == 404 and missing in unknown.json()["error"]
        rollback = await tenant.http.post(f"/api/flows/{flow['id']}/rollback", json={"version": 99})
        assert rollback.status_code == 404 and "version 99" in rollback.json()["error"], rollback.text
    finally:
        await tenant.aclose()

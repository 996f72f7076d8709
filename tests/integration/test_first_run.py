"""The first-run page: on a server with no user it creates the owner and workspace, then it is closed."""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
import httpx
import pytest_asyncio

from tests.support.stack import Stack, wait_until

PASSWORD = "correct horse battery"


def _setup_form(csrf: str, **fields: str) -> dict[str, str]:
    """The first-run form as a person fills it in, with `fields` changed."""
    return {
        "_csrf": csrf,
        "workspace": "Acme",
        "email": "owner@example.com",
        "password": PASSWORD,
        "password_again": PASSWORD,
        "with_examples": "1",
        **fields,
    }


def _csrf(html: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', html).group(1)


async def _form(client: httpx.AsyncClient) -> str:
    page = await client.get("/setup")
    assert page.status_code == 200 and 'id="setup-form"' in page.text, page.text[:300]
    return _csrf(page.text)


@pytest_asyncio.fixture
async def empty_db(empty_stack: Stack):
    conn = await asyncpg.connect(dsn=empty_stack.database_url)
    yield conn
    await conn.close()


async def test_first_run_creates_the_owner_once_and_then_refuses(empty_stack: Stack, empty_db) -> None:
    async with (
        httpx.AsyncClient(base_url=empty_stack.base_url) as first,
        httpx.AsyncClient(base_url=empty_stack.base_url) as second,
    ):
        # A server with no user opens on the first-run page, and so does its login page.
        assert (await first.get("/")).headers["location"] == "/setup"
        assert (await first.get("/login")).headers["location"] == "/setup"

        token = await _form(first)
        differ = await first.post("/setup", data=_setup_form(token, password_again=PASSWORD + "!"))
        assert differ.status_code == 422 and "The two passwords differ" in differ.text
        short = await first.post("/setup", data=_setup_form(token, password="short", password_again="short"))
        assert short.status_code == 422 and "at least 8 characters" in short.text
        assert 'value="owner@example.com"' in short.text  # what was typed is kept
        assert await empty_db.fetchval("SELECT count(*) FROM users") == 0

        # Two forms posted at once make one owner: the other is told to log in.
        other_token = await _form(second)
        owner, intruder = await asyncio.gather(
            first.post("/setup", data=_setup_form(token)),
            second.post(
                "/setup", data=_setup_form(other_token, workspace="Mallory", email="mallory@example.com")
            ),
        )
        statuses = sorted([owner.status_code, intruder.status_code])
        assert statuses in ([302, 403], [303, 403]), (owner.text[:300], intruder.text[:300])
        winner, loser = (first, second) if owner.status_code != 403 else (second, first)
        refused = intruder if owner.status_code != 403 else owner
        assert "already set up" in refused.text and 'href="/login"' in refused.text
        assert await empty_db.fetchval("SELECT count(*) FROM users") == 1
        assert await empty_db.fetchval("SELECT count(*) FROM workspaces") == 1

        # Afterwards the page is closed to everyone: GET goes to the login page, POST is refused.
        assert (await loser.get("/setup")).headers["location"] == "/login"
        late = _setup_form(
            _csrf((await loser.get("/login")).text),
            workspace="Late",
            email=f"late-{uuid.uuid4().hex[:6]}@example.com",
        )
        again = await loser.post("/setup", data=late)
        assert again.status_code == 403 and "already set up" in again.text
        assert await empty_db.fetchval("SELECT count(*) FROM users") == 1
        assert (await loser.get("/")).headers["location"] == "/flows"

        # The owner is logged in; the examples and a console channel are there.
        welcome = await winner.get("/welcome")
        assert welcome.status_code == 200 and 'id="try-form"' in welcome.text
        flows = (await winner.get("/api/flows")).json()
        assert sorted(f["status"] for f in flows) == ["active"] * 4
        channels = (await winner.get("/api/channels")).json()
        assert [c["kind"] for c in channels] == ["console"]
        assert channels[0]["id"] in welcome.text  # the curl line names the channel

        # Writing as a customer lands in the conversation, where the reply arrives.
        sent = await winner.post("/welcome/try", data={"_csrf": _csrf(welcome.text), "text": "help please"})
        assert sent.status_code in (302, 303)
        conversation_id = sent.headers["location"].rsplit("/", 1)[1]
        assert (await winner.get(sent.headers["location"])).status_code == 200

        async def replied() -> bool:
            convo = (await winner.get(f"/api/conversations/{conversation_id}")).json()
            return any(m["direction"] == "out" for m in convo["messages"])

        await wait_until(replied, timeout_s=30, what="the reply to the first message")

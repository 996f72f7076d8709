"""Security headers on every response, CSP on HTML; Secure cookies over HTTPS (issue 14)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.stack import Process, Stack, Tenant, free_port

pytestmark = pytest.mark.slow

BROWSER = {"Accept": "text/html,application/xhtml+xml"}


def assert_common(answer: httpx.Response) -> None:
    assert answer.headers["x-content-type-options"] == "nosniff", answer.url
    assert answer.headers["x-frame-options"] == "DENY", answer.url
    assert answer.headers["referrer-policy"] == "same-origin", answer.url


async def test_every_html_page_forbids_framing_and_inline_script(stack: Stack, tenant: Tenant) -> None:
    """issue 14: no CSP, X-Frame-Options, nosniff or Referrer-Policy; same-site pages could frame the app."""
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30.0) as client:
        pages = [await client.get(path, headers=BROWSER) for path in ("/login", "/no/such/page")]
    for answer in pages:
        assert answer.headers["content-type"].startswith("text/html")
        assert_common(answer)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy
        script_src = re.search(r"script-src ([^;]+)", policy).group(1)
        assert script_src.strip() == "'self'"


async def test_json_and_static_answers_carry_the_common_headers(stack: Stack, tenant: Tenant) -> None:
    api = await tenant.http.get("/api/flows")
    missing = await tenant.http.post("/webhooks/generic/" + "0" * 36, content=b"{}")
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30.0) as client:
        static = await client.get("/static/css/app.css")
        too_long = await client.get("/webhooks/whatsapp/" + "x" * 60_000)
    for answer in (api, missing, static, too_long):
        assert_common(answer)
        assert "content-security-policy" not in answer.headers
    assert too_long.status_code == 414 and "at most 2048" in too_long.json()["error"]


async def test_session_cookies_are_secure_over_https_behind_a_trusted_proxy(
    stack: Stack, tenant: Tenant
) -> None:
    """issue 14: the session cookie had no Secure flag behind HTTPS."""
    port = free_port()
    env = {**stack.env, "SWITCHBOARD_TRUST_PROXY": "1"}
    proxied = Process("web-trusted-proxy", ["web", "--port", str(port)], env)
    proxied.start()
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30.0) as client:
            await _wait_up(client, proxied)
            https = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
            plain = await client.get("/login")
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30.0) as client:
            untrusted = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
    finally:
        proxied.stop()
    assert "; secure" in https.headers["set-cookie"].lower()
    for answer in (plain, untrusted):
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie


async def _wait_up(client: httpx.AsyncClient, process: Process) -> None:
    from tests.support.stack import wait_until

    async def healthy() -> bool:
        assert process.alive(), f"see {process.log_path}"
        try:
            return (await client.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, timeout_s=60, what="the second web process")

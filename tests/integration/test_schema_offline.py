"""/schema works offline: the OpenAPI UI's page references only assets the app serves itself."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from tests.support.stack import Stack

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_ABSOLUTE = re.compile(r"""["'(]((?:https?:)?//[^"')\s]+)""", re.IGNORECASE)


async def test_schema_page_references_no_external_host(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        page = await client.get("/schema")
        assert page.status_code == 200 and 'id="swagger-container"' in page.text
        # Started by a file, not an inline script: the content security policy allows no inline script.
        assert "<script>" not in page.text and "/static/js/swagger-init.js" in page.text
        head = page.text.split("<body", 1)[0]
        external = [
            url for url in _ABSOLUTE.findall(head) if urlsplit(url).hostname not in {None, "127.0.0.1"}
        ]
        assert external == [], f"/schema loads from other hosts: {external}"
        assets = _REFERENCE.findall(head)
        scripts_and_styles = [a for a in assets if a.startswith("/static/")]
        assert len(scripts_and_styles) == 3, assets  # the bundle, its standalone preset, its stylesheet
        for asset in scripts_and_styles:
            served = await client.get(asset)
            assert served.status_code == 200 and len(served.content) > 10_000, asset

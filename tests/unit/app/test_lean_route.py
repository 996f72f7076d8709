"""Which requests the lean webhook path takes (app.api.inbound.lean_route); the rest Litestar routes."""

from __future__ import annotations

import pytest

from app.api.inbound import lean_route


def scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "headers": []}


@pytest.mark.parametrize(
    ("method", "path", "prefix"),
    [
        ("POST", "/webhooks/generic/0b5c", "/webhooks/generic/"),
        ("POST", "/webhooks/whatsapp/0b5c", "/webhooks/whatsapp/"),
        ("POST", "/webhooks/generic/not-an-id", "/webhooks/generic/"),  # its route answers 404
        ("GET", "/webhooks/whatsapp/0b5c", None),  # Meta's subscription check
        ("POST", "/webhooks/generic/0b5c/", None),  # a trailing slash
        ("POST", "/webhooks/generic/", None),
        ("POST", "/webhooks/generic/a/b", None),
        ("POST", "/webhooks/other/0b5c", None),
        ("POST", "/api/channels", None),
    ],
)
def test_only_a_webhook_post_to_one_channel_takes_the_lean_path(
    method: str, path: str, prefix: str | None
) -> None:
    route = lean_route(scope(method, path))
    assert (route.prefix if route else None) == prefix

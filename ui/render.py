"""Rendering helpers: one URL gives the full page, or only its partial when htmx asks."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.response import Template

from ui.security import CSRF_HEADER, csrf_token

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


@lru_cache(maxsize=256)
def _digest(path: str) -> str:
    try:
        return hashlib.sha256((STATIC_DIR / path).read_bytes()).hexdigest()[:10]
    except OSError:
        return "missing"


def static(path: str) -> str:
    """A versioned static URL (`?v=<content hash>`) so assets can be cached for a year."""
    return f"/static/{path}?v={_digest(path)}"


def is_htmx(request: Request) -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def context(request: Request, **values: Any) -> dict[str, Any]:
    """The names every template may use, plus the page's own values."""
    base = {
        "static": static,
        "csrf": csrf_token(request),
        "csrf_header": CSRF_HEADER,
        "principal": request.scope.get("sb_principal"),
        "flash": None,
    }
    base.update(values)
    return base


def page(
    request: Request,
    template: str,
    *,
    partial: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> Template:
    """Render `template`, or `partial` when the request comes from htmx."""
    name = partial if partial and is_htmx(request) else template
    return Template(
        template_name=name, context=context(request, **values), status_code=status_code, headers=headers
    )


def fragment(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **values: Any,
) -> Template:
    return Template(
        template_name=template, context=context(request, **values), status_code=status_code, headers=headers
    )

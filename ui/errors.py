"""Error pages for the browser: a page a person can read (or a short fragment for htmx), not JSON."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Request
from litestar.exceptions import HTTPException
from litestar.response import Response, Template

from ui.render import context

_TITLES = {403: "Not allowed", 404: "Not found", 405: "Not allowed", 413: "Too large", 422: "Check the form"}


def html_error(request: Request, exc: HTTPException) -> Response:
    title = _TITLES.get(exc.status_code, "Something went wrong")
    if request.htmx:
        # htmx shows error bodies only where a page asks for it; a plain line is enough.
        return Response(content=str(exc.detail), status_code=exc.status_code, media_type="text/plain")
    return Template(
        template_name="pages/error.html",
        status_code=exc.status_code,
        context=context(request, title=title, detail=exc.detail),
    )


_API_PREFIXES = ("/api/", "/webhooks/", "/schema", "/health", "/static/")


def wants_page(request: Request) -> bool:
    """A browser navigating (it accepts HTML) to a URL outside the JSON API."""
    accept = request.headers.get("accept", "")
    return "text/html" in accept and not request.url.path.startswith(_API_PREFIXES)


def pages_for_browsers(
    json_handler: Callable[[Request, HTTPException], Response],
) -> Callable[[Request, HTTPException], Response]:
    """App-wide HTTP errors (an unknown URL, a wrong method): the error page for a browser, JSON otherwise."""

    def handle(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (404, 405) and wants_page(request):
            if exc.detail in (
                "Not Found",
                "Method Not Allowed",
            ):  # Litestar's words for a URL it has no route for
                exc = HTTPException(
                    status_code=exc.status_code,
                    detail=f"There is no page at {request.url.path}. Check the address.",
                )
            return html_error(request, exc)
        return json_handler(request, exc)

    return handle

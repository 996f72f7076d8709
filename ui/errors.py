"""Error pages for the browser: a page a person can read (or a short fragment for htmx), not JSON."""

from __future__ import annotations

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

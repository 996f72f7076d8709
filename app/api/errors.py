"""JSON error bodies: `{"error": sentence, ...details}` with the right status for each failure."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from app.pipeline.ingress import IngressError
from app.services.channels.items import WireError
from app.services.channels.store import ChannelError
from app.services.flows_store import FlowInvalid, FlowNotFound

log = logging.getLogger(__name__)


def _json(status: int, body: dict) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def flow_invalid(_: Request, exc: FlowInvalid) -> Response:
    return _json(
        422,
        {
            "error": f"the flow document has {len(exc.errors)} error(s); fix them and save again",
            "errors": msgspec.to_builtins(exc.errors),
        },
    )


def not_found(_: Request, exc: Exception) -> Response:
    """Says what was not found: "no flow <id> [version <n>] in this workspace", or the lookup's own words."""
    what = str(exc.args[0]) if exc.args else ""
    if isinstance(exc, FlowNotFound):
        error = f"no flow {what} in this workspace" if what else "no such flow in this workspace"
    elif isinstance(exc, KeyError) or not what:  # a KeyError's text is a key, not a sentence
        error = "not found in this workspace"
    else:
        error = what
    return _json(404, {"error": error})


def bad_input(request: Request, exc: Exception) -> Response:
    message = getattr(exc, "message", None) or str(exc)
    log.info("bad input refused", extra={"path": request.url.path, "error": message})
    return _json(400, {"error": message})


def validation(request: Request, exc: ValidationException) -> Response:
    log.info("bad input refused", extra={"path": request.url.path, "error": exc.detail, "extra": exc.extra})
    return _json(400, {"error": _sentence(exc), "details": exc.extra})


def _sentence(exc: ValidationException) -> str:
    """Litestar's "Validation failed for PATCH /x" with the fields at fault: "...: status: expected ..."."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    said = []
    for problem in problems:
        if isinstance(problem, dict) and problem.get("message"):
            message = str(problem["message"]).split(" - at ", 1)[0].replace("`", "'")
            key = problem.get("key")
            said.append(f"{key}: {message}" if key else message)
    return f"{exc.detail}: {'; '.join(said)}" if said else str(exc.detail)


def http_error(request: Request, exc: HTTPException) -> Response:
    body: dict[str, Any] = {"error": exc.detail}
    if exc.extra:
        body["details"] = exc.extra
    return Response(
        content=body, status_code=exc.status_code, media_type="application/json", headers=exc.headers
    )


def too_deep(request: Request, exc: RecursionError) -> Response:
    """JSON nested deeper than the decoders recurse (msgspec and json raise RecursionError), wherever
    it was read: a webhook, a flow document, or a body Litestar decodes into a Struct."""
    log.info("bad input refused: nested too deeply", extra={"path": request.url.path})
    return _json(
        400,
        {"error": "the body is nested too deeply to read (JSON over about 1,000 levels); send a flatter one"},
    )


def data_error(request: Request, exc: asyncpg.DataError) -> Response:
    """A value PostgreSQL cannot store as sent (a NUL character, text longer than its column, a number
    out of range): the caller's input, so a 400 with PostgreSQL's reason, not a 500."""
    reason = str(exc).split("\n", 1)[0]
    if isinstance(exc, (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)):
        reason = "text cannot contain NUL characters (\\u0000); remove them"
    log.info("bad input refused by the database", extra={"path": request.url.path, "error": reason})
    return _json(400, {"error": f"a value cannot be stored: {reason}"})


def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("request not stored", extra={"path": request.url.path, "error": str(exc)})
    return Response(
        content={"error": str(exc)},
        status_code=503,
        media_type="application/json",
        headers={"Retry-After": "5"},
    )


def server_error(request: Request, exc: Exception) -> Response:
    log.exception("request failed", extra={"path": request.url.path, "method": request.method}, exc_info=exc)
    return _json(500, {"error": "internal error; the server log has the details"})


HANDLERS: ExceptionHandlersMap = {
    Exception: server_error,
    IngressError: unavailable,
    FlowInvalid: flow_invalid,
    FlowNotFound: not_found,
    LookupError: not_found,
    ChannelError: bad_input,
    WireError: bad_input,
    ValidationException: validation,
    HTTPException: http_error,
    RecursionError: too_deep,
    asyncpg.DataError: data_error,
}

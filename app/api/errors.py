"""JSON error bodies: `{"error": sentence, ...details}` with the right status for each failure."""

from __future__ import annotations

import logging
from typing import Any

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
    return _json(404, {"error": "not found in this workspace"})


def bad_input(request: Request, exc: Exception) -> Response:
    message = getattr(exc, "message", None) or str(exc)
    log.info("bad input refused", extra={"path": request.url.path, "error": message})
    return _json(400, {"error": message})


def validation(request: Request, exc: ValidationException) -> Response:
    log.info("bad input refused", extra={"path": request.url.path, "error": exc.detail, "extra": exc.extra})
    return _json(400, {"error": exc.detail, "details": exc.extra})


def http_error(request: Request, exc: HTTPException) -> Response:
    body: dict[str, Any] = {"error": exc.detail}
    if exc.extra:
        body["details"] = exc.extra
    return Response(
        content=body, status_code=exc.status_code, media_type="application/json", headers=exc.headers
    )


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
}

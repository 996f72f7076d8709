"""/api/tester/run: which layer answers a message: scores, variables, payload, trace, conversation state."""

from __future__ import annotations

from litestar import Controller, post
from litestar.exceptions import ValidationException

from app.roots import AppServices
from app.services.auth import Principal
from app.services.dry_run import TesterRequest, TesterResponse


class TesterController(Controller):
    path = "/api/tester"
    tags = ["tester"]

    @post(
        "/run",
        status_code=200,
        summary="Dry-run a message (execute=true really calls the webhook); send `state` back to continue",
    )
    async def run(self, principal: Principal, services: AppServices, data: TesterRequest) -> TesterResponse:
        try:
            return await services.tester.run(principal.workspace_id, data)
        except ValueError as exc:
            raise ValidationException(str(exc)) from exc

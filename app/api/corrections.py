"""/api/corrections: "this should have been <action> / none" becomes training data in the flow's draft."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.exceptions import ValidationException

from app.api.params import Limit
from app.services import corrections
from app.services.auth import Principal
from app.services.corrections import CorrectionCreate, CorrectionError, CorrectionRead


class CorrectionController(Controller):
    path = "/api/corrections"
    tags = ["corrections"]

    @post(
        "/", status_code=201, summary="Add a message to an action's examples (or its negatives) in the draft"
    )
    async def create(self, principal: Principal, data: CorrectionCreate) -> CorrectionRead:
        try:
            return await corrections.add_correction(principal.workspace_id, data, author=principal.email)
        except CorrectionError as exc:
            raise ValidationException(str(exc)) from exc

    @get("/", summary="The correction log, newest first")
    async def list(
        self, principal: Principal, flow_id: str | None = None, limit: Limit = 100
    ) -> list[CorrectionRead]:
        return await corrections.list_corrections(principal.workspace_id, flow_id=flow_id, limit=limit)

"""/api/refused-deliveries: the inbound messages a delivery carried that could not be stored, and why."""

from __future__ import annotations

from litestar import Controller, get

from app.api.params import Limit
from app.services import refused_deliveries
from app.services.auth import Principal
from app.services.refused_deliveries import RefusedPage


class RefusedDeliveryController(Controller):
    path = "/api/refused-deliveries"
    tags = ["channels"]

    @get("/", summary="Inbound messages refused as invalid (the provider got 200), newest first")
    async def list(self, principal: Principal, limit: Limit = 100) -> RefusedPage:
        return RefusedPage(items=await refused_deliveries.list_refused(principal.workspace_id, limit=limit))

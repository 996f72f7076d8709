"""create_app(): the Litestar application, its plugins and routers, and the web process's root.

On start-up it opens the process's services (app.roots) into `app.state.services`;
controllers receive them as the `services` dependency (or `state.services`). This is the
one place in app/ that imports ui/ (to mount its routers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Router
from litestar.config.compression import CompressionConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import CacheControlHeader, State
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app import __version__, roots
from app.api import (
    actions,
    channels,
    conversations,
    corrections,
    flows,
    health,
    inbound,
    refused_deliveries,
    tester,
)
from app.api.deps import current_principal
from app.api.errors import HANDLERS
from app.api.middleware import refuse_request_line, request_line_refusal, security_headers
from app.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
SWAGGER_UI = "5.18.2"
"""The vendored swagger-ui-dist release in static/vendor/ (the one Litestar's page is written for)."""


class SwaggerPage(SwaggerRenderPlugin):
    """Litestar's Swagger UI page, started by static/js/swagger-init.js instead of an inline script
    (the content security policy allows scripts from this site's files only)."""

    def __init__(self, *, init_js_url: str, spec_url: str, **options: Any) -> None:
        super().__init__(**options)
        self.init_js_url = init_js_url
        self.spec_url = spec_url

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        head = super().render(request, openapi_schema).split(b"<body", 1)[0]
        body = (
            f'<body><div id="swagger-container" data-spec="{self.spec_url}"></div>'
            f'<script src="{self.init_js_url}"></script></body></html>'
        )
        return head + body.encode()


class SwitchboardApp(Litestar):
    """Litestar, with over-long request lines refused before its router sees (and caches) them,
    and webhook POSTs answered on the lean path (app.api.inbound.answer_webhook)."""

    async def __call__(self, scope, receive, send):  # Litestar's own signature
        if scope["type"] == "http":
            refusal = request_line_refusal(scope)
            if refusal is not None:
                await refuse_request_line(*refusal, receive, send)
                return
            route = inbound.lean_route(scope)
            if route is not None:
                # The routes' own limit (`request_max_body_size`, SWITCHBOARD_MAX_BODY_BYTES).
                size = self.request_max_body_size
                limit = size if isinstance(size, int) and size else math.inf
                await inbound.answer_webhook(self, route, scope, receive, send, max_body_bytes=limit)
                return
        await super().__call__(scope, receive, send)


def create_app(*, with_worker: bool = False, worker_concurrency: int = 20) -> Litestar:
    """The web app; `with_worker` also runs a SAQ worker in the same event loop (`switchboard run`)."""
    # ui/ imports app/ services: importing it here, not at the top, keeps `import app.asgi` acyclic.
    from ui.errors import pages_for_browsers  # noqa: PLC0415
    from ui.render import static  # noqa: PLC0415
    from ui.routes import ROUTERS as UI_ROUTERS  # noqa: PLC0415
    from ui.security import session_middleware  # noqa: PLC0415

    settings = get_settings()

    async def on_startup(app: Litestar) -> None:
        services = await roots.open_services(settings)
        app.state.services = services
        if with_worker:
            app.state.worker = roots.InProcessWorker(services, concurrency=worker_concurrency)
            app.state.worker.start()
        roots.freeze_startup_heap()

    async def on_shutdown(app: Litestar) -> None:
        worker = app.state.get("worker")
        if worker is not None:
            await worker.stop()
        services = app.state.get("services")
        if services is not None:
            await roots.close_services(services)

    api = Router(
        path="/",
        route_handlers=[
            channels.ChannelController,
            flows.FlowController,
            conversations.ConversationController,
            conversations.RunController,
            actions.ActionController,
            tester.TesterController,
            corrections.CorrectionController,
            refused_deliveries.RefusedDeliveryController,
        ],
        dependencies={"principal": Provide(current_principal)},
        middleware=[session_middleware],
    )
    return SwitchboardApp(
        route_handlers=[
            health.health,
            inbound.whatsapp_verify,
            inbound.whatsapp_receive,
            inbound.generic_receive,
            api,
            *UI_ROUTERS,
            # Pages link assets as /static/...?v=<content hash>: a changed file is a new URL.
            create_static_files_router(
                path="/static",
                directories=[ROOT / "static"],
                include_in_schema=False,
                cache_control=CacheControlHeader(max_age=31_536_000, public=True, immutable=True),
            ),
        ],
        dependencies={"services": Provide(_services, sync_to_thread=False)},
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        before_send=[security_headers],
        exception_handlers={**HANDLERS, HTTPException: pages_for_browsers(HANDLERS[HTTPException])},
        plugins=[HTMXPlugin()],
        template_config=TemplateConfig(directory=ROOT / "templates", engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="Switchboard",
            version=__version__,
            path="/schema",
            # Served from static/vendor/, not a CDN: /schema works offline and on closed networks.
            render_plugins=[
                SwaggerPage(
                    init_js_url=static("js/swagger-init.js"),
                    spec_url="/schema/openapi.json",
                    js_url=static(f"vendor/swagger-ui-bundle-{SWAGGER_UI}.js"),
                    css_url=static(f"vendor/swagger-ui-{SWAGGER_UI}.css"),
                    standalone_preset_js_url=static(f"vendor/swagger-ui-standalone-preset-{SWAGGER_UI}.js"),
                    favicon="",
                )
            ],
        ),
        compression_config=CompressionConfig(backend="gzip", minimum_size=2048, exclude=["/webhooks"]),
        request_max_body_size=settings.max_body_bytes,
        debug=settings.debug,
        logging_config=None,  # app.logs.configure_logging owns the format (JSON lines)
    )


def _services(state: State) -> roots.AppServices:
    """The `services` dependency of controllers: the process's services, built once on start-up."""
    return state.services

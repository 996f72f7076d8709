"""create_app(): the Litestar application, its plugins and routers, nothing else.

The composition root is the one place in app/ that imports ui/ (to mount its routers).
"""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.contrib.jinja import JinjaTemplateEngine
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app import __version__
from app.api import actions, channels, conversations, flows, health, tester, webhooks
from app.api.deps import current_principal
from app.api.errors import HANDLERS
from app.services import lifecycle
from app.settings import get_settings

ROOT = Path(__file__).resolve().parent.parent
SWAGGER_UI = "5.18.2"
"""The vendored swagger-ui-dist release in static/vendor/ (the one Litestar's page is written for)."""


def create_app(*, with_worker: bool = False, worker_concurrency: int = 20) -> Litestar:
    """The web app; `with_worker` also runs a SAQ worker in the same event loop (`switchboard run`)."""
    from ui.render import static
    from ui.routes import ROUTERS as UI_ROUTERS
    from ui.security import session_middleware

    settings = get_settings()

    async def on_startup() -> None:
        await lifecycle.start(run_worker=with_worker, worker_concurrency=worker_concurrency)

    async def on_shutdown() -> None:
        await lifecycle.stop()

    api = Router(
        path="/",
        route_handlers=[
            channels.ChannelController,
            flows.FlowController,
            conversations.ConversationController,
            conversations.RunController,
            actions.ActionController,
            tester.TesterController,
        ],
        dependencies={"principal": Provide(current_principal)},
        middleware=[session_middleware],
    )
    return Litestar(
        route_handlers=[
            health.health,
            webhooks.whatsapp_verify,
            webhooks.whatsapp_receive,
            webhooks.generic_receive,
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
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        exception_handlers=HANDLERS,
        plugins=[HTMXPlugin()],
        template_config=TemplateConfig(directory=ROOT / "templates", engine=JinjaTemplateEngine),
        openapi_config=OpenAPIConfig(
            title="Switchboard",
            version=__version__,
            path="/schema",
            # Served from static/vendor/, not a CDN: /schema works offline and on closed networks.
            render_plugins=[
                SwaggerRenderPlugin(
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
        logging_config=None,  # app.services.lifecycle.configure_logging owns the format (JSON lines)
    )

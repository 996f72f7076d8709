"""The browser UI's routers, mounted by app.asgi: `from ui.routes import ROUTERS`."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException

from ui.actions import ActionsController
from ui.auth import AuthController
from ui.conversations import ConversationsController
from ui.corrections import CorrectionsController
from ui.editor import EditorController
from ui.errors import html_error
from ui.flows import FlowsController
from ui.logs import LogsController
from ui.security import csrf_guard, login_redirect, provide_principal, session_middleware
from ui.settings_pages import SettingsController
from ui.setup import SetupController
from ui.tester import TesterController

ROUTERS: list[Router] = [
    Router(
        path="/",
        route_handlers=[
            AuthController,
            FlowsController,
            EditorController,
            ConversationsController,
            ActionsController,
            LogsController,
            TesterController,
            CorrectionsController,
            SettingsController,
            SetupController,
        ],
        middleware=[session_middleware],
        guards=[csrf_guard],
        dependencies={"principal": Provide(provide_principal)},
        exception_handlers={NotAuthorizedException: login_redirect, HTTPException: html_error},
        include_in_schema=False,
    )
]

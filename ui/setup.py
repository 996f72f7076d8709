"""The first-run page (owner account and workspace, open only while no user exists) and the welcome page."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from app.services import auth, first_run
from app.services.channels.store import ChannelError
from app.settings import get_settings
from ui.render import page
from ui.security import start_session


def _setup_page(
    request: Request, *, status_code: int = 200, error: str | None = None, **form: str
) -> Template:
    return page(
        request,
        "pages/setup.html",
        status_code=status_code,
        error=error,
        email=form.get("email", ""),
        workspace=form.get("workspace", ""),
        with_examples=form.get("with_examples", "1") == "1",
    )


async def _welcome_page(
    request: Request, principal: auth.Principal, *, status_code: int = 200, error: str | None = None
) -> Template:
    return page(
        request,
        "pages/welcome.html",
        status_code=status_code,
        nav="flows",
        welcome=await first_run.welcome(principal.workspace_id),
        # This machine's address as the browser reached it: the console channel takes loopback callers only.
        base_url=str(request.base_url).rstrip("/"),
        buffer_seconds=get_settings().buffer.seconds,
        error=error,
    )


class SetupController(Controller):
    path = "/"

    @get("/setup", name="setup")
    async def setup_page(self, request: Request) -> Template | Redirect:
        if await auth.has_users():
            return Redirect(path="/login")
        return _setup_page(request)

    @post("/setup", name="setup_submit")
    async def setup(self, request: Request) -> Template | Redirect:
        form = await request.form()
        values = {
            "email": (form.get("email") or "").strip(),
            "workspace": (form.get("workspace") or "").strip(),
            "with_examples": "1" if form.get("with_examples") else "0",
        }
        password = form.get("password") or ""
        if password != (form.get("password_again") or ""):
            return _setup_page(
                request, status_code=422, error="The two passwords differ: type the same one twice.", **values
            )
        if not values["workspace"]:
            return _setup_page(
                request, status_code=422, error="Name your workspace (your business).", **values
            )
        try:
            principal = await first_run.set_up(
                email=values["email"],
                password=password,
                workspace=values["workspace"],
                with_examples=values["with_examples"] == "1",
            )
        except auth.OwnerExists as exc:
            return page(
                request, "pages/setup_done.html", status_code=403, message=f"{str(exc).capitalize()}."
            )
        except auth.AuthError as exc:
            return _setup_page(request, status_code=422, error=f"{str(exc).capitalize()}.", **values)
        start_session(request, principal)
        return Redirect(path="/welcome")

    @get("/welcome", name="welcome")
    async def welcome(self, request: Request, principal: auth.Principal) -> Template:
        return await _welcome_page(request, principal)

    @post("/welcome/try", name="welcome_try")
    async def try_message(self, request: Request, principal: auth.Principal) -> Template | Redirect:
        text = ((await request.form()).get("text") or "").strip()
        error = None
        if not text:
            error = "Write a message first."
        else:
            try:
                conversation_id = await first_run.send_try_message(
                    principal.workspace_id, text, ingress=request.app.state.services.ingress
                )
            except ChannelError as exc:
                error = f"{str(exc).capitalize()}."
            else:
                return Redirect(path=f"/conversations/{conversation_id}")
        return await _welcome_page(request, principal, status_code=422, error=error)

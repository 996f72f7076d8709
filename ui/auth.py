"""Login and logout pages on top of the app's auth service."""

from __future__ import annotations

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from app.services import auth
from ui.render import page
from ui.security import end_session, start_session


def _safe_next(target: str | None) -> str:
    # Only local paths: an open redirect after login is a phishing aid.
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/flows"
    return target


class AuthController(Controller):
    path = "/"

    @get("/", name="home")
    async def home(self) -> Redirect:
        # A server with no user yet opens on the first-run page, as n8n's owner set-up does.
        return Redirect(path="/flows" if await auth.has_users() else "/setup")

    @get("/login", name="login")
    async def login_page(self, request: Request, next: str | None = None) -> Template | Redirect:
        if not await auth.has_users():
            return Redirect(path="/setup")
        return page(request, "pages/login.html", next=_safe_next(next), error=None, email="")

    @post("/login", name="login_submit")
    async def login(self, request: Request) -> Redirect | Template:
        form = await request.form()
        email = form.get("email", "")
        try:
            principal = await auth.login(email, form.get("password", ""))
        except auth.AuthError as exc:
            return page(
                request,
                "pages/login.html",
                status_code=401,
                next=_safe_next(form.get("next")),
                error=f"{str(exc).capitalize()}.",
                email=email,
            )
        start_session(request, principal)
        return Redirect(path=_safe_next(form.get("next")))

    @post("/logout", name="logout")
    async def logout(self, request: Request) -> Redirect:
        end_session(request)
        return Redirect(path="/login")

"""Login and logout pages on top of the app's auth service."""

from __future__ import annotations

import asyncio

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from app.services import auth
from ui.render import page
from ui.security import client_address, end_session, start_session

LOCKED_ANSWER_DELAY_S = 1.0


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{round(seconds / 60)} minutes"


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
        """Failed logins lock the account and the address for a while (app.services.rate_limits): 429."""
        form = await request.form()
        email = str(form.get("email", ""))[:320]
        throttle = request.app.state.services.login_throttle
        address = client_address(request)
        wait_s = await throttle.wait_s(email, address)
        if wait_s:
            # Held a moment before the answer: a client looping on a locked login gets a few
            # answers a second, not thousands, and the other requests keep the event loop.
            await asyncio.sleep(min(wait_s, LOCKED_ANSWER_DELAY_S))
            return self._locked(request, form, email, wait_s)
        try:
            principal = await auth.login(email, str(form.get("password", "")))
        except auth.AuthError as exc:
            wait_s = await throttle.failed(email, address)
            if wait_s:
                return self._locked(request, form, email, wait_s)
            return page(
                request,
                "pages/login.html",
                status_code=401,
                next=_safe_next(form.get("next")),
                error=f"{str(exc).capitalize()}.",
                email=email,
            )
        await throttle.succeeded(email)
        start_session(request, principal)
        return Redirect(path=_safe_next(form.get("next")))

    @staticmethod
    def _locked(request: Request, form: dict, email: str, wait_s: int) -> Template:
        return page(
            request,
            "pages/login.html",
            status_code=429,
            headers={"Retry-After": str(wait_s)},
            next=_safe_next(form.get("next")),
            error=(
                f"Too many failed logins: logging in to this account or from this address is locked for "
                f"{_duration(wait_s)}. Try again after that; each new failure makes the wait longer."
            ),
            locked=True,
            email=email,
        )

    @post("/logout", name="logout")
    async def logout(self, request: Request) -> Redirect:
        await end_session(request)
        return Redirect(path="/login")

"""Settings: channels (webhook URL to paste into Meta, verify), LLM settings, and the core-intent personalities."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import NotFoundException
from litestar.response import Redirect, Template

from app.services import auth
from app.services.ai import llm_settings, personalities
from app.services.channels import store as channel_store
from app.services.channels.checks import PUBLIC_URL_HINT
from ui.render import fragment, page
from ui.security import client_address, start_session

MAX_QUOTA = 10**15
"""Tokens a month: far above any real quota, well inside the bigint column."""


async def _channels_context(request: Request, principal: auth.Principal) -> dict:
    checks = request.app.state.services.channel_checks
    channels = await channel_store.list_channels(principal.workspace_id)
    return {
        "channels": [(c, checks.webhook_url(c)) for c in channels],
        "public_url_hint": None if checks.public_url else PUBLIC_URL_HINT,
    }


async def _account_context(principal: auth.Principal, **values: object) -> dict:
    return {"tokens": await auth.list_tokens(principal.user_id), **values}


def _expiry_days(raw: object) -> int | None:
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise auth.AuthError("expiry: choose a number of days, or never") from exc


class SettingsController(Controller):
    path = "/settings"

    @get("/", name="settings")
    async def settings_page(self, request: Request, principal: auth.Principal) -> Template:
        return page(
            request,
            "pages/settings.html",
            nav="settings",
            llm=await llm_settings.get(principal.workspace_id),
            channel_error=None,
            verify=None,
            personalities=await personalities.list_personalities(principal.workspace_id),
            **await _channels_context(request, principal),
            **await _account_context(principal),
        )

    @post("/channels", name="channel_create")
    async def create_channel(self, request: Request, principal: auth.Principal) -> Template:
        form = await request.form()
        error = None
        try:
            data = channel_store.ChannelCreate(
                kind=channel_store.ChannelKind(form.get("kind") or "whatsapp"),
                name=(form.get("name") or "").strip(),
                phone_number_id=(form.get("phone_number_id") or "").strip(),
                access_token=form.get("access_token") or "",
                app_secret=form.get("app_secret") or "",
                verify_token=form.get("verify_token") or "",
                secret=form.get("secret") or "",
            )
            await channel_store.create_channel(principal.workspace_id, data)
        except (channel_store.ChannelError, ValueError) as exc:
            error = str(exc)
        return fragment(
            request,
            "partials/channels.html",
            status_code=422 if error else 200,
            channel_error=error,
            verify=None,
            **await _channels_context(request, principal),
        )

    @post("/channels/{channel_id:str}/delete", name="channel_delete")
    async def delete_channel(self, request: Request, principal: auth.Principal, channel_id: str) -> Template:
        if not await channel_store.delete_channel(principal.workspace_id, channel_id):
            raise NotFoundException("This channel does not exist in your workspace (deleted already?).")
        return fragment(
            request,
            "partials/channels.html",
            channel_error=None,
            verify=None,
            **await _channels_context(request, principal),
        )

    @post("/channels/{channel_id:str}/verify", name="channel_verify")
    async def verify_channel(self, request: Request, principal: auth.Principal, channel_id: str) -> Template:
        """Call our own webhook URL the way Meta does (hub.challenge) and report what came back."""
        record = await channel_store.lookup_scoped(principal.workspace_id, channel_id)
        read = await channel_store.get_channel_read(principal.workspace_id, channel_id)
        if record is None or read is None:
            raise NotFoundException("This channel does not exist in your workspace.")
        checks = request.app.state.services.channel_checks
        result = await checks.verify(record, read)
        return fragment(
            request,
            "partials/channels.html",
            channel_error=None,
            verify={"id": channel_id, "ok": result.ok, "detail": result.detail},
            **await _channels_context(request, principal),
        )

    @post("/tokens", name="token_create")
    async def create_token(self, request: Request, principal: auth.Principal) -> Template:
        """A new API token for the logged-in user, shown once in the fragment."""
        form = await request.form()
        name = str(form.get("name") or "").strip()
        try:
            token = await auth.create_token_for(
                principal, name=name, expires_days=_expiry_days(form.get("expires_days"))
            )
        except auth.AuthError as exc:
            return fragment(
                request,
                "partials/account.html",
                status_code=422,
                **await _account_context(principal, account_error=str(exc)),
            )
        return fragment(
            request,
            "partials/account.html",
            **await _account_context(principal, new_token=token, new_token_name=name or "token"),
        )

    @post("/tokens/{token_id:str}/revoke", name="token_revoke")
    async def revoke_token(self, request: Request, principal: auth.Principal, token_id: str) -> Template:
        if not await auth.revoke_token(principal.user_id, token_id):
            raise NotFoundException("This token does not exist (it may be revoked already).")
        return fragment(request, "partials/account.html", **await _account_context(principal))

    @post("/password", name="password_change")
    async def change_password(self, request: Request, principal: auth.Principal) -> Template:
        """Check the current password (a wrong one counts as a failed login), then log out every other browser."""
        form = await request.form()
        throttle = request.app.state.services.login_throttle
        address = client_address(request)
        error = None
        if await throttle.wait_s(principal.email, address):
            error = "Too many failed attempts with this account: try again later."
        else:
            try:
                await auth.change_password(
                    principal, current=str(form.get("current") or ""), new=str(form.get("new") or "")
                )
            except auth.AuthError as exc:
                if "current password" in str(exc):
                    await throttle.failed(principal.email, address)
                error = f"{str(exc).capitalize()}."
        if error is None:
            start_session(request, principal)  # this browser stays in, with a session issued after the change
        return fragment(
            request,
            "partials/account.html",
            status_code=422 if error else 200,
            **await _account_context(principal, password_error=error, password_saved=error is None),
        )

    @post("/sessions/revoke", name="sessions_revoke")
    async def log_out_everywhere(self, request: Request, principal: auth.Principal) -> Redirect:
        """Every session of this user ends, this one included."""
        await auth.end_all_sessions(principal.user_id)
        request.clear_session()
        return Redirect(path="/login")

    @post("/llm", name="llm_update")
    async def update_llm(self, request: Request, principal: auth.Principal) -> Template:
        """Save the workspace's LLM settings; an empty key field keeps the stored key."""
        form = await request.form()
        error = None
        try:
            quota = int(form.get("monthly_token_quota") or 0)
            if quota > MAX_QUOTA:  # the column is a bigint: a larger number was a database error
                raise ValueError(quota)
            api_key = "" if form.get("remove_key") else ((form.get("api_key") or "").strip() or None)
            await llm_settings.update(
                principal.workspace_id,
                llm_settings.LLMSettingsUpdate(
                    model=(form.get("model") or "").strip(),
                    base_url=(form.get("base_url") or "").strip(),
                    api_key=api_key,
                    monthly_token_quota=quota,
                ),
            )
        except ValueError as exc:  # LLMSettingsError, or a quota that is not a number
            error = (
                str(exc)
                if isinstance(exc, llm_settings.LLMSettingsError)
                else f"The quota must be a whole number, at most {MAX_QUOTA:,}."
            )
        return fragment(
            request,
            "partials/llm_settings.html",
            status_code=422 if error else 200,
            llm=await llm_settings.get(principal.workspace_id),
            llm_error=error,
            llm_saved=not error,
        )

    @post("/personalities/{intent:str}", name="personality_update")
    async def update_personality(self, request: Request, principal: auth.Principal, intent: str) -> Template:
        form = await request.form()
        try:
            core = personalities.CoreIntent(intent)
        except ValueError as exc:
            raise NotFoundException(f"No core intent {intent!r}.") from exc
        update = personalities.PersonalityUpdate(
            system_prompt=(form.get("system_prompt") or "").strip(),
            fallback_text=(form.get("fallback_text") or "").strip(),
        )
        missing = [
            what
            for what, text in (("prompt", update.system_prompt), ("fallback text", update.fallback_text))
            if not text
        ]
        if missing:
            # An empty fallback text answered customers with silence; the form says `required` too.
            current = await personalities.get_personality(principal.workspace_id, core)
            return fragment(
                request,
                "partials/personality.html",
                status_code=422,
                p=msgspec.structs.replace(current, **msgspec.structs.asdict(update)),
                saved=False,
                error=f"Write the {' and the '.join(missing)}: a personality needs both.",
            )
        updated = await personalities.update_personality(principal.workspace_id, core, update)
        return fragment(request, "partials/personality.html", p=updated, saved=True)

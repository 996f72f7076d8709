"""Users, workspaces, browser sessions and API tokens: who is calling, and which workspace they may see.

Passwords are hashed with scrypt in one background thread (`_HASHING`), never on the event
loop: a login flood then costs at most one core and no other request waits behind it. An
unknown email is checked against a fixed hash, so it costs the same one scrypt as a known one.
Sessions and tokens are looked up in PostgreSQL on every request (no cache), so a logout, a
revoked token or a deleted user takes effect at once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from app.db.tables import ApiToken, RevokedSession, User, Workspace

T = TypeVar("T")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
# The keys of a browser session's cookie (ui.security writes it, app.api.deps reads it too).
USER_SESSION_KEY = "user_id"
SESSION_ID_KEY = "sid"
ISSUED_AT_KEY = "iat"
SESSION_MAX_AGE_S = 14 * 24 * 3600
MIN_PASSWORD_CHARS = 8
# Token use is recorded at most this often: a write per API request would cost more than the request.
_LAST_USED_EVERY = timedelta(seconds=60)
# One thread: logins wait for each other rather than take both cores from the webhooks.
_HASHING = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sb-password-hash")


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller; every service call is scoped by `workspace_id`."""

    user_id: str
    email: str
    workspace_id: str
    workspace_name: str


class SessionGrant(msgspec.Struct, frozen=True):
    """What a browser session's cookie carries (besides its CSRF token)."""

    user_id: str
    session_id: str
    issued_at: float  # unix seconds, compared with the user's sessions_valid_after


class TokenRead(msgspec.Struct, frozen=True):
    """An API token as its owner sees it: never the token itself, which is shown once."""

    id: str
    name: str
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    expired: bool


class AuthError(Exception):
    """Bad credentials or bad input to an auth command; the message says what to do."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)


@functools.cache
def _unknown_user_hash() -> str:
    """What an unknown email's password is checked against: the same scrypt as a real account."""
    return hash_password(secrets.token_urlsafe(16))


async def _hashing(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, fn, *args)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "workspace"


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")


async def create_admin(*, email: str, password: str, workspace: str) -> Principal:
    """Create a workspace (or reuse the one with that name) and a user in it."""
    email = email.strip().lower()
    if "@" not in email:
        raise AuthError(f"{email!r} is not an email address")
    _check_new_password(password)
    if await User.exists().where(User.email == email):
        raise AuthError(
            f"a user with email {email} already exists; use `switchboard token create --email {email}`"
        )
    password_hash = await _hashing(hash_password, password)
    slug = slugify(workspace)
    row = await Workspace.select(Workspace.id, Workspace.name).where(Workspace.slug == slug).first()
    if row is None:
        ws = Workspace(name=workspace.strip() or slug, slug=slug)
        await ws.save()
        ws_id, ws_name = ws.id, ws.name
    else:
        ws_id, ws_name = row["id"], row["name"]
    user = User(workspace=ws_id, email=email, password_hash=password_hash)
    await user.save()
    return Principal(user_id=str(user.id), email=email, workspace_id=str(ws_id), workspace_name=ws_name)


async def has_users() -> bool:
    """False until the owner account exists: the first-run page is open only then."""
    return await User.exists()


class OwnerExists(AuthError):
    """The first-run set-up was already done; the owner logs in instead."""


# Any constant shared by every process: two first-run forms posted at once make one owner.
_OWNER_LOCK = 0x5B0A_0001


async def create_owner(*, email: str, password: str, workspace: str) -> Principal:
    """The first-run set-up: the first user and their workspace, only while no user exists."""
    async with User._meta.db.transaction():
        await User.raw("SELECT pg_advisory_xact_lock({})", _OWNER_LOCK)
        if await User.exists():
            raise OwnerExists("Switchboard is already set up; log in with the owner's email and password")
        return await create_admin(email=email, password=password, workspace=workspace)


async def _principal_for_user(user_id: uuid.UUID | str) -> Principal | None:
    row = await (
        User.select(User.id, User.email, User.workspace.id, User.workspace.name)
        .where(User.id == user_id)
        .first()
    )
    if row is None:
        return None
    return Principal(
        user_id=str(row["id"]),
        email=row["email"],
        workspace_id=str(row["workspace.id"]),
        workspace_name=row["workspace.name"],
    )


async def login(email: str, password: str) -> Principal:
    """The user with this email and password; AuthError otherwise (the same work either way)."""
    row = await User.select(User.id, User.password_hash).where(User.email == email.strip().lower()).first()
    stored = row["password_hash"] if row else _unknown_user_hash()
    if not await _hashing(check_password, password, stored) or row is None:
        raise AuthError("wrong email or password")
    principal = await _principal_for_user(row["id"])
    assert principal is not None
    return principal


# --- browser sessions -------------------------------------------------------------------------


def new_session(principal: Principal) -> dict[str, Any]:
    """The cookie values of a new session for `principal`."""
    return {
        USER_SESSION_KEY: principal.user_id,
        SESSION_ID_KEY: secrets.token_urlsafe(24),
        ISSUED_AT_KEY: time.time(),
    }


def session_grant(session: object) -> SessionGrant | None:
    """The grant a session cookie carries; None for no session, or one from before sessions had ids."""
    if not isinstance(session, Mapping):
        return None
    user_id, session_id, issued_at = (
        session.get(USER_SESSION_KEY),
        session.get(SESSION_ID_KEY),
        session.get(ISSUED_AT_KEY),
    )
    if not isinstance(user_id, str) or not isinstance(session_id, str):
        return None
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        return None
    return SessionGrant(user_id=user_id, session_id=session_id, issued_at=float(issued_at))


_SESSION_PRINCIPAL = """
SELECT u.id, u.email, w.id AS workspace_id, w.name AS workspace_name
  FROM users u JOIN workspaces w ON w.id = u.workspace
 WHERE u.id = {} AND (u.sessions_valid_after IS NULL OR u.sessions_valid_after <= {})
   AND NOT EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.session_id = {})
"""


async def principal_for_session(grant: SessionGrant) -> Principal | None:
    """The session's user, unless the session was logged out, revoked everywhere, or the user is gone."""
    try:
        user_id = uuid.UUID(grant.user_id)
        issued = datetime.fromtimestamp(grant.issued_at, UTC)
    except (ValueError, OverflowError, OSError):
        return None
    if time.time() - grant.issued_at > SESSION_MAX_AGE_S:
        return None
    rows = await User.raw(_SESSION_PRINCIPAL, user_id, issued, grant.session_id)
    if not rows:
        return None
    row = rows[0]
    return Principal(
        user_id=str(row["id"]),
        email=row["email"],
        workspace_id=str(row["workspace_id"]),
        workspace_name=row["workspace_name"],
    )


async def end_session(grant: SessionGrant) -> None:
    """Log this session out on the server: its cookie stops working, wherever a copy of it is."""
    expires = datetime.fromtimestamp(grant.issued_at + SESSION_MAX_AGE_S, UTC)
    await RevokedSession.raw(
        'INSERT INTO revoked_sessions (id, "user", session_id, expires_at) VALUES ({}, {}, {}, {}) '
        "ON CONFLICT (session_id) DO NOTHING",
        uuid.uuid4(),
        uuid.UUID(grant.user_id),
        grant.session_id,
        expires,
    )
    # Rows past their cookie's expiry protect nothing: drop them on the way.
    await RevokedSession.delete().where(RevokedSession.expires_at < datetime.now(UTC))


async def end_all_sessions(user_id: str) -> float:
    """Log out every session of the user started until now; returns that moment (unix seconds)."""
    now = time.time()
    await User.update({User.sessions_valid_after: datetime.fromtimestamp(now, UTC)}).where(
        User.id == uuid.UUID(user_id)
    )
    return now


async def change_password(principal: Principal, *, current: str, new: str) -> None:
    """Check the current password, store the new one and log out every session of the user."""
    _check_new_password(new)
    row = await User.select(User.password_hash).where(User.id == uuid.UUID(principal.user_id)).first()
    if row is None or not await _hashing(check_password, current, row["password_hash"]):
        raise AuthError("the current password is wrong")
    password_hash = await _hashing(hash_password, new)
    await User.update(
        {User.password_hash: password_hash, User.sessions_valid_after: datetime.now(UTC)}
    ).where(User.id == uuid.UUID(principal.user_id))


# --- API tokens ---------------------------------------------------------------------------------


async def create_token(*, email: str, name: str = "cli", expires_days: int | None = None) -> str:
    """A new API token for the user; only its hash is stored, so print it once."""
    row = await User.select(User.id, User.workspace).where(User.email == email.strip().lower()).first()
    if row is None:
        raise AuthError(f"no user with email {email}; create one with `switchboard admin create`")
    return await _new_token(row["id"], row["workspace"], name=name, expires_days=expires_days)


async def create_token_for(principal: Principal, *, name: str, expires_days: int | None) -> str:
    return await _new_token(
        uuid.UUID(principal.user_id), uuid.UUID(principal.workspace_id), name=name, expires_days=expires_days
    )


async def _new_token(
    user_id: uuid.UUID, workspace_id: uuid.UUID, *, name: str, expires_days: int | None
) -> str:
    if expires_days is not None and not 1 <= expires_days <= 3650:
        raise AuthError(
            "expiry: give a number of days between 1 and 3650, or none for a token that never expires"
        )
    name = name.strip()[:200] or "token"
    token = "sb_" + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    await ApiToken(
        workspace=workspace_id, user=user_id, name=name, token_hash=_token_hash(token), expires_at=expires
    ).save()
    return token


async def list_tokens(user_id: str) -> list[TokenRead]:
    rows = await (
        ApiToken.select(
            ApiToken.id, ApiToken.name, ApiToken.created_at, ApiToken.last_used_at, ApiToken.expires_at
        )
        .where(ApiToken.user == uuid.UUID(user_id))
        .order_by(ApiToken.created_at)
    )
    now = datetime.now(UTC)
    return [
        TokenRead(
            id=str(r["id"]),
            name=r["name"],
            created_at=r["created_at"].isoformat(),
            last_used_at=r["last_used_at"].isoformat() if r["last_used_at"] else None,
            expires_at=r["expires_at"].isoformat() if r["expires_at"] else None,
            expired=bool(r["expires_at"] and r["expires_at"] <= now),
        )
        for r in rows
    ]


async def list_tokens_by_email(email: str) -> list[TokenRead]:
    row = await User.select(User.id).where(User.email == email.strip().lower()).first()
    if row is None:
        raise AuthError(f"no user with email {email}")
    return await list_tokens(str(row["id"]))


async def revoke_token(user_id: str, token_id: str) -> bool:
    """Delete one of the user's tokens; False when the user has no such token."""
    try:
        tid = uuid.UUID(token_id)
    except ValueError:
        return False
    deleted = (
        await ApiToken.delete()
        .where((ApiToken.id == tid) & (ApiToken.user == uuid.UUID(user_id)))
        .returning(ApiToken.id)
    )
    return bool(deleted)


async def revoke_token_by_email(email: str, token_id: str) -> bool:
    row = await User.select(User.id).where(User.email == email.strip().lower()).first()
    if row is None:
        raise AuthError(f"no user with email {email}")
    return await revoke_token(str(row["id"]), token_id)


_TOKEN_PRINCIPAL = """
SELECT t.id AS token_id, t.last_used_at, u.id AS user_id, u.email, w.id AS workspace_id, w.name AS workspace_name
  FROM api_tokens t JOIN users u ON u.id = t."user" JOIN workspaces w ON w.id = u.workspace
 WHERE t.token_hash = {} AND (t.expires_at IS NULL OR t.expires_at > now())
"""


async def authenticate_token(token: str) -> Principal | None:
    """The token's user, looked up on every call: a revoked, expired or deleted user's token fails at once."""
    rows = await ApiToken.raw(_TOKEN_PRINCIPAL, _token_hash(token))
    if not rows:
        return None
    row = rows[0]
    now = datetime.now(UTC)
    if row["last_used_at"] is None or now - row["last_used_at"] > _LAST_USED_EVERY:
        await ApiToken.update({ApiToken.last_used_at: now}).where(ApiToken.id == row["token_id"])
    return Principal(
        user_id=str(row["user_id"]),
        email=row["email"],
        workspace_id=str(row["workspace_id"]),
        workspace_name=row["workspace_name"],
    )

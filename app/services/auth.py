"""Users, workspaces and API tokens: who is calling, and which workspace they may see."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from datetime import UTC, datetime

import msgspec

from app.db.tables import ApiToken, User, Workspace

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_TOKEN_CACHE_TTL_S = 30.0
_token_cache: dict[str, tuple[float, Principal]] = {}


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller; every service call is scoped by `workspace_id`."""

    user_id: str
    email: str
    workspace_id: str
    workspace_name: str


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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "workspace"


async def create_admin(*, email: str, password: str, workspace: str) -> Principal:
    """Create a workspace (or reuse the one with that name) and a user in it."""
    email = email.strip().lower()
    if "@" not in email:
        raise AuthError(f"{email!r} is not an email address")
    if len(password) < 8:
        raise AuthError("the password must have at least 8 characters")
    if await User.exists().where(User.email == email):
        raise AuthError(
            f"a user with email {email} already exists; use `switchboard token create --email {email}`"
        )
    slug = slugify(workspace)
    row = await Workspace.select(Workspace.id, Workspace.name).where(Workspace.slug == slug).first()
    if row is None:
        ws = Workspace(name=workspace.strip() or slug, slug=slug)
        await ws.save()
        ws_id, ws_name = ws.id, ws.name
    else:
        ws_id, ws_name = row["id"], row["name"]
    user = User(workspace=ws_id, email=email, password_hash=hash_password(password))
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
    row = await User.select(User.id, User.password_hash).where(User.email == email.strip().lower()).first()
    # Hash even when the user is unknown, so timing does not reveal which emails exist.
    stored = row["password_hash"] if row else hash_password("not-a-user-password")
    if not check_password(password, stored) or row is None:
        raise AuthError("wrong email or password")
    principal = await _principal_for_user(row["id"])
    assert principal is not None
    return principal


async def principal_for_session(user_id: str) -> Principal | None:
    return await _principal_for_user(user_id)


async def create_token(*, email: str, name: str = "cli") -> str:
    """A new API token for the user; only its hash is stored, so print it once."""
    row = await User.select(User.id, User.workspace).where(User.email == email.strip().lower()).first()
    if row is None:
        raise AuthError(f"no user with email {email}; create one with `switchboard admin create`")
    token = "sb_" + secrets.token_urlsafe(32)
    await ApiToken(
        workspace=row["workspace"], user=row["id"], name=name, token_hash=_token_hash(token)
    ).save()
    return token


async def authenticate_token(token: str) -> Principal | None:
    now = time.monotonic()
    cached = _token_cache.get(token)
    if cached and cached[0] > now:
        return cached[1]
    row = (
        await ApiToken.select(ApiToken.id, ApiToken.user)
        .where(ApiToken.token_hash == _token_hash(token))
        .first()
    )
    if row is None:
        return None
    principal = await _principal_for_user(row["user"])
    if principal is None:
        return None
    await ApiToken.update({ApiToken.last_used_at: datetime.now(UTC)}).where(ApiToken.id == row["id"])
    _token_cache[token] = (now + _TOKEN_CACHE_TTL_S, principal)
    return principal

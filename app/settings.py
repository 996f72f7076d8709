"""Settings from the environment: the only module that reads os.environ."""

from __future__ import annotations

import os
from functools import lru_cache

import msgspec

DEV_SECRET_KEY = "switchboard-dev-secret-change-me"
"""The development default of SWITCHBOARD_SECRET_KEY; the CLI warns when it is in use."""


def _env(name: str, default: str) -> str:
    # Set but empty counts as unset, as in `SWITCHBOARD_SECRET_KEY= switchboard run`.
    return os.environ.get(name) or default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name}={raw!r} is not a number; set it to seconds, e.g. {name}={default}") from exc


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(float(raw))
    except ValueError as exc:
        raise SystemExit(
            f"{name}={raw!r} is not a number; set a whole number, e.g. {name}={default}"
        ) from exc


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


class DatabaseSettings(msgspec.Struct, frozen=True):
    """Where PostgreSQL is."""

    url: str
    """`DATABASE_URL`; empty means: local 127.0.0.1:5432 if it answers, else embedded."""
    pool_max_size: int = 20
    """`SWITCHBOARD_DB_POOL_SIZE`: connections per process."""


class RedisSettings(msgspec.Struct, frozen=True):
    """Where Redis is."""

    url: str
    """`REDIS_URL`; empty means: local 127.0.0.1:6379 if it answers, else embedded."""


class BufferSettings(msgspec.Struct, frozen=True):
    """How inbound messages of one conversation are batched into a turn."""

    seconds: float = 8.0
    """`SWITCHBOARD_BUFFER_SECONDS`: quiet time after the last message before a flush."""
    max_seconds: float = 30.0
    """`SWITCHBOARD_BUFFER_MAX_SECONDS`: a flush happens at most this long after the first message."""
    lock_seconds: float = 60.0
    """`SWITCHBOARD_LOCK_SECONDS`: per-conversation lock expiry; a dead worker's batch is retried after it."""
    poll_seconds: float = 0.05
    """`SWITCHBOARD_SCHEDULER_POLL_SECONDS`: how often a worker looks for due conversations."""
    recovery_interval_seconds: float = 15.0
    """`SWITCHBOARD_RECOVERY_INTERVAL_SECONDS`: how often a worker re-queues stored messages no turn holds."""


class AISettings(msgspec.Struct, frozen=True):
    """LLM access and AI state."""

    openai_api_key: str = ""
    """`OPENAI_API_KEY`; empty means the offline engine answers."""
    openai_base_url: str = ""
    """`OPENAI_BASE_URL`: any OpenAI-compatible server."""
    model: str = "gpt-4o-mini"
    """`SWITCHBOARD_LLM_MODEL`."""
    llm_timeout_seconds: float = 20.0
    """`SWITCHBOARD_LLM_TIMEOUT_SECONDS`."""
    state_ttl_seconds: int = 24 * 3600
    """`SWITCHBOARD_AI_STATE_TTL_SECONDS`: TTL of `ai_control_{id}` and `ai_context_{id}`."""
    history_turns: int = 10
    """`SWITCHBOARD_AI_HISTORY_TURNS`: messages of history given to a personality."""
    confirmation_ttl_seconds: int = 600
    """`SWITCHBOARD_CONFIRMATION_TTL_SECONDS`: pending confirmations expire after this."""
    auto_execute_threshold: float = 0.9
    """`SWITCHBOARD_AUTO_EXECUTE_THRESHOLD`: matches below it (but above the action's threshold) ask first."""
    ambiguity_margin: float = 0.05
    """`SWITCHBOARD_AMBIGUITY_MARGIN`: two best matches closer than this are treated as unclear."""


class ChannelSettings(msgspec.Struct, frozen=True):
    """Outbound channels."""

    whatsapp_graph_url: str = "https://graph.facebook.com/v21.0"
    """`WHATSAPP_GRAPH_URL`: base URL of the WhatsApp Cloud API."""
    send_timeout_seconds: float = 10.0
    """`SWITCHBOARD_SEND_TIMEOUT_SECONDS`."""
    send_max_retries: int = 3
    """`SWITCHBOARD_SEND_MAX_RETRIES`: retries on 429/5xx/connection errors."""
    send_retry_base_seconds: float = 0.5
    """`SWITCHBOARD_SEND_RETRY_BASE_SECONDS`: first backoff, doubled each retry."""
    send_evidence_seconds: float = 60.0
    """`SWITCHBOARD_SEND_EVIDENCE_SECONDS`: how long a reply whose send may have reached WhatsApp (its
    answer was lost, or the worker stopped) waits for the delivery callback that settles it. Then it
    is sent once more if the number's callbacks kept arriving and none named it (WhatsApp never took
    it), else marked `unknown`. Longer than a send's timeout and retries."""


class WebhookSettings(msgspec.Struct, frozen=True):
    """Outbound calls made by `action.call_webhook`."""

    allow_private: bool = False
    """`SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE`: allow loopback/private/link-local targets."""
    max_response_bytes: int = 256 * 1024
    """`SWITCHBOARD_WEBHOOK_MAX_RESPONSE_BYTES`: response bodies are read up to this."""
    retry_after_cap_seconds: float = 60.0
    """`SWITCHBOARD_WEBHOOK_RETRY_AFTER_CAP_SECONDS`: a larger Retry-After is capped."""
    rate_limit_per_minute: int = 600
    """`SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE`: executions per workspace per minute."""


class SecuritySettings(msgspec.Struct, frozen=True):
    """Logins and how requests reach the server."""

    login_max_failures: int = 5
    """`SWITCHBOARD_LOGIN_MAX_FAILURES`: failed logins of one account (in an hour) before it locks."""
    login_max_failures_per_address: int = 20
    """`SWITCHBOARD_LOGIN_MAX_FAILURES_PER_ADDRESS`: failed logins from one address before it locks."""
    trust_proxy: bool = False
    """`SWITCHBOARD_TRUST_PROXY`: believe X-Forwarded-Proto and X-Forwarded-For from the proxy addresses
    in uvicorn's FORWARDED_ALLOW_IPS (default 127.0.0.1); set it behind a TLS-terminating proxy so
    session cookies are marked Secure and login limits count the real client addresses."""


class Settings(msgspec.Struct, frozen=True):
    """Everything the service reads from its environment."""

    database: DatabaseSettings
    redis: RedisSettings
    buffer: BufferSettings
    ai: AISettings
    channels: ChannelSettings
    webhooks: WebhookSettings
    security: SecuritySettings = SecuritySettings()
    secret_key: str = DEV_SECRET_KEY
    """`SWITCHBOARD_SECRET_KEY`: signs sessions and encrypts stored secrets. Set it in production."""
    public_url: str = ""
    """`SWITCHBOARD_PUBLIC_URL`: the base URL providers reach this server at (webhook URLs shown to
    users, channel verification); never taken from a request's Host header. `switchboard run` and
    `web` default it to the address they listen on."""
    data_dir: str = ".data"
    """`SWITCHBOARD_DATA_DIR`: where embedded PostgreSQL/Redis keep their files."""
    embedded: bool = False
    """`SWITCHBOARD_EMBEDDED`: start embedded PostgreSQL/Redis even when local ones answer (URLs set still win)."""
    host: str = "127.0.0.1"
    """`SWITCHBOARD_HOST`: the address `run` and `web` listen on (0.0.0.0 for every interface)."""
    port: int = 8000
    """`SWITCHBOARD_PORT`: the port `run` and `web` listen on."""
    worker_concurrency: int = 20
    """`SWITCHBOARD_WORKER_CONCURRENCY`: flush jobs a worker runs at once."""
    max_body_bytes: int = 1024 * 1024
    """`SWITCHBOARD_MAX_BODY_BYTES`: webhook bodies above this are refused with 413."""
    log_level: str = ""
    """`SWITCHBOARD_LOG_LEVEL`; empty: INFO for run, web and worker, WARNING for one-off commands."""
    debug: bool = False
    """`SWITCHBOARD_DEBUG`."""


def load_settings() -> Settings:
    """Read the environment now (tests call this after changing it)."""
    return Settings(
        database=DatabaseSettings(
            url=_env("DATABASE_URL", ""),
            pool_max_size=_env_int("SWITCHBOARD_DB_POOL_SIZE", 20),
        ),
        redis=RedisSettings(url=_env("REDIS_URL", "")),
        buffer=BufferSettings(
            seconds=_env_float("SWITCHBOARD_BUFFER_SECONDS", 8.0),
            max_seconds=_env_float("SWITCHBOARD_BUFFER_MAX_SECONDS", 30.0),
            lock_seconds=_env_float("SWITCHBOARD_LOCK_SECONDS", 60.0),
            poll_seconds=_env_float("SWITCHBOARD_SCHEDULER_POLL_SECONDS", 0.05),
            recovery_interval_seconds=_env_float("SWITCHBOARD_RECOVERY_INTERVAL_SECONDS", 15.0),
        ),
        ai=AISettings(
            openai_api_key=_env("OPENAI_API_KEY", ""),
            openai_base_url=_env("OPENAI_BASE_URL", ""),
            model=_env("SWITCHBOARD_LLM_MODEL", "gpt-4o-mini"),
            llm_timeout_seconds=_env_float("SWITCHBOARD_LLM_TIMEOUT_SECONDS", 20.0),
            state_ttl_seconds=_env_int("SWITCHBOARD_AI_STATE_TTL_SECONDS", 24 * 3600),
            history_turns=_env_int("SWITCHBOARD_AI_HISTORY_TURNS", 10),
            confirmation_ttl_seconds=_env_int("SWITCHBOARD_CONFIRMATION_TTL_SECONDS", 600),
            auto_execute_threshold=_env_float("SWITCHBOARD_AUTO_EXECUTE_THRESHOLD", 0.9),
            ambiguity_margin=_env_float("SWITCHBOARD_AMBIGUITY_MARGIN", 0.05),
        ),
        channels=ChannelSettings(
            whatsapp_graph_url=_env("WHATSAPP_GRAPH_URL", "https://graph.facebook.com/v21.0").rstrip("/"),
            send_timeout_seconds=_env_float("SWITCHBOARD_SEND_TIMEOUT_SECONDS", 10.0),
            send_max_retries=_env_int("SWITCHBOARD_SEND_MAX_RETRIES", 3),
            send_retry_base_seconds=_env_float("SWITCHBOARD_SEND_RETRY_BASE_SECONDS", 0.5),
            send_evidence_seconds=_env_float("SWITCHBOARD_SEND_EVIDENCE_SECONDS", 60.0),
        ),
        webhooks=WebhookSettings(
            allow_private=_env_bool("SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE", False),
            max_response_bytes=_env_int("SWITCHBOARD_WEBHOOK_MAX_RESPONSE_BYTES", 256 * 1024),
            retry_after_cap_seconds=_env_float("SWITCHBOARD_WEBHOOK_RETRY_AFTER_CAP_SECONDS", 60.0),
            rate_limit_per_minute=_env_int("SWITCHBOARD_WEBHOOK_RATE_LIMIT_PER_MINUTE", 600),
        ),
        security=SecuritySettings(
            login_max_failures=_env_int("SWITCHBOARD_LOGIN_MAX_FAILURES", 5),
            login_max_failures_per_address=_env_int("SWITCHBOARD_LOGIN_MAX_FAILURES_PER_ADDRESS", 20),
            trust_proxy=_env_bool("SWITCHBOARD_TRUST_PROXY", False),
        ),
        secret_key=_env("SWITCHBOARD_SECRET_KEY", DEV_SECRET_KEY),
        public_url=_env("SWITCHBOARD_PUBLIC_URL", "").rstrip("/"),
        data_dir=_env("SWITCHBOARD_DATA_DIR", ".data"),
        embedded=_env_bool("SWITCHBOARD_EMBEDDED", False),
        host=_env("SWITCHBOARD_HOST", "127.0.0.1"),
        port=_env_int("SWITCHBOARD_PORT", 8000),
        worker_concurrency=_env_int("SWITCHBOARD_WORKER_CONCURRENCY", 20),
        max_body_bytes=_env_int("SWITCHBOARD_MAX_BODY_BYTES", 1024 * 1024),
        log_level=_env("SWITCHBOARD_LOG_LEVEL", "").upper(),
        debug=_env_bool("SWITCHBOARD_DEBUG", False),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return load_settings()


def set_environ(name: str, value: str) -> None:
    """Publish a resolved service URL to this process and its children (embedded services)."""
    os.environ[name] = value
    get_settings.cache_clear()

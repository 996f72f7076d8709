"""Database tables: every row belongs to a workspace, and every query filters on it."""

from __future__ import annotations

import uuid

from piccolo.columns import (
    JSONB,
    UUID,
    BigInt,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.constraints import Unique
from piccolo.table import Table


def _uuid() -> uuid.UUID:
    return uuid.uuid4()


class Workspace(Table, tablename="workspaces"):
    id = UUID(primary_key=True, default=_uuid)
    name = Varchar(length=200)
    slug = Varchar(length=200, unique=True)
    llm_api_key_enc = Text(default="")
    llm_base_url = Varchar(length=500, default="")
    llm_model = Varchar(length=200, default="")
    monthly_token_quota = BigInt(default=0)  # 0 = no quota
    created_at = Timestamptz(default=TimestamptzNow())


class User(Table, tablename="users"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    email = Varchar(length=320, unique=True)
    password_hash = Text()
    created_at = Timestamptz(default=TimestamptzNow())
    # Browser sessions started before this are revoked ("log out everywhere", a password change).
    sessions_valid_after = Timestamptz(null=True, default=None)


class RevokedSession(Table, tablename="revoked_sessions"):
    """A browser session logged out before its cookie expired: its cookie no longer authenticates."""

    id = UUID(primary_key=True, default=_uuid)
    user = ForeignKey(User, null=False, index=True)
    session_id = Varchar(length=64, unique=True)
    expires_at = Timestamptz()  # when the cookie would have expired anyway (the row can go then)


class ApiToken(Table, tablename="api_tokens"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    user = ForeignKey(User, null=False)
    name = Varchar(length=200, default="")
    token_hash = Varchar(length=64, unique=True)  # sha256 hex: the token itself is never stored
    created_at = Timestamptz(default=TimestamptzNow())
    last_used_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(null=True, default=None)  # None: until revoked


class Channel(Table, tablename="channels"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False, index=True)
    kind = Varchar(length=20)  # whatsapp | generic | console
    name = Varchar(length=200)
    phone_number_id = Varchar(length=64, default="", index=True)
    # Secrets are Fernet tokens (app/services/secrets.py), never clear text.
    access_token_enc = Text(default="")
    app_secret_enc = Text(default="")
    verify_token_enc = Text(default="")
    secret_enc = Text(default="")
    created_at = Timestamptz(default=TimestamptzNow())


class Contact(Table, tablename="contacts"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    phone = Varchar(length=64)
    first_name = Varchar(length=200, default="")
    last_name = Varchar(length=200, default="")
    tags = JSONB(default=[])
    attributes = JSONB(default={})
    created_at = Timestamptz(default=TimestamptzNow())

    unique_workspace_phone = Unique(["workspace", "phone"])


class Conversation(Table, tablename="conversations"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    channel = ForeignKey(Channel, null=False)
    contact = ForeignKey(Contact, null=False)
    status = Varchar(length=40, default="open")
    tags = JSONB(default=[])
    created_at = Timestamptz(default=TimestamptzNow())
    last_message_at = Timestamptz(default=TimestamptzNow(), index=True)
    # The AI state's truth (app.services.ai_state); the `ai_control_{id}` / `ai_context_{id}`
    # Redis keys are its published copy, written again from here when Redis lost them.
    ai_enabled = Boolean(default=True)
    custom_prompt = Text(null=True, default=None)
    ai_context = JSONB(default={})
    ai_control_at = Timestamptz(null=True, default=None)  # last set; None: never, so no key is published
    # The fencing token of the turn that holds the conversation: each turn that claims a batch bumps it, and
    # every effect a turn records checks it in the same statement (app.pipeline.ledger).
    lease_epoch = BigInt(default=0)

    unique_channel_contact = Unique(["channel", "contact"])


class Message(Table, tablename="messages"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    # Indexed: every turn claims its conversation's unprocessed messages.
    conversation = ForeignKey(Conversation, null=False, index=True)
    channel = ForeignKey(Channel, null=False)
    direction = Varchar(length=3)  # in | out
    seq = BigInt(default=0)  # arrival order inside the conversation (inbound)
    provider_message_id = Varchar(length=200, null=True, default=None)
    type = Varchar(length=40, default="text")
    text = Text(default="")
    media_id = Varchar(length=200, null=True, default=None)
    payload = JSONB(default={})
    events = JSONB(default=[])  # trigger events raised by this message (contact_created, ...)
    status = Varchar(length=20, default="received")
    error = JSONB(default={})
    message_type = Varchar(length=20, default="")  # outbound: marketing | support | ai | agent
    dedupe_key = Varchar(length=200, null=True, default=None, unique=True)  # outbound effect key
    run_id = UUID(null=True, default=None)  # inbound: the run that claimed it
    # inbound: the batch it belongs to, fixed by the first run that claimed it (that run's id); a run given
    # back leaves it, so the batch runs again with exactly these members.
    batch_id = UUID(null=True, default=None)
    # Not indexed on its own: the partial index `messages_unprocessed` (conversation, seq)
    # WHERE direction = 'in' AND processed_at IS NULL (migration 2026-11-23T07:08:44) serves the
    # turn's claim and recovery; an index on processed_at alone let the planner scan every
    # unprocessed row of every conversation at each claim.
    processed_at = Timestamptz(null=True, default=None)
    status_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())

    # Duplicate deliveries hit this, so a message is stored once whatever Redis says.
    unique_channel_provider_id = Unique(["channel", "direction", "provider_message_id"])


class InvalidMessage(Table, tablename="invalid_messages"):
    """An inbound message that could not be stored (a NaN timestamp, an id longer than its column...),
    kept with its reason so the rest of its delivery is stored and the provider stops retrying."""

    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False, index=True)
    channel = ForeignKey(Channel, null=False)
    provider_message_id = Varchar(length=200, default="")  # cut to the column when it was the problem
    sender = Varchar(length=64, default="")
    status = Varchar(length=20, default="invalid")
    reason = Text()
    payload = JSONB(default={})  # the message as received (NUL characters dropped), cut to 64 KiB
    created_at = Timestamptz(default=TimestamptzNow())


class Flow(Table, tablename="flows"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    name = Varchar(length=200)
    slug = Varchar(length=200)
    description = Text(default="")
    status = Varchar(length=20, default="draft")  # draft | active | paused
    priority = Integer(default=0)
    draft = JSONB(default={})  # the document being edited
    draft_revision = Integer(default=1)
    active_version = Integer(null=True, default=None)
    latest_version = Integer(default=0)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    last_run_at = Timestamptz(null=True, default=None)


class FlowVersion(Table, tablename="flow_versions"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    flow = ForeignKey(Flow, null=False, index=True)
    version = Integer()
    document = JSONB(default={})
    created_by = Varchar(length=320, default="")
    created_at = Timestamptz(default=TimestamptzNow())

    unique_flow_version = Unique(["flow", "version"])


class Run(Table, tablename="runs"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    conversation = ForeignKey(Conversation, null=True, default=None, index=True)
    kind = Varchar(length=20, default="turn")  # turn | webhook_retry | confirmation | tester
    status = Varchar(length=20, default="running")
    layer = Varchar(length=40, null=True, default=None)
    flows = JSONB(default=[])  # [{"flow_id", "version"}]
    message_ids = JSONB(default=[])
    trace = JSONB(default=[])
    warnings = JSONB(default=[])
    result = JSONB(default={})
    error = Text(null=True, default=None)
    job_id = Varchar(length=200, default="")
    epoch = BigInt(null=True, default=None)  # turn: its conversation's lease_epoch when it claimed its batch
    started_at = Timestamptz(default=TimestamptzNow(), index=True)
    heartbeat_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)


class ActionExecution(Table, tablename="action_executions"):
    """One run of an external action (DESIGN "External action runs")."""

    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    flow_id = UUID()
    flow_version = Integer(default=0)
    node_id = Varchar(length=100)  # the intent trigger or call_webhook node
    webhook_node_id = Varchar(length=100, default="")
    conversation = ForeignKey(Conversation, null=True, default=None, index=True)
    run_id = UUID(null=True, default=None)
    # Not indexed: every query by status is also by id or by conversation (indexed), and an index on
    # it would make each status change write every index of the row (no HOT update).
    status = Varchar(length=30, default="pending")
    kind = Varchar(length=30, default="")  # confirmation | missing_variables | webhook
    vars = JSONB(default={})
    missing = JSONB(default=[])
    asked_count = Integer(default=0)
    confidence = Float(null=True, default=None)
    original_message = Text(default="")
    phone = Varchar(length=64, default="")
    idempotency_key = Varchar(length=100, default="")
    attempts = Integer(default=0)
    state = JSONB(default={})  # what a resumed chain needs (turn snapshot, names)
    last_error = Text(null=True, default=None)
    dead_letter = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz(null=True, default=None)


class ActionLog(Table, tablename="external_action_logs"):
    """One HTTP attempt of a call_webhook execution."""

    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    execution = ForeignKey(ActionExecution, null=True, default=None)
    flow_id = UUID(index=True)
    node_id = Varchar(length=100)
    conversation_id = UUID(null=True, default=None)
    phone = Varchar(length=64, default="")
    original_message = Text(default="")
    confidence = Float(null=True, default=None)
    request = JSONB(default={})  # method, url, headers and payload as sent, secrets masked
    status_code = Integer(null=True, default=None)
    response_body = Text(default="")
    status = Varchar(length=20, default="pending")  # pending | success | failed | timeout
    error = Text(null=True, default=None)
    duration_ms = Float(default=0.0)
    retry_count = Integer(default=0)
    test = Boolean(default=False)  # sent by the tester (execute=true), not by a customer's message
    created_at = Timestamptz(default=TimestamptzNow(), index=True)


class ActionStats(Table, tablename="action_stats"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    flow_id = UUID()
    node_id = Varchar(length=100)
    executions = BigInt(default=0)
    successes = BigInt(default=0)
    failures = BigInt(default=0)
    total_duration_ms = Float(default=0.0)
    last_executed_at = Timestamptz(null=True, default=None)

    unique_action = Unique(["workspace", "flow_id", "node_id"])


class Secret(Table, tablename="secrets"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    name = Varchar(length=200, default="")
    value_enc = Text()
    created_at = Timestamptz(default=TimestamptzNow())


class IntentCorrection(Table, tablename="intent_corrections"):
    """A person said which action a message should have matched (or none): it became training data."""

    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False, index=True)
    flow = ForeignKey(Flow, null=False)
    node_id = Varchar(length=100)  # the intent trigger whose examples (or negatives) grew
    kind = Varchar(length=20)  # example | negative
    text = Text()
    run_id = UUID(null=True, default=None)  # the run it corrects, when it came from the logs
    matched_node_id = Varchar(length=100, null=True, default=None)  # what the engine had chosen
    draft_revision = Integer(default=0)  # the flow's draft revision the correction produced
    created_by = Varchar(length=320, default="")
    created_at = Timestamptz(default=TimestamptzNow())


class Personality(Table, tablename="personalities"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    intent = Varchar(length=40)
    system_prompt = Text(default="")
    fallback_text = Text(default="")
    updated_at = Timestamptz(default=TimestamptzNow())

    unique_workspace_intent = Unique(["workspace", "intent"])


class UsageCounter(Table, tablename="usage_counters"):
    id = UUID(primary_key=True, default=_uuid)
    workspace = ForeignKey(Workspace, null=False)
    month = Varchar(length=7)  # YYYY-MM
    llm_calls = BigInt(default=0)
    prompt_tokens = BigInt(default=0)
    completion_tokens = BigInt(default=0)
    local_calls = BigInt(default=0)

    unique_workspace_month = Unique(["workspace", "month"])


TABLES: list[type[Table]] = [
    Workspace,
    User,
    RevokedSession,
    ApiToken,
    Channel,
    Contact,
    Conversation,
    Message,
    InvalidMessage,
    Flow,
    FlowVersion,
    Run,
    ActionExecution,
    ActionLog,
    ActionStats,
    Secret,
    Personality,
    UsageCounter,
    IntentCorrection,
]

__all__ = [t.__name__ for t in TABLES] + ["TABLES"]

"""The `switchboard` command: run, web, worker, migrate, admin, token, flows, eval-intents."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import getpass
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from app import __version__
from app.services import embedded

log = logging.getLogger("switchboard")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Ctrl-C, `kill`/systemd/`docker stop`, and a closed terminal: each stops everything this process started."""


class Interrupted(BaseException):
    """A stop signal arrived: unwind (stopping what this process started) instead of dying on the spot."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def _install_stop_signals() -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _raise_interrupted)


class UsageError(Exception):
    """A bad option or an unusable address; the message says what to do instead."""


def _bootstrap(args: argparse.Namespace, *, log_level: str = "WARNING") -> embedded.Services:
    """Pick PostgreSQL and Redis (configured, shared, local or embedded), publish them, migrate."""
    from app.db import engine
    from app.logs import configure_logging
    from app.settings import DEV_SECRET_KEY, get_settings, set_environ

    settings = get_settings()
    configure_logging(settings.log_level or log_level)
    if settings.secret_key == DEV_SECRET_KEY:
        log.warning(
            "SWITCHBOARD_SECRET_KEY is the development default: set your own before real use "
            "(it encrypts channel secrets and signs sessions; keep it, or stored secrets become unreadable)"
        )
    services = embedded.resolve_services(
        data_dir=settings.data_dir,
        database_url=settings.database.url,
        redis_url=settings.redis.url,
        force_embedded=settings.embedded,
    )
    args.cleanup.callback(services.close)
    set_environ("DATABASE_URL", services.database_url)
    set_environ("REDIS_URL", services.redis_url)
    asyncio.run(embedded.ensure_database(services.database_url, origin=services.origins["postgres"]))
    embedded.check_redis(services.redis_url, origin=services.origins["redis"])
    asyncio.run(engine.migrate())
    log.info(
        "services ready",
        extra={
            "database": embedded.redact(services.database_url),
            "redis": embedded.redact(services.redis_url),
            "embedded": services.embedded,
            "started_here": services.started,
        },
    )
    return services


def _with_db(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run a coroutine with the database pool and Redis open."""

    def runner(*args: Any, **kwargs: Any) -> Any:
        async def main() -> Any:
            from app.roots import cli_services

            async with cli_services():
                return await fn(*args, **kwargs)

        return asyncio.run(main())

    return runner


def cmd_run(args: argparse.Namespace) -> int:
    return _serve(args, with_worker=True)


def cmd_web(args: argparse.Namespace) -> int:
    return _serve(args, with_worker=False)


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket first: a busy port is reported before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(
            f"--host {host}: not an address of this machine ({exc}); use 127.0.0.1 (this machine only) "
            "or 0.0.0.0 (every interface), or set SWITCHBOARD_HOST"
        ) from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is in use (another Switchboard, or another program): choose another "
                f"with --port {port + 1} or SWITCHBOARD_PORT={port + 1}"
            ) from exc
        if exc.errno == errno.EACCES:
            raise UsageError(
                f"port {port} needs more privileges than this account has: use a port above 1023, "
                "e.g. --port 8000 or SWITCHBOARD_PORT=8000"
            ) from exc
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}; use --host 127.0.0.1 or 0.0.0.0 "
            "(SWITCHBOARD_HOST) and another --port (SWITCHBOARD_PORT)"
        ) from exc
    return sock


def _serve(args: argparse.Namespace, *, with_worker: bool) -> int:
    import uvicorn

    from app.asgi import create_app
    from app.settings import get_settings, set_environ

    sock = _listen(args.host, args.port)
    args.cleanup.callback(sock.close)
    services = _bootstrap(args, log_level="INFO")
    concurrency = getattr(args, "concurrency", 0)
    host = f"[{args.host}]" if ":" in args.host else args.host
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else host
    if not get_settings().public_url:  # webhook URLs and channel checks use the address we listen on
        set_environ("SWITCHBOARD_PUBLIC_URL", f"http://{shown}:{args.port}")
    app = create_app(with_worker=with_worker, worker_concurrency=concurrency or 1)
    ready = (
        f"Switchboard on http://{shown}:{args.port} (API docs at /schema) · {services.summary()} · "
        "stop with Ctrl-C\n"
    )

    async def announce() -> None:
        # After start-up, so nothing is announced for a server that then fails to start.
        sys.stderr.write(ready)
        sys.stderr.flush()

    app.on_startup.append(announce)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
        # X-Forwarded-* are believed only when the operator says a proxy sets them.
        proxy_headers=get_settings().security.trust_proxy,
    )
    server = uvicorn.Server(config)
    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises them again (our handler unwinds);
    # a closed terminal (SIGHUP) gets the same graceful stop.
    hung_up: list[int] = []

    def hang_up(signum: int, frame: Any) -> None:
        hung_up.append(signum)
        server.handle_exit(signum, frame)

    previous = signal.signal(signal.SIGHUP, hang_up)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGHUP, previous)
    if hung_up:
        raise Interrupted(signal.SIGHUP)
    if not server.started:
        sys.stderr.write("error: the server did not start; the lines above say why\n")
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.roots import run_worker

    services = _bootstrap(args, log_level="INFO")
    sys.stderr.write(f"Switchboard worker · {services.summary()} · stop with Ctrl-C\n")
    try:
        stopped_by = _run_loop(run_worker(concurrency=args.concurrency, stop_signals=STOP_SIGNALS))
    finally:
        _install_stop_signals()  # the loop's handlers are gone; ours cover the clean-up
    if stopped_by is not None:
        raise Interrupted(stopped_by)
    return 0


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run, on uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cmd_migrate(args: argparse.Namespace) -> int:
    _bootstrap(args)
    sys.stdout.write("database is up to date\n")
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    from app.services import auth

    _bootstrap(args)
    password = args.password or getpass.getpass("Password: ")
    try:
        principal = _with_db(auth.create_admin)(email=args.email, password=password, workspace=args.workspace)
    except auth.AuthError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"created {principal.email} in workspace {principal.workspace_name!r}\n")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from app.services import auth

    _bootstrap(args)
    try:
        token = _with_db(auth.create_token)(email=args.email, name=args.name, expires_days=args.expires_days)
    except auth.AuthError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(token + "\n")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from app.services import auth

    _bootstrap(args)
    try:
        tokens = _with_db(auth.list_tokens_by_email)(args.email)
    except auth.AuthError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for t in tokens:
        expires = "expired" if t.expired else (t.expires_at or "never")
        sys.stdout.write(
            f"{t.id}\t{t.name}\tcreated {t.created_at}\tlast used {t.last_used_at or 'never'}\texpires {expires}\n"
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from app.services import auth

    _bootstrap(args)
    try:
        revoked = _with_db(auth.revoke_token_by_email)(args.email, args.id)
    except auth.AuthError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if not revoked:
        sys.stderr.write(
            f"error: {args.email} has no token {args.id}; `switchboard token list --email {args.email}` lists them\n"
        )
        return 2
    sys.stdout.write(f"revoked {args.id}\n")
    return 0


async def _workspace_for(email: str | None) -> tuple[str, str]:
    from app.db.tables import User, Workspace

    if email:
        row = await User.select(User.workspace, User.email).where(User.email == email.strip().lower()).first()
        if row is None:
            raise SystemExit(f"error: no user with email {email}")
        return str(row["workspace"]), row["email"]
    rows = await Workspace.select(Workspace.id).limit(2)
    if len(rows) != 1:
        raise SystemExit("error: there is not exactly one workspace; say which with --email")
    return str(rows[0]["id"]), "cli"


def cmd_flows_export(args: argparse.Namespace) -> int:
    from app.services import flows_store
    from flows.schema import encode_document

    _bootstrap(args)

    async def main() -> list[str]:
        workspace_id, _ = await _workspace_for(args.email)
        out = Path(args.dir)
        out.mkdir(parents=True, exist_ok=True)
        written, used = [], set()
        for flow in await flows_store.list_flows(workspace_id):
            doc = await flows_store.export_flow(workspace_id, flow.id)
            slug = flows_store.slugify(doc.name)
            name, n = slug, 2
            while name in used:
                name, n = f"{slug}-{n}", n + 1
            used.add(name)
            path = out / f"{name}.flow.json"
            path.write_bytes(encode_document(doc))
            written.append(str(path))
        return written

    for path in _with_db(main)():
        sys.stdout.write(path + "\n")
    return 0


def _ask_on_existing(result: Any) -> Any:
    """On a terminal: replace, keep both (the copy paused), or quit. None means quit."""
    from app.services.flows_store import OnExisting

    sys.stderr.write(f"{result.conflict_message()}.\n")
    for _ in range(3):
        sys.stderr.write(
            "[r]eplace (the existing flow takes the file as its next version), keep both as a paused "
            "[c]opy, or [q]uit without importing? "
        )
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer in ("r", "replace"):
            return OnExisting.REPLACE
        if answer in ("c", "copy"):
            return OnExisting.COPY
        if answer in ("q", "quit", ""):
            return None
    return None


def cmd_flows_import(args: argparse.Namespace) -> int:
    import msgspec

    from app.services import flows_store

    _bootstrap(args)
    documents, names = [], []
    for file in args.files:
        try:
            documents.append(msgspec.json.decode(Path(file).read_bytes()))
        except (OSError, msgspec.DecodeError) as exc:
            sys.stderr.write(f"error: {file}: {exc}\n")
            return 2
        names.append(file)
    secret_values = dict(item.split("=", 1) for item in args.secret or [])
    on_existing = (
        flows_store.OnExisting.REPLACE if args.replace else flows_store.OnExisting.COPY if args.copy else None
    )
    interactive = sys.stdin.isatty()

    async def main() -> Any:
        workspace_id, author = await _workspace_for(args.email)
        refs: set[str] = set()
        for doc in documents:
            if isinstance(doc, dict):
                refs.update(await flows_store.missing_secret_refs(workspace_id, doc))
        for ref in sorted(refs - set(secret_values)):
            if interactive:
                secret_values[ref] = getpass.getpass(f"Value for {ref} (empty to skip): ")
        secret_values_clean = {k: v for k, v in secret_values.items() if v}
        result = await flows_store.import_flows(
            workspace_id, documents, author=author, secret_values=secret_values_clean, on_existing=on_existing
        )
        if result.conflicts and interactive:
            choice = _ask_on_existing(result)
            if choice is not None:
                result = await flows_store.import_flows(
                    workspace_id,
                    documents,
                    author=author,
                    secret_values=secret_values_clean,
                    on_existing=choice,
                )
        return result

    result = _with_db(main)()
    if result.errors:
        for item in result.errors:
            for error in item["errors"]:
                where = " ".join(f"{k}={error[k]}" for k in ("node_id", "field") if error.get(k))
                sys.stderr.write(f"error: {names[item['index']]}: {where}: {error['message']}\n")
        sys.stderr.write("nothing was imported\n")
        return 1
    if result.conflicts:
        if interactive:
            sys.stderr.write("nothing was imported\n")
            return 1
        sys.stderr.write(
            f"error: {result.conflict_message()}. Nothing was imported: choose with --replace (the existing "
            "flow takes the file as its next version) or --copy (keep both; the copy is paused)\n"
        )
        return 2
    for outcome in result.outcomes:
        what = {
            "created": "created",
            "replaced": "replaced (its previous version stays in the history)",
            "copied": f"kept both: the copy “{outcome['name']}” is paused",
        }[outcome["action"]]
        sys.stdout.write(f"{names[outcome['index']]} -> {outcome['id']} {what}\n")
    for flow_id in result.paused:
        sys.stdout.write(f"paused {flow_id}: another active flow of a replaced name\n")
    for ref in result.missing_secrets:
        sys.stderr.write(f"warning: {ref} has no value here; set the webhook's auth secret in the editor\n")
    return 0


def cmd_eval_intents(args: argparse.Namespace) -> int:
    import msgspec

    from app.services.ai import evaluate

    train = evaluate.load_labeled(args.train)
    test = evaluate.load_labeled(args.test)
    if args.engine != "llm":
        report = evaluate.evaluate(train, test, shots=args.shots, seed=args.seed, engine=args.engine)
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n")
        return 0
    from app.services.ai import llm
    from app.settings import get_settings

    ai = get_settings().ai
    if not ai.openai_api_key:
        sys.stderr.write(
            "error: --engine llm needs OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI server)\n"
        )
        return 2
    client = llm.LLMClient(timeout_s=ai.llm_timeout_seconds)
    config = llm.LLMConfig(api_key=ai.openai_api_key, base_url=ai.openai_base_url, model=ai.model)
    engines: list[llm.EvalLLMEngine] = []

    def factory(specs):
        engines.append(llm.EvalLLMEngine(specs, client=client, config=config))
        return engines[-1]

    try:
        report = evaluate.evaluate(
            train, test, shots=args.shots, seed=args.seed, engine=llm.ENGINE_LLM, engine_factory=factory
        )
    finally:
        for engine in engines:
            engine.close()
    out = msgspec.to_builtins(report)
    out["llm"] = {
        "model": ai.model,
        "failed_calls": sum(e.failures for e in engines),
        "prompt_tokens": sum(e.usage.prompt_tokens for e in engines),
        "completion_tokens": sum(e.usage.completion_tokens for e in engines),
    }
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(out), indent=2).decode() + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from app.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Flow builder for AI chat automation. Settings come from the environment (README: Settings).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def serve_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--host",
            default=settings.host,
            help="address to listen on: 127.0.0.1 for this machine only, 0.0.0.0 for every interface "
            f"(env SWITCHBOARD_HOST; now {settings.host})",
        )
        p.add_argument(
            "--port",
            type=int,
            default=settings.port,
            help=f"port to listen on (env SWITCHBOARD_PORT; now {settings.port})",
        )

    def concurrency_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--concurrency",
            type=int,
            default=settings.worker_concurrency,
            help="flush jobs the worker runs at once "
            f"(env SWITCHBOARD_WORKER_CONCURRENCY; now {settings.worker_concurrency})",
        )

    p = sub.add_parser(
        "run",
        help="web + worker in one process: finds or starts PostgreSQL and Redis, migrates, serves",
        description="Web + worker in one process. PostgreSQL and Redis: DATABASE_URL / REDIS_URL, else a "
        "running server's embedded ones, else 127.0.0.1:5432 / 127.0.0.1:6379, else embedded ones under "
        "SWITCHBOARD_DATA_DIR (.data). Stops cleanly on Ctrl-C, SIGTERM and SIGHUP.",
    )
    serve_options(p)
    concurrency_option(p)
    p.set_defaults(func=cmd_run, serves=True)
    p = sub.add_parser("web", help="the web process only (run workers with `switchboard worker`)")
    serve_options(p)
    p.set_defaults(func=cmd_web, serves=True)
    p = sub.add_parser("worker", help="a SAQ worker (run several for more throughput)")
    concurrency_option(p)
    p.set_defaults(func=cmd_worker, serves=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    admin = sub.add_parser("admin", help="users").add_subparsers(dest="admin_command", required=True)
    p = admin.add_parser(
        "create", help="create a user (and its workspace); a new server's first-run page does this too"
    )
    p.add_argument("--email", required=True, help="the user's email, used to log in")
    p.add_argument(
        "--password", help="at least 8 characters; asked for when omitted (keeps it out of history)"
    )
    p.add_argument(
        "--workspace", required=True, help="workspace name; an existing one of that name is joined"
    )
    p.set_defaults(func=cmd_admin_create)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    p = token.add_parser("create", help="print a new API token for a user (shown once)")
    p.add_argument("--email", required=True, help="the user the token acts as")
    p.add_argument("--name", default="cli", help="a label to recognise the token by (default: cli)")
    p.add_argument(
        "--expires-days", type=int, default=None, help="days until it stops working (default: never)"
    )
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("list", help="a user's tokens: id, name, created, last used, expiry")
    p.add_argument("--email", required=True, help="the user whose tokens to list")
    p.set_defaults(func=cmd_token_list)
    p = token.add_parser("revoke", help="revoke one of a user's tokens at once")
    p.add_argument("--email", required=True, help="the user the token belongs to")
    p.add_argument("id", help="the token's id, from `token list`")
    p.set_defaults(func=cmd_token_revoke)

    flows = sub.add_parser("flows", help="export and import flow documents").add_subparsers(
        dest="flows_command", required=True
    )
    p = flows.add_parser("export", help="write one <slug>.flow.json per flow")
    p.add_argument("dir", help="folder to write into (created when missing)")
    p.add_argument("--email", help="the user whose workspace to export (default: the only workspace)")
    p.set_defaults(func=cmd_flows_export)
    p = flows.add_parser(
        "import",
        help="create flows from .flow.json files (all or nothing)",
        description="Create flows from .flow.json files; nothing is created unless every file is valid. "
        "When a flow of the same name exists, asks on a terminal; elsewhere --replace or --copy decides.",
    )
    p.add_argument("files", nargs="+", help=".flow.json files (from `flows export` or the editor)")
    p.add_argument("--email", help="the user whose workspace to import into (default: the only workspace)")
    p.add_argument(
        "--secret",
        action="append",
        metavar="REF=VALUE",
        help="value for a secret reference of the export (asked for on a terminal otherwise)",
    )
    choice = p.add_mutually_exclusive_group()
    choice.add_argument(
        "--replace",
        action="store_true",
        help="a flow of the same name takes the file as its next version (older versions stay)",
    )
    choice.add_argument(
        "--copy", action="store_true", help="keep both: the file becomes a paused copy named “<name> (copy)”"
    )
    p.set_defaults(func=cmd_flows_import)

    p = sub.add_parser("eval-intents", help="measure intent detection on a labelled data set (prints JSON)")
    p.add_argument("--train", required=True, help='JSON lines {"text", "intent"}, or a CSV text,category')
    p.add_argument("--test", required=True, help="the same format, scored against the trained examples")
    p.add_argument("--shots", type=int, default=None, help="examples per intent (default: all)")
    p.add_argument(
        "--engine",
        choices=["local", "llm"],
        default="local",
        help="local: the offline engine; llm: the LLM (env OPENAI_API_KEY, OPENAI_BASE_URL, SWITCHBOARD_LLM_MODEL)",
    )
    p.add_argument("--seed", type=int, default=1, help="seed for picking the --shots examples (default: 1)")
    p.set_defaults(func=cmd_eval_intents)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _install_stop_signals()
    args.cleanup = contextlib.ExitStack()
    try:
        try:
            return int(args.func(args) or 0)
        finally:
            # A second signal must not cut the clean-up short (stopping embedded services).
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            args.cleanup.close()
    except embedded.ServiceError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        if getattr(args, "serves", False):
            log.info("stopped", extra={"signal": name})
            return 0
        sys.stderr.write(f"interrupted by {name}\n")
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())

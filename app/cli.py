"""The `switchboard` command: run, web, worker, migrate, admin, token, flows, eval-intents."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

log = logging.getLogger("switchboard")


def _bootstrap() -> None:
    """Pick PostgreSQL and Redis (configured, local or embedded), publish them, migrate."""
    from app.db import engine
    from app.logs import configure_logging
    from app.services import embedded
    from app.settings import DEV_SECRET_KEY, get_settings, set_environ

    settings = get_settings()
    configure_logging(settings.log_level)
    if settings.secret_key == DEV_SECRET_KEY:
        log.warning(
            "SWITCHBOARD_SECRET_KEY is the development default: set your own before real use "
            "(it encrypts channel secrets and signs sessions; keep it, or stored secrets become unreadable)"
        )
    services = embedded.resolve_services(
        data_dir=settings.data_dir, database_url=settings.database.url, redis_url=settings.redis.url
    )
    set_environ("DATABASE_URL", services.database_url)
    set_environ("REDIS_URL", services.redis_url)
    asyncio.run(embedded.ensure_database(services.database_url))
    asyncio.run(engine.migrate())
    log.info(
        "services ready",
        extra={
            "database": _redact(services.database_url),
            "redis": services.redis_url,
            "embedded": services.started,
        },
    )


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


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
    _bootstrap()
    return _serve(args, with_worker=True)


def cmd_web(args: argparse.Namespace) -> int:
    _bootstrap()
    return _serve(args, with_worker=False)


def _serve(args: argparse.Namespace, *, with_worker: bool) -> int:
    import uvicorn

    from app.asgi import create_app
    from app.settings import get_settings, set_environ

    if not get_settings().public_url:  # webhook URLs and channel checks use the address we listen on
        set_environ("SWITCHBOARD_PUBLIC_URL", f"http://{args.host}:{args.port}")
    app = create_app(with_worker=with_worker, worker_concurrency=args.concurrency)
    sys.stderr.write(f"Switchboard on http://{args.host}:{args.port} (API docs at /schema)\n")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        # X-Forwarded-* are believed only when the operator says a proxy sets them.
        proxy_headers=get_settings().security.trust_proxy,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    _bootstrap()

    from app.roots import run_worker

    _run_loop(run_worker(concurrency=args.concurrency))
    return 0


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run, on uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def cmd_migrate(args: argparse.Namespace) -> int:
    _bootstrap()
    sys.stdout.write("database is up to date\n")
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    from app.services import auth

    _bootstrap()
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

    _bootstrap()
    try:
        token = _with_db(auth.create_token)(email=args.email, name=args.name, expires_days=args.expires_days)
    except auth.AuthError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(token + "\n")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from app.services import auth

    _bootstrap()
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

    _bootstrap()
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

    _bootstrap()

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


def cmd_flows_import(args: argparse.Namespace) -> int:
    import msgspec

    from app.services import flows_store

    _bootstrap()
    documents, names = [], []
    for file in args.files:
        try:
            documents.append(msgspec.json.decode(Path(file).read_bytes()))
        except (OSError, msgspec.DecodeError) as exc:
            sys.stderr.write(f"error: {file}: {exc}\n")
            return 2
        names.append(file)
    secret_values = dict(item.split("=", 1) for item in args.secret or [])

    async def main() -> Any:
        workspace_id, author = await _workspace_for(args.email)
        refs: set[str] = set()
        for doc in documents:
            if isinstance(doc, dict):
                refs.update(await flows_store.missing_secret_refs(workspace_id, doc))
        for ref in sorted(refs - set(secret_values)):
            if sys.stdin.isatty():
                secret_values[ref] = getpass.getpass(f"Value for {ref} (empty to skip): ")
        secret_values_clean = {k: v for k, v in secret_values.items() if v}
        return await flows_store.import_flows(
            workspace_id, documents, author=author, secret_values=secret_values_clean
        )

    result = _with_db(main)()
    if result.errors:
        for item in result.errors:
            for error in item["errors"]:
                where = " ".join(f"{k}={error[k]}" for k in ("node_id", "field") if error.get(k))
                sys.stderr.write(f"error: {names[item['index']]}: {where}: {error['message']}\n")
        sys.stderr.write("nothing was imported\n")
        return 1
    for name, flow_id in zip(names, result.created):
        sys.stdout.write(f"{name} -> {flow_id}\n")
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
    parser = argparse.ArgumentParser(prog="switchboard", description="Flow builder for AI chat automation.")
    sub = parser.add_subparsers(dest="command", required=True)

    def serve_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default=os.environ.get("SWITCHBOARD_HOST", "127.0.0.1"))
        p.add_argument("--port", type=int, default=int(os.environ.get("SWITCHBOARD_PORT", "8000")))
        p.add_argument("--concurrency", type=int, default=20, help="flush jobs run at once by the worker")

    p = sub.add_parser(
        "run", help="web + worker in one process (migrations applied, services found or started)"
    )
    serve_options(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("web", help="the web process only")
    serve_options(p)
    p.set_defaults(func=cmd_web)
    p = sub.add_parser("worker", help="a SAQ worker (run several for more throughput)")
    p.add_argument("--concurrency", type=int, default=20)
    p.set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    admin = sub.add_parser("admin", help="users").add_subparsers(dest="admin_command", required=True)
    p = admin.add_parser("create", help="create a user (and its workspace)")
    p.add_argument("--email", required=True)
    p.add_argument("--password", help="asked for when omitted")
    p.add_argument("--workspace", required=True)
    p.set_defaults(func=cmd_admin_create)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="token_command", required=True)
    p = token.add_parser("create", help="print a new API token for a user")
    p.add_argument("--email", required=True)
    p.add_argument("--name", default="cli")
    p.add_argument(
        "--expires-days", type=int, default=None, help="days until it stops working (default: never)"
    )
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("list", help="a user's tokens: id, name, created, last used, expiry")
    p.add_argument("--email", required=True)
    p.set_defaults(func=cmd_token_list)
    p = token.add_parser("revoke", help="revoke one of a user's tokens at once")
    p.add_argument("--email", required=True)
    p.add_argument("id", help="the token's id, from `token list`")
    p.set_defaults(func=cmd_token_revoke)

    flows = sub.add_parser("flows", help="export and import flow documents").add_subparsers(
        dest="flows_command", required=True
    )
    p = flows.add_parser("export", help="write one <slug>.flow.json per flow")
    p.add_argument("dir")
    p.add_argument("--email", help="the user whose workspace to export (default: the only workspace)")
    p.set_defaults(func=cmd_flows_export)
    p = flows.add_parser("import", help="create flows from .flow.json files (all or nothing)")
    p.add_argument("files", nargs="+")
    p.add_argument("--email", help="the user whose workspace to import into (default: the only workspace)")
    p.add_argument(
        "--secret",
        action="append",
        metavar="REF=VALUE",
        help="value for a secret reference of the export (asked for on a terminal otherwise)",
    )
    p.set_defaults(func=cmd_flows_import)

    p = sub.add_parser("eval-intents", help="measure intent detection on a labelled data set (prints JSON)")
    p.add_argument("--train", required=True, help='JSON lines {"text", "intent"}, or a CSV text,category')
    p.add_argument("--test", required=True)
    p.add_argument("--shots", type=int, default=None, help="examples per intent (default: all)")
    p.add_argument("--engine", choices=["local", "llm"], default="local")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_eval_intents)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

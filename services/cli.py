"""The ``newswatch`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from newswatch import __version__
from newswatch.shared.config import Config, check_email, load_config
from newswatch.shared.errors import ConfigError, NewswatchError
from newswatch.shared.logs import setup_logging
from newswatch.shared.runtime import Shutdown, stop_event_on_signals

if TYPE_CHECKING:
    from newswatch.matcher.topics import Compiler

log = logging.getLogger("newswatch.cli")
EXIT_ERROR = 1
EXIT_CONFIG = 2

ServiceRun = Callable[[Config, int, threading.Event], None]


def _service_runner(name: str) -> ServiceRun:
    if name == "fetcher":
        from newswatch.fetcher.service import run as fetcher_run

        return fetcher_run
    if name == "matcher":
        from newswatch.matcher.service import run as matcher_run

        return matcher_run
    from newswatch.notifier.service import run as notifier_run

    return notifier_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="newswatch",
        description="Watch news feeds for what matters and alert the right people, once, with the reason.",
    )
    parser.add_argument("--version", action="version", version=f"newswatch {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("NEWSWATCH_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", type=Path, help="YAML config file (default: $NEWSWATCH_CONFIG)")

    broker = sub.add_parser("broker", help="run the embedded Kafka-protocol broker (memory only)")
    broker.add_argument("--port", type=int, default=9092, help="port on 127.0.0.1 (default 9092)")

    for name, what in (
        ("fetcher", "poll feeds and publish new items to newswatch.items"),
        ("matcher", "match items against topics and publish to newswatch.matches"),
        ("notifier", "deliver matches to subscriptions and publish to newswatch.alerts"),
    ):
        p = sub.add_parser(name, help=f"run the {name} service: {what}")
        config_arg(p)
        p.add_argument(
            "--http-port", type=int, help="port for /metrics, /healthz, /readyz (default from config)"
        )

    up = sub.add_parser("up", help="run the whole pipeline: embedded broker (unless configured) + 3 services")
    config_arg(up)
    up.add_argument("--broker-port", type=int, help="embedded broker port (default 9092, or a free one)")

    demo = sub.add_parser("demo", help="run `up` with local demo feeds and print alerts here")
    demo.add_argument("--broker-port", type=int, help="embedded broker port (default 9092, or a free one)")
    demo.add_argument(
        "--workdir", type=Path, default=Path(".newswatch/demo"), help="wiped and reused per run"
    )

    demo_feeds = sub.add_parser(
        "demo-feeds", help="serve only the demo feeds and print the alerts POSTed back (containers)"
    )
    demo_feeds.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    demo_feeds.add_argument("--port", type=int, default=8080, help="feed server port (default 8080)")
    demo_feeds.add_argument("--hook-port", type=int, default=9000, help="alert receiver port (default 9000)")
    demo_feeds.add_argument(
        "--public-url", help="the feeds' base URL as the fetcher sees it, e.g. http://demo:8080"
    )

    feeds = sub.add_parser("feeds", help="change the running fetchers' feed list; import/export OPML")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    for action, what in (
        ("add", "poll these feeds from now on"),
        ("remove", "stop polling these feeds (overrides the config file)"),
        ("pause", "stop polling these feeds until `resume`"),
        ("resume", "poll paused feeds again"),
    ):
        p = feeds_sub.add_parser(action, help=what)
        p.add_argument("urls", nargs="+", metavar="URL")
        if action in ("add", "resume"):
            p.add_argument("--interval", help="fixed poll interval such as 10m (default: adaptive)")
    imp = feeds_sub.add_parser("import", help="add every feed of an OPML file")
    imp.add_argument("file", type=Path)
    imp.add_argument("--interval", help="fixed poll interval such as 10m (default: adaptive)")
    exp = feeds_sub.add_parser("export", help="write the effective feed list as OPML")
    exp.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    feeds_sub.add_parser("list", help="show the effective feed list and runtime changes")
    for p in (feeds, *feeds_sub.choices.values()):
        config_arg(p)
        p.add_argument("--bootstrap", help="broker host:port (default: config, env, or the running `up`)")

    apply = sub.add_parser(
        "apply", help="load a YAML file's topics and subscriptions through the notifier's API (admin token)"
    )
    apply.add_argument(
        "-f", "--file", type=Path, required=True, help="YAML file with `topics:` (and `subscriptions:`)"
    )
    config_arg(apply)
    apply.add_argument("--bootstrap", help="broker host:port (default: config, env, or the running `up`)")
    apply.add_argument(
        "--backfill",
        metavar="DURATION",
        help="also deliver the topics' matches among items of the last DURATION (e.g. 24h), once",
    )
    apply.add_argument(
        "--server",
        help="notifier API URL (default $NEWSWATCH_API_URL, else the `up` running here)",
    )
    apply.add_argument("--token", help="API bearer token, admin (default $NEWSWATCH_API_TOKEN)")
    apply.add_argument(
        "--direct",
        action="store_true",
        help="publish the topics straight to Kafka, past the API's ownership rules (operators only)",
    )

    tokens = sub.add_parser("tokens", help="manage API bearer tokens (in the notifier's database)")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = tokens_sub.add_parser("create", help="create a token for an owner and print it (shown once)")
    create.add_argument(
        "--owner", required=True, help="who the token acts as (sees only their subscriptions)"
    )
    create.add_argument("--name", default="", help="a label, e.g. the client it is for")
    create.add_argument(
        "--role",
        choices=("admin", "subscriber"),
        default="subscriber",
        help="admin: topics, backfills, apply, tokens; subscriber: own subscriptions (default)",
    )
    create.add_argument("--expires", metavar="DURATION", help="e.g. 90d (default: never)")
    create.add_argument(
        "--email", help="the holder's address: the web app may mail it a sign-in link (instead of the token)"
    )
    listing = tokens_sub.add_parser("list", help="list tokens: id, owner, role, last use (never the token)")
    listing.add_argument("--owner", help="only this owner's")
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by its id (see `tokens list`)")
    revoke.add_argument("token_id")
    for p in (create, listing, revoke):
        config_arg(p)

    migrate = sub.add_parser(
        "migrate", help="apply the databases' schema migrations now (the services also do at start-up)"
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: report the versions, exit 1 if any step is pending",
    )
    config_arg(migrate)

    topics = sub.add_parser("topics", help="try a query on recent news before creating a topic")
    topics_sub = topics.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    test = topics_sub.add_parser("test", help="show which recent items a query matches, and why")
    test.add_argument("query", help="the query, e.g. '\"North Korea\" NEAR/5 troops'")
    test.add_argument(
        "--since", default="7d", help="how far back to look (default 7d; items on newswatch.items)"
    )
    test.add_argument("--limit", type=int, default=20, help="hits to show (default 20)")
    config_arg(test)
    test.add_argument("--bootstrap", help="broker host:port (default: config, env, or the running `up`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: str = args.command
    service = command if command in ("fetcher", "matcher", "notifier", "broker") else "newswatch"
    setup_logging(service, args.log_level)
    try:
        return _dispatch(command, args)
    except ConfigError as exc:
        print(f"newswatch {command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except NewswatchError as exc:
        log.error("%s failed: %s", command, exc)
        print(f"newswatch {command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _dispatch(command: str, args: argparse.Namespace) -> int:
    if command == "broker":
        return _broker(args.port)
    if command == "apply":
        if args.direct:
            print(
                "warning: --direct publishes topics to Kafka past the API's ownership rules, "
                "and a backfill alerts every subscriber of the topics",
                file=sys.stderr,
            )
            return _apply(args)
        return _apply_via_api(args, _api_url(args))
    if command == "tokens":
        return _tokens(args)
    if command == "feeds":
        return _feeds(args)
    if command == "topics":
        return _topics_test(args)
    if command == "migrate":
        return _migrate(args)
    if command == "demo-feeds":
        from newswatch.demo.feeds_only import serve_demo_feeds

        serve_demo_feeds(stop_event_on_signals(), args.host, args.port, args.hook_port, args.public_url)
        return 0
    if command == "demo":
        from newswatch.demo.run import run_demo
        from newswatch.up import up_grace

        shutdown = Shutdown(up_grace(Config())).install()
        logging.getLogger().setLevel(logging.WARNING)  # the demo's terminal is for alerts
        run_demo(shutdown.stop, args.workdir, broker_port=args.broker_port, on_force=shutdown.on_force)
        return 0
    config = load_config(args.config)
    if command == "up":
        from newswatch.up import run_up, up_grace

        shutdown = Shutdown(up_grace(config)).install()
        run_up(
            config,
            args.config or _env_config_path(),
            shutdown.stop,
            broker_port=args.broker_port,
            on_force=shutdown.on_force,
        )
        return 0
    port = args.http_port if args.http_port is not None else getattr(config.http, f"{command}_port")
    shutdown = Shutdown(config.stop_grace).install()
    _service_runner(command)(config, port, shutdown.stop)
    return 0


def _env_config_path() -> Path | None:
    value = os.environ.get("NEWSWATCH_CONFIG")
    return Path(value) if value else None


def _broker(port: int) -> int:
    from newswatch.shared.broker import EmbeddedBroker

    stop = stop_event_on_signals()
    broker = EmbeddedBroker(port)
    broker.start()
    print(f"embedded broker listening; bootstrap address: {broker.bootstrap}", flush=True)
    print(f"use it with: NEWSWATCH_KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
    try:
        while not stop.wait(0.5):
            if not broker.running():
                print(f"broker exited with code {broker.wait(0)}", file=sys.stderr)
                return EXIT_ERROR
    finally:
        broker.stop()
    return 0


def _apply(args: argparse.Namespace) -> int:
    from newswatch.apply import apply_topics, resolve_bootstrap

    config = load_config(args.config)
    document = load_config(args.file, env={})
    if not document.topics:
        raise ConfigError(f"{args.file}: no `topics:` to apply")
    bootstrap = resolve_bootstrap(args.bootstrap, config)
    since = _duration("--backfill", args.backfill) if args.backfill else None
    applied = apply_topics(bootstrap, config, document)
    print(f"applied {len(applied)} topic(s) to {bootstrap}: {', '.join(applied)}")
    if since is not None:
        from newswatch.matcher import replay

        compiler = _compiler(config)
        recent = replay.recent_items(bootstrap, config.kafka, since)
        topics = [compiler.compile(t.id, t.query) for t in document.topics]
        sent = replay.backfill(bootstrap, config.kafka, compiler, topics, recent.items)
        print(f"backfill: {sent} match(es) among {len(recent.items)} item(s) of the last {args.backfill}")
    return 0


def _apply_via_api(args: argparse.Namespace, server: str) -> int:
    import httpx

    token = args.token or os.environ.get("NEWSWATCH_API_TOKEN")
    if not token:
        raise ConfigError(
            "apply goes through the notifier's API and needs an admin token: pass --token or set "
            "NEWSWATCH_API_TOKEN (make one with `newswatch tokens create --owner you --role admin`); "
            "--direct publishes to Kafka instead"
        )
    try:
        body = args.file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{args.file}: {exc}") from exc
    url = server.rstrip("/") + "/apply"
    try:
        response = httpx.post(
            url,
            content=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
        )
    except httpx.HTTPError as exc:
        raise NewswatchError(f"{url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise ConfigError(f"{args.file}: the API refused it ({response.status_code}): {response.text}")
    result = response.json()
    print(
        f"applied {len(result['topics'])} topic(s), {len(result['subscriptions'])} subscription(s) via {server}"
    )
    for sub_id, secret in result.get("secrets", {}).items():
        print(f"new subscription {sub_id}: webhook secret {secret} (shown once)")
    if args.backfill:
        _duration("--backfill", args.backfill)
        document = load_config(args.file, env={})
        for topic in document.topics:
            done = httpx.put(
                f"{server.rstrip('/')}/topics/{topic.id}",
                params={"backfill": args.backfill},
                json={"query": topic.query},
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
            )
            if done.status_code != 200:
                raise ConfigError(
                    f"backfill of {topic.id}: the API refused it ({done.status_code}): {done.text}"
                )
            print(f"backfill {topic.id}: {done.json().get('backfilled', 0)} match(es) for your subscriptions")
    return 0


def _api_url(args: argparse.Namespace) -> str:
    """--server, $NEWSWATCH_API_URL, else the API of the `up` running with this config."""
    server: str | None = args.server or os.environ.get("NEWSWATCH_API_URL")
    if server:
        return server
    config = load_config(args.config)
    return f"http://{config.http.host}:{config.http.api_port}"


def _tokens(args: argparse.Namespace) -> int:
    import time

    from newswatch.notifier.database import open_db

    config = load_config(args.config)
    expires = None
    if getattr(args, "expires", None):
        expires = time.time() + _duration("--expires", args.expires)
    db = open_db(config)
    try:
        if args.tokens_command == "create":
            email = None
            if args.email:
                try:
                    email = check_email(args.email)
                except ValueError as exc:
                    raise ConfigError(f"--email: {exc}") from exc
            token, info = db.tokens.create(args.owner, args.name, args.role, expires, email)
            print(token)
            print(
                f"id {info.token_id}, owner {info.owner}, role {info.role} (the token is shown once)",
                file=sys.stderr,
            )
        elif args.tokens_command == "list":
            for info in db.tokens.list(args.owner):
                used = (
                    time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.last_used_at))
                    if info.last_used_at
                    else "never"
                )
                state = (
                    "revoked"
                    if info.revoked_at
                    else "expired"
                    if info.expires_at and info.expires_at < time.time()
                    else "active"
                )
                print(
                    f"{info.token_id}  {info.owner:<16} {info.role:<10} {state:<8} last used {used}  {info.name}"
                )
        elif not db.tokens.revoke(args.token_id):
            raise ConfigError(f"no token {args.token_id!r} to revoke (see `newswatch tokens list`)")
        else:
            print(f"revoked {args.token_id}")
    finally:
        db.close()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Each database's schema version against this release's; applies the missing steps
    unless ``--check``. A database that does not exist yet is reported, not created."""
    from pathlib import Path

    from newswatch.fetcher import state
    from newswatch.notifier import schema
    from newswatch.shared.db import database_url, make_engine, migrate, schema_version

    config = load_config(args.config)
    pending = False
    for component, steps in ((state.COMPONENT, state.MIGRATIONS), (schema.COMPONENT, schema.MIGRATIONS)):
        url = database_url(config.database_url, config.state_dir, component)
        if args.check and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            print(f"{component}: no database yet ({len(steps)} steps to apply at first start)")
            pending = True
            continue
        engine = make_engine(url)
        try:
            current = schema_version(engine, component)
            if current > len(steps):
                raise ConfigError(
                    f"{component}: schema version {current} is newer than this newswatch knows ({len(steps)})"
                )
            if args.check:
                waiting = len(steps) - current
                pending = pending or waiting > 0
                print(
                    f"{component}: version {current} of {len(steps)}"
                    + (f", {waiting} pending" if waiting else ", up to date")
                )
            else:
                done = migrate(engine, component, steps)
                print(
                    f"{component}: version {current} → {done}"
                    if done != current
                    else f"{component}: up to date ({done})"
                )
        finally:
            engine.dispose()
    return 1 if args.check and pending else 0


def _duration(option: str, value: str) -> float:
    from newswatch.shared.durations import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from exc
    if seconds <= 0:
        raise ConfigError(f"{option}: must be more than 0s")
    return seconds


def _compiler(config: Config) -> Compiler:
    from newswatch.matcher.errors import AliasError
    from newswatch.matcher.topics import Compiler

    try:
        return Compiler.from_settings(config.matcher)
    except AliasError as exc:
        raise ConfigError(f"matcher aliases: {exc}") from exc


def _topics_test(args: argparse.Namespace) -> int:
    from newswatch.apply import resolve_bootstrap
    from newswatch.matcher import replay
    from newswatch.matcher.errors import QueryError

    config = load_config(args.config)
    since = _duration("--since", args.since)
    compiler = _compiler(config)
    try:
        topic = compiler.compile("test", args.query)
    except QueryError as exc:
        raise ConfigError(f"query: {exc}") from exc
    if not topic.indexed:
        print("note: this query requires no word (only NOTs): it would be evaluated for every item")
    bootstrap = resolve_bootstrap(args.bootstrap, config)
    recent = replay.recent_items(bootstrap, config.kafka, since)
    hits = replay.evaluate(compiler, topic, recent.items)
    for item, reason in hits[: args.limit]:
        when = (item.published or item.fetched_at).strftime("%Y-%m-%d %H:%M")
        print(f"{reason.score:.2f}  {when}  {item.source.host or item.source.feed_url}  {item.title}")
        print(f"      {replay.highlighted(reason)}")
        print(f"      {item.url or item.canonical_url}")
    shown = f", showing {args.limit}" if len(hits) > args.limit else ""
    print(f"{len(hits)} of {len(recent.items)} item(s) of the last {args.since} match{shown}")
    return 0


def _feeds(args: argparse.Namespace) -> int:
    from newswatch import feeds_cli
    from newswatch.apply import resolve_bootstrap
    from newswatch.shared.durations import parse_duration

    config = load_config(args.config)
    bootstrap = resolve_bootstrap(args.bootstrap, config)
    action: str = args.feeds_command
    interval = None
    if getattr(args, "interval", None):
        try:
            interval = parse_duration(args.interval)
        except ValueError as exc:
            raise ConfigError(f"--interval: {exc}") from exc
        if interval < 1:
            raise ConfigError("--interval: must be at least 1s")
    if action == "import":
        count = feeds_cli.import_opml(bootstrap, config, args.file, interval)
        print(f"imported {count} feed(s) from {args.file} to {bootstrap}")
    elif action == "export":
        text = feeds_cli.export_opml(bootstrap, config)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
            print(f"wrote {args.output}")
        else:
            sys.stdout.write(text)
    elif action == "list":
        feeds, overrides = feeds_cli.current_feeds(bootstrap, config)
        for url in sorted(feeds.keys() | overrides.keys()):
            definition = overrides.get(url)
            shown = definition.state if definition else "active"
            source = "runtime" if definition else "config"
            interval_s = feeds[url].interval if url in feeds else None
            print(f"{shown:<8} {source:<8} {interval_s or 'adaptive'!s:<9} {url}")
    else:
        states: dict[str, feeds_cli.State] = {
            "add": "active",
            "resume": "active",
            "remove": "removed",
            "pause": "paused",
        }
        feeds_cli.publish_feeds(bootstrap, config, [(u, "") for u in args.urls], states[action], interval)
        print(f"{action}: {len(args.urls)} feed(s) on {bootstrap}")
    return 0

"""The newswatch configuration: one YAML file plus ``NEWSWATCH_*`` environment overrides.

It is validated once at start-up into frozen objects; every service reads the same file,
so a deployment has one place to look. A bad value fails with the file, the key path and
what was expected, because an operator reading a crash loop has nothing else to go on.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from newswatch.shared import yaml_input
from newswatch.shared.cadence import parse_cadence, parse_quiet_hours, parse_zone
from newswatch.shared.durations import parse_duration
from newswatch.shared.errors import ConfigError
from newswatch.shared.languages import DEFAULT_LANGUAGES, SNOWBALL

CONFIG_ENV = "NEWSWATCH_CONFIG"
ENV_PREFIX = "NEWSWATCH_"
#: NEWSWATCH_* variables that are not config keys (read by the CLI or the runtime).
#: The ``NEWSWATCH_*`` variables that are not settings, and what each is for.
RESERVED_ENV_HELP = {
    "NEWSWATCH_CONFIG": "the config file (instead of `--config`)",
    "NEWSWATCH_LOG_LEVEL": "`debug`, `info` (default), `warning` or `error` (instead of `--log-level`)",
    "NEWSWATCH_BROKER_BIN": "another `tansu` binary for the embedded broker",
    "NEWSWATCH_API_URL": "the notifier API that `newswatch apply` talks to (instead of `--server`)",
    "NEWSWATCH_API_TOKEN": "the admin token `newswatch apply` sends (instead of `--token`)",
    "NEWSWATCH_PURE_PYTHON": "read by `setup.py` when installing: `1` skips the optional C "
    "extensions (the commands ignore it)",
    "NEWSWATCH_TEST_STALL": "a test hook: names a stall point that hangs on purpose "
    "(`shared/runtime.stall_point`); never set it in production",
}
RESERVED_ENV = frozenset(RESERVED_ENV_HELP)

Duration = Annotated[float, BeforeValidator(parse_duration)]
ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
#: Shortest webhook signing key accepted (Standard Webhooks suggests 24 to 64 bytes).
MIN_SECRET_BYTES = 24


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value


HttpUrlText = Annotated[str, BeforeValidator(lambda v: check_http_url(str(v).strip()))]
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


#: One mailbox: no list, no spaces, no line breaks (which would add mail headers).
_MAILBOX = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)


def check_email(value: str) -> str:
    """One mailbox (a token holder's address for sign-in links)."""
    value = value.strip()
    if not _MAILBOX.match(value):
        raise ValueError(f"expected one email address, such as name@example.org, got {value[:200]!r}")
    return value.lower()


EmailText = Annotated[str, BeforeValidator(lambda v: check_email(str(v)))]


def check_channel_url(value: str) -> str:
    """http(s) for webhooks, ``mailto:`` for email (one address), any other scheme for
    Apprise, among its plugins that send over HTTP (the egress guard covers those)."""
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme in ("http", "https"):
        return check_http_url(value)
    if scheme == "mailto":
        address = value[len("mailto:") :]
        if not _MAILBOX.match(address):
            raise ValueError(
                f"expected mailto: and one address, such as mailto:name@example.org "
                f"(no list, no query), got {value[:200]!r}"
            )
        return value
    if not _SCHEME.match(scheme) or not _apprise_accepts(value):
        raise ValueError(
            f"expected an http(s):// webhook, a mailto: address or a notification URL that Apprise "
            f"supports over HTTP (slack://…, ntfy://…, discord://…; see its wiki), got {redact_url(value)!r}"
        )
    return value


def _apprise_accepts(url: str) -> bool:
    try:
        import apprise  # noqa: PLC0415 - here, not at the top: only configs with chat subscriptions pay for it
    except ImportError:  # a fetcher or matcher image (no notifier extra): the notifier checks it
        return True

    from newswatch.shared.netguard import apprise_refusal  # noqa: PLC0415 - it imports Apprise too

    if apprise_refusal(url) is not None:
        return False
    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


def redact_url(url: str) -> str:
    """A URL without what may be a credential (its user, password, path and query): scheme,
    host and port only, for logs, errors, the DLQ and the delivery log."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    if not parts.scheme or parts.scheme.lower() == "mailto":
        return "mailto:…" if parts.scheme else "…"
    return f"{parts.scheme}://{parts.hostname or '…'}{port}/…"


ChannelUrl = Annotated[str, BeforeValidator(lambda v: check_channel_url(str(v).strip()))]


class _Frozen(BaseModel):
    """Config objects are immutable and reject unknown keys (typos fail loudly).

    A secret setting (``SecretStr``: never printed, never logged) may instead be given as a
    file to read, ``<name>_file`` (a mounted Kubernetes or compose secret); the file's
    content, trailing newline dropped, is the value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in _secret_fields(cls):
            key = f"{name}_file"
            if key not in data:
                continue
            data = dict(data)
            path = Path(str(data.pop(key)))
            if data.get(name) is not None:
                raise ValueError(f"{name} and {key} are both set; give one")
            try:
                data[name] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
        return data


def _secret_fields(model: type[BaseModel]) -> list[str]:
    """The fields of ``model`` holding a secret (a SecretStr, alone or optional)."""
    return [
        name
        for name, field in model.model_fields.items()
        if field.annotation is SecretStr or SecretStr in getattr(field.annotation, "__args__", ())
    ]


class KafkaSettings(_Frozen):
    bootstrap: str | None = Field(
        default=None,
        description=(
            "`host:port[,host:port]`. If absent, `up`/`demo` start the embedded broker and "
            "the services refuse to start."
        ),
    )
    partitions: int = Field(
        default=3, ge=1, le=1024, description="partitions of each topic created at start-up"
    )
    replication_factor: int = Field(
        default=1, ge=1, le=16, description="replication of each topic created at start-up"
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1_000, le=300_000, description="consumer group session timeout"
    )
    heartbeat_interval_ms: int = Field(
        default=1_000, ge=100, le=60_000, description="at most a third of the session timeout"
    )
    request_timeout_ms: int = Field(default=30_000, ge=1_000, le=300_000, description="Kafka request timeout")
    send_timeout: Duration = Field(
        default=30.0, gt=0, description="how long a publish waits for the broker's acknowledgement"
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description=(
            "longest the services' group consumers (items, matches) let a fetch wait at the "
            "broker. Kafka answers a waiting fetch as soon as records arrive, so there it "
            "only sets how often an idle consumer asks; the embedded broker holds each record "
            "until the wait ends, so this bounds the delay it adds to each hop (500, Kafka's "
            "default, added about 125 ms per hop there). The price is idle fetches: on the "
            "embedded broker about 0.1 of a core more per service than with 500. Readers of "
            "tables and the alert stream use 500."
        ),
    )
    linger_ms: int = Field(
        default=0,
        ge=0,
        le=1_000,
        description=(
            "how long a producer holds a record to batch it with more. Services send a whole "
            "batch's records before they wait for the acknowledgements, so records batch "
            "without lingering (measured: `bench/README.md`)."
        ),
    )
    producer_batch_bytes: int = Field(
        default=65_536,
        ge=1_024,
        le=16_777_216,
        description="most bytes a producer puts in one request per partition",
    )
    batch_max_records: int = Field(
        default=500, ge=1, le=100_000, description="most records a service handles as one batch (one commit)"
    )
    batch_max_bytes: int = Field(
        default=8_388_608, ge=1_024, description="most bytes of records a service handles as one batch"
    )
    record_attempts: int = Field(
        default=5,
        ge=1,
        le=1_000,
        description=(
            "failures of one record (other than an outage of the broker or the database) "
            "before it is dead-lettered, so one bad record never stalls its partition"
        ),
    )
    retry_backoff: Duration = Field(
        default=1.0, gt=0, description="first wait before a failed batch is retried (doubles each time)"
    )
    retry_backoff_max: Duration = Field(default=30.0, gt=0, description="longest wait between two retries")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description=(
            "`PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL`, for every client "
            "(services, CLI, admin)"
        ),
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA bundle that signs the brokers' certificates"
    )
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="client certificate's private key")
    ssl_check_hostname: bool = Field(default=True, description="check the broker's certificate names it")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism (SASL_PLAINTEXT, SASL_SSL)"
    )
    sasl_username: str | None = Field(default=None, description="SASL user name")
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (secret: also from NEWSWATCH_KAFKA_SASL_PASSWORD_FILE)"
    )

    @field_validator("bootstrap")
    @classmethod
    def _bootstrap_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for server in value.split(","):
            if not re.fullmatch(r"[A-Za-z0-9.\-_\[\]:]+:\d{1,5}", server.strip()):
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> Self:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        return self

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Self:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password"
            )
        return self


class HttpSettings(_Frozen):
    host: str = Field(
        default="127.0.0.1",
        description=(
            "address of each service's `/metrics`, `/healthz` and `/readyz` endpoints (use "
            "`0.0.0.0` in containers)"
        ),
    )
    fetcher_port: int = Field(
        default=9301,
        ge=0,
        le=65535,
        description="their ports. `--http-port` overrides the port of the service being run.",
    )
    matcher_port: int = Field(
        default=9302,
        ge=0,
        le=65535,
        description="their ports. `--http-port` overrides the port of the service being run.",
    )
    notifier_port: int = Field(
        default=9303,
        ge=0,
        le=65535,
        description="their ports. `--http-port` overrides the port of the service being run.",
    )
    api_port: int = Field(
        default=9380,
        ge=0,
        le=65535,
        description="the notifier's HTTP API (on `http.host`; `0` picks a free port)",
    )


class FeedConfig(_Frozen):
    url: HttpUrlText = Field(description="http(s) feed URL, unique")
    interval: Duration | None = Field(
        default=None,
        ge=1.0,
        description=(
            "a fixed poll interval (≥ 1 s). If absent, polling is adaptive (see *Polling schedule*)."
        ),
    )


class TopicConfig(_Frozen):
    id: str = Field(pattern=ID_PATTERN, description="`[a-z0-9][a-z0-9._-]{0,63}`, unique")
    query: str = Field(min_length=1, max_length=4096, description="see *Topic queries*")


class SubscriptionConfig(_Frozen):
    """One subscriber's alerts: which topics, where to, and at what rhythm."""

    id: str = Field(pattern=ID_PATTERN, description="unique, same pattern as topic ids")
    topics: tuple[Annotated[str, Field(pattern=ID_PATTERN)], ...] = Field(
        min_length=1, description="topic ids defined in the same file"
    )
    to: ChannelUrl = Field(
        description=(
            "the channel: `http(s)://…` (signed JSON webhook), `mailto:name@example.org` "
            "(email), or any [Apprise](https://github.com/caronc/apprise/wiki) URL "
            "(`slack://…`, `discord://…`, `tgram://…`, `ntfy://…`, `msteams://…`, "
            "`matrix://…`, `pover://…`); an unsupported URL is refused at load time"
        )
    )
    mode: str = Field(
        default="immediate",
        description=(
            "`immediate`, `hourly`, `daily at HH:MM` or `weekly on <day> at HH:MM` (a digest: "
            "one message with every match since the last)"
        ),
    )
    timezone: str = Field(
        default="UTC",
        description=(
            "IANA zone of the digest times and quiet hours (`Europe/Berlin`); wall-clock "
            "times stay put across DST"
        ),
    )
    max_per_hour: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description=(
            "immediate alerts per hour; the overflow goes into one digest at the top of the "
            "next hour, never dropped"
        ),
    )
    quiet_hours: str | None = Field(
        default=None,
        description=(
            "`HH:MM-HH:MM` (may wrap midnight): alerts are held and sent as one digest when it ends"
        ),
    )
    snooze_until: datetime | None = Field(
        default=None, description="a time with a zone: alerts are held and sent as one digest then"
    )
    updates: bool = Field(
        default=False,
        description=(
            "also alert when an alerted item is revised (`kind: update`); otherwise updates are suppressed"
        ),
    )
    secret: SecretStr | None = Field(
        default=None,
        description="webhook signing secret: whsec_ + base64 of at least 24 random bytes; "
        "generated and kept in the database if absent",
    )

    @field_validator("secret")
    @classmethod
    def _signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        """The key is the base64 after ``whsec_`` (Standard Webhooks): it must decode to
        enough bytes, or signatures are forgeable ("!"*24 decoded to an empty key)."""
        if value is None:
            return None
        text = value.get_secret_value()
        try:
            key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
        except (ValueError, binascii.Error):
            key = b""
        if not text.startswith("whsec_") or len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"expected whsec_ followed by the base64 of at least {MIN_SECRET_BYTES} random bytes "
                "(omit it to have one generated)"
            )
        return value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        parse_cadence(value)
        return " ".join(value.lower().split())

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        parse_zone(value)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value

    @field_validator("snooze_until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expected a time with a zone, e.g. 2026-12-01T08:00:00Z")
        return value


class WebSubSettings(_Frozen):
    """Push delivery from WebSub hubs (https://www.w3.org/TR/websub/); off while ``public_url`` is unset."""

    public_url: HttpUrlText | None = Field(
        default=None,
        description=(
            "where hubs reach this fetcher's HTTP port (its `/websub/` callbacks), e.g. "
            "`https://fetcher.example.org`; `{replica}` is replaced by the replica index. "
            "Absent: WebSub is off and every feed is polled"
        ),
    )
    lease: Duration = Field(
        default=10 * 86400.0,
        ge=60.0,
        description="lease asked of hubs (`hub.lease_seconds`); the hub decides",
    )
    renew_before: Duration = Field(
        default=3600.0,
        gt=0,
        description="a subscription is renewed this long before its lease ends (at most half the lease)",
    )
    poll_interval: Duration = Field(
        default=6 * 3600.0,
        ge=1.0,
        description=(
            "while push is verified, the feed is still polled at least this far apart, as a safety "
            "net; unverified, denied, expired or silent push falls back to the normal schedule"
        ),
    )
    verify_timeout: Duration = Field(
        default=300.0,
        gt=0,
        description="a request the hub has not verified within this is counted failed and retried",
    )
    retry: Duration = Field(
        default=600.0,
        gt=0,
        description="first wait after a refused, failed or denied request; doubles per failure, up to a day",
    )


class FetcherSettings(_Frozen):
    concurrency: int = Field(
        default=64,
        ge=1,
        le=4096,
        description=(
            "how many fetches are in flight at once (async: a slow server holds a socket, not a thread)"
        ),
    )
    workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description=("threads that parse, publish and record polls (the CPU- and I/O-bound part of a poll)"),
    )
    timeout: Duration = Field(default=20.0, gt=0, description="total time allowed for one fetch")
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="body cap, counted after decompression (gzip bombs are cut off)",
    )
    max_redirects: int = Field(
        default=5, ge=0, le=20, description="redirects followed per fetch (each checked by the egress policy)"
    )
    parse_timeout: Duration = Field(
        default=10.0,
        gt=0,
        description=(
            "the longest a large feed may take to parse; the parser is stopped after that (`parse_error`)"
        ),
    )
    isolate_parse_above: int = Field(
        default=1024 * 1024,
        ge=0,
        description=(
            "bodies larger than this are parsed in a child process that can be stopped at "
            "`parse_timeout`. Typical feeds are smaller, and parse in-process in "
            "milliseconds."
        ),
    )
    user_agent: str = Field(
        default="newswatch/0.1 (+https://github.com/newswatch/newswatch; feed monitor)",
        description="sent with every request",
    )
    seen_per_feed: int = Field(
        default=5000,
        ge=100,
        description="item ids remembered per feed (a bounded seen-set, never a date watermark)",
    )
    min_interval: Duration = Field(default=300.0, ge=1.0, description="adaptive polling: shortest interval")
    max_interval: Duration = Field(
        default=3600.0, ge=1.0, description="adaptive polling and unhealthy feeds: longest"
    )
    unhealthy_after: int = Field(default=10, ge=1, description="failures in a row that make a feed unhealthy")
    per_host: int = Field(
        default=2, ge=1, le=64, description="how many fetches may hit one host at once (politeness)"
    )
    start_spread: Duration = Field(
        default=10.0, ge=0, description="first polls after start-up are spread over this long"
    )
    feeds_check: Duration = Field(
        default=60.0,
        ge=1.0,
        description=(
            "how often replica 0 reads `newswatch.feeds` back and publishes again the stored "
            "runtime feed definitions it no longer holds "
            "(`newswatch_fetcher_feed_definitions_republished_total`)"
        ),
    )
    replica: int = Field(
        default=0, ge=0, description="this fetcher's index among `replicas` (e.g. a pod ordinal)"
    )
    replicas: int = Field(default=1, ge=1, le=1024, description="fetcher replicas splitting the feed list")
    backfill: Duration = Field(
        default=86400.0, ge=0, description="on a feed's first poll, only items newer than this are published"
    )
    backfill_max_items: int = Field(
        default=20,
        ge=0,
        description="on a feed's first poll, at most this many items are published (the newest)",
    )
    url_dedup_window: Duration = Field(
        default=7 * 86400.0, gt=0, description="how long a published canonical URL is remembered across feeds"
    )
    websub: WebSubSettings = WebSubSettings()

    @model_validator(mode="after")
    def _replica_in_range(self) -> Self:
        if self.replica >= self.replicas:
            raise ValueError(f"replica must be below replicas ({self.replicas}), got {self.replica}")
        public = self.websub.public_url
        if public and self.replicas > 1 and "{replica}" not in public:
            raise ValueError(
                "websub.public_url must contain {replica} when replicas > 1: a hub must reach "
                "the replica that polls the feed"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stop_grace" in data:
            raise ValueError(
                "fetcher.stop_grace moved to the top-level `stop_grace`, which bounds every service's stop"
            )
        return data


class MatcherSettings(_Frozen):
    aliases: tuple[tuple[str, ...], ...] = Field(
        default=(),
        description=("alias sets of your own, e.g. `[[North Korea, DPRK, Pyongyang]]` (see Topic queries)"),
    )
    alias_files: tuple[Path, ...] = Field(default=(), description="YAML files of alias sets (lists of names)")
    starter_aliases: bool = Field(
        default=True,
        description="load the alias sets shipped with newswatch (`services/matcher/geopolitics.yaml`)",
    )
    languages: tuple[str, ...] = Field(
        default=DEFAULT_LANGUAGES,
        min_length=1,
        description="languages a query word is stemmed in (ISO 639-1 codes with a Snowball stemmer)",
    )
    topic_budget: Duration = Field(
        default=0.05,
        gt=0,
        description=(
            "longest one topic may take on one item; a topic over it is disabled until its "
            "definition changes (logged, `newswatch_matcher_topics_disabled_total`). Query "
            "limits (see *Topic queries*) make this a safety net"
        ),
    )

    @field_validator("languages")
    @classmethod
    def _known_languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [code for code in value if code.lower() not in SNOWBALL]
        if unknown:
            raise ValueError(f"no stemmer for {unknown}; known: {', '.join(sorted(SNOWBALL))}")
        return tuple(code.lower() for code in value)


class SmtpSettings(_Frozen):
    host: str = Field(default="127.0.0.1", description="SMTP server for mailto: subscriptions")
    port: int = Field(
        default=25,
        ge=1,
        le=65535,
        description=(
            "the SMTP server for `mailto:` subscriptions, reached through the egress policy "
            "like any host (a relay on a loopback or private address needs its network in "
            "`allow_networks`); `security`: `none` (refused with a login), `starttls` or "
            "`tls` (implicit)"
        ),
    )
    security: Literal["none", "starttls", "tls"] | None = Field(
        default=None,
        description="none, starttls (upgrade on connect) or tls (implicit, port 465); "
        "default: starttls with a username, else none",
    )
    username: str | None = Field(
        default=None,
        description=(
            "login (if set; the password is a secret, also `password_file` / "
            "`NEWSWATCH_NOTIFIER_SMTP_PASSWORD_FILE`), the From: address, and the session "
            "timeout"
        ),
    )
    password: SecretStr | None = Field(default=None, description="SMTP password (secret; also password_file)")
    sender: str = Field(default="newswatch@localhost", description="From: address of alert emails")
    ca_file: Path | None = Field(
        default=None,
        description=(
            "a CA bundle to verify the SMTP server's certificate with (`starttls`/`tls`), "
            "e.g. a private CA; default: the system's CAs"
        ),
    )
    timeout: Duration = Field(
        default=30.0,
        gt=0,
        description=(
            "login (if set; the password is a secret, also `password_file` / "
            "`NEWSWATCH_NOTIFIER_SMTP_PASSWORD_FILE`), the From: address, and the session "
            "timeout"
        ),
    )

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> Self:
        if self.security is None:
            object.__setattr__(self, "security", "starttls" if self.username else "none")
        elif self.security == "none" and self.username:
            raise ValueError(
                "security: none with a username would send the password in clear; use starttls or tls"
            )
        return self


class NotifierSettings(_Frozen):
    timeout: Duration = Field(default=10.0, gt=0, description="per webhook request")
    max_age: Duration = Field(
        default=86_400.0,
        gt=0,
        description=(
            "the retry budget: a delivery still undelivered this long after it was queued is "
            "abandoned (`expired`); its last attempt is made at the end of the budget"
        ),
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=1_000,
        description=(
            "an extra bound on attempts per delivery (off by default: only `max_age` bounds the retries)"
        ),
    )
    retry_backoff: Duration = Field(
        default=1.0, ge=0, description="first retry delay, doubled per try (jittered)"
    )
    retry_backoff_max: Duration = Field(default=300.0, ge=0, description="longest wait between two attempts")
    senders: int = Field(
        default=16,
        ge=1,
        le=256,
        description=(
            "sends in flight at once, in all (webhooks on one async client with kept-alive "
            "connections; email and Apprise in threads)"
        ),
    )
    per_destination: int = Field(
        default=4,
        ge=1,
        le=1024,
        description=(
            "sends in flight at once to one destination (a webhook's host and port, the SMTP "
            "server, an Apprise service): a slow receiver holds its own slots, never the "
            "others'"
        ),
    )
    circuit_failures: int = Field(
        default=5,
        ge=1,
        le=1_000,
        description=(
            "transient failures in a row that make a destination's deliveries wait for one "
            "probe instead of each being tried (`newswatch_notifier_destination_state`)"
        ),
    )
    topics_check: Duration = Field(
        default=60.0,
        ge=1.0,
        description=(
            "how often the notifier reads `newswatch.topics` back and publishes again the "
            "stored topics it no longer holds (a broker that lost its data)"
        ),
    )
    max_request_bytes: int = Field(
        default=1_048_576, ge=1_024, description="largest API request body (a bigger one is a 413)"
    )
    max_lookback: Duration = Field(
        default=7 * 86_400.0, gt=0, description="furthest back a topic test or a backfill may read"
    )
    max_topics_per_owner: int = Field(default=200, ge=1, description="topics one owner may have")
    public_url: HttpUrlText | None = Field(
        default=None,
        description="the web app's address as people reach it (links in emails and feeds); "
        "absent: http://<http.host>:<http.api_port>",
    )
    session_lifetime: Duration = Field(
        default=7 * 86_400.0, ge=60.0, description="how long a web app sign-in lasts"
    )
    signin_link_lifetime: Duration = Field(
        default=900.0, ge=60.0, le=86_400.0, description="how long a mailed sign-in link works"
    )
    confirm_within: Duration = Field(
        default=48 * 3600.0,
        ge=600.0,
        description=(
            "how long the link that confirms an email subscription works (double opt-in); "
            "unconfirmed, the subscription stays `pending` and gets nothing"
        ),
    )
    feed_items: int = Field(
        default=50, ge=1, le=500, description="entries in a subscription's Atom / JSON alert feed"
    )
    max_subscriptions_per_owner: int = Field(
        default=200, ge=1, description="subscriptions one owner may have"
    )
    stream_clients: int = Field(default=100, ge=1, description="alert stream (SSE) clients at once, in all")
    stream_clients_per_owner: int = Field(default=5, ge=1, description="alert stream clients of one owner")
    duplicate_window: Duration = Field(
        default=172_800.0, ge=0, description="how long an alerted story suppresses its near-duplicates"
    )
    duplicate_distance: int = Field(
        default=6, ge=0, le=32, description="SimHash bits two stories may differ by and still be one story"
    )
    smtp: SmtpSettings = SmtpSettings()


class Config(_Frozen):
    kafka: KafkaSettings = KafkaSettings()
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = Field(
        default=(),
        description=(
            "networks (CIDR) that feeds and webhooks may reach even though they are not "
            "public. Loopback, private, link-local (cloud metadata), multicast and reserved "
            "addresses are refused otherwise. newswatch resolves each host itself and "
            "connects to exactly the address it checked, for every connection, redirects "
            "included, so DNS rebinding cannot slip past."
        ),
    )
    state_dir: Path = Field(
        default=Path(".newswatch"),
        description=(
            "local state: `fetcher.sqlite3` (seen items, validators), `notifier.sqlite3` "
            "(topics, subscriptions, tokens, outbox and delivery log, dedup index, digest "
            "queue), `bootstrap` (written by `up`)"
        ),
    )
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "PostgreSQL URL (`postgresql://user:pass@host/db`) for the fetcher's and the "
            "notifier's state, so that replicas share it (several notifiers then split the "
            "outbox: rows are claimed with `FOR UPDATE SKIP LOCKED`). If absent, SQLite files "
            "in `state_dir` are used. The same tests run on both. Schema changes are numbered "
            "steps recorded in `newswatch_migrations` and applied at start-up under a lock. "
            "Also `NEWSWATCH_DATABASE_URL`."
        ),
    )
    stop_grace: Duration = Field(
        default=20.0,
        ge=1.0,
        le=3600.0,
        description=(
            "after SIGTERM or Ctrl-C, how long a service may take to finish its work in "
            "flight before it exits anyway (status 124, logging where it was stuck); keep it "
            "below the platform's grace period (compose `stop_grace_period`, Kubernetes "
            "`terminationGracePeriodSeconds`)"
        ),
    )
    http: HttpSettings = HttpSettings()
    fetcher: FetcherSettings = FetcherSettings()
    matcher: MatcherSettings = MatcherSettings()
    notifier: NotifierSettings = NotifierSettings()
    feeds: tuple[FeedConfig, ...] = ()
    topics: tuple[TopicConfig, ...] = ()
    subscriptions: tuple[SubscriptionConfig, ...] = ()

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            out = []
            for item in value:
                try:
                    out.append(ipaddress.ip_network(str(item).strip(), strict=False))
                except ValueError as exc:
                    raise ValueError(f"expected a network such as 127.0.0.0/8, got {item!r}") from exc
            return tuple(out)
        return value

    @model_validator(mode="after")
    def _references(self) -> Self:
        _unique("feeds", [f.url for f in self.feeds], "url")
        _unique("topics", [t.id for t in self.topics], "id")
        _unique("subscriptions", [s.id for s in self.subscriptions], "id")
        known = {t.id for t in self.topics}
        for sub in self.subscriptions:
            missing = [t for t in sub.topics if t not in known]
            if missing:
                raise ValueError(
                    f"subscription {sub.id!r} refers to unknown topic(s) {missing}; "
                    f"defined topics: {sorted(known) or 'none'}"
                )
        return self

    def require_bootstrap(self) -> str:
        """The broker address, or a ConfigError saying how to set it (services need one)."""
        if not self.kafka.bootstrap:
            raise ConfigError(
                "kafka.bootstrap is not set: set it in the config file or NEWSWATCH_KAFKA_BOOTSTRAP "
                "(`newswatch up` and `newswatch demo` start an embedded broker instead)"
            )
        return self.kafka.bootstrap


def _unique(section: str, values: list[str], key: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{section}: duplicate {key} {value!r}")
        seen.add(value)


def _env_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Every scalar setting of ``model`` (sections nested) by its environment name; a secret
    also by ``<NAME>_FILE`` (its value then names the file to read)."""
    paths: dict[str, tuple[str, ...]] = {}
    secrets = set(_secret_fields(model))
    for name, field in model.model_fields.items():
        if not prefix and name in ("feeds", "topics", "subscriptions"):
            continue
        path = (*prefix, name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.update(_env_paths(annotation, path))
            continue
        variable = ENV_PREFIX + "_".join(path).upper()
        paths[variable] = path
        if name in secrets:
            paths[variable + "_FILE"] = (*prefix, f"{name}_file")
    return paths


def env_overrides(env: Mapping[str, str]) -> dict[str, tuple[tuple[str, ...], str]]:
    """Map ``NEWSWATCH_SECTION_KEY`` variables (``NEWSWATCH_NOTIFIER_SMTP_PASSWORD`` for a
    nested section) to config key paths.

    Returns {env name: (key path, raw value)}. Unknown ``NEWSWATCH_*`` names are an
    error: a misspelt override that silently does nothing is worse than a crash.
    """
    paths = _env_paths(Config)
    found: dict[str, tuple[tuple[str, ...], str]] = {}
    unknown = []
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var in RESERVED_ENV:
            continue
        if var in paths:
            found[var] = (paths[var], value)
        else:
            unknown.append(var)
    if unknown:
        raise ConfigError(
            f"unknown environment setting(s) {sorted(unknown)}; known: {sorted(paths) + sorted(RESERVED_ENV)}"
        )
    return found


#: Largest config file read (a list of 10,000 feeds is about 1 MB).
MAX_CONFIG_CHARS = 16 * 1024 * 1024


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigError(f"{path}: {len(text)} characters, more than the {MAX_CONFIG_CHARS} accepted")
    try:
        data = yaml_input.load(text, str(path))
    except yaml_input.YamlInputError as exc:
        raise ConfigError(str(exc)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        else:
            out += f".{part}"
    return out or "(top level)"


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration once.

    ``path`` falls back to ``NEWSWATCH_CONFIG``; with neither, only defaults and env apply.
    """
    env = os.environ if env is None else env
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    data: dict[str, Any] = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        data = _read_yaml(Path(path))
    overrides = env_overrides(env)
    by_path: dict[tuple[str, ...], str] = {}
    for var, (keys, value) in overrides.items():
        target = data
        for key in keys[:-1]:
            existing = target.get(key)
            if existing is None:
                existing = {}
            elif not isinstance(existing, dict):
                raise ConfigError(f"{source}: {key}: expected a mapping (overridden by {var})")
            target[key] = existing = dict(existing)
            target = existing
        target[keys[-1]] = value
        by_path[keys] = var
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            str_loc = tuple(str(p) for p in loc)
            origin = f"environment {by_path[str_loc]}" if str_loc in by_path else source
            message = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            plain = isinstance(got, dict | list) or got is None or "got " in message
            shown = "" if plain else f" (got {got!r})"
            lines.append(f"{origin}: {_format_loc(loc)}: {message}{shown}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc

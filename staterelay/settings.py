"""Typed settings: defaults, the YAML file, ``STATERELAY_*`` environment overrides and flags.

Every key is declared once in the dataclasses below; ``config.example.yaml`` documents them and
a test checks that the two agree.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import math
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import platformdirs
import yaml

Durability = Literal["full", "normal"]
LogFormat = Literal["auto", "text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Registration = Literal["open", "invite", "closed"]
HOSTED_IFTTT_TOKEN_PER_MINUTE = 300
ALEXA_MIN_TOKEN_SECONDS = 360  # Alexa refuses account links whose access tokens live shorter

ENV_PREFIX = "STATERELAY_"
DATA_DIR_ENV = f"{ENV_PREFIX}DATA_DIR"
CONFIG_ENV = f"{ENV_PREFIX}CONFIG"


class SettingsError(Exception):
    """A configuration value is missing, malformed or out of range; names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class HostsSettings:
    """Optional host name per role; when any is set, each host serves only its own prefixes."""

    app: str | None = None
    api: str | None = None
    auth: str | None = None
    alexa: str | None = None
    ifttt: str | None = None
    google: str | None = None


HOST_ROLES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(HostsSettings))
"""The host roles a URL surface can belong to (``server.hosts.<role>``)."""


@dataclass(frozen=True)
class ServerSettings:
    """Where the server listens and the URL the world reaches it by."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://localhost:8080"
    hosts: HostsSettings = field(default_factory=HostsSettings)
    shutdown_timeout: float = 10.0
    max_body_bytes: int = 65536
    # Seconds a request body may take to arrive, counted from its headers.
    body_timeout_seconds: float = 30.0
    trusted_proxies: tuple[str, ...] = ("127.0.0.1/32", "::1/128")


@dataclass(frozen=True)
class DatabaseSettings:
    """Which database, and how hard an acknowledged change is kept."""

    url: str | None = None
    durability: Durability = "full"
    # PostgreSQL: the table owner's URL; migrations run as it and grant the role of ``url``.
    migrate_url: str | None = None
    # SQLite: below this much free space under the database, /readyz and doctor fail.
    min_free_mb: int = 64


@dataclass(frozen=True)
class RedisSettings:
    """Optional Redis for fan-out and shared rate limits between replicas."""

    url: str | None = None
    key_prefix: str = "staterelay"


@dataclass(frozen=True)
class LimitsSettings:
    """Request rate limits per minute (0 turns one off), shared through Redis when set, and
    caps on open live feeds (WebSockets) per replica."""

    api_key_per_minute: int = 600
    ip_per_minute: int = 1200
    # Per IFTTT access token on /ifttt/v1. Null: 300 on a hosted instance (PostgreSQL or
    # open sign-up), off at home; 0 turns it off.
    ifttt_token_per_minute: int | None = None
    websockets_per_credential: int = 20
    websockets_per_household: int = 100


@dataclass(frozen=True)
class WebhookSettings:
    """Outbound delivery of user webhooks."""

    timeout_seconds: float = 10.0
    max_response_bytes: int = 65536
    max_age_hours: float = 72.0
    max_attempts: int = 20
    concurrency_per_destination: int = 2
    allow_private_networks: bool = False
    allowed_networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class DispatchSettings:
    """How the outbox is delivered: leases between replicas and the first retry."""

    # A replica holds the rows it is sending this long (renewed while it is alive); after a
    # replica dies, its rows wait at most this long for another one.
    lease_seconds: float = 60.0
    # A failed delivery is tried again within this many seconds (later retries back off).
    first_retry_seconds: float = 1.0


@dataclass(frozen=True)
class ActivitySettings:
    """The activity log."""

    retention_days: int = 90


@dataclass(frozen=True)
class AlexaSettings:
    """The Alexa Smart Home skill."""

    relay_secret: str | None = None
    messaging_client_id: str | None = None
    messaging_client_secret: str | None = None
    region: Literal["NA", "EU", "FE"] = "NA"
    lwa_token_url: str = "https://api.amazon.com/auth/o2/token"
    event_gateway_url: str | None = None


@dataclass(frozen=True)
class IftttSettings:
    """The IFTTT service."""

    service_key: str | None = None
    realtime_url: str = "https://realtime.ifttt.com/v1/notifications"
    realtime_debounce_seconds: float = 1.0
    event_retention_days: int = 30
    client_id: str | None = None
    max_thresholds_per_sensor: int = 100


@dataclass(frozen=True)
class PlanLimits:
    """What one billing plan allows a household."""

    devices: int = 3
    webhooks: int = 2
    api_per_minute: int = 60
    retention_days: int = 7
    integrations: tuple[str, ...] = ("alexa", "google", "ifttt", "webhooks")


@dataclass(frozen=True)
class PlanSettings:
    """One billing plan: its key, name, Stripe price lookup key (none: free) and limits."""

    key: str
    name: str
    lookup_key: str | None = None
    limits: PlanLimits = field(default_factory=PlanLimits)


FREE_PLAN = PlanSettings(key="free", name="Free")


@dataclass(frozen=True)
class GoogleSettings:
    """Google Home (cloud-to-cloud): the Home Graph API and the service account key."""

    project_id: str | None = None
    service_account_file: str | None = None
    token_url: str | None = None
    homegraph_url: str = "https://homegraph.googleapis.com"


@dataclass(frozen=True)
class BillingSettings:
    """Stripe billing for hosted instances; off by default."""

    enabled: bool = False
    stripe_api_base: str = "https://api.stripe.com"
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    grace_days: int = 7
    plans: tuple[PlanSettings, ...] = (FREE_PLAN,)


@dataclass(frozen=True)
class AccountsSettings:
    """Sign-up, sign-in and sessions."""

    registration: Registration = "invite"
    session_idle_hours: float = 72.0
    session_absolute_days: float = 30.0
    invite_valid_days: float = 7.0
    login_max_failures: int = 5


@dataclass(frozen=True)
class SmtpSettings:
    """The mail server StateRelay sends password-reset and invite e-mails through."""

    host: str | None = None
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 15.0


@dataclass(frozen=True)
class EmailSettings:
    """E-mail: "Forgot password?" links and invites; off until ``email.smtp.host`` is set."""

    from_address: str | None = None
    smtp: SmtpSettings = field(default_factory=SmtpSettings)

    @property
    def enabled(self) -> bool:
        """True when a mail server is configured."""
        return bool(self.smtp.host)


@dataclass(frozen=True)
class OAuthClientSettings:
    """One OAuth client (the Alexa skill, the IFTTT service, a custom app)."""

    id: str
    secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"
    )
    scopes: tuple[str, ...] = ("devices",)
    name: str = ""


@dataclass(frozen=True)
class OAuthSettings:
    """StateRelay's OAuth 2.0 authorization server, through which Alexa and IFTTT link."""

    access_token_ttl_seconds: int = 3600
    code_ttl_seconds: int = 300
    refresh_grace_seconds: int = 120
    clients: tuple[OAuthClientSettings, ...] = ()


@dataclass(frozen=True)
class LogSettings:
    """Log format, level and the per-request access log."""

    level: LogLevel = "info"
    format: LogFormat = "auto"
    access: bool = True


@dataclass(frozen=True)
class MetricsSettings:
    """The Prometheus ``/metrics`` endpoint."""

    enabled: bool = True
    # Null: only clients on loopback may read it; set: a bearer token is required.
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT bridge with Home Assistant discovery; off while ``url`` is null."""

    url: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    tls_ca_file: str | None = None
    tls_verify: bool = True
    base_topic: str = "staterelay"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    # The email of a user of the household the bridge serves; null: the only household.
    household: str | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, resolved and validated."""

    data_dir: Path = field(default_factory=lambda: default_data_dir())
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    activity: ActivitySettings = field(default_factory=ActivitySettings)
    alexa: AlexaSettings = field(default_factory=AlexaSettings)
    ifttt: IftttSettings = field(default_factory=IftttSettings)
    google: GoogleSettings = field(default_factory=GoogleSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    accounts: AccountsSettings = field(default_factory=AccountsSettings)
    email: EmailSettings = field(default_factory=EmailSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)

    @property
    def database_url(self) -> str:
        """The database URL; the SQLite file in the data directory when none is set."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'staterelay.db'}"

    @property
    def secret_key_path(self) -> Path:
        """Where the instance secret is kept."""
        return self.data_dir / "secret.key"

    @property
    def public_url(self) -> str:
        """The public base URL without a trailing slash."""
        return self.server.public_url.rstrip("/")

    def role_url(self, role: str) -> str:
        """The base URL of a host role (``server.hosts.<role>``): the public URL, or its
        scheme and port on the role's own host when one is set."""
        public = self.public_url
        host: str | None = getattr(self.server.hosts, role)
        if not host:
            return public
        parts = urlsplit(public)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"

    @property
    def hosted(self) -> bool:
        """True for an instance that serves strangers: PostgreSQL, or open sign-up."""
        return (
            self.database_url.startswith(("postgresql://", "postgres://"))
            or self.accounts.registration == "open"
        )

    @property
    def ifttt_token_per_minute(self) -> int:
        """The request limit per IFTTT token, once its default (by ``hosted``) is applied."""
        configured = self.limits.ifttt_token_per_minute
        if configured is None:
            return HOSTED_IFTTT_TOKEN_PER_MINUTE if self.hosted else 0
        return configured


SECTIONS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Settings) if f.name != "data_dir"
)


def default_data_dir() -> Path:
    """The per-user data directory (``STATERELAY_DATA_DIR`` overrides it)."""
    return _env_data_dir(os.environ) or _platform_data_dir()


def load_settings(
    config_file: Path | None = None,
    *,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings: defaults < config file < environment < ``overrides`` ("section.key").

    Raises ``SettingsError`` naming the first bad key.
    """
    environ = os.environ if environ is None else environ
    raw = _read_yaml(config_file) if config_file is not None else {}
    tree: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key)
        if name == "data_dir":
            continue
        if name not in SECTIONS:
            raise SettingsError(name, f"unknown section (known: data_dir, {', '.join(SECTIONS)})")
        if value is None:  # a section whose keys are all commented out
            continue
        if not isinstance(value, dict):
            raise SettingsError(name, "must be a mapping of keys")
        tree[name] = copy.deepcopy(value)
    for env_key in sorted(environ):
        path = _env_path(env_key)
        if path is not None:
            _put(tree, path, _EnvValue(environ[env_key]))
    for dotted, value in (overrides or {}).items():
        if value is None:  # a flag that was not given
            continue
        path = tuple(dotted.split("."))
        if path[0] not in SECTIONS:
            raise SettingsError(dotted, f"unknown section (known: {', '.join(SECTIONS)})")
        _put(tree, path, value)

    # Unset (or null) public_url follows the port: serve --port 9000 is http://localhost:9000.
    server_tree = tree.setdefault("server", {})
    derive_public_url = server_tree.get("public_url") is None
    if derive_public_url:
        server_tree.pop("public_url", None)
    sections = {name: _build(_section_class(name), tree.get(name) or {}, name) for name in SECTIONS}
    if derive_public_url:
        server = sections["server"]
        sections["server"] = dataclasses.replace(
            server, public_url=f"http://localhost:{server.port}"
        )
    settings = Settings(
        data_dir=_resolve_data_dir(data_dir, environ, raw.get("data_dir"), config_file),
        **sections,
    )
    _validate(settings)
    return settings


class _EnvValue(str):
    """A string that came from the environment, parsed according to its target type."""


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?|\[[0-9A-Fa-f:.]+\]")


def _platform_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("staterelay", appauthor=False))


def _env_data_dir(environ: Mapping[str, str]) -> Path | None:
    value = environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def _resolve_data_dir(
    flag: Path | None, environ: Mapping[str, str], from_file: object, config_file: Path | None
) -> Path:
    """The flag, else the environment, else the file (relative to it), else the platform default."""
    if from_file is not None and not isinstance(from_file, str):
        raise SettingsError("data_dir", "must be a directory path")
    if flag is not None:
        return Path(flag).expanduser().absolute()
    env = _env_data_dir(environ)
    if env is not None:
        return env.absolute()
    if from_file:
        path = Path(from_file).expanduser()
        if not path.is_absolute() and config_file is not None:
            path = config_file.parent / path
        return path.absolute()
    return _platform_data_dir()


def _paths(cls: type[Any], prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], bool]]:
    """Every key below ``cls`` as (path of field names, is a section of further keys)."""
    hints = get_type_hints(cls)
    paths: list[tuple[tuple[str, ...], bool]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            paths.append(((*prefix, f.name), True))
            paths.extend(_paths(hint, (*prefix, f.name)))
        else:
            paths.append(((*prefix, f.name), False))
    return paths


def _env_name(path: tuple[str, ...]) -> str:
    return ENV_PREFIX + "_".join(path).upper()


_ALL_PATHS = [
    item
    for name in SECTIONS
    for item in [((name,), True), *_paths(get_type_hints(Settings)[name], (name,))]
]
# STATERELAY_SERVER_HOSTS_API -> ("server", "hosts", "api"), derived from the dataclasses.
_ENV_PATHS = {_env_name(path): path for path, is_section in _ALL_PATHS if not is_section}
# Longest first, so an unknown STATERELAY_SERVER_HOSTS_X is reported as server.hosts.x.
_ENV_SECTIONS = sorted(
    ((_env_name(path) + "_", path) for path, is_section in _ALL_PATHS if is_section),
    key=lambda item: -len(item[0]),
)


def _env_path(env_key: str) -> tuple[str, ...] | None:
    """The settings path an environment variable sets; None when it is not a setting."""
    if not env_key.startswith(ENV_PREFIX) or env_key in (DATA_DIR_ENV, CONFIG_ENV):
        return None
    path = _ENV_PATHS.get(env_key)
    if path is not None:
        return path
    for env_prefix, section in _ENV_SECTIONS:
        if env_key.startswith(env_prefix):
            # A typo in a known section is an error; other STATERELAY_* names are not ours.
            dotted = ".".join((*section, env_key[len(env_prefix) :].lower()))
            raise SettingsError(dotted, f"unknown key (set by {env_key})")
    return None


def _put(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``value`` at ``path``, creating (or replacing empty) mappings on the way."""
    node = tree
    for depth, name in enumerate(path[:-1]):
        child = node.get(name)
        if child is None:
            child = node[name] = {}
        elif not isinstance(child, dict):
            raise SettingsError(".".join(path[: depth + 1]), "must be a mapping of keys")
        node = child
    node[path[-1]] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SettingsError("config", f"{path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None)
        detail = f": {problem}" if problem else ""
        raise SettingsError("config", f"{path} is not valid YAML{where}{detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError("config", f"{path} must hold a mapping of sections")
    return data


def _section_class(name: str) -> type[Any]:
    cls = get_type_hints(Settings)[name]
    assert isinstance(cls, type)
    return cls


def _build(cls: type[Any], values: Mapping[Any, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key)
        dotted = f"{prefix}.{name}"
        if name not in known:
            raise SettingsError(dotted, f"unknown key (known: {', '.join(known)})")
        hint = hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise SettingsError(dotted, "must be a mapping of keys")
            kwargs[name] = _build(hint, value, dotted)
        else:
            kwargs[name] = _coerce(hint, value, dotted)
    return cls(**kwargs)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if isinstance(value, _EnvValue):
        value = _parse_env(hint, str(value), key)
    args = get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise SettingsError(key, "must be set")
    if _is_union(hint):  # X | None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    if get_origin(hint) is Literal:
        if isinstance(value, bool) or value not in args:
            raise SettingsError(key, f"must be one of {', '.join(map(str, args))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(key, "must be true or false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(key, "must be a whole number")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(key, "must be a number")
        if not math.isfinite(value):
            raise SettingsError(key, "must be a finite number")
        return float(value)
    if hint is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise SettingsError(key, "must be a string")
        return str(value)
    if get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SettingsError(key, "must be a list")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise SettingsError(key, "must be a mapping of keys")
        required = [
            f.name
            for f in dataclasses.fields(hint)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        for name in required:
            if name not in value:
                raise SettingsError(f"{key}.{name}", "must be set")
        return _build(hint, value, key)
    raise SettingsError(key, "has an unsupported type")


def _parse_env(hint: Any, text: str, key: str) -> Any:
    """An environment string as a value of ``hint``; lists are comma-separated."""
    if _is_union(hint):
        if text == "" and type(None) in get_args(hint):
            return None
        inner = [a for a in get_args(hint) if a is not type(None)]
        return _parse_env(inner[0], text, key)
    if get_origin(hint) is tuple:
        return [part.strip() for part in text.split(",") if part.strip()]
    if hint is bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise SettingsError(key, "must be true or false (or 1/0, yes/no, on/off)")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise SettingsError(key, "must be a whole number") from None
    if hint is float:
        try:
            return float(text.strip())
        except ValueError:
            raise SettingsError(key, "must be a number") from None
    return text  # str and string literals, taken as written


def _require_http_url(key: str, url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(key, "must be an absolute http:// or https:// URL")


def _validate(settings: Settings) -> None:
    server = settings.server
    if not server.host.strip():
        raise SettingsError("server.host", "must not be empty")
    if not 0 <= server.port <= 65535:
        raise SettingsError("server.port", "must be between 0 and 65535")
    _require_http_url("server.public_url", server.public_url)
    parts = urlsplit(server.public_url)
    if parts.query or parts.fragment:
        raise SettingsError("server.public_url", "must not carry a query or fragment")
    for role in HOST_ROLES:
        name = getattr(server.hosts, role)
        if name is not None and not _HOST_NAME.fullmatch(name):
            raise SettingsError(
                f"server.hosts.{role}",
                "must be a bare host name such as api.example.com (no scheme, port or path)",
            )
    if server.max_body_bytes < 1024:
        raise SettingsError("server.max_body_bytes", "must be at least 1024")
    for network in server.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                "server.trusted_proxies", f"{network!r} is not a CIDR network"
            ) from None
    if server.shutdown_timeout <= 0:
        raise SettingsError("server.shutdown_timeout", "must be positive")
    if server.body_timeout_seconds <= 0:
        raise SettingsError("server.body_timeout_seconds", "must be positive")
    url = settings.database.url
    if url is not None and not (
        (url.startswith("sqlite:///") and len(url) > len("sqlite:///"))
        or url.startswith(("postgresql://", "postgres://"))
    ):
        raise SettingsError("database.url", "must be sqlite:///<path> or postgresql://...")
    migrate_url = settings.database.migrate_url
    if migrate_url is not None and not (
        migrate_url.startswith(("postgresql://", "postgres://"))
        and settings.database_url.startswith(("postgresql://", "postgres://"))
    ):
        raise SettingsError(
            "database.migrate_url", "must be a postgresql:// URL, with a postgresql:// database.url"
        )
    if settings.database.min_free_mb < 0:
        raise SettingsError("database.min_free_mb", "must not be negative (0 turns the check off)")
    redis_url = settings.redis.url
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("redis.url", "must start with redis://, rediss:// or unix://")
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", settings.redis.key_prefix):
        raise SettingsError("redis.key_prefix", "must be 1-64 letters, digits or any of _ . : -")
    for name in ("api_key_per_minute", "ip_per_minute", "ifttt_token_per_minute"):
        if (getattr(settings.limits, name) or 0) < 0:
            raise SettingsError(f"limits.{name}", "must not be negative (0 turns it off)")
    for name in ("websockets_per_credential", "websockets_per_household"):
        if getattr(settings.limits, name) < 1:
            raise SettingsError(f"limits.{name}", "must be at least 1")
    token = settings.metrics.token
    if token is not None and len(token) < 16:
        raise SettingsError("metrics.token", "must be at least 16 characters")
    hooks = settings.webhooks
    if hooks.timeout_seconds <= 0 or hooks.timeout_seconds > 60:
        raise SettingsError("webhooks.timeout_seconds", "must be more than 0 and at most 60")
    if hooks.max_response_bytes < 0:
        raise SettingsError("webhooks.max_response_bytes", "must not be negative")
    if hooks.max_age_hours <= 0:
        raise SettingsError("webhooks.max_age_hours", "must be positive")
    if hooks.max_attempts < 1:
        raise SettingsError("webhooks.max_attempts", "must be at least 1")
    if hooks.concurrency_per_destination < 1:
        raise SettingsError("webhooks.concurrency_per_destination", "must be at least 1")
    for network in hooks.allowed_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(
                "webhooks.allowed_networks", f"{network!r} is not a CIDR network"
            ) from None
    if not 5 <= settings.dispatch.lease_seconds <= 3600:
        raise SettingsError("dispatch.lease_seconds", "must be from 5 to 3600")
    if not 0.1 <= settings.dispatch.first_retry_seconds <= 60:
        raise SettingsError("dispatch.first_retry_seconds", "must be from 0.1 to 60")
    if settings.activity.retention_days < 1:
        raise SettingsError("activity.retention_days", "must be at least 1 day")
    _require_http_url("alexa.lwa_token_url", settings.alexa.lwa_token_url)
    _require_http_url("alexa.event_gateway_url", settings.alexa.event_gateway_url)
    _require_http_url("ifttt.realtime_url", settings.ifttt.realtime_url)
    if not 0 <= settings.ifttt.realtime_debounce_seconds <= 1:
        raise SettingsError("ifttt.realtime_debounce_seconds", "must be from 0 to 1")
    if settings.ifttt.max_thresholds_per_sensor < 1:
        raise SettingsError("ifttt.max_thresholds_per_sensor", "must be at least 1")
    oauth = settings.oauth
    if oauth.access_token_ttl_seconds < ALEXA_MIN_TOKEN_SECONDS:
        raise SettingsError(
            "oauth.access_token_ttl_seconds",
            f"must be at least {ALEXA_MIN_TOKEN_SECONDS} (Alexa refuses to link accounts whose"
            " access tokens live shorter)",
        )
    if oauth.code_ttl_seconds < 1:
        raise SettingsError("oauth.code_ttl_seconds", "must be at least 1")
    if oauth.refresh_grace_seconds < 0:
        raise SettingsError("oauth.refresh_grace_seconds", "must not be negative")
    if settings.ifttt.event_retention_days < 30:
        raise SettingsError(
            "ifttt.event_retention_days", "must be at least 30 (IFTTT expects a long timeline)"
        )
    _require_http_url("google.token_url", settings.google.token_url)
    _require_http_url("google.homegraph_url", settings.google.homegraph_url)
    project = settings.google.project_id
    if project is not None and not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", project):
        raise SettingsError(
            "google.project_id",
            "must be a Google Cloud project id: 6-30 lowercase letters, digits or hyphens",
        )
    _require_http_url("billing.stripe_api_base", settings.billing.stripe_api_base)
    _validate_billing(settings.billing)
    _validate_mqtt(settings.mqtt)
    smtp = settings.email.smtp
    if smtp.host is not None and not _HOST_NAME.fullmatch(smtp.host):
        raise SettingsError("email.smtp.host", "must be a bare host name such as mail.example.com")
    if not 1 <= smtp.port <= 65535:
        raise SettingsError("email.smtp.port", "must be between 1 and 65535")
    if smtp.timeout_seconds <= 0:
        raise SettingsError("email.smtp.timeout_seconds", "must be positive")
    if (smtp.username is None) != (smtp.password is None):
        raise SettingsError("email.smtp.password", "set both username and password, or neither")
    sender = settings.email.from_address
    if smtp.host and not sender:
        raise SettingsError("email.from_address", "must be set when email.smtp.host is")
    if sender is not None and not re.fullmatch(r"(?:[^<>@\r\n]*<)?[^@\s<>]+@[^@\s<>]+>?", sender):
        raise SettingsError(
            "email.from_address", "must be an address, e.g. StateRelay <staterelay@example.com>"
        )


def _validate_billing(billing: BillingSettings) -> None:
    if billing.grace_days < 0:
        raise SettingsError("billing.grace_days", "must not be negative")
    free = [plan for plan in billing.plans if plan.lookup_key is None]
    if len(free) != 1:
        raise SettingsError(
            "billing.plans", "must have exactly one free plan (one without a lookup_key)"
        )
    keys: set[str] = set()
    lookups: set[str] = set()
    for index, plan in enumerate(billing.plans):
        where = f"billing.plans[{index}]"
        if not re.fullmatch(r"[a-z0-9_-]{1,32}", plan.key):
            raise SettingsError(f"{where}.key", "must be 1-32 lowercase letters, digits, _ or -")
        if plan.key in keys:
            raise SettingsError(f"{where}.key", f"{plan.key!r} is used by two plans")
        keys.add(plan.key)
        if plan.lookup_key is not None:
            if not 1 <= len(plan.lookup_key) <= 200 or plan.lookup_key in lookups:
                raise SettingsError(
                    f"{where}.lookup_key", "must be 1-200 characters and differ between plans"
                )
            lookups.add(plan.lookup_key)
        limits = plan.limits
        for name in ("devices", "webhooks", "api_per_minute"):
            if getattr(limits, name) < 0:
                raise SettingsError(f"{where}.limits.{name}", "must not be negative")
        if limits.retention_days < 1:
            raise SettingsError(f"{where}.limits.retention_days", "must be at least 1 day")


_MQTT_TOPIC = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")


def _validate_mqtt(mqtt: MqttSettings) -> None:
    if mqtt.url is not None:
        parts = urlsplit(mqtt.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SettingsError("mqtt.url", "must be mqtt://host[:port] or mqtts://host[:port]")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise SettingsError(
                "mqtt.url", "has a port that is not a number from 0 to 65535"
            ) from None
    for name in ("base_topic", "discovery_prefix"):
        if not _MQTT_TOPIC.fullmatch(getattr(mqtt, name)):
            raise SettingsError(
                f"mqtt.{name}", "must be topic levels of letters, digits, _ and - joined by /"
            )
    if mqtt.client_id is not None and not 1 <= len(mqtt.client_id) <= 64:
        raise SettingsError("mqtt.client_id", "must be 1 to 64 characters")

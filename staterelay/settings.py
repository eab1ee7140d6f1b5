"""Typed settings: defaults, the YAML file, ``STATERELAY_*`` environment overrides and flags.

Every key is declared once in the dataclasses below; ``config.example.yaml`` documents them and
a test checks that the two agree.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints
from urllib.parse import urlsplit

import platformdirs
import yaml

Durability = Literal["full", "normal"]
LogFormat = Literal["auto", "text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
Registration = Literal["open", "invite", "closed"]

ENV_PREFIX = "STATERELAY_"


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


@dataclass(frozen=True)
class ServerSettings:
    """Where the server listens and the URL the world reaches it by."""

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://localhost:8080"
    hosts: HostsSettings = field(default_factory=HostsSettings)
    shutdown_timeout: float = 10.0
    max_body_bytes: int = 65536


@dataclass(frozen=True)
class DatabaseSettings:
    """Which database, and how hard an acknowledged change is kept."""

    url: str | None = None
    durability: Durability = "full"


@dataclass(frozen=True)
class RedisSettings:
    """Optional Redis for fan-out between replicas."""

    url: str | None = None


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


@dataclass(frozen=True)
class BillingSettings:
    """Stripe billing for hosted instances; off by default."""

    enabled: bool = False
    stripe_api_base: str = "https://api.stripe.com"
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None


@dataclass(frozen=True)
class LogSettings:
    """Log format and level."""

    level: LogLevel = "info"
    format: LogFormat = "auto"


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, resolved and validated."""

    data_dir: Path = field(default_factory=lambda: default_data_dir())
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    activity: ActivitySettings = field(default_factory=ActivitySettings)
    alexa: AlexaSettings = field(default_factory=AlexaSettings)
    ifttt: IftttSettings = field(default_factory=IftttSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    log: LogSettings = field(default_factory=LogSettings)

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


SECTIONS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Settings) if f.name != "data_dir"
)


def default_data_dir() -> Path:
    """The per-user data directory (``STATERELAY_DATA_DIR`` overrides it)."""
    env = os.environ.get(f"{ENV_PREFIX}DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("staterelay", appauthor=False))


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
    raw: dict[str, Any] = {}
    if config_file is not None:
        raw = _read_yaml(config_file)
    merged: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key == "data_dir":
            continue
        if key not in SECTIONS:
            raise SettingsError(key, f"unknown section (known: {', '.join(SECTIONS)})")
        if value is None:
            continue
        if not isinstance(value, dict):
            raise SettingsError(key, "must be a mapping of keys")
        merged[key] = dict(value)
    for env_key, env_value in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key == f"{ENV_PREFIX}DATA_DIR":
            continue
        section, key = _split_env_key(env_key)
        if section is None:
            continue
        merged.setdefault(section, {})[key] = _EnvValue(env_value)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        merged.setdefault(section, {})[key] = value

    resolved_dir = data_dir
    if resolved_dir is None and "data_dir" in raw and raw["data_dir"]:
        resolved_dir = Path(str(raw["data_dir"])).expanduser()
    if resolved_dir is None:
        resolved_dir = default_data_dir() if environ is os.environ else _env_data_dir(environ)

    sections: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "data_dir":
            continue
        section_cls = _section_class(f.name)
        sections[f.name] = _build(section_cls, merged.get(f.name, {}), f.name)
    settings = Settings(data_dir=resolved_dir, **sections)
    _validate(settings)
    return settings


class _EnvValue(str):
    """A string that came from the environment, parsed with YAML rules for its target type."""


def _env_data_dir(environ: Mapping[str, str]) -> Path:
    value = environ.get(f"{ENV_PREFIX}DATA_DIR")
    if value:
        return Path(value).expanduser()
    return Path(platformdirs.user_data_dir("staterelay", appauthor=False))


def _split_env_key(env_key: str) -> tuple[str | None, str]:
    rest = env_key[len(ENV_PREFIX) :].lower()
    for section in SECTIONS:
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1 :]
    return None, rest


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SettingsError("config", f"{path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError("config", f"{path} must hold a mapping of sections")
    return data


def _section_class(name: str) -> type[Any]:
    hints = get_type_hints(Settings)
    cls = hints[name]
    assert isinstance(cls, type)
    return cls


def _build(cls: type[Any], values: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}"
        if key not in known:
            # Environment keys of nested sections come flattened: server_hosts_api.
            nested = next((k for k in known if key.startswith(k + "_")), None)
            if nested is not None and dataclasses.is_dataclass(hints[nested]):
                sub = kwargs.setdefault(nested, {})
                if isinstance(sub, dict):
                    sub[key[len(nested) + 1 :]] = value
                    continue
            raise SettingsError(dotted, f"unknown key (known: {', '.join(sorted(known))})")
        kwargs[key] = value
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        dotted = f"{prefix}.{key}"
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise SettingsError(dotted, "must be a mapping of keys")
            out[key] = _build(hint, value, dotted)  # type: ignore[arg-type]
        else:
            out[key] = _coerce(hint, value, dotted)
    return cls(**out)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if isinstance(value, _EnvValue):
        value = _parse_env(hint, str(value), key)
    args = get_args(hint)
    origin = getattr(hint, "__origin__", None)
    if value is None:
        if type(None) in args:
            return None
        raise SettingsError(key, "must not be empty")
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
        return float(value)
    if hint is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SettingsError(key, "must be a string")
        return str(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SettingsError(key, "must be a list")
        return tuple(_coerce(args[0], v, key) for v in value)
    if origin is Literal or (args and all(isinstance(a, str) for a in args)):
        if value not in args:
            raise SettingsError(key, f"must be one of {', '.join(map(str, args))}")
        return value
    if args:  # X | None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
    raise SettingsError(key, "has an unsupported type")


def _parse_env(hint: Any, text: str, key: str) -> Any:
    args = get_args(hint)
    if hint is str or (str in args):
        return None if text == "" and type(None) in args else text
    if getattr(hint, "__origin__", None) is tuple:
        return text
    try:
        return yaml.safe_load(text) if text != "" else None
    except yaml.YAMLError:
        raise SettingsError(key, "cannot be parsed") from None


def _validate(settings: Settings) -> None:
    server = settings.server
    if not 0 <= server.port <= 65535:
        raise SettingsError("server.port", "must be between 0 and 65535")
    parts = urlsplit(server.public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError("server.public_url", "must be an absolute http:// or https:// URL")
    if parts.query or parts.fragment:
        raise SettingsError("server.public_url", "must not carry a query or fragment")
    if server.max_body_bytes < 1024:
        raise SettingsError("server.max_body_bytes", "must be at least 1024")
    if server.shutdown_timeout <= 0:
        raise SettingsError("server.shutdown_timeout", "must be positive")
    url = settings.database.url
    if url and not (
        url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))
    ):
        raise SettingsError("database.url", "must start with sqlite:/// or postgresql://")
    hooks = settings.webhooks
    if hooks.timeout_seconds <= 0 or hooks.timeout_seconds > 60:
        raise SettingsError("webhooks.timeout_seconds", "must be between 0 and 60")
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
    if settings.activity.retention_days < 1:
        raise SettingsError("activity.retention_days", "must be at least 1 day")

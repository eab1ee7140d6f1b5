"""Settings: the defaults, file < environment < flags, and every way a value can be wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from staterelay.settings import (
    DatabaseSettings,
    HostsSettings,
    LogSettings,
    Settings,
    SettingsError,
    default_data_dir,
    load_settings,
)


def config(tmp_path: Path, text: str) -> Path:
    """A config file holding ``text``."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path) -> None:
    """With nothing configured: loopback:8080, localhost URL, SQLite in the data dir, full."""
    settings = load_settings(data_dir=tmp_path, environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.public_url == "http://localhost:8080"
    assert settings.public_url == "http://localhost:8080"
    assert settings.server.hosts == HostsSettings()
    assert settings.database == DatabaseSettings(url=None, durability="full")
    assert settings.database_url == f"sqlite:///{tmp_path / 'staterelay.db'}"
    assert settings.secret_key_path == tmp_path / "secret.key"
    assert settings.log == LogSettings(level="info", format="auto", access=True)
    assert settings == Settings(data_dir=tmp_path)


def test_empty_file_and_empty_sections_give_defaults(tmp_path: Path) -> None:
    """An empty file, or sections whose keys are all commented out, change nothing."""
    expected = load_settings(data_dir=tmp_path, environ={})
    assert load_settings(config(tmp_path, ""), data_dir=tmp_path, environ={}) == expected
    empty_sections = config(tmp_path, "server:\n  # port: 9000\nlog:\n")
    assert load_settings(empty_sections, data_dir=tmp_path, environ={}) == expected


def test_file_values_are_used(tmp_path: Path) -> None:
    """Every kind of value is read from the file."""
    path = config(
        tmp_path,
        """
server:
  host: 0.0.0.0
  port: 9000
  public_url: https://home.example.com/
  shutdown_timeout: 3
database:
  durability: normal
webhooks:
  allow_private_networks: true
  allowed_networks: [10.0.0.0/8, "fd00::/8"]
log:
  format: json
  access: false
""",
    )
    settings = load_settings(path, data_dir=tmp_path, environ={})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9000)
    assert settings.public_url == "https://home.example.com"
    assert settings.server.shutdown_timeout == 3.0
    assert isinstance(settings.server.shutdown_timeout, float)
    assert settings.database.durability == "normal"
    assert settings.webhooks.allow_private_networks is True
    assert settings.webhooks.allowed_networks == ("10.0.0.0/8", "fd00::/8")
    assert settings.log == LogSettings(level="info", format="json", access=False)


@pytest.mark.parametrize(
    ("use_env", "use_overrides", "expected"),
    [(False, False, 1000), (True, False, 2000), (True, True, 3000), (False, True, 3000)],
)
def test_file_then_environment_then_overrides(
    tmp_path: Path, use_env: bool, use_overrides: bool, expected: int
) -> None:
    """Defaults < file < environment < overrides, key by key."""
    path = config(tmp_path, "server:\n  port: 1000\n  host: 0.0.0.0\nlog:\n  level: debug\n")
    environ = {"STATERELAY_SERVER_PORT": "2000"} if use_env else {}
    overrides = {"server.port": 3000, "server.host": None} if use_overrides else None
    settings = load_settings(path, data_dir=tmp_path, environ=environ, overrides=overrides)
    assert settings.server.port == expected
    assert settings.server.host == "0.0.0.0"  # an override of None is a flag not given
    assert settings.log.level == "debug"


def test_public_url_follows_the_port_unless_set(tmp_path: Path) -> None:
    """An unset (or null) public_url is http://localhost:<port>; a set one is kept."""
    moved = load_settings(data_dir=tmp_path, environ={}, overrides={"server.port": 9000})
    assert moved.public_url == "http://localhost:9000"
    null = config(tmp_path, "server:\n  port: 9100\n  public_url: null\n")
    assert load_settings(null, data_dir=tmp_path, environ={}).public_url == (
        "http://localhost:9100"
    )
    fixed = load_settings(
        data_dir=tmp_path,
        environ={"STATERELAY_SERVER_PUBLIC_URL": "https://relay.example.com"},
        overrides={"server.port": 9000},
    )
    assert fixed.public_url == "https://relay.example.com"


def test_nested_keys_from_environment_and_overrides(tmp_path: Path) -> None:
    """STATERELAY_SERVER_HOSTS_API and "server.hosts.auth" reach server.hosts; file keys stay."""
    path = config(tmp_path, "server:\n  hosts:\n    app: app.example.com\n    api: old.example\n")
    settings = load_settings(
        path,
        data_dir=tmp_path,
        environ={"STATERELAY_SERVER_HOSTS_API": "api.example.com"},
        overrides={"server.hosts.auth": "auth.example.com"},
    )
    assert settings.server.hosts == HostsSettings(
        app="app.example.com", api="api.example.com", auth="auth.example.com"
    )


def test_nested_environment_key_fills_a_null_section(tmp_path: Path) -> None:
    """``hosts: null`` in the file does not block STATERELAY_SERVER_HOSTS_ALEXA."""
    path = config(tmp_path, "server:\n  hosts: null\n")
    environ = {"STATERELAY_SERVER_HOSTS_ALEXA": "alexa.example.com"}
    settings = load_settings(path, data_dir=tmp_path, environ=environ)
    assert settings.server.hosts.alexa == "alexa.example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.0/8,192.168.1.0/24", ("10.0.0.0/8", "192.168.1.0/24")),
        (" 10.0.0.0/8 , fd00::/8 ,", ("10.0.0.0/8", "fd00::/8")),
        ("192.168.1.7", ("192.168.1.7",)),
        ("", ()),
    ],
)
def test_lists_from_environment_are_comma_separated(
    tmp_path: Path, text: str, expected: tuple[str, ...]
) -> None:
    """STATERELAY_WEBHOOKS_ALLOWED_NETWORKS is split on commas; empty means no networks."""
    path = config(tmp_path, "webhooks:\n  allowed_networks: [172.16.0.0/12]\n")
    environ = {"STATERELAY_WEBHOOKS_ALLOWED_NETWORKS": text}
    settings = load_settings(path, data_dir=tmp_path, environ=environ)
    assert settings.webhooks.allowed_networks == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_booleans_from_environment(tmp_path: Path, text: str, expected: bool) -> None:
    """true/false, 1/0, yes/no and on/off, in any case."""
    environ = {"STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": text}
    settings = load_settings(data_dir=tmp_path, environ=environ)
    assert settings.webhooks.allow_private_networks is expected


def test_typed_values_from_environment(tmp_path: Path) -> None:
    """Numbers, choices and text are parsed for their key's type."""
    environ = {
        "STATERELAY_SERVER_SHUTDOWN_TIMEOUT": "2.5",
        "STATERELAY_WEBHOOKS_MAX_ATTEMPTS": " 5 ",
        "STATERELAY_WEBHOOKS_TIMEOUT_SECONDS": "3",
        "STATERELAY_ALEXA_REGION": "EU",
        "STATERELAY_LOG_LEVEL": "warning",
        "STATERELAY_ALEXA_RELAY_SECRET": "0123",  # text stays text, leading zero and all
        "STATERELAY_DATABASE_DURABILITY": "normal",
    }
    settings = load_settings(data_dir=tmp_path, environ=environ)
    assert settings.server.shutdown_timeout == 2.5
    assert settings.webhooks.max_attempts == 5
    assert settings.webhooks.timeout_seconds == 3.0
    assert settings.alexa.region == "EU"
    assert settings.log.level == "warning"
    assert settings.alexa.relay_secret == "0123"
    assert settings.database.durability == "normal"


def test_empty_environment_value_unsets_an_optional_key(tmp_path: Path) -> None:
    """STATERELAY_REDIS_URL= clears a URL the file set."""
    path = config(tmp_path, "redis:\n  url: redis://localhost:6379/0\n")
    settings = load_settings(path, data_dir=tmp_path, environ={"STATERELAY_REDIS_URL": ""})
    assert settings.redis.url is None


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    """Names outside the settings' sections are not ours to judge."""
    environ = {
        "STATERELAY_CONFIG": "/nowhere.yaml",
        "STATERELAY_SOMETHING_ELSE": "x",
        "STATERELAY_LOGGING": "x",
        "PATH": "/bin",
        "staterelay_server_port": "abc",
    }
    assert load_settings(data_dir=tmp_path, environ=environ) == Settings(data_dir=tmp_path)


def test_data_dir_flag_then_environment_then_file(tmp_path: Path) -> None:
    """--data-dir wins over STATERELAY_DATA_DIR, which wins over data_dir in the file."""
    path = config(tmp_path, "data_dir: relative/data\n")
    env = {"STATERELAY_DATA_DIR": str(tmp_path / "from-env")}
    flag = tmp_path / "from-flag"
    assert load_settings(path, data_dir=flag, environ=env).data_dir == flag
    assert load_settings(path, environ=env).data_dir == tmp_path / "from-env"
    # A relative path in the file is relative to the file, not to the working directory.
    assert load_settings(path, environ={}).data_dir == tmp_path / "relative" / "data"
    absolute = config(tmp_path, f"data_dir: {tmp_path / 'abs'}\n")
    assert load_settings(absolute, environ={}).data_dir == tmp_path / "abs"


def test_default_data_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATERELAY_DATA_DIR moves the default data directory and so the database."""
    monkeypatch.setenv("STATERELAY_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("STATERELAY_DATA_DIR")
    assert default_data_dir().name == "staterelay"


def test_error_names_the_key(tmp_path: Path) -> None:
    """The message reads "<key>: <what is wrong>"."""
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path, environ={"STATERELAY_SERVER_PORT": "abc"})
    assert caught.value.key == "server.port"
    assert str(caught.value) == "server.port: must be a whole number"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server:\n  port: abc\n", "server.port"),
        ("server:\n  port: '8080'\n", "server.port"),
        ("server:\n  port: 8080.5\n", "server.port"),
        ("server:\n  port: true\n", "server.port"),
        ("server:\n  port: 65536\n", "server.port"),
        ("server:\n  port: -1\n", "server.port"),
        ("server:\n  host: ''\n", "server.host"),
        ("server:\n  public_url: localhost:8080\n", "server.public_url"),
        ("server:\n  public_url: ftp://example.com\n", "server.public_url"),
        ("server:\n  public_url: https://example.com/?a=1\n", "server.public_url"),
        ("server:\n  public_url: https://example.com/#top\n", "server.public_url"),
        ("server:\n  hosts:\n    api: https://api.example.com\n", "server.hosts.api"),
        ("server:\n  hosts:\n    app: app.example.com:8443\n", "server.hosts.app"),
        ("server:\n  hosts:\n    web: web.example.com\n", "server.hosts.web"),
        ("server:\n  hosts: [api.example.com]\n", "server.hosts"),
        ("server:\n  shutdown_timeout: 0\n", "server.shutdown_timeout"),
        ("server:\n  shutdown_timeout: .nan\n", "server.shutdown_timeout"),
        ("server:\n  max_body_bytes: 100\n", "server.max_body_bytes"),
        ("server:\n  prot: 8080\n", "server.prot"),
        ("server: 8080\n", "server"),
        ("nonsense:\n  key: 1\n", "nonsense"),
        ("database:\n  durability: sometimes\n", "database.durability"),
        ("database:\n  url: mysql://db/staterelay\n", "database.url"),
        ("database:\n  url: 'sqlite:///'\n", "database.url"),
        ("redis:\n  url: http://localhost:6379\n", "redis.url"),
        ("webhooks:\n  allowed_networks: [10.0.0.0/33]\n", "webhooks.allowed_networks"),
        ("webhooks:\n  allowed_networks: [home]\n", "webhooks.allowed_networks"),
        ("webhooks:\n  allowed_networks: {a: 1}\n", "webhooks.allowed_networks"),
        ("webhooks:\n  allow_private_networks: maybe\n", "webhooks.allow_private_networks"),
        ("webhooks:\n  timeout_seconds: 61\n", "webhooks.timeout_seconds"),
        ("webhooks:\n  max_attempts: 0\n", "webhooks.max_attempts"),
        ("activity:\n  retention_days: 0\n", "activity.retention_days"),
        ("alexa:\n  region: no\n", "alexa.region"),  # YAML reads "no" as false
        ("alexa:\n  region: US\n", "alexa.region"),
        ("alexa:\n  relay_secret: [a, b]\n", "alexa.relay_secret"),
        ("alexa:\n  lwa_token_url: not a url\n", "alexa.lwa_token_url"),
        ("ifttt:\n  realtime_url: realtime.ifttt.com\n", "ifttt.realtime_url"),
        ("ifttt:\n  max_thresholds_per_sensor: 0\n", "ifttt.max_thresholds_per_sensor"),
        ("limits:\n  ifttt_token_per_minute: -1\n", "limits.ifttt_token_per_minute"),
        ("oauth:\n  access_token_ttl_seconds: 300\n", "oauth.access_token_ttl_seconds"),
        ("oauth:\n  code_ttl_seconds: 0\n", "oauth.code_ttl_seconds"),
        ("dispatch:\n  lease_seconds: 1\n", "dispatch.lease_seconds"),
        ("dispatch:\n  first_retry_seconds: 0\n", "dispatch.first_retry_seconds"),
        ("billing:\n  enabled: 1\n", "billing.enabled"),
        ("log:\n  level: verbose\n", "log.level"),
        ("log:\n  format: xml\n", "log.format"),
        ("log:\n  level: null\n", "log.level"),
        ("data_dir: [a]\n", "data_dir"),
        ("- server\n- log\n", "config"),
        ("just some text\n", "config"),
        ("server: [1\n", "config"),
        ("server:\n  port: 1\n port: 2\n", "config"),
    ],
)
def test_invalid_file_values(tmp_path: Path, text: str, key: str) -> None:
    """Each bad value raises SettingsError naming its key."""
    with pytest.raises(SettingsError) as caught:
        load_settings(config(tmp_path, text), data_dir=tmp_path, environ={})
    assert caught.value.key == key
    assert str(caught.value).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"STATERELAY_SERVER_PORT": "abc"}, "server.port"),
        ({"STATERELAY_SERVER_PORT": "99999"}, "server.port"),
        ({"STATERELAY_SERVER_PORT": ""}, "server.port"),
        ({"STATERELAY_SERVER_PROT": "8080"}, "server.prot"),
        ({"STATERELAY_SERVER_HOSTS_WEB": "web.example.com"}, "server.hosts.web"),
        ({"STATERELAY_SERVER_PUBLIC_URL": ""}, "server.public_url"),
        ({"STATERELAY_SERVER_SHUTDOWN_TIMEOUT": "soon"}, "server.shutdown_timeout"),
        ({"STATERELAY_SERVER_SHUTDOWN_TIMEOUT": "inf"}, "server.shutdown_timeout"),
        (
            {"STATERELAY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "maybe"},
            "webhooks.allow_private_networks",
        ),
        ({"STATERELAY_WEBHOOKS_ALLOWED_NETWORKS": "10.0.0.0/8,lan"}, "webhooks.allowed_networks"),
        ({"STATERELAY_DATABASE_DURABILITY": "sometimes"}, "database.durability"),
        ({"STATERELAY_ALEXA_REGION": "na"}, "alexa.region"),
        ({"STATERELAY_LOG_ACCESS": "quiet"}, "log.access"),
    ],
)
def test_invalid_environment_values(tmp_path: Path, environ: dict[str, str], key: str) -> None:
    """A bad environment value names the key it sets."""
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path, environ=environ)
    assert caught.value.key == key


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"server.port": 70000}, "server.port"),
        ({"server.public_url": "example.com"}, "server.public_url"),
        ({"server.prot": 1}, "server.prot"),
        ({"nonsense.key": 1}, "nonsense.key"),
        ({"server.port.inner": 1}, "server.port"),
    ],
)
def test_invalid_overrides(tmp_path: Path, overrides: dict[str, Any], key: str) -> None:
    """A bad flag value names the key it sets."""
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path, environ={}, overrides=overrides)
    assert caught.value.key == key


def test_unreadable_config_file(tmp_path: Path) -> None:
    """A missing file is a config error, not an OSError."""
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path / "missing.yaml", data_dir=tmp_path, environ={})
    assert caught.value.key == "config"
    assert "missing.yaml" in caught.value.message


def test_file_is_not_modified_by_loading(tmp_path: Path) -> None:
    """Environment values merge into a copy, so loading twice gives the same answer."""
    path = config(tmp_path, "server:\n  hosts:\n    app: app.example.com\n")
    environ = {"STATERELAY_SERVER_HOSTS_API": "api.example.com"}
    first = load_settings(path, data_dir=tmp_path, environ=environ)
    second = load_settings(path, data_dir=tmp_path, environ={})
    assert first.server.hosts.api == "api.example.com"
    assert second.server.hosts.api is None


def test_each_host_role_has_its_base_url(tmp_path: Path) -> None:
    """A role without a host of its own answers on the public URL; one with a host keeps the
    public URL's scheme and port."""
    settings = load_settings(
        data_dir=tmp_path,
        environ={},
        overrides={
            "server.public_url": "https://home.example:8443/",
            "server.hosts.alexa": "alexa.example",
        },
    )
    assert settings.role_url("api") == "https://home.example:8443"
    assert settings.role_url("alexa") == "https://alexa.example:8443"
    standard = load_settings(
        data_dir=tmp_path,
        environ={},
        overrides={
            "server.public_url": "https://home.example",
            "server.hosts.google": "google.example",
        },
    )
    assert standard.role_url("google") == "https://google.example"

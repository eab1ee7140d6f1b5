"""The ``staterelay`` command line: the only module that reads argv."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

import click
from aiohttp import web

from staterelay import __version__
from staterelay.app.assemble import build_core
from staterelay.app.factory import create_app
from staterelay.app.registry import delivery_policies, migration_folders
from staterelay.browser.addresses import public_url_is_default, reachable_urls, unreachable_reason
from staterelay.core import Core
from staterelay.core.clock import iso
from staterelay.core.crypto import load_or_create_secret, relay_secret
from staterelay.core.errors import Conflict, StateRelayError
from staterelay.core.oauth import OAuthClient
from staterelay.core.oauth_clients import (
    KNOWN_SCOPES,
    ClientPreset,
    alexa_preset,
    ifttt_preset,
    issuer_url,
)
from staterelay.core.records import User
from staterelay.integrations.billing.cli import CliTools, billing_commands
from staterelay.integrations.google.cli import google_commands
from staterelay.logs import configure_logging
from staterelay.ops import backup as backups, doctor as doctors, transfer
from staterelay.ops.lock import InstanceLock, InstanceRunning, running_public_url
from staterelay.settings import (
    CONFIG_ENV,
    DATA_DIR_ENV,
    Settings,
    SettingsError,
    default_data_dir,
    load_settings,
)
from staterelay.store import open_store

_LOGGER = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
TEMPLATE_NAME = "config_template.yaml"
# bind() failures that mean "this address cannot be used", not a bug worth a traceback.
_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})

SWITCH_INTERVAL = 0.0005
_ALLOW_INSECURE_HELP = (
    "Build it for an http:// or loopback URL anyway (a test on this machine; Amazon and IFTTT "
    "cannot reach such a URL)."
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CommandError(click.ClickException):
    """A failure shown as one line, ``staterelay: <message>``; exit code 1."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line on stderr."""
        click.echo(f"staterelay: {self.format_message()}", file=file, err=file is None)


class ConfigError(CommandError):
    """An invalid setting, shown as ``staterelay: config error: <key>: <message>``; exit code 2."""

    exit_code = 2

    def __init__(self, error: SettingsError) -> None:
        super().__init__(f"config error: {error}")


def config_template() -> str:
    """The commented config file ``init`` writes (the same text as ``config.example.yaml``)."""
    return resources.files("staterelay").joinpath(TEMPLATE_NAME).read_text(encoding="utf-8")


def _settings_options(command: F) -> F:
    """Add ``--config`` and ``--data-dir``, which every command takes."""
    command = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=(
            f"Directory of the database, secret key and config.yaml. "
            f"Default: ${DATA_DIR_ENV}, else the per-user data directory."
        ),
    )(command)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=CONFIG_ENV,
        show_envvar=True,
        help=f"Config file. Default: <data-dir>/{CONFIG_NAME} when it exists.",
    )(command)


def _load(
    config_file: Path | None, data_dir: Path | None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from flags, environment, the config file and defaults; ``ConfigError`` if bad."""
    if config_file is None:
        candidate = (data_dir.expanduser() if data_dir else default_data_dir()) / CONFIG_NAME
        if candidate.is_file():
            config_file = candidate
    try:
        return load_settings(config_file, data_dir=data_dir, overrides=overrides)
    except SettingsError as exc:
        raise ConfigError(exc) from None


def _prepare_data_dir(settings: Settings) -> None:
    """Create the data directory, private to this user, if it does not exist."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CommandError(
            f"cannot create the data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None


def _open_core(settings: Settings) -> Core:
    """A Core on the configured database, as ``create_app`` builds it; not yet opened."""
    _prepare_data_dir(settings)
    if not settings.database_url.startswith("sqlite:///"):
        try:
            open_store(settings.database_url)
        except ValueError as exc:  # a database this version cannot open yet
            raise CommandError(str(exc)) from None
    try:
        secret = load_or_create_secret(settings.secret_key_path)
    except OSError as exc:
        raise CommandError(
            f"cannot read {settings.secret_key_path}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return build_core(
        settings,
        instance_secret=secret,
        migrations=migration_folders(),
        delivery_policies=delivery_policies(settings),
    )


def _run(settings: Settings, work: Callable[[Core], Awaitable[T]]) -> T:
    """Open the database, run one piece of work on Core, and close everything again."""

    async def run_with_core() -> T:
        core = _open_core(settings)
        try:
            await core.store.open()
        except OSError as exc:
            raise CommandError(
                f"cannot open the database in {settings.data_dir}: {exc.strerror or exc}"
            ) from None
        try:
            return await work(core)
        finally:
            await core.bus.close()
            await core.store.close()

    try:
        return asyncio.run(run_with_core())
    except StateRelayError as exc:
        raise CommandError(exc.detail) from None


def _strip_newline(text: str) -> str:
    """``text`` without one trailing newline (``echo`` and here-strings add one)."""
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_can_listen(host: str, port: int) -> None:
    """Fail with one line before the database is touched when the address cannot be bound."""
    if port == 0:
        return
    where = _address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(f"cannot listen on {where}: {exc.strerror}") from None
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            # The same options asyncio's create_server sets, so the probe binds only when
            # the server will: a port in TIME_WAIT is free, one with a listener is not.
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                raise CommandError(f"cannot listen on {where}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="StateRelay")
def cli() -> None:
    """StateRelay: virtual smart-home devices for Alexa, IFTTT, a dashboard and an API."""


@cli.command()
@click.option(
    "--host",
    help=(
        "Address to listen on. Defaults to 127.0.0.1, which means only this machine can "
        "connect; put a reverse proxy in front, or use --host 0.0.0.0 to expose StateRelay "
        "on your network."
    ),
)
@click.option("--port", type=int, help="TCP port to listen on. Default 8080.")
@click.option(
    "--public-url",
    help="The URL people and services reach this server by. Default http://localhost:<port>.",
)
@_settings_options
def serve(
    host: str | None,
    port: int | None,
    public_url: str | None,
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Run the server until SIGTERM or Ctrl-C."""
    settings = _load(
        config_file,
        data_dir,
        {"server.host": host, "server.port": port, "server.public_url": public_url},
    )
    configure_logging(settings.log)
    try:
        _serve(settings)
    except KeyboardInterrupt:
        # Ctrl-C before the server's own signal handling is in place (while it starts).
        _LOGGER.info("StateRelay stopped before it finished starting")


def _serve(settings: Settings) -> None:
    """Start the server and run it until it is stopped."""
    # The SQLite writer thread hands the GIL back and forth with the event loop on every
    # statement; Python's default 5 ms switch interval would make it queue behind request
    # handling for milliseconds each time.
    sys.setswitchinterval(SWITCH_INTERVAL)
    server = settings.server
    _check_can_listen(server.host, server.port)
    _prepare_data_dir(settings)
    try:
        app = create_app(settings)
    except OSError as exc:
        raise CommandError(
            f"cannot use the data directory {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:  # an unsupported database URL, a damaged secret key file
        raise CommandError(str(exc)) from None
    instance_lock = _lock_data_dir(settings)
    app.on_startup.append(_freeze_startup_objects)

    started = False

    def announce(*_banner: object) -> None:
        # aiohttp calls this once every site is bound; its own banner text is dropped.
        nonlocal started
        started = True
        where = _address(server.host, server.port)
        urls = reachable_urls(settings)
        if urls == [settings.public_url]:
            _LOGGER.info(
                "StateRelay is serving %s (listening on %s, data in %s)",
                settings.public_url,
                where,
                settings.data_dir,
            )
            return
        _LOGGER.info(
            "StateRelay is serving %s (listening on %s, data in %s)",
            ", ".join(urls),
            where,
            settings.data_dir,
        )
        _LOGGER.info(
            "No public URL is set: links StateRelay makes (invites, password resets, Alexa and "
            "IFTTT setup) use %s; set server.public_url, or serve --public-url %s, to the "
            "address people should use",
            settings.public_url,
            urls[0],
        )

    try:
        web.run_app(
            app,
            host=server.host,
            port=server.port,
            shutdown_timeout=server.shutdown_timeout,
            print=announce,
            access_log=None,  # the app logs requests itself, on staterelay.access
            handle_signals=True,
        )
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRNOS:
            raise
        where = _address(server.host, server.port)
        raise CommandError(f"cannot listen on {where}: {_reason(exc)}") from None
    finally:
        if instance_lock is not None:
            instance_lock.release()
    # run_app returns (rather than raising) after SIGINT or SIGTERM, also while starting.
    if started:
        _LOGGER.info("StateRelay stopped")
    else:
        _LOGGER.info("StateRelay stopped before it finished starting")


async def _freeze_startup_objects(app: web.Application) -> None:
    """Exempt everything alive once the server has started from the cyclic GC.

    Modules, templates, the app and its services live as long as the process, yet every
    full collection walks them all: a pause of tens of milliseconds under load, which is
    what the slowest requests waited for. Frozen, they are never scanned; what requests
    allocate afterwards is collected as usual.
    """
    gc.collect()
    gc.freeze()


def _lock_data_dir(settings: Settings) -> InstanceLock | None:
    """Hold the data directory's lock, so restore and a second server know we run (SQLite)."""
    if not settings.database_url.startswith("sqlite:"):
        return None  # PostgreSQL replicas may share a data directory for the secret key
    lock = InstanceLock(settings.data_dir)
    try:
        lock.acquire(settings.public_url)
    except InstanceRunning as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot lock {lock.path}: {exc.strerror or exc}") from None
    return lock


@cli.command(short_help="Write a commented config file.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite the file if it exists.")
@_settings_options
def init(file: Path | None, force: bool, config_file: Path | None, data_dir: Path | None) -> None:
    """Write a commented config file to FILE (default <data-dir>/config.yaml)."""
    target = file or config_file or (data_dir or default_data_dir()) / CONFIG_NAME
    target = target.expanduser()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # 0600: the file will hold secrets (Alexa, IFTTT, Stripe) once it is filled in.
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise CommandError(f"{target} already exists; use --force to overwrite it") from None
    except OSError as exc:
        raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(config_template())
    click.echo(f"Wrote {target}")
    command = ["staterelay", "serve"]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    if target != (data_dir or default_data_dir()) / CONFIG_NAME:
        command += ["--config", str(target)]
    click.echo(f"Edit it, then run: {' '.join(command)}")


@cli.group()
def user() -> None:
    """Manage users."""


@user.command("create")
@click.option("--email", required=True, help="The user's email address.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (one trailing newline is dropped). Without it the "
    "user has no password.",
)
@click.option("--admin", is_flag=True, help="Make the user an administrator of the instance.")
@_settings_options
def user_create(
    email: str,
    password_stdin: bool,
    admin: bool,
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Create a user in the household and print the new user's id."""
    password = None
    if password_stdin:
        password = _strip_newline(sys.stdin.read())
    settings = _load(config_file, data_dir)

    async def create(core: Core) -> str:
        try:
            created = await core.users.create(email=email, password=password, is_admin=admin)
        except Conflict:
            raise CommandError(
                f"a user with the email {email.strip()} exists; to give it a new password, run "
                f"staterelay user set-password --email {email.strip()} --password-stdin"
            ) from None
        return created.id

    click.echo(_run(settings, create))


@user.command("set-password")
@click.option("--email", required=True, help="The user's email address.")
@click.option(
    "--password-stdin",
    is_flag=True,
    required=True,
    help="Read the new password from stdin (one trailing newline is dropped).",
)
@_settings_options
def user_set_password(
    email: str, password_stdin: bool, config_file: Path | None, data_dir: Path | None
) -> None:
    """Give a user a new password (a way back in); every session of the user ends."""
    password = _strip_newline(sys.stdin.read())
    settings = _load(config_file, data_dir)

    async def set_password(core: Core) -> int:
        return await core.recovery.set_password(email, password)

    ended = _run(settings, set_password)
    sessions = f"{ended} session{'s' if ended != 1 else ''}"
    click.echo(
        f"staterelay: set a new password for {email.strip()}; {sessions} signed out", err=True
    )


@user.command("list")
@_settings_options
def user_list(config_file: Path | None, data_dir: Path | None) -> None:
    """List the users: id, email, admin or member, and when they were created."""
    settings = _load(config_file, data_dir)

    async def listing(core: Core) -> list[User]:
        return list(await core.recovery.users())

    users = _run(settings, listing)
    if not users:
        click.echo(
            "staterelay: no users yet; open the setup link `staterelay serve` prints, or run "
            "staterelay user create --email YOU@EXAMPLE.COM --admin --password-stdin",
            err=True,
        )
        return
    for item in users:
        role = "admin" if item.is_admin else "member"
        click.echo(f"{item.id}\t{item.email}\t{role}\t{iso(item.created_at)}")


@cli.group()
def apikey() -> None:
    """Manage API keys."""


@apikey.command("create")
@click.option("--email", required=True, help="Email of the user the key acts for.")
@click.option(
    "--scope",
    type=click.Choice(["read", "write"]),
    default="read",
    show_default=True,
    help="read: see devices and state; write: also change them.",
)
@click.option("--name", default="cli", show_default=True, help="A label to recognise the key by.")
@click.option(
    "--device",
    "devices",
    multiple=True,
    metavar="DEVICE_ID",
    help="Limit the key to this device (repeatable); without it the key reaches every device.",
)
@_settings_options
def apikey_create(
    email: str,
    scope: str,
    name: str,
    devices: tuple[str, ...],
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Create an API key and print it once on stdout: KEY=$(staterelay apikey create ...)."""
    settings = _load(config_file, data_dir)

    async def create(core: Core) -> tuple[str, str]:
        owner = await core.users.by_email(email)
        key, secret = await core.auth.create_api_key(
            owner, name=name, scope=scope, device_ids=list(devices) if devices else None
        )
        return key.id, secret

    key_id, secret = _run(settings, create)
    click.echo(secret)
    reach = f" limited to {', '.join(dict.fromkeys(devices))}" if devices else ""
    click.echo(
        f"staterelay: created {scope} API key {key_id} for {email}{reach}; it is not shown again",
        err=True,
    )


@cli.group()
def client() -> None:
    """Manage the OAuth clients (Alexa skill, IFTTT service) users link through."""


_PRESET_HELP = (
    "alexa: the Alexa skill (needs --vendor-id); ifttt: the IFTTT service (needs "
    "--service-id); custom: your own app (needs --redirect-uri)."
)
_AUTH_SCHEMES = {
    "client_secret_basic": "HTTP Basic (Alexa: 'HTTP Basic (Recommended)')",
    "client_secret_post": "credentials in the request body",
}


@client.command("create")
@click.option(
    "--preset", type=click.Choice(["alexa", "ifttt", "custom"]), required=True, help=_PRESET_HELP
)
@click.option(
    "--vendor-id",
    help="alexa: your Amazon vendor id, the last part of the redirect URLs on the skill's "
    "Account Linking page.",
)
@click.option("--service-id", help="ifttt: your service's id (the slug in its URL).")
@click.option(
    "--redirect-uri",
    "redirect_uris",
    multiple=True,
    help="custom: a redirect URI the app may use (repeat for several); matched exactly.",
)
@click.option(
    "--auth-method",
    type=click.Choice(["client_secret_basic", "client_secret_post"]),
    help="custom: how the app sends its secret to the token endpoint. Default client_secret_basic.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(list(KNOWN_SCOPES)),
    help="Scopes the client may ask for (repeat). Default: devices (ifttt: ifttt).",
)
@click.option("--name", help="The name users see on the consent page.")
@click.option("--id", "client_id", help="The client id. Default: <preset>-<random>.")
@click.option("--allow-insecure-url", is_flag=True, help=_ALLOW_INSECURE_HELP)
@_settings_options
def client_create(
    preset: str,
    vendor_id: str | None,
    service_id: str | None,
    redirect_uris: tuple[str, ...],
    auth_method: str | None,
    scopes: tuple[str, ...],
    name: str | None,
    client_id: str | None,
    allow_insecure_url: bool,
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Register an OAuth client and print what to paste into the Alexa or IFTTT console."""
    try:
        if preset == "alexa":
            if not vendor_id:
                raise click.UsageError("--preset alexa needs --vendor-id")
            chosen = alexa_preset(vendor_id)
        elif preset == "ifttt":
            if not service_id:
                raise click.UsageError("--preset ifttt needs --service-id")
            chosen = ifttt_preset(service_id)
        else:
            if not redirect_uris:
                raise click.UsageError("--preset custom needs at least one --redirect-uri")
            chosen = ClientPreset(
                name="Custom app",
                redirect_uris=redirect_uris,
                token_endpoint_auth_method=auth_method or "client_secret_basic",
                scopes=("devices",),
            )
    except StateRelayError as exc:
        raise CommandError(exc.detail) from None
    settings = _with_running_url(_load(config_file, data_dir))
    if preset in ("alexa", "ifttt"):
        target = issuer_url(settings.public_url, settings.server.hosts.auth)
        _require_reachable(target, allow_insecure_url, f"the {preset} client")

    async def create(core: Core) -> tuple[OAuthClient, str]:
        return await core.oauth.create_client(
            client_id=client_id or f"{preset}-{secrets.token_hex(4)}",
            name=name or chosen.name,
            redirect_uris=chosen.redirect_uris,
            token_endpoint_auth_method=auth_method or chosen.token_endpoint_auth_method,
            scopes=scopes or chosen.scopes,
        )

    created, secret = _run(settings, create)
    base = issuer_url(settings.public_url, settings.server.hosts.auth)
    lines = [
        f"Created OAuth client {created.name!r}. Paste these into the "
        + {
            "alexa": "skill's Account Linking page",
            "ifttt": "service's authentication settings",
        }.get(preset, "app's OAuth settings")
        + ":",
        "",
        f"  Client ID:              {created.id}",
        f"  Client secret:          {secret}",
        f"  Authorization URI:      {base}/oauth/authorize",
        f"  Access token URI:       {base}/oauth/token",
        f"  Authentication scheme:  {_AUTH_SCHEMES[created.token_endpoint_auth_method]}",
        f"  Scope:                  {' '.join(created.scopes)}",
        "  Redirect URIs (registered here; they must match the console exactly):",
        *(f"    {uri}" for uri in created.redirect_uris),
        "",
        "The client secret is shown only this once.",
    ]
    click.echo("\n".join(lines))


@client.command("list")
@_settings_options
def client_list(config_file: Path | None, data_dir: Path | None) -> None:
    """List the registered OAuth clients."""
    settings = _load(config_file, data_dir)

    async def listing(core: Core) -> list[OAuthClient]:
        return list(await core.oauth.list_clients())

    clients = _run(settings, listing)
    if not clients:
        click.echo(
            "staterelay: no OAuth clients yet; `staterelay alexa setup --vendor-id ...` or "
            "`staterelay client create --preset ...` registers one",
            err=True,
        )
        return
    for item in clients:
        click.echo(
            f"{item.id}\t{item.name}\t{item.token_endpoint_auth_method}\t"
            f"{' '.join(item.scopes)}\t{item.source}\t{' '.join(item.redirect_uris)}"
        )


@client.command("delete")
@click.argument("client_id")
@_settings_options
def client_delete(client_id: str, config_file: Path | None, data_dir: Path | None) -> None:
    """Delete an OAuth client; every user linked through it is unlinked."""
    settings = _load(config_file, data_dir)

    async def delete(core: Core) -> None:
        await core.oauth.delete_client(client_id)

    _run(settings, delete)
    click.echo(f"staterelay: deleted OAuth client {client_id}", err=True)


@cli.command(short_help="Back up the database and secret key to one file.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@_settings_options
def backup(file: Path, force: bool, config_file: Path | None, data_dir: Path | None) -> None:
    """Write a backup archive (database snapshot and secret.key, mode 0600) to FILE.

    Safe while the server runs and writes; restore it with `staterelay restore FILE`.
    """
    settings = _load(config_file, data_dir)
    try:
        made = backups.create_backup(settings, file, overwrite=force)
    except backups.BackupError as exc:
        raise CommandError(str(exc)) from None
    for warning in made.warnings:
        click.echo(f"staterelay: warning: {warning}", err=True)
    click.echo(
        f"staterelay: wrote {made.path} ({made.bytes} bytes, {made.facts.devices} devices, "
        f"{made.facts.users} users, schema version {made.facts.schema_version}"
        f"{'' if made.with_key else ', without a secret key'}) in {made.seconds:.1f} s",
        err=True,
    )


@cli.command(short_help="Restore a backup made by `staterelay backup`.")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing database (it is kept as <name>.before-restore-<time>).",
)
@_settings_options
def restore(file: Path, force: bool, config_file: Path | None, data_dir: Path | None) -> None:
    """Restore the database and secret key from FILE into the data directory.

    The server must be stopped. FILE may also be a bare SQLite database, which keeps the
    data directory's own secret.key.
    """
    settings = _load(config_file, data_dir)
    try:
        done = backups.restore_backup(settings, file, replace=force)
    except backups.BackupError as exc:
        raise CommandError(str(exc)) from None
    for path in done.set_aside:
        click.echo(f"staterelay: kept the replaced {path.name.split('.before')[0]} as {path}")
    made = f" (made {done.created_at})" if done.created_at else ""
    click.echo(
        f"staterelay: restored {file.name}{made}: {done.facts.devices} devices, "
        f"{done.facts.users} users, schema version {done.facts.schema_version}"
        f"{', with its secret key' if done.key_restored else ''}, into {done.database}"
    )


@cli.command("export", short_help="Write the devices as JSON.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--email", help="Export the devices of this user's household.")
@_settings_options
def export_devices(
    file: Path | None, email: str | None, config_file: Path | None, data_dir: Path | None
) -> None:
    """Write the household's devices and their state as JSON to FILE (default stdout)."""
    settings = _load(config_file, data_dir)
    document = _run(settings, lambda core: transfer.export_devices(core, email))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if file is None or str(file) == "-":
        click.echo(text, nl=False)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {file}: {exc.strerror or exc}") from None
    click.echo(f"staterelay: wrote {len(document['devices'])} devices to {file}", err=True)


@cli.command("import", short_help="Create devices from a JSON export.")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--email", help="Import into this user's household.")
@click.option("--new-ids", is_flag=True, help="Give every device a new id instead of its own.")
@_settings_options
def import_devices(
    file: IO[str],
    email: str | None,
    new_ids: bool,
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Create the devices in FILE (`-` for stdin); names that exist already are skipped."""
    try:
        entries = transfer.parse_document(json.load(file))
    except json.JSONDecodeError as exc:
        raise CommandError(f"{file.name} is not JSON: {exc}") from None
    except transfer.TransferError as exc:
        raise CommandError(f"{file.name}: {exc}") from None
    settings = _load(config_file, data_dir)
    report = _run(
        settings, lambda core: transfer.import_devices(core, entries, email=email, new_ids=new_ids)
    )
    for name, device_id in report.created:
        click.echo(f"created {device_id}\t{name}")
    for name, reason in report.skipped:
        click.echo(f"staterelay: skipped {name!r}: {reason}", err=True)
    for name, reason in report.failed:
        click.echo(f"staterelay: failed {name!r}: {reason}", err=True)
    click.echo(
        f"staterelay: {len(report.created)} created, {len(report.skipped)} skipped, "
        f"{len(report.failed)} failed",
        err=True,
    )
    if report.failed:
        sys.exit(1)


@cli.command(short_help="Check the installation and say what to fix.")
@_settings_options
def doctor(config_file: Path | None, data_dir: Path | None) -> None:
    """Check config, database, secret key, URLs, clock, integrations and deliveries.

    Each finding is OK, WARN or FAIL with what to do; exits 1 when anything FAILs.
    """
    try:
        settings = _load(config_file, data_dir)
    except ConfigError as exc:
        checks = [doctors.config_failure(exc.format_message())]
    else:
        found = config_file or _default_config(data_dir)
        checks = doctors.run_checks(settings, found)
    for check in checks:
        click.echo(doctors.format_check(check))
    if any(check.status == "FAIL" for check in checks):
        sys.exit(1)


def _default_config(data_dir: Path | None) -> Path | None:
    candidate = (data_dir.expanduser() if data_dir else default_data_dir()) / CONFIG_NAME
    return candidate if candidate.is_file() else None


cli.add_command(google_commands(_load, _run, _settings_options, CommandError))


@cli.group()
def alexa() -> None:
    """Set up the Alexa Smart Home skill: the Lambda relay and the console values."""


@alexa.command("lambda")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("staterelay-alexa.zip"),
    show_default=True,
    help="Where to write the deployment package (a zip for AWS Lambda).",
)
@click.option(
    "--no-secret",
    is_flag=True,
    help="Leave the relay secret out of the code; set STATERELAY_RELAY_SECRET in Lambda.",
)
@click.option("--allow-insecure-url", is_flag=True, help=_ALLOW_INSECURE_HELP)
@_settings_options
def alexa_lambda(
    out: Path,
    no_secret: bool,
    allow_insecure_url: bool,
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Write the Lambda relay that forwards Alexa's directives to this instance."""
    from staterelay.integrations.alexa.console import relay_url
    from staterelay.integrations.alexa.relay import HANDLER, write_lambda_zip

    settings = _with_running_url(_load(config_file, data_dir))
    target = relay_url(settings)
    _require_reachable(target, allow_insecure_url, "the Lambda relay")
    secret = _relay_secret(settings)
    try:
        write_lambda_zip(out, target, None if no_secret else secret)
    except OSError as exc:
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out}: upload it as a Python function with handler {HANDLER}")
    click.echo(f"it forwards directives to {target}/alexa/smart_home")
    if no_secret:
        click.echo(
            "set STATERELAY_RELAY_SECRET on the function to the relay secret "
            "(`staterelay alexa setup` shows it)"
        )


@alexa.command("setup")
@click.option(
    "--vendor-id",
    help="Your Amazon vendor id (the end of the Alexa Redirect URLs on the skill's Account "
    "Linking page): registers the OAuth client Alexa links through, unless one exists.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the Lambda relay package here (as `staterelay alexa lambda` does).",
)
@click.option("--allow-insecure-url", is_flag=True, help=_ALLOW_INSECURE_HELP)
@_settings_options
def alexa_setup(
    vendor_id: str | None,
    out: Path | None,
    allow_insecure_url: bool,
    config_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Print every value to paste into the Alexa developer console and AWS.

    Run it as often as you like: the values stay the same (the relay secret is kept with
    the instance's secret key; a client is registered only once per vendor id).
    """
    from staterelay.core.facts import ALEXA_RELAY_SEEN
    from staterelay.integrations.alexa.console import (
        AlexaProgress,
        SetupPlan,
        alexa_clients,
        relay_url,
        setup_sheet,
    )
    from staterelay.integrations.alexa.relay import write_lambda_zip

    if vendor_id is not None:
        try:
            preset = alexa_preset(vendor_id)
        except StateRelayError as exc:
            raise CommandError(exc.detail) from None
    settings = _with_running_url(_load(config_file, data_dir))
    if out is not None:
        _require_reachable(relay_url(settings), allow_insecure_url, "the Lambda relay")

    async def prepare(core: Core) -> tuple[list[tuple[str, str]], str | None, bool, bool]:
        registered = list(await core.oauth.list_clients())
        messaging = await core.alexa.messaging() is not None
        relay_seen = await core.facts.first_seen(ALEXA_RELAY_SEEN) is not None
        found = alexa_clients(settings, registered, vendor_id)
        if vendor_id is None or found:
            return alexa_clients(settings, registered), None, messaging, relay_seen
        client, secret = await core.oauth.create_client(
            client_id=f"alexa-{secrets.token_hex(4)}",
            name=preset.name,
            redirect_uris=preset.redirect_uris,
            token_endpoint_auth_method=preset.token_endpoint_auth_method,
            scopes=preset.scopes,
        )
        return [(client.id, client.name)], secret, messaging, relay_seen

    clients, new_secret, messaging, relay_seen = _run(settings, prepare)
    secret_value = _relay_secret(settings)
    if out is not None:
        try:
            write_lambda_zip(out, relay_url(settings), secret_value)
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    plan = SetupPlan(
        clients=clients,
        new_client_secret=new_secret,
        relay_secret=secret_value,
        relay_secret_from_config=bool(settings.alexa.relay_secret),
        relay_zip=None if out is None else str(out),
        messaging_configured=messaging,
    )
    click.echo(setup_sheet(settings, plan, AlexaProgress(relay_seen=relay_seen)))


def _relay_secret(settings: Settings) -> str:
    """``alexa.relay_secret``, else the one kept with this instance's secret key."""
    if settings.alexa.relay_secret:
        return settings.alexa.relay_secret
    _prepare_data_dir(settings)
    try:
        return relay_secret(load_or_create_secret(settings.secret_key_path))
    except OSError as exc:
        raise CommandError(
            f"cannot read {settings.secret_key_path}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _with_running_url(settings: Settings) -> Settings:
    """The settings, with the running server's public URL when the config sets none.

    ``serve --public-url ... --port ...`` may give the server a URL the config file does not
    have; what Alexa and IFTTT are given must be the one the server really answers on.
    """
    if not public_url_is_default(settings.public_url, settings.server.port):
        return settings
    running = running_public_url(settings.data_dir)
    if not running or running == settings.public_url:
        return settings
    server = dataclasses.replace(settings.server, public_url=running)
    return dataclasses.replace(settings, server=server)


class InsecureUrl(CommandError):
    """A URL Amazon or IFTTT cannot use; exit code 2."""

    exit_code = 2


def _require_reachable(url: str, allowed: bool, what: str) -> None:
    """Refuse to build ``what`` for an http:// or loopback URL unless ``allowed``."""
    problem = unreachable_reason(url)
    if problem is None or allowed:
        return
    raise InsecureUrl(
        f"not writing {what} for {url}: {problem}. Amazon and IFTTT need an https:// address "
        "they can reach from the internet (a tunnel or Caddy in front of StateRelay, see "
        "docs/install.md). Set server.public_url in the config (or run serve with "
        "--public-url https://...) and run this again; --allow-insecure-url writes it anyway"
    )


@cli.group()
def db() -> None:
    """Manage the database schema (PostgreSQL hosting)."""


@db.command("migrate")
@click.option(
    "--url",
    "owner_url",
    help="URL of the role that owns the tables. Default: database.migrate_url, else database.url.",
)
@click.option(
    "--app-role",
    help="Role to grant the app's privileges to. Default: the user named in database.url.",
)
@_settings_options
def db_migrate(
    owner_url: str | None, app_role: str | None, config_file: Path | None, data_dir: Path | None
) -> None:
    """Apply pending migrations once, as the owner, and grant the app role its privileges.

    Run it before starting replicas whose database.url names a role that owns nothing.
    """
    from urllib.parse import urlsplit

    from staterelay.store import migrate_database

    settings = _load(config_file, data_dir)
    url = owner_url or settings.database.migrate_url or settings.database_url
    if app_role is None and settings.database_url != url:
        app_role = urlsplit(settings.database_url).username
    try:
        applied = asyncio.run(
            migrate_database(url, app_role=app_role, migrations=migration_folders())
        )
    except (OSError, RuntimeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    done = f"applied migrations {', '.join(map(str, applied))}" if applied else "schema up to date"
    granted = f"; granted {app_role} its privileges" if app_role else ""
    click.echo(f"staterelay: {done}{granted}", err=True)


cli.add_command(billing_commands(CliTools(_load, _run, _settings_options, CommandError)))


def main() -> None:
    """Run the command line (the ``staterelay`` console script and ``python -m staterelay``)."""
    cli(prog_name="staterelay")

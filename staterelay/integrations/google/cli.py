"""``staterelay google setup``: register Google Home's OAuth client once and print every value
the Google Home Developer Console and the Google Cloud console ask for.

Running it again never makes a new secret: a client with the project's redirect URIs is
reused (its secret was shown when it was registered). The command line's own helpers
(loading settings, running work on core) are handed in by ``staterelay.cli``.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from staterelay.core import Core
from staterelay.core.errors import InvalidInput
from staterelay.core.guide import guide_text
from staterelay.core.oauth import OAuthClient
from staterelay.core.oauth_clients import google_preset
from staterelay.integrations.google.console import GoogleProgress, google_clients, setup_steps
from staterelay.integrations.google.dashboard import key_readable
from staterelay.settings import Settings

T = TypeVar("T")
Load = Callable[[Path | None, Path | None], Settings]
Run = Callable[[Settings, Callable[[Core], Awaitable[Any]]], Any]
Options = Callable[[Callable[..., None]], Callable[..., None]]


def google_commands(
    load: Load, run: Run, settings_options: Options, error: type[click.ClickException]
) -> click.Group:
    """The ``google`` command group, on the command line's helpers."""

    @click.group()
    def google() -> None:
        """Google Home: the OAuth client and the values for Google's consoles."""

    @google.command("setup")
    @click.option(
        "--project-id",
        help="Your Google Home project's id (default: google.project_id from the config).",
    )
    @settings_options
    def setup(project_id: str | None, config_file: Path | None, data_dir: Path | None) -> None:
        """Register the OAuth client Google links through (once) and print every value.

        Run it as often as you like: the client is registered once per project id, and its
        secret is shown only then.
        """
        settings = load(config_file, data_dir)
        project = project_id or settings.google.project_id
        if not project:
            raise error("give --project-id or set google.project_id in the config")
        try:
            preset = google_preset(project)
        except InvalidInput as exc:
            raise error(exc.detail) from None

        async def prepare(core: Core) -> tuple[list[OAuthClient], str | None]:
            registered = google_clients(await core.oauth.list_clients())
            mine = [c for c in registered if set(preset.redirect_uris) <= set(c.redirect_uris)]
            if mine:
                return mine, None
            client, secret = await core.oauth.create_client(
                client_id=f"google-home-{secrets.token_hex(4)}",
                name=preset.name,
                redirect_uris=preset.redirect_uris,
                token_endpoint_auth_method=preset.token_endpoint_auth_method,
                scopes=preset.scopes,
            )
            return [client], secret

        clients, secret = run(settings, prepare)
        if settings.google.project_id != project:
            settings = _with_project(settings, project)
        progress = GoogleProgress(client_registered=True, key_readable=key_readable(settings))
        steps = setup_steps(settings, clients, progress, new_secret=secret)
        click.echo(guide_text("Google Home set-up (docs/google.md)", steps), nl=False)
        if secret is None:
            click.echo(
                "\nThe client was registered before; its secret was shown then and is not "
                "shown again (nothing was changed)."
            )
        if settings.google.project_id is None:
            click.echo(f"\nSet google.project_id: {project} in the config and restart StateRelay.")

    return google


def _with_project(settings: Settings, project: str) -> Settings:
    return dataclasses.replace(
        settings, google=dataclasses.replace(settings.google, project_id=project)
    )

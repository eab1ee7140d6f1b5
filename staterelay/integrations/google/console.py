"""Google Home set-up, written once for the dashboard's guided page and ``staterelay google
setup``: the values to paste into the Google Home Developer Console and the Google Cloud
console, and the checks StateRelay can make itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from staterelay.core.guide import GuideStep, GuideValue
from staterelay.core.oauth import OAuthClient
from staterelay.core.oauth_clients import is_google_client, issuer_url
from staterelay.integrations.google.fulfillment import PATH
from staterelay.integrations.google.serviceaccount import key_path
from staterelay.settings import Settings

DEVELOPER_CONSOLE: Final = "https://console.home.google.com"
CLOUD_CONSOLE: Final = "https://console.cloud.google.com"


def fulfillment_url(settings: Settings) -> str:
    """Where Google sends intents (the ``google`` host when one is configured)."""
    return settings.role_url("google") + PATH


def google_clients(clients: Sequence[OAuthClient]) -> list[OAuthClient]:
    """The registered clients with Google's account-linking redirect URIs."""
    return [client for client in clients if is_google_client(client)]


@dataclass(frozen=True, slots=True)
class GoogleProgress:
    """What StateRelay has seen of the set-up so far (for one user on the dashboard)."""

    client_registered: bool = False
    key_readable: bool | None = None
    synced: bool = False
    report_accepted: bool = False


def setup_steps(
    settings: Settings,
    clients: Sequence[OAuthClient],
    progress: GoogleProgress,
    *,
    new_secret: str | None = None,
) -> list[GuideStep]:
    """The counted steps of docs/google.md with this instance's values."""
    project = settings.google.project_id or "YOUR_PROJECT_ID"
    auth = issuer_url(settings.public_url, settings.server.hosts.auth)
    key = key_path(settings)
    client_values: list[GuideValue] = []
    for client in clients:
        client_values.append(GuideValue("Client ID", client.id))
    if new_secret is not None:
        client_values.append(
            GuideValue("Client secret", new_secret, secret=True, note="shown only this once")
        )
    elif clients:
        client_values.append(
            GuideValue(
                "Client secret",
                "(shown once when the client was registered)",
                note="lost it? staterelay client delete CLIENT_ID, then set up again",
            )
        )
    return [
        GuideStep(
            key="project",
            title="Create a Google Home project",
            text="At the Google Home Developer Console, create a project and note its "
            "project ID; set it as google.project_id in StateRelay's config.",
            values=(GuideValue("google.project_id", project),),
            links=(("Google Home Developer Console", DEVELOPER_CONSOLE),),
            done=settings.google.project_id is not None,
            done_text="google.project_id is set",
        ),
        GuideStep(
            key="homegraph",
            title="Turn on the HomeGraph API",
            text="In the Google Cloud console of the same project: APIs & Services > Enable "
            "APIs > HomeGraph API > Enable.",
            links=(("Google Cloud console", CLOUD_CONSOLE),),
        ),
        GuideStep(
            key="key",
            title="A service account key",
            text="IAM & Admin > Service accounts > Create (no role needed) > Keys > Add key > "
            "JSON. Put the file where google.service_account_file points (relative paths are "
            "in the data directory) and restart StateRelay.",
            values=(GuideValue("Key file", str(key) if key else "google.service_account_file"),),
            done=progress.key_readable,
            done_text="the key file is readable",
        ),
        GuideStep(
            key="client",
            title="Register the OAuth client",
            text="Run `staterelay google setup` on the server: it registers Google's redirect "
            "URIs for your project and prints the client ID and secret (once).",
            values=tuple(client_values),
            done=progress.client_registered,
            done_text="the Google Home client is registered",
        ),
        GuideStep(
            key="integration",
            title="Add a cloud-to-cloud integration",
            text="In the Developer Console: Add cloud-to-cloud integration; fill in the name, "
            "device types and icon, then these values (client authentication: the secret in "
            "the request body or HTTP Basic both work), and Save.",
            values=(
                GuideValue("Fulfillment URL", fulfillment_url(settings)),
                GuideValue("Authorization URL", f"{auth}/oauth/authorize"),
                GuideValue("Token URL", f"{auth}/oauth/token"),
                GuideValue("Scope", "devices"),
            ),
        ),
        GuideStep(
            key="link",
            title="Link in the Google Home app",
            text="In the Google Home app: + > Set up device > Works with Google > "
            "[test] your integration, then sign in to StateRelay and allow access. Google "
            "then asks for your devices (SYNC).",
            done=progress.synced,
            done_text="Google has fetched your devices",
        ),
        GuideStep(
            key="report",
            title="Change a device",
            text="Switch a device on the dashboard: StateRelay reports the new state to Google "
            "(Report State); the Google Home app shows it within seconds.",
            done=progress.report_accepted,
            done_text="Google accepted a Report State",
        ),
        GuideStep(
            key="automation",
            title="Make an automation",
            text="In the Google Home app: Automations > + > Household > add a starter > "
            "your StateRelay switch (turns on or off) and an action.",
        ),
    ]
